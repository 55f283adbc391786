"""pipeline.sources without an object store: URIs, credentials kept out, fetching local
files, and dataset roots served over HTTP (folder indexes, or a file list)."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from pipeline.datasets import load_manifest
from pipeline.dsp.audio import load_clip
from pipeline.errors import AudioDecodeError, AudioError, DatasetError
from pipeline.sources import FILE_LIST, check_root, fetch_many, join_root, source_path
from tests.datasets_fixtures import make_fma_tree, make_folder_tree, make_gtzan_tree
from tests.http_fixtures import RangeRequestHandler, serve_folder


# --------------------------------------------------------------------------
# URIs and options
# --------------------------------------------------------------------------
def test_join_root_keeps_local_paths_absolute_and_builds_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert join_root("data", "genres/blues/blues.00000.au") == str(tmp_path / "data/genres/blues/blues.00000.au")
    assert join_root(tmp_path, "a/b.wav") == str(tmp_path / "a/b.wav")
    assert join_root(f"file://{tmp_path}", "a/b.wav") == str(tmp_path / "a/b.wav")
    assert join_root("s3://bucket/gtzan/", "genres/blues/x.au") == "s3://bucket/gtzan/genres/blues/x.au"
    assert join_root("gs://bucket", "a/b c.wav") == "gs://bucket/a/b c.wav"
    assert join_root("https://host/data", "rock/a b#1.mp3") == "https://host/data/rock/a%20b%231.mp3"


# --------------------------------------------------------------------------
# fetch_many on local files (the path a build takes for local roots in tests)
# --------------------------------------------------------------------------
def test_fetch_many_reads_files_in_order_and_fails_each_unreadable_one_alone(tmp_path):
    paths = []
    for i in range(12):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(bytes([i]) * (i + 1))
        paths.append(str(path))
    (tmp_path / "3.bin").unlink()
    (tmp_path / "dir.wav").mkdir()
    got = fetch_many(paths + [str(tmp_path / "dir.wav")], max_concurrency=4)
    assert len(got) == 13
    for i, item in enumerate(got[:12]):
        if i == 3:
            assert isinstance(item, AudioDecodeError) and item.category == "unreadable"
            assert "No such file" in item.reason
        else:
            assert item == bytes([i]) * (i + 1)
    assert isinstance(got[12], AudioDecodeError) and got[12].category == "unreadable"
    assert fetch_many([]) == []
    with pytest.raises(ValueError):
        fetch_many(paths, max_concurrency=0)


def test_fetch_many_gives_a_missing_backend_or_scheme_as_the_object_failure():
    (item,) = fetch_many(["nosuchscheme://bucket/a.wav"])
    assert isinstance(item, AudioError) and item.category == "unreadable"


def test_check_root_of_local_roots(tmp_path):
    check_root(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        check_root(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        check_root(tmp_path / "f")


# --------------------------------------------------------------------------
# HTTP roots (python -m http.server: folder index pages)
# --------------------------------------------------------------------------
class _NoIndexHandler(RangeRequestHandler):
    """Serves files only: a folder URL is 403, as on a server without autoindex."""

    def list_directory(self, path):
        self.send_error(403, "no index")
        return None


def _same_manifest(local, remote, root):
    assert remote.root == root
    assert dataclasses.replace(remote, root=local.root) == local


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("trees")
    make_gtzan_tree(base / "gtzan", n_per_genre=2, macos_junk=True)
    make_fma_tree(base / "fma", "medium", missing_audio=[5])
    make_folder_tree(base / "folder", {"rock": ["a.wav", "sub dir/b c.flac", "._junk.wav", "notes.txt"],
                                       "jazz": ["x.mp3", "x.wav"]})
    return base


@pytest.mark.parametrize("dataset, sub, options", [
    ("gtzan", "gtzan", {"split": "random"}),
    ("gtzan", "gtzan", {}),
    ("fma-medium", "fma", {}),
    ("fma-medium", "fma/", {"split": "folds", "n_folds": 2}),
    ("folder", "folder", {}),
])
def test_manifests_from_an_http_index_equal_the_local_ones(trees, dataset, sub, options):
    local = load_manifest(dataset, trees / sub.rstrip("/"), **options)
    with serve_folder(trees) as url:
        remote = load_manifest(dataset, f"{url}/{sub}", **options)
        _same_manifest(local, remote, f"{url}/{sub.rstrip('/')}")
        clip = remote.clips[-1]
        (data,) = fetch_many([remote.absolute_path(clip)])
        assert data == (trees / sub.rstrip("/") / clip.path).read_bytes()


def test_an_http_root_without_indexes_is_listed_by_its_file_list(trees, tmp_path):
    root = tmp_path / "folder"
    shutil.copytree(trees / "folder", root)
    with serve_folder(tmp_path, _NoIndexHandler) as url:
        with pytest.raises(DatasetError, match=f"gives no folder index there .*put a file list {FILE_LIST}"):
            load_manifest("folder", f"{url}/folder")
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        (root / FILE_LIST).write_text("# made by find\n" + "\n".join(files) + "\n")
        local = load_manifest("folder", root)
        remote = load_manifest("folder", f"{url}/folder")
        _same_manifest(local, remote, f"{url}/folder")
        (data,) = fetch_many([remote.absolute_path(remote.clips[0])])
        clip = load_clip(data, name=remote.clips[0].path, clip_seconds=1.0, min_seconds=0.0)
        assert clip.valid_samples > 0


def test_a_missing_http_object_is_unreadable_and_others_are_fetched(trees):
    with serve_folder(trees) as url:
        got = fetch_many([f"{url}/folder/rock/a.wav", f"{url}/folder/rock/gone.wav"])
    assert got[0] == (trees / "folder/rock/a.wav").read_bytes()
    assert isinstance(got[1], AudioDecodeError) and got[1].category == "unreadable"
    assert "not found" in got[1].reason


def test_http_root_errors_are_one_line_and_hide_passwords(trees):
    with serve_folder(trees) as url:
        secret_url = url.replace("http://", "http://user:hunter22@") + "/nothing-here"
        with pytest.raises(DatasetError) as info:
            check_root(secret_url)
    message = str(info.value)
    assert "\n" not in message and "hunter22" not in message and "user:" not in message
    with pytest.raises(DatasetError, match="cannot reach the server"):
        check_root("http://127.0.0.1:9/gtzan")


def test_remote_path_reprs_hide_passwords(trees):
    with serve_folder(trees) as url:
        root = source_path(url.replace("http://", "http://user:hunter22@") + "/folder")
        assert "hunter22" not in repr(root) and "hunter22" not in str(root / "rock")
        assert [p.name for p in root.iterdir()] == ["jazz", "rock"]
        assert (root / "rock" / "a.wav").is_file() and (root / "rock").is_dir()
        assert not (root / "nope").exists()
        assert (root / "rock" / "a.wav").relative_to(root).as_posix() == "rock/a.wav"
