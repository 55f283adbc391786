"""model.runtime on the CPU (the CUDA side: tests/model/test_cuda.py)."""

from __future__ import annotations

import pytest
import torch

from model.runtime import autocast, init_distributed, resolve_device, to_device, torch_threads
from pipeline.errors import ConfigError


def test_resolve_device_on_a_machine_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="none is available"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device("gpu-please")


def test_torch_threads_is_restored_and_zero_leaves_it():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(0):
        assert torch.get_num_threads() == before


def test_autocast_is_a_no_op_on_the_cpu_and_batches_become_float32():
    with autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    batch = to_device({"mel": torch.ones(2, 3, dtype=torch.float16)}, torch.device("cpu"))
    assert batch["mel"].dtype == torch.float32


def test_a_single_process_has_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed(torch.device("cpu")) == (0, 1)
