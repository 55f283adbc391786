"""A build whose audio is read from s3:// (no shared filesystem) equals the build of the
local copy, bit for bit; a deleted object fails its clip as "unreadable" only."""

from __future__ import annotations

import contextlib
import secrets

import pytest

from pipeline.build import build_store
from pipeline.datasets import load_manifest
from stores import open_store
from tests.integration.helpers import assert_same_store, synthetic_manifest, tiny_config
from tests.s3_fixtures import S3Server

pytestmark = pytest.mark.s3

N_CLIPS = 6


@pytest.fixture
def audio_bucket(tmp_path, s3_server: S3Server, monkeypatch):
    """A synthetic folder collection, uploaded; the process's AWS environment set for the server."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    audio = tmp_path / "audio"
    synthetic_manifest(audio, N_CLIPS, seconds=4.5)
    fs = s3_server.filesystem()
    bucket = f"hfs-audio-{secrets.token_hex(5)}"
    fs.mkdir(bucket)
    fs.put(str(audio), f"{bucket}/audio", recursive=True)
    yield {"audio": audio, "root": f"s3://{bucket}/audio", "bucket": bucket, "fs": fs}
    with contextlib.suppress(FileNotFoundError):
        fs.rm(bucket, recursive=True)


def test_a_build_from_s3_audio_equals_the_build_from_the_local_copy(audio_bucket, tmp_path):
    config = tiny_config()
    local = build_store(load_manifest("folder", audio_bucket["audio"]), tmp_path / "local.zarr",
                        config=config, workers=0, progress=False)
    remote_manifest = load_manifest("folder", audio_bucket["root"])
    remote = build_store(remote_manifest, tmp_path / "remote.zarr", config=config, workers=0, progress=False)
    assert remote.fingerprint == local.fingerprint
    assert_same_store(tmp_path / "local.zarr", tmp_path / "remote.zarr")
    assert (open_store(tmp_path / "remote.zarr").clips["status"] == "ok").all()


def test_a_deleted_object_fails_its_clip_only(audio_bucket, tmp_path):
    manifest = load_manifest("folder", audio_bucket["root"])
    victim = manifest.clips[1]
    audio_bucket["fs"].rm(f"{audio_bucket['bucket']}/audio/{victim.path}")
    build_store(manifest, tmp_path / "s.zarr", config=tiny_config(), workers=0, progress=False,
                max_failures=1)
    clips = open_store(tmp_path / "s.zarr").clips.set_index("clip_id")
    assert clips.loc[victim.clip_id, "status"] == "failed"
    reason = clips.loc[victim.clip_id, "reason"]
    assert reason.startswith("unreadable: ") and "not found" in reason and "s3://" not in reason
    assert (clips.drop(victim.clip_id)["status"] == "ok").all()
