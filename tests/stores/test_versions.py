"""Versions of a store on every writable backend (folder, memory, the loopback Ceph S3
gateway) and read-only ones: log, tags, STORE@VERSION, pinned readers, two writers,
stores built before versions, export of one version (issue 21)."""

from __future__ import annotations

import gzip
import json
import shutil
import zipfile

import numpy as np
import pytest
import zarr

from pipeline.errors import ConfigMismatchError, StoreError
from stores import open_store, open_writer
from stores.checks import export_store, store_info, verify_store
from stores.updates import grow_store
from stores.uri import make_store
from stores.versions import (ConcurrentWriteError, LEGACY_VERSION, ReadOnlyVersionError, VersionNotFoundError,
                             create_exclusive, location_repository, split_version, store_log, tag_store)
from tests.http_fixtures import serve_folder
from tests.stores.backends import WRITABLE, backend_params, open_backend
from tests.stores.test_store import LABELS, build, fake_result, small_config

from zarr.core.sync import sync

CPS = 3


def new_columns(first: int, n: int) -> dict[str, list]:
    ids = range(first, first + n)
    return {"clip_id": [f"n{i:02d}" for i in ids], "label": [LABELS[i % 2] for i in ids],
            "label_index": [i % 2 for i in ids], "split": ["train"] * n, "fold": [-1] * n,
            "group": [f"new{i}" for i in ids], "source": [f"{LABELS[i % 2]}/n{i:02d}.wav" for i in ids]}


def grow(uri, first: int, n: int, storage_options=None, finalize=True):
    """Add ``n`` synthetic clips to the store at ``uri`` through the update API; the writer."""
    cfg = small_config()
    cols = new_columns(first, n)
    writer = grow_store(uri, config=cfg, clips=cols, storage_options=storage_options)
    rng = np.random.default_rng(first)
    results = [fake_result(cfg, 10 + k, "train", rng) for k in range(n)]
    base = writer.layout.n_clips - n
    for i in writer.pending_shards():
        start, stop = writer.layout.shard_range(i)
        open_writer(writer.target_uri, storage_options=storage_options).write_shard(
            i, results[start - base:stop - base])
    if finalize:
        writer.finalize()
    return writer


@pytest.fixture(scope="module", params=backend_params(WRITABLE))
def versioned(request, tmp_path_factory):
    """A store with two versions on each writable backend: 7 clips, then 4 more."""
    with open_backend(request.param, request, tmp_path_factory.mktemp(f"{request.param}-v")) as backend:
        uri = backend.location("versions")
        build(uri, small_config(), cps=CPS, storage_options=backend.storage_options)
        first = open_store(uri, **backend.options)
        second = grow(uri, 7, 4, backend.storage_options)
        yield backend, uri, first.version, second.version


def test_the_log_lists_every_write_newest_first(versioned):
    backend, uri, v1, v2 = versioned
    log = store_log(uri, **backend.options)
    assert [e["id"] for e in log] == [v2, v1]
    assert log[0]["change"] == "+4 clips (train 4)" and log[1]["change"].startswith("build: 7 clips")
    assert log[0]["parent"] == v1 and log[0]["package"]


def test_a_pinned_uri_reads_its_version(versioned):
    backend, uri, v1, v2 = versioned
    old, new = open_store(f"{uri}@{v1}", **backend.options), open_store(uri, **backend.options)
    assert (old.n_clips, new.n_clips) == (7, 7 + 2 + 4)  # two padding rows close the old last shard
    assert old.version == v1 and new.version == v2 and new.pinned_uri == f"{uri}@{v2}"
    assert open_store(f"{uri}@{v1[:5]}", **backend.options).fingerprint == old.fingerprint  # a unique prefix
    assert store_info(f"{uri}@{v1}", **backend.options)["version"] == v1
    assert verify_store(f"{uri}@{v1}", **backend.options)["ok"] and verify_store(uri, **backend.options)["ok"]
    with pytest.raises(VersionNotFoundError, match=f"no version or tag 'nope'.*{v2}"):
        open_store(f"{uri}@nope", **backend.options)


def test_an_update_reuses_every_object_of_the_version_before(versioned):
    backend, uri, v1, v2 = versioned
    repo = location_repository(uri, backend.storage_options, writable=False)
    before, after = repo.manifest(repo.resolve(v1)), repo.manifest(repo.resolve(v2))
    data_keys = [k for k in before if "/c/" in k and not k.startswith(("clip_id", "label", "split", "fold",
                                                                            "group", "source"))]
    assert data_keys and all(after[k] == before[k] for k in data_keys)  # same physical objects


def test_tags_name_a_version_and_never_move(versioned):
    backend, uri, v1, v2 = versioned
    tag_store(uri, f"first-{backend.name}", version=v1, **backend.options)
    assert open_store(f"{uri}@first-{backend.name}", **backend.options).version == v1
    with pytest.raises(StoreError, match="already names version"):
        tag_store(uri, f"first-{backend.name}", **backend.options)
    assert store_log(uri, **backend.options)[1]["tags"] == [f"first-{backend.name}"]


def test_two_writers_on_one_version_one_commits_the_other_stops(versioned):
    backend, uri, _, v2 = versioned
    a = grow(uri, 20, 2, backend.storage_options, finalize=False)
    b = grow(uri, 30, 3, backend.storage_options, finalize=False)
    a.finalize()
    with pytest.raises(ConcurrentWriteError, match="another writer committed.*nothing was lost"):
        b.finalize()
    newest = open_store(uri, **backend.options)
    assert newest.version == a.version and "n20" in set(newest.clips["clip_id"])
    assert open_store(f"{uri}@{v2}", **backend.options).n_clips == 13  # untouched
    c = grow(uri, 30, 3, backend.storage_options)  # the loser again: on top of the winner
    assert {"n20", "n30"} <= set(open_store(uri, **backend.options).clips["clip_id"]) and c.version != a.version


def test_a_pinned_version_cannot_be_written(versioned):
    backend, uri, v1, _ = versioned
    with pytest.raises(ReadOnlyVersionError):
        make_store(f"{uri}@{v1}", storage_options=backend.storage_options, read_only=False)
    with pytest.raises(StoreError, match="pinned version is read-only"):
        grow_store(f"{uri}@{v1}", config=small_config(), clips=new_columns(40, 1),
                   storage_options=backend.storage_options)


def test_an_update_with_another_config_is_refused(versioned):
    backend, uri, _, _ = versioned
    other = small_config()
    other = type(other)(audio=other.audio, augment=type(other.augment)(variants=("gain",)))
    with pytest.raises(ConfigMismatchError, match="not an update"):
        grow_store(uri, config=other, clips=new_columns(50, 1), storage_options=backend.storage_options)


def test_export_of_a_version_is_plain_zarr(versioned, tmp_path):
    backend, uri, v1, _ = versioned
    out = export_store(f"{uri}@{v1}", tmp_path / "v1.zip", **backend.options)
    names = zipfile.ZipFile(out).namelist()
    assert not [n for n in names if n.startswith(("log/", "manifests/", "data/", "txn/", "tags/"))]
    group = zarr.open_group(zarr.storage.ZipStore(out, mode="r"), mode="r")  # zarr alone, none of our packages
    assert group["clip_id"].shape == (7,)
    assert open_store(out).fingerprint == open_store(f"{uri}@{v1}", **backend.options).fingerprint


def test_versions_read_over_http(tmp_path):
    pytest.importorskip("aiohttp")
    folder = tmp_path / "served" / "s.zarr"
    build(folder, small_config(), cps=CPS)
    v1 = open_store(folder).version
    grow(folder, 7, 4)
    with serve_folder(tmp_path / "served") as base:
        assert open_store(f"{base}/s.zarr").n_clips == 13
        assert open_store(f"{base}/s.zarr@{v1}").n_clips == 7


def _strip_versions(folder):
    """The folder as code before versions left it: no log, manifests or hint."""
    for name in ("log", "manifests", "tags"):
        shutil.rmtree(folder / name, ignore_errors=True)
    (folder / "head.json").unlink()


def test_a_store_built_before_versions_is_one_read_only_version(tmp_path):
    folder = tmp_path / "old.zarr"
    build(folder, small_config(), cps=CPS)
    _strip_versions(folder)
    assert open_store(folder).version == LEGACY_VERSION
    assert open_store(f"{folder}@{LEGACY_VERSION}").n_clips == 7
    assert [e["id"] for e in store_log(folder)] == [LEGACY_VERSION]
    with pytest.raises(VersionNotFoundError, match="no versions"):
        open_store(f"{folder}@abc123")
    with pytest.raises(VersionNotFoundError):
        tag_store(folder, "x")
    grow(folder, 7, 2)  # an update adopts it as version 1, without copying
    log = store_log(folder)
    assert len(log) == 2 and log[1]["change"].startswith("(store built before versions")
    assert open_store(f"{folder}@{log[1]['id']}").n_clips == 7


def test_exclusive_create_refuses_an_existing_key(tmp_path):
    store = zarr.storage.LocalStore(tmp_path)
    assert sync(create_exclusive(store, "log/00000001.json", b"a"))
    assert not sync(create_exclusive(store, "log/00000001.json", b"b"))
    assert (tmp_path / "log" / "00000001.json").read_bytes() == b"a"


@pytest.mark.s3
def test_exclusive_create_on_the_ceph_gateway(s3_server):
    fs = s3_server.filesystem()
    bucket = "hfs-exclusive"
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    store = zarr.storage.FsspecStore.from_url(f"s3://{bucket}/x", storage_options=s3_server.storage_options())
    fs.rm(f"{bucket}/x", recursive=True) if fs.exists(f"{bucket}/x") else None
    assert sync(create_exclusive(store, "k.json", b"a"))
    assert not sync(create_exclusive(store, "k.json", b"b"))  # If-None-Match: * honoured
    assert fs.cat(f"{bucket}/x/k.json") == b"a"


@pytest.mark.parametrize("uri, location, ref", [
    ("s3://b/x.zarr@v1", "s3://b/x.zarr", "v1"),
    ("s3://key:secret@b/x.zarr", "s3://key:secret@b/x.zarr", None),
    ("/data/a@b/x.zarr", "/data/a@b/x.zarr", None),
    ("/data/x.zarr@release-1", "/data/x.zarr", "release-1"),
    ("/data/x.zarr", "/data/x.zarr", None),
])
def test_split_version(uri, location, ref):
    assert split_version(uri) == (location, ref)


def test_manifests_are_gzip_json(versioned):
    backend, uri, v1, _ = versioned
    if backend.name != "folder":
        pytest.skip("looks at the files of a folder")
    with open(f"{uri}/log/00000001.json") as f:
        entry = json.load(f)
    with open(f"{uri}/{entry['manifest']}", "rb") as f:
        manifest = json.loads(gzip.decompress(f.read()))
    assert entry["id"] == v1 and manifest["zarr.json"] == "zarr.json"
