"""The GPU check at CPU size: every step runs and the JSON holds the figures (no timing asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from bench.gpu_check import CPU_PARAMS, GpuCheckParams, no_cuda_message
from workflows.cli import main
from pipeline.errors import ModelError

FIGURES = ("training_windows_per_s", "loader_windows_per_s", "loader_to_training", "fed_windows_per_s",
           "evaluate_s", "predict_file_s", "predict_batch_s")


def test_cpu_size_check_writes_its_figures(tmp_path, capsys):
    out = tmp_path / "check"
    assert main(["bench", "gpu", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads((out / "gpu-check.json").read_text())
    assert result["figures"] == "cpu" and "measure no GPU" in result["note"]
    for key in FIGURES:
        assert result[key] > 0, key
    assert result["peak_gpu_memory_bytes"] is None and result["amp"] is False
    assert result["evaluate_split"] == "test" and result["evaluate_windows"] > 0
    assert result["train_steps"] == CPU_PARAMS.train_steps and result["loader_threads"] == 2
    for key in ("device_name", "torch", "cuda", "date", "store", "phases", "params", "train_config"):
        assert key in result, key
    assert result["store"]["variants"] == ["original", "gain"]
    assert (out / "checkpoint" / "best.pt").is_file() and (out / "eval" / "metrics.json").is_file()
    assert "CPU figures" in capsys.readouterr().out


def test_without_cuda_it_stops_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "gpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no CUDA device" in err and "--device cpu" in err
    assert not (tmp_path / "gpu-check.json").exists()
    assert "--device cpu" in no_cuda_message()


@pytest.mark.parametrize("field, value", [("train_steps", 0), ("clip_seconds", 0.0), ("loader_threads", -1),
                                          ("warmup_steps", -1)])
def test_bad_sizes_are_refused(field, value):
    with pytest.raises(ModelError, match=field):
        GpuCheckParams(**{field: value})
