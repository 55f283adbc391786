"""The trainer's CUDA path: bf16 autocast, pinned float16 batches converted on the GPU, resume, NCCL.

Marked ``cuda``: they skip on a machine without CUDA (``make test``) and run
on a GPU with ``make gpu-check`` (``pytest -m cuda``), after its figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint
from model.data import ThreadedLoader, WindowStream, window_index
from model.networks import build_model
from model.runtime import autocast, resolve_device, to_device
from model.config import TrainConfig
from model.train import make_loader, make_streams, train, train_step
from stores import open_store

NO_CUDA = "needs a CUDA GPU (torch.cuda.is_available() is False here); run on a GPU machine with `make gpu-check`"
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]

TINY_DFN = {"cnn_channels": [8, 16, 16], "gru_hidden": 16, "fusion_dim": 16, "heads": 2, "fc_hidden": 32,
            "dropout": 0.0, "gru_dropout": 0.0, "attention_dropout": 0.0}
BANDS = {"mel": 128, "harmonic_mel": 128, "percussive_mel": 128, "mfcc": 13, "cens": 12}


def test_cuda_devices_get_an_index(monkeypatch):
    assert resolve_device("cuda").index is not None
    assert resolve_device("auto") == resolve_device("cuda")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resolve_device("cuda") == torch.device("cuda", 0)


def test_autocast_runs_the_dfn_in_bf16_and_keeps_float32_weights():
    device = resolve_device("cuda")
    if not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name(device)} has no bfloat16 (autocast falls back to float32)")
    torch.manual_seed(0)
    model = build_model("dfn", n_classes=10, feature_bands=BANDS).to(device).train()
    x = {n: torch.randn(8, b, 130, device=device) for n, b in BANDS.items() if n in model.features}
    y = torch.randint(0, 10, (8,), device=device)
    with autocast(device):
        if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4's name
            assert torch.get_autocast_dtype("cuda") == torch.bfloat16
        logits = model(x)
    assert logits.dtype == torch.bfloat16
    with autocast(device, enabled=False):
        assert model(x).dtype == torch.float32
    cfg = TrainConfig(device=str(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss, logits = train_step(model, optimizer, x, y, cfg, device)
    assert torch.isfinite(loss) and loss.dtype == torch.float32 and logits.device == device
    assert all(p.dtype == torch.float32 and p.device == device for p in model.parameters())
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_pinned_float16_batches_convert_exactly_on_the_device(demo_store):
    uri, _ = demo_store
    device = resolve_device("cuda")
    store = open_store(uri)
    features = ("mel", "cens")

    def stream(**options):
        return WindowStream(store, split="train", features=features, batch_size=4, shuffle=False, **options)

    pinned = ThreadedLoader(stream(dtype="float16", pin_memory=True), threads=2)
    reference = ThreadedLoader(stream(dtype="float32"), threads=2)
    n = 0
    for (x16, y16), (x32, y32) in zip(pinned, reference, strict=True):
        assert all(t.dtype == torch.float16 and t.is_pinned() for t in x16.values()) and y16.is_pinned()
        on_gpu = to_device(x16, device)  # non_blocking copies, converted to float32 on the GPU
        labels = y16.to(device, non_blocking=True)
        torch.cuda.synchronize(device)
        for name in features:
            assert on_gpu[name].dtype == torch.float32 and on_gpu[name].device == device
            assert torch.equal(on_gpu[name].cpu(), x32[name])  # float16 -> float32 is exact
        assert torch.equal(labels.cpu(), y32)
        n += len(y32)
    assert n == len(window_index(store.valid_frames, store.select(split="train"), range(len(store.variants)),
                                 store.window_frames, store.window_hop_frames))

    # the trainer's own streams on CUDA: float16, pinned by the threads or by the DataLoader
    for loader in ("threads", "processes"):
        cfg = TrainConfig(device=str(device), loader=loader, loader_workers=1, batch_size=4)
        train_ds, _ = make_streams(uri, store, cfg, device, features)
        assert train_ds.dtype == "float16"
        x, y = next(iter(make_loader(train_ds, cfg, device)))
        assert all(t.dtype == torch.float16 and t.is_pinned() for t in x.values()), loader


def test_train_resume_evaluate_predict_on_cuda(demo_store, tmp_path):
    from model.evaluate import evaluate
    from model.predict import predict_files

    uri, root = demo_store
    options = dict(model_kwargs=TINY_DFN, lr=3e-3, batch_size=8, patience=100, device="cuda", loader_workers=2,
                   progress=False)
    full, part = tmp_path / "full", tmp_path / "part"
    train(uri, "dfn", full, epochs=3, **options)
    train(uri, "dfn", part, epochs=2, **options)
    train(uri, "dfn", part, epochs=3, resume=True, **options)
    log_full = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    log_part = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert len(log_full) == len(log_part) == 3
    # CUDA kernels (cuDNN's GRU and convolution backward) need not be bitwise deterministic: close, not equal
    for a, b in zip(log_full, log_part):
        assert a["windows"] == b["windows"]
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=2e-2)

    state = load_checkpoint(full, which="latest")
    assert all(t.device.type == "cpu" for t in state["model"].values())  # map_location="cpu"
    assert state["train_config"]["device"] == "cuda" and isinstance(state["rng"]["cuda"], torch.Tensor)
    resumed_on_cpu = tmp_path / "cpu"
    # a CUDA run's checkpoint resumes on the CPU (device is a resumable override)
    import shutil

    shutil.copytree(full, resumed_on_cpu)
    train(uri, "dfn", resumed_on_cpu, epochs=4, resume=True, **{**options, "device": "cpu"})

    metrics = evaluate(full, uri, tmp_path / "eval", split="train", device="cuda")
    assert metrics["clip"]["n"] == len(open_store(uri).select(split="train"))
    store = open_store(uri)
    clip = int(store.select(split="train")[0])
    audio = root / store.clips.iloc[clip]["source"]
    on_gpu = predict_files(full, [audio], top=10, device="cuda")[0]
    on_cpu = predict_files(full, [audio], top=10, device="cpu")[0]
    gpu = {t["label"]: t["probability"] for t in on_gpu["top"]}
    cpu = {t["label"]: t["probability"] for t in on_cpu["top"]}
    assert gpu.keys() == cpu.keys()
    for label in cpu:  # bf16 on the GPU vs float32 on the CPU
        assert abs(gpu[label] - cpu[label]) < 0.05, (label, gpu[label], cpu[label])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP with NCCL needs 2+ GPUs")
def test_torchrun_two_gpus_nccl(demo_store, tmp_path):
    uri, _ = demo_store
    launcher = tmp_path / "launch.py"
    launcher.write_text("import sys\nfrom workflows.cli import main\nsys.exit(main())\n")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    # a bare `cuda` device: each rank must take its LOCAL_RANK GPU
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(launcher),
           "-v", "train", "--store", uri, "--model", "cnn-mel", "--out", str(out), "--epochs", "2", "--device", "cuda",
           "--no-progress", "--batch-size", "4", "--model-arg", "cnn_channels=[4,4,8]", "--model-arg", "fc_hidden=8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert result["world_size"] == 2 and result["epochs"] == 2
    assert "backend nccl" in proc.stderr  # init_distributed's INFO line (-v)
    store = open_store(uri)
    n = len(window_index(store.valid_frames, store.select(split="train"), range(len(store.variants)),
                         store.window_frames, store.window_hop_frames))
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(m["windows"] == n for m in log)
