"""Builds on a real multi-process Dask cluster started with `dask scheduler` / `dask worker`.

One cluster (a scheduler and two single-threaded worker processes on
loopback) serves the module: first the `pipeline build --scheduler` command,
then a build during which one worker is killed, which must leave the store
bit-identical to a serial build. The kill runs last: it loses a worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.build import build_store
from tests.integration.cluster import THREAD_ENV, loopback_cluster
from tests.integration.helpers import assert_same_store, synthetic_manifest, tiny_config

REPO = Path(__file__).resolve().parents[2]
N_CLIPS = 8


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with loopback_cluster(tmp_path_factory.mktemp("cluster"), n_workers=2) as running:
        yield running


def _shard_tasks(client, since: float) -> list[dict]:
    """Finished shard tasks (task-stream records: key, worker, status, ...) since ``since``."""
    return [r for r in client.get_task_stream(start=since) if str(r["key"]).startswith("shard-")]


@pytest.mark.slow
def test_pipeline_build_cli_on_an_existing_cluster(tmp_path, cluster):
    """`pipeline build --scheduler tcp://...` (the command users run) equals a serial build."""
    from pipeline.config import load_config
    from pipeline.datasets import load_manifest

    audio = tmp_path / "audio"
    synthetic_manifest(audio, 4, seconds=4.5)
    config_file = tmp_path / "config.toml"
    config_file.write_text('[audio]\nclip_seconds = 4.0\n[augment]\nvariants = ["gain"]\n')
    build_store(load_manifest("folder", audio), tmp_path / "serial.zarr", config=load_config(config_file),
                workers=0, progress=False)
    pipeline = str(Path(sys.executable).with_name("pipeline"))
    run = subprocess.run(
        [pipeline, "build", "--dataset", "folder", "--root", str(audio), "--config", str(config_file),
         "--out", str(tmp_path / "cluster.zarr"), "--scheduler", cluster.address],
        capture_output=True, text=True, env={**os.environ, **THREAD_ENV}, cwd=REPO, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:] + cluster.log_tail()
    assert "4 ok" in run.stdout
    assert_same_store(tmp_path / "serial.zarr", tmp_path / "cluster.zarr")


@pytest.mark.slow
def test_killed_worker_mid_build_gives_the_same_store_as_a_serial_build(tmp_path, cluster):
    from distributed import Client

    manifest = synthetic_manifest(tmp_path / "audio", N_CLIPS, seconds=4.5)
    config = tiny_config(4.0)
    serial = tmp_path / "serial.zarr"
    build_store(manifest, serial, config=config, workers=0, clips_per_shard=1, progress=False)

    out = tmp_path / "cluster.zarr"
    outcome: dict[str, object] = {}

    def run_build(address: str) -> None:
        try:
            outcome["summary"] = build_store(manifest, out, config=config, scheduler=address,
                                             clips_per_shard=1, progress=False)
        except BaseException as exc:  # handed to the test thread, which re-raises it
            outcome["error"] = exc

    with Client(cluster.address) as watcher:
        names = {addr: w["name"] for addr, w in watcher.scheduler_info(n_workers=-1)["workers"].items()}
        assert len(names) == 2, f"the cluster lost a worker before this test:\n{cluster.log_tail()}"
        t0 = time.time()
        watcher.get_task_stream(start=t0)  # installs the scheduler's task-stream plugin before any task
        builder = threading.Thread(target=run_build, args=(cluster.address,), daemon=True)
        builder.start()
        victim, done_at_kill = None, 0
        deadline = time.monotonic() + 120
        while builder.is_alive() and time.monotonic() < deadline:
            done = _shard_tasks(watcher, t0)
            if done:
                # the first worker to finish a shard is killed (with its nanny): a lost node
                victim, done_at_kill = names[done[0]["worker"]], len(done)
                cluster.kill_worker(victim)
                break
            time.sleep(0.05)
        builder.join(timeout=240)
        assert not builder.is_alive(), f"the build did not finish:\n{cluster.log_tail()}"
        survivor_tasks = [r for r in _shard_tasks(watcher, t0) if names.get(r["worker"]) != victim]

    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    assert victim is not None, "no shard finished before the build ended; nothing was killed"
    assert done_at_kill < N_CLIPS, "the build finished before the kill; make it longer"
    assert cluster.workers[victim].poll() is not None
    assert len(survivor_tasks) > 0
    summary = outcome["summary"]
    assert summary.n_ok == N_CLIPS and summary.n_failed == 0
    assert summary.shards_built == N_CLIPS
    assert_same_store(serial, out)
