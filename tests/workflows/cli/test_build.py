"""``pipeline build`` / ``info`` / ``verify`` through the command line, on a folder dataset."""

from __future__ import annotations

import json

import pytest

from workflows.cli import main
from tests.pipeline.build.test_build import manifest  # noqa: F401  (the synthetic dataset fixture)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text('[audio]\nclip_seconds = 4.0\n\n[augment]\nvariants = ["gain"]\n')
    return path


def test_cli_build_info_verify(manifest, config_file, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "folder.zarr"
    argv = ["build", "--dataset", "folder", "--root", str(manifest.root), "--out", str(out), "--workers", "0",
            "--config", str(config_file), "--clips-per-shard", "4"]
    # one undecodable file of 8 is more than --max-failures 0 allows: non-zero exit, store still complete
    assert main([*argv, "--max-failures", "0"]) == 1
    captured = capsys.readouterr()
    assert "1 failed" in captured.out and "FAILED" in captured.out and "metal.00005" in captured.out
    # rerun: nothing left to build, and 1 failure is within 20%
    assert main([*argv, "--max-failures", "20%"]) == 0
    assert "0 built, 2 already done" in capsys.readouterr().out

    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dataset"]["name"] == "folder" and info["n_clips"] == 8 and info["complete"]
    assert info["variants"] == ["original", "gain"]
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")

    # another config against the same store is refused (exit 2, the message names the fix)
    other = tmp_path / "other.toml"
    other.write_text('[audio]\nclip_seconds = 5.0\n\n[augment]\nvariants = ["gain"]\n')
    argv_other = [*argv[:-4], "--config", str(other), "--clips-per-shard", "4"]
    assert main(argv_other) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_killed_build_process_resumes_to_identical_store(manifest, config_file, tmp_path, capsys):  # noqa: F811
    """SIGKILL a real `pipeline build` process after its first shard; rerunning it finishes the same store."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import zarr

    from pipeline.build import build_store
    from pipeline.config import load_config
    from pipeline.datasets import load_manifest
    from tests.pipeline.build.test_build import assert_same_store

    out = tmp_path / "killed.zarr"
    argv = ["build", "--dataset", "folder", "--root", str(manifest.root), "--out", str(out), "--workers", "0",
            "--config", str(config_file), "--clips-per-shard", "2", "--max-failures", "1"]
    code = "import sys; from workflows.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = sum(bool(d) for d in zarr.open_array(out / "shard_digest", mode="r")[:])
            except (FileNotFoundError, KeyError, ValueError):
                done = 0
            if done >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the build ended before it could be killed: {proc.stderr.read().decode()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert done < 4  # killed mid-build: 4 shards in all

    assert main(argv) == 0  # the same command resumes
    import re

    built, skipped = map(int, re.search(r"(\d+) built, (\d+) already done", capsys.readouterr().out).groups())
    assert skipped >= done and built >= 1 and built + skipped == 4
    reference = tmp_path / "reference.zarr"
    build_store(load_manifest("folder", manifest.root), reference, config=load_config(config_file), workers=0,
                clips_per_shard=2, progress=False, max_failures=1)
    assert_same_store(reference, out)
