"""DDP smoke test: ``torchrun`` with 2 CPU processes and the gloo backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from model.data import window_index
from stores import open_store


def test_torchrun_two_processes_gloo(demo_store, tmp_path):
    uri, _ = demo_store
    launcher = tmp_path / "launch.py"
    launcher.write_text("import sys\nfrom workflows.cli import main\nsys.exit(main())\n")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(launcher),
           "train", "--store", uri, "--model", "cnn-mel", "--out", str(out), "--epochs", "2", "--loader-workers", "0",
           "--device", "cpu", "--threads", "1", "--no-progress", "--batch-size", "4",
           "--model-arg", "cnn_channels=[4,4,8]", "--model-arg", "fc_hidden=8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert result["world_size"] == 2 and result["epochs"] == 2
    store = open_store(uri)
    n = len(window_index(store.valid_frames, store.select(split="train"), range(len(store.variants)),
                         store.window_frames, store.window_hop_frames))
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 2  # rank 0 alone writes the log
    assert all(m["windows"] == n for m in log)  # both ranks' windows, each once
    assert (out / "best.pt").is_file() and (out / "checkpoint.pt").is_file()
