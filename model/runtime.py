"""Where and how the model runs: the device, mixed precision, threads, the DDP process group.

Shared by training (:mod:`model.train`), inference (:mod:`model.predict`,
:mod:`model.evaluate`) and the benchmarks; none of it knows about stores or
checkpoints.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from typing import Iterator, Mapping

import torch
import torch.distributed as dist

from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a CUDA device always gets its index.

    ``auto`` and a bare ``cuda`` mean this rank's ``LOCAL_RANK`` GPU under
    torchrun (else the current one): without an index every rank would train
    on GPU 0 and DDP's ``device_ids`` would be ``[None]``.
    """
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        name = "cuda"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device={name!r} is not a torch device (use auto, cpu, cuda, cuda:N)") from exc
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} asked for CUDA but none is available; use --device cpu or auto")
    if device.index is None:
        local = os.environ.get("LOCAL_RANK")
        device = torch.device("cuda", int(local) if local is not None else torch.cuda.current_device())
    if device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r} resolves to {device} but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s); use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return device


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Initialise the process group when launched by torchrun with ``WORLD_SIZE > 1``; ``(rank, world)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        logger.info("DDP: rank %d of %d, backend %s", dist.get_rank(), world, backend)
    return dist.get_rank(), dist.get_world_size()


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (when ``enabled``); a no-op elsewhere.

    A GPU without bf16 (before Ampere) runs float32 instead, with one warning:
    ``torch.autocast`` would raise there, and float16 would need a gradient scaler.
    """
    if device.type == "cuda" and enabled:
        if _bf16_supported(device):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        _warn_once(f"{torch.cuda.get_device_name(device)} has no bfloat16; training and inference run in float32 "
                   f"(pass --no-amp to silence this)")
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=None)
def _bf16_supported(device: torch.device) -> bool:
    with torch.cuda.device(device):
        return bool(torch.cuda.is_bf16_supported())


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    logger.warning(message)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, restored afterwards (0: leave torch's setting)."""
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def to_device(x: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Copy to ``device`` and convert to float32 there (a float16 batch crosses PCIe at half the bytes).

    From pinned memory the copies are asynchronous; the conversion is queued
    behind them on the same stream, so it reads the copied values.
    """
    return {k: v.to(device, non_blocking=True).float() for k, v in x.items()}
