"""Feature stores on a real S3 server (the loopback Ceph RADOS Gateway): what is S3's own.

One store is built per module, through the `pipeline build` command with
credentials given as `--storage-option`s (the riskiest path for leaking
them), next to a serial local build of the same dataset. The tests then
verify, inspect, stream and export it with credentials from the environment,
and check the failure modes: missing bucket, bad credentials, a connection
dropped mid-build. What every backend does alike (read, fingerprint, verify,
info, not-found, resume, export to zip, publishing over HTTP) is in
tests/stores/test_conformance.py, which runs on S3 too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.build import build_store
from workflows.cli import main as pipeline_main
from pipeline.config import load_config
from pipeline.datasets import load_manifest
from pipeline.errors import StoreAccessError, StoreConnectionError, StoreError
from stores import open_store
from tests.integration.helpers import assert_same_store, open_raw, synthetic_manifest
from tests.s3_fixtures import AWS_VARS, S3Server

pytestmark = pytest.mark.s3

REPO = Path(__file__).resolve().parents[2]
PIPELINE = str(Path(sys.executable).with_name("pipeline"))
CONFIG = '[audio]\nclip_seconds = 4.0\n[augment]\nvariants = ["gain", "time_stretch"]\n'
N_CLIPS = 6


def cli_options(server: S3Server, endpoint_url: str | None = None) -> list[str]:
    """``--storage-option`` flags carrying the endpoint and the credentials."""
    opts = server.storage_options(endpoint_url)
    flat = {"key": opts["key"], "secret": opts["secret"],
            "client_kwargs.endpoint_url": opts["client_kwargs"]["endpoint_url"],
            "client_kwargs.region_name": opts["client_kwargs"]["region_name"]}
    return [arg for k, v in flat.items() for arg in ("--storage-option", f"{k}={v}")]


def clean_env() -> dict[str, str]:
    """This process's environment without any AWS setting (credentials only where a test puts them)."""
    return {k: v for k, v in os.environ.items() if k not in AWS_VARS}


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server):
    fs = s3_server.filesystem()
    name = f"hfs-it-{secrets.token_hex(5)}"
    fs.mkdir(name)
    yield name
    with contextlib.suppress(FileNotFoundError):
        fs.rm(name, recursive=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, s3_server: S3Server, bucket: str):
    """A dataset folder, its serial local store, and the same store built on S3 by the CLI."""
    tmp = tmp_path_factory.mktemp("s3build")
    audio = tmp / "audio"
    synthetic_manifest(audio, N_CLIPS, seconds=4.5)
    config_file = tmp / "config.toml"
    config_file.write_text(CONFIG)
    local = tmp / "local.zarr"
    build_store(load_manifest("folder", audio), local, config=load_config(config_file), workers=0,
                progress=False)
    uri = f"s3://{bucket}/stores/folder.zarr"
    # a one-process Dask cluster: the options travel to a worker process, as on a real cluster
    run = subprocess.run(
        [PIPELINE, "build", "--dataset", "folder", "--root", str(audio), "--config", str(config_file),
         "--out", uri, "--workers", "1", *cli_options(s3_server)],
        capture_output=True, text=True, env=clean_env(), cwd=REPO, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return {"uri": uri, "local": local, "audio": audio, "config": config_file, "tmp": tmp,
            "output": run.stdout + run.stderr}


def test_cli_build_on_s3_is_bit_identical_to_a_local_build(built, s3_server):
    store = open_store(built["uri"], storage_options=s3_server.storage_options())
    assert store.complete and store.n_clips == N_CLIPS
    assert (store.clips["status"] == "ok").all()
    assert_same_store(built["local"], built["uri"], options_b=s3_server.storage_options())


def test_verify_info_and_export_read_s3_with_credentials_from_the_environment(built, s3_server, monkeypatch,
                                                                            capsys, tmp_path):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    assert pipeline_main(["verify", built["uri"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"], report
    assert pipeline_main(["info", built["uri"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["uri"] == built["uri"] and info["complete"]
    assert info["status"] == {"ok": N_CLIPS}
    assert info["nbytes_stored"] > 0
    # export from S3 to zip, bit for bit, is in tests/stores/test_conformance.py; here the command line's
    # credentials come from the environment
    out = tmp_path / "published" / "store.zip"
    assert pipeline_main(["export", built["uri"], str(out)]) == 0
    assert open_store(out).fingerprint == open_store(built["uri"]).fingerprint


def test_credentials_are_never_written_into_the_store_or_printed(built, s3_server):
    secret, key = s3_server.secret.encode(), s3_server.key.encode()
    fs = s3_server.filesystem()
    root = built["uri"][len("s3://"):]
    objects = fs.find(root)
    assert any(p.endswith("zarr.json") for p in objects)
    for path in objects:
        data = fs.cat_file(path)
        assert secret not in data and key not in data, f"credentials found in {path}"
    assert s3_server.secret not in built["output"]
    assert s3_server.key not in built["output"]


def test_trainer_streams_windows_from_s3_like_from_a_folder(built, s3_server):
    from model.data import WindowStream

    def windows(source, **options):
        stream = WindowStream(source, split="train", features=["mel", "cens"], batch_size=4, shuffle=False,
                              with_keys=True, **options)
        out = {}
        for features, labels, keys in stream:
            for row, key in enumerate(keys.tolist()):
                out[tuple(key)] = (features["mel"][row].numpy().tobytes(), int(labels[row]))
        return out

    remote = windows(built["uri"], storage_options=s3_server.storage_options())
    local = windows(str(built["local"]))
    assert len(remote) > 0
    assert remote == local


@pytest.mark.slow
def test_pipeline_train_streams_from_s3_and_keeps_credentials_out_of_the_run(built, s3_server, tmp_path, capsys,
                                                                             no_aws_env):
    run = tmp_path / "run"
    code = pipeline_main(["train", "--store", built["uri"], "--out", str(run), "--epochs", "1", "--device", "cpu",
                          "--loader-workers", "0", "--batch-size", "8", "--no-progress", *cli_options(s3_server)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert (run / "best.pt").is_file()
    secret = s3_server.secret.encode()
    for path in run.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), f"the secret was written into {path}"
    assert s3_server.secret not in captured.out + captured.err


def test_missing_bucket_gives_a_clear_message(s3_server, tmp_path, capsys, no_aws_env):
    missing = f"s3://hfs-missing-{secrets.token_hex(4)}/x.zarr"
    assert pipeline_main(["info", missing, *cli_options(s3_server)]) == 2
    err = capsys.readouterr().err
    assert missing in err and "bucket" in err
    synthetic_manifest(tmp_path / "audio", 1)
    assert pipeline_main(["build", "--dataset", "folder", "--root", str(tmp_path / "audio"), "--out", missing,
                          "--workers", "0", *cli_options(s3_server)]) == 2
    err = capsys.readouterr().err
    assert missing in err and "bucket does not exist" in err and "create the bucket" in err


def test_bad_credentials_give_a_clear_message_without_the_secret(built, s3_server, capsys, no_aws_env):
    wrong = "not-the-secret-" + secrets.token_hex(6)
    bad = S3Server(s3_server.endpoint_url, s3_server.key, wrong, s3_server.region)
    assert pipeline_main(["info", built["uri"], *cli_options(bad)]) == 2
    captured = capsys.readouterr()
    assert built["uri"] in captured.err and "denied" in captured.err and "AWS_SECRET_ACCESS_KEY" in captured.err
    assert wrong not in captured.out + captured.err
    with pytest.raises(StoreAccessError):
        open_store(built["uri"], storage_options=bad.storage_options())


def test_a_short_network_outage_is_retried_with_backoff(built, s3_server, flaky_s3, no_aws_env):
    """A connection dropped for a second while streaming: the read waits and succeeds."""
    store = open_store(built["uri"], storage_options=s3_server.storage_options(flaky_s3.endpoint_url))
    expected = open_store(built["local"]).read_shard(0, features=["mel"])["mel"]
    flaky_s3.cut()
    threading.Timer(1.0, flaky_s3.restore).start()
    t0 = time.monotonic()
    got = store.read_shard(0, features=["mel"])["mel"]
    assert time.monotonic() - t0 >= 0.5  # it did wait out the outage
    assert got.tobytes() == expected.tobytes()


def test_build_interrupted_by_a_dropped_connection_resumes(built, s3_server, bucket, flaky_s3, tmp_path,
                                                          no_aws_env):
    """Cut the network after the first shard is on the server; the rerun resumes and matches."""
    manifest = load_manifest("folder", built["audio"])
    config = load_config(built["config"])
    uri = f"s3://{bucket}/stores/resumed.zarr"
    proxied = s3_server.storage_options(flaky_s3.endpoint_url)
    direct = s3_server.storage_options()
    reference = tmp_path / "reference.zarr"
    build_store(manifest, reference, config=config, workers=0, clips_per_shard=2, progress=False)
    outcome: dict[str, object] = {}

    def first_attempt() -> None:
        try:
            outcome["summary"] = build_store(manifest, uri, config=config, workers=0, clips_per_shard=2,
                                             progress=False, storage_options=proxied, on_shard_error="stop")
        except Exception as exc:  # the expected failure, examined by the test below
            outcome["error"] = exc

    builder = threading.Thread(target=first_attempt, daemon=True)
    builder.start()
    deadline = time.monotonic() + 120
    digests: list[str] = []
    while builder.is_alive() and time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, KeyError, StoreError):
            digests = [str(d) for d in open_raw(uri, direct)["shard_digest"][:]]
        if any(digests):
            flaky_s3.cut()
            break
        time.sleep(0.05)
    builder.join(timeout=180)
    assert not builder.is_alive()
    assert "error" in outcome, "the build finished before the connection was cut"
    # after the backend's own retries, the failure names the store and the way out
    assert isinstance(outcome["error"], StoreConnectionError), repr(outcome["error"])
    assert uri in str(outcome["error"]) and "rerun" in str(outcome["error"])
    finished_before = sum(bool(d) for d in [str(x) for x in open_raw(uri, direct)["shard_digest"][:]])
    assert 1 <= finished_before < 3
    assert not open_raw(uri, direct).attrs.get("complete")

    flaky_s3.restore()
    summary = build_store(manifest, uri, config=config, workers=0, clips_per_shard=2, progress=False,
                          storage_options=proxied)
    assert summary.shards_skipped == finished_before
    assert summary.shards_built == 3 - finished_before
    assert_same_store(reference, uri, options_b=direct)
