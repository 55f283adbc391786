"""A build whose audio is read from s3:// (no shared filesystem) equals the build of the
local copy, bit for bit; a deleted object fails its clip as "unreadable" only."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import secrets
import subprocess
import sys
from pathlib import Path

import distributed
import pytest

from bench import build as build_bench
from pipeline.build import build_store
from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig
from pipeline.datasets import load_manifest
from stores import open_store
from tests.integration.helpers import assert_same_store, synthetic_manifest, tiny_config
from tests.s3_fixtures import AWS_VARS, S3Server

pytestmark = pytest.mark.s3

N_CLIPS = 6
REPO = Path(__file__).resolve().parents[2]


def _uploaded_collection(tmp_path, s3_server: S3Server, prefix: str):
    """A synthetic folder collection in a fresh bucket; removed afterwards."""
    audio = tmp_path / "audio"
    synthetic_manifest(audio, N_CLIPS, seconds=4.5)
    fs = s3_server.filesystem()
    bucket = f"{prefix}-{secrets.token_hex(5)}"
    fs.mkdir(bucket)
    fs.put(str(audio), f"{bucket}/audio", recursive=True)
    yield {"audio": audio, "root": f"s3://{bucket}/audio", "bucket": bucket, "fs": fs}
    with contextlib.suppress(FileNotFoundError):
        fs.rm(bucket, recursive=True)


@pytest.fixture
def audio_bucket(tmp_path, s3_server: S3Server, monkeypatch):
    """The collection uploaded; the process's AWS environment set for the server."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    yield from _uploaded_collection(tmp_path, s3_server, "hfs-audio")


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


@pytest.fixture
def private_bucket(tmp_path, s3_server: S3Server, no_aws_env):
    """The collection uploaded with explicit credentials; none in this process's environment."""
    yield from _uploaded_collection(tmp_path, s3_server, "hfs-private")


def test_credentials_reach_the_workers_but_no_task_log_or_store(private_bucket, s3_server, tmp_path, caplog,
                                                               capfd, monkeypatch):
    """A LocalCluster build from and into the bucket with --storage-option credentials only.

    The workers can read and write (they get the credentials in their
    environment at start), yet the secret is in no pickled task, no log
    record, no output and no object of the store.
    """
    options = s3_server.storage_options()
    payloads: list[bytes] = []
    submit = distributed.Client.submit

    def recording_submit(self, func, *args, **kwargs):
        payloads.append(pickle.dumps((func, args, kwargs)))
        return submit(self, func, *args, **kwargs)

    monkeypatch.setattr(distributed.Client, "submit", recording_submit)
    caplog.set_level(logging.DEBUG)
    uri = f"s3://{private_bucket['bucket']}/stores/private.zarr"
    config = tiny_config()
    summary = build_store(load_manifest("folder", private_bucket["root"], storage_options=options), uri,
                          config=config, workers=2, clips_per_shard=2, progress=False, storage_options=options,
                          source_storage_options=options)
    local = build_store(load_manifest("folder", private_bucket["audio"]), tmp_path / "local.zarr",
                        config=config, workers=0, clips_per_shard=2, progress=False)
    assert summary.n_ok == N_CLIPS and summary.fingerprint == local.fingerprint
    assert len(payloads) == summary.shards_built == 3
    secret, key = s3_server.secret.encode(), s3_server.key.encode()
    for payload in payloads:
        assert secret not in payload and key not in payload
        assert s3_server.endpoint_url.encode() in payload  # the public part does travel
    out, err = capfd.readouterr()
    ours = [r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("pipeline", "stores", "distributed")]
    assert len(ours) > 10
    logged = "\n".join(ours) + out + err
    assert s3_server.secret not in logged and s3_server.key not in logged
    fs = private_bucket["fs"]
    for path in fs.find(f"{private_bucket['bucket']}/stores/private.zarr"):
        assert secret not in fs.cat_file(path), path


def test_the_cli_at_debug_level_prints_no_credential(private_bucket, s3_server, tmp_path):
    """``-vvv`` shows the libraries' own debug records too; none of them may show the key or the secret."""
    opts = s3_server.storage_options()
    flags = ["--storage-option", f"key={opts['key']}", "--storage-option", f"secret={opts['secret']}",
             "--storage-option", f"client_kwargs.endpoint_url={s3_server.endpoint_url}"]
    uri = f"s3://{private_bucket['bucket']}/stores/cli.zarr"
    config = tmp_path / "config.toml"
    config.write_text('[audio]\nclip_seconds = 4.0\n[augment]\nvariants = ["gain"]\n')
    env = {k: v for k, v in os.environ.items() if k not in AWS_VARS}
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from workflows.cli import main; sys.exit(main(sys.argv[1:]))",
         "-vvv", "build", "--dataset", "folder", "--root", private_bucket["root"], "--out", uri,
         "--workers", "0", "--config", str(config), *flags],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "botocore" in run.stderr  # -vvv: the libraries' debug records were printed, through the mask
    assert s3_server.secret not in run.stdout + run.stderr and s3_server.key not in run.stdout + run.stderr


def test_credentials_that_cannot_reach_workers_stop_the_build_before_it_writes(private_bucket, tmp_path):
    from stores.errors import CredentialError

    with pytest.raises(CredentialError, match="--workers 0"):
        build_store(load_manifest("folder", private_bucket["audio"]), tmp_path / "s.zarr", config=tiny_config(),
                    workers=2, progress=False, source_storage_options={"headers": {"Authorization": "x"}})
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.slow
def test_bench_build_from_a_bucket_reports_both_rates(private_bucket, s3_server, tmp_path, monkeypatch):
    monkeypatch.setattr(build_bench, "DEMO_CLIP_SECONDS", 4.0)
    cfg = PipelineConfig(audio=AudioConfig(clip_seconds=4.0), augment=AugmentConfig(variants=("gain",)))
    root = f"s3://{private_bucket['bucket']}/bench"
    figures = build_bench.run_bench(8, out=tmp_path, config=cfg, serial=False, worker_counts=(2,),
                                    source_root=root, source_options=s3_server.storage_options())
    assert figures["bucket_clips_per_s"] > 0 and figures["local_clips_per_s"] > 0
    assert figures["bucket_fraction"] == pytest.approx(figures["bucket_clips_per_s"] / figures["local_clips_per_s"])
    assert figures["bucket_failed_clips"] == 0 and figures["bucket_workers"] == 2
    assert "bucket" in build_bench.format_figures(figures)
    assert not private_bucket["fs"].find(f"{private_bucket['bucket']}/bench")  # the upload was removed


def test_a_long_wav_in_the_bucket_travels_as_header_and_excerpt_and_builds_the_same(audio_bucket, tmp_path):
    """Range requests against the real gateway: a 6-minute WAV moves under a quarter of its bytes."""
    import numpy as np
    import soundfile as sf

    from pipeline.dsp.partial import PartialObject
    from pipeline.sources import ExcerptPlan, fetch_many

    t = np.arange(360 * 22050) / 22050
    long_file = audio_bucket["audio"] / "blues" / "long.wav"
    sf.write(long_file, 0.3 * np.sin(2 * np.pi * 330 * t), 22050, subtype="PCM_16")
    uri = f"{audio_bucket['root']}/blues/long.wav"
    audio_bucket["fs"].put(str(long_file), uri[len("s3://"):])
    (got,) = fetch_many([uri], excerpt=ExcerptPlan(30.0, "centre"))
    assert isinstance(got, PartialObject) and got.fetched_bytes < long_file.stat().st_size / 4
    config = tiny_config(clip_seconds=30.0, variants=("gain",))
    local = build_store(load_manifest("folder", audio_bucket["audio"]), tmp_path / "local.zarr", config=config,
                        workers=0, progress=False)
    remote = build_store(load_manifest("folder", audio_bucket["root"]), tmp_path / "remote.zarr", config=config,
                         workers=0, progress=False)
    assert remote.fingerprint == local.fingerprint and remote.n_ok == local.n_ok == N_CLIPS + 1


def test_a_cluster_scan_reads_the_bucket_with_credentials_given_as_options(private_bucket, s3_server):
    """pipeline scan shares the build's rule: LocalCluster workers get --storage-option credentials at start."""
    from pipeline.scan import scan_manifest

    options = s3_server.storage_options()
    manifest = load_manifest("folder", private_bucket["root"], storage_options=options)
    report = scan_manifest(manifest, config=tiny_config(), workers=2, progress=False,
                           source_storage_options=options)
    assert report.n_failed == 0 and len(report.clips) == N_CLIPS
