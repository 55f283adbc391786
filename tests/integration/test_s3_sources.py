"""Dataset roots in object storage (the loopback Ceph RADOS Gateway): manifests listed from
s3:// equal the local ones, fetched objects decode as the files do, and the failure
modes (a deleted object, bad credentials, a missing bucket, a dropped connection) are
each one clear error that holds no credential."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shutil
import threading
from pathlib import Path

import pytest

from pipeline import sources
from pipeline.datasets import load_manifest
from pipeline.dsp.audio import load_clip
from pipeline.errors import AudioDecodeError, AudioError, DatasetError
from pipeline.sources import check_root, fetch_many, public_options
from tests.datasets_fixtures import make_fma_tree, make_gtzan_tree
from tests.odd_audio import make_odd_files
from tests.s3_fixtures import S3Server

pytestmark = pytest.mark.s3

#: MP3s that libsndfile recognises only by a path's ".mp3" extension (no MPEG sync or tag at
#: byte 0): in memory PyAV decodes them, with the same outcome but other samples.
EXTENSION_ONLY_MP3 = {"mp3_byte_slice.mp3"}


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory, s3_server: S3Server):
    """Local GTZAN, FMA and odd-file trees, and the same trees uploaded into a fresh bucket."""
    base = tmp_path_factory.mktemp("sources")
    make_gtzan_tree(base / "gtzan", n_per_genre=3, macos_junk=True, seconds=3.2)
    make_fma_tree(base / "fma", "medium", missing_audio=[5], seconds=3.2)
    odd = make_odd_files(base / "odd" / "_all")
    for item in odd:  # the folder layout, one label per expected outcome
        source = base / "odd" / "_all" / item.name
        if source.is_symlink() or source.is_dir():
            continue  # a dangling link and a folder cannot be objects
        target = base / "odd" / item.expect.replace(" ", "-") / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
    shutil.rmtree(base / "odd" / "_all")
    fs = s3_server.filesystem()
    bucket = f"hfs-src-{secrets.token_hex(5)}"
    fs.mkdir(bucket)
    for name in ("gtzan", "fma", "odd"):
        fs.put(str(base / name), f"{bucket}/{name}", recursive=True)
    fs.invalidate_cache()
    yield {"base": base, "bucket": bucket, "odd": odd}
    with contextlib.suppress(FileNotFoundError):
        fs.rm(bucket, recursive=True)


def _same(local, remote, root):
    assert remote.root == root
    assert dataclasses.replace(remote, root=local.root) == local  # ids, labels, splits, paths, source


@pytest.mark.parametrize("dataset, sub, options", [
    ("gtzan", "gtzan", {"split": "random"}),
    ("gtzan", "gtzan", {"split": "folds"}),
    ("fma-medium", "fma", {}),
    ("fma-medium", "fma", {"split": "folds", "n_folds": 2}),
    ("fma-medium", "fma", {"missing": "skip"}),
    ("folder", "odd", {}),
])
def test_manifests_from_s3_equal_the_local_ones(uploaded, s3_server, no_aws_env, dataset, sub, options):
    local = load_manifest(dataset, uploaded["base"] / sub, **options)
    root = f"s3://{uploaded['bucket']}/{sub}"
    remote = load_manifest(dataset, root, storage_options=s3_server.storage_options(), **options)
    _same(local, remote, root)
    assert len(remote) > 0


def test_credentials_from_the_environment_and_the_fma_metadata_uri(uploaded, s3_server, monkeypatch):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    root = f"s3://{uploaded['bucket']}/fma"
    remote = load_manifest("fma-medium", root, metadata=f"{root}/fma_metadata/tracks.csv")
    _same(load_manifest("fma-medium", uploaded["base"] / "fma"), remote, root)


def test_fetched_objects_decode_exactly_as_the_files(uploaded, s3_server, no_aws_env):
    manifest = load_manifest("folder", f"s3://{uploaded['bucket']}/odd", storage_options=s3_server.storage_options())
    uris = [manifest.absolute_path(c) for c in manifest.clips]
    fetched = fetch_many(uris, storage_options=s3_server.storage_options(), max_concurrency=8)
    assert len(fetched) == len(uris)
    for clip, data in zip(manifest.clips, fetched):
        path = uploaded["base"] / "odd" / clip.path
        assert data == path.read_bytes(), clip.path
        outcomes = []
        for source, name in ((path, None), (data, clip.path)):
            try:
                decoded = load_clip(source, clip_seconds=3.5, min_seconds=3.0, name=name)
                outcomes.append(("ok", decoded.valid_samples, decoded.samples.tobytes()))
            except AudioError as error:
                outcomes.append((error.category, error.reason))
        assert outcomes[0][0] == outcomes[1][0] == clip.label.replace("-", " "), clip.path
        if Path(clip.path).name in EXTENSION_ONLY_MP3:
            continue
        assert outcomes[0] == outcomes[1], clip.path  # bit-identical samples, the same reasons


def test_a_deleted_object_is_unreadable_alone(uploaded, s3_server, no_aws_env):
    fs = s3_server.filesystem()
    bucket = uploaded["bucket"]
    keys = [f"{bucket}/gtzan/genres/blues/blues.0000{i}.au" for i in range(3)]
    victim = f"{bucket}/victim/blues.00001.au"
    fs.copy(keys[1], victim)
    fs.rm(victim)
    uris = [f"s3://{keys[0]}", f"s3://{victim}", f"s3://{keys[2]}"]
    got = fetch_many(uris, storage_options=s3_server.storage_options())
    assert got[0] == (uploaded["base"] / "gtzan/genres/blues/blues.00000.au").read_bytes()
    assert got[2] == (uploaded["base"] / "gtzan/genres/blues/blues.00002.au").read_bytes()
    error = got[1]
    assert isinstance(error, AudioDecodeError) and error.category == "unreadable"
    assert error.path == f"s3://{victim}" and "not found" in error.reason


def test_bad_credentials_are_one_dataset_error_line_without_secrets(uploaded, s3_server, no_aws_env):
    wrong = {**s3_server.storage_options(), "secret": "WRONGSECRET-" + secrets.token_hex(4)}
    root = f"s3://{uploaded['bucket']}/gtzan"
    for call in (lambda: check_root(root, wrong), lambda: load_manifest("gtzan", root, storage_options=wrong)):
        with pytest.raises(DatasetError) as info:
            call()
        message = str(info.value)
        assert "denied" in message and "--storage-option" in message
        assert "\n" not in message and wrong["secret"] not in message and s3_server.secret not in message
    # Objects fetched with them fail one by one as "access denied", never as an exception.
    uris = [f"{root}/genres/blues/blues.00000.au", f"{root}/genres/rock/rock.00000.au"]
    for error in fetch_many(uris, storage_options=wrong):
        assert isinstance(error, AudioDecodeError) and error.category == "unreadable"
        assert "access denied" in error.reason and wrong["secret"] not in str(error)


def test_a_missing_bucket_or_prefix_is_one_dataset_error_line(uploaded, s3_server, no_aws_env):
    options = s3_server.storage_options()
    for root in (f"s3://hfs-nobucket-{secrets.token_hex(4)}/gtzan", f"s3://{uploaded['bucket']}/nothing-here"):
        with pytest.raises(DatasetError) as info:
            check_root(root, options)
        assert "no dataset root at" in str(info.value) and "\n" not in str(info.value)
    check_root(f"s3://{uploaded['bucket']}/gtzan", options)


def test_options_that_travel_to_workers_hold_no_credential(s3_server):
    public = public_options(s3_server.storage_options())
    assert s3_server.key not in repr(public) and s3_server.secret not in repr(public)
    assert public["client_kwargs"]["endpoint_url"] == s3_server.endpoint_url


def test_a_dropped_connection_is_retried_then_given_up(uploaded, s3_server, flaky_s3, no_aws_env, monkeypatch):
    monkeypatch.setattr(sources, "FETCH_BACKOFF_S", 0.3)
    options = {**s3_server.storage_options(flaky_s3.endpoint_url),
               "config_kwargs": {"connect_timeout": 2, "read_timeout": 5, "retries": {"max_attempts": 1}}}
    key = f"s3://{uploaded['bucket']}/gtzan/genres/jazz/jazz.00000.au"
    want = (uploaded["base"] / "gtzan/genres/jazz/jazz.00000.au").read_bytes()
    flaky_s3.cut()
    healer = threading.Timer(0.5, flaky_s3.restore)
    healer.start()
    try:
        (got,) = fetch_many([key], storage_options=options)
    finally:
        healer.cancel()
    assert got == want  # a transient fault: retried, then fetched
    flaky_s3.cut()
    (failed,) = fetch_many([key], storage_options={**options, "skip_instance_cache": True})
    assert isinstance(failed, AudioDecodeError) and failed.category == "unreadable"
    assert f"after {sources.FETCH_ATTEMPTS} tries" in failed.reason and s3_server.secret not in failed.reason
