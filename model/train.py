"""Training: a store URI in, a checkpoint folder out.

The loop reads top to bottom: set up (device, DDP, seeds), data (window
streams of the train and validation splits), model (a named preset with its
normalisation statistics from the train split), optimiser and schedule, then
one loop per epoch that trains, evaluates, steps the schedule, logs a line of
``metrics.jsonl`` and saves a checkpoint. Early stopping watches the
validation loss.

Distributed data parallel runs under ``torchrun``: ``WORLD_SIZE > 1`` in the
environment initialises the process group (NCCL on CUDA, gloo on CPU), each
rank streams its own shards, and ``torch.distributed.algorithms.Join`` copes
with ranks that get different numbers of batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import multiprocessing
import time
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.join import Join
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from model.checkpoint import check_store, load_checkpoint, run_metadata, save_checkpoint
from model.config import RESUMABLE_OVERRIDES, TrainConfig
from model.data import ThreadedLoader, WindowStream, normalisation_stats, open_source, split_clips
from model.networks import NON_NEURAL, GenreClassifier, build_model
from model.runtime import autocast, init_distributed, resolve_device, to_device
from model.svm import train_svm
from pipeline.errors import ModelError
from stores.protocol import ReadableStore, StoreSource

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# setup helpers
# ---------------------------------------------------------------------------
def make_loader(ds: WindowStream, cfg: TrainConfig, device: torch.device) -> DataLoader | ThreadedLoader:
    """The run's loader of ``ds``: :class:`ThreadedLoader` threads or DataLoader worker processes (``cfg.loader``)."""
    if cfg.loader == "threads":
        return ThreadedLoader(ds, threads=cfg.loader_workers)
    kwargs: dict[str, Any] = {}
    if cfg.loader_workers:
        # forkserver: workers never inherit an open store's fsspec/async clients
        # from this process; preloading model.data makes each worker start cheap.

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["model.data"])
        # persistent: workers start once per run, not per epoch (WindowStream
        # keeps its shuffling epoch in step by counting iterations).
        kwargs.update(multiprocessing_context=ctx, prefetch_factor=4, persistent_workers=True)
    return DataLoader(ds, batch_size=None, num_workers=cfg.loader_workers, pin_memory=device.type == "cuda",
                      **kwargs)


def make_streams(source: StoreSource, store: ReadableStore, cfg: TrainConfig, device: torch.device, features: Any, *,
                 rank: int = 0, world: int = 1, storage_options: Mapping[str, Any] | None = None
                 ) -> tuple[WindowStream, WindowStream | None]:
    """The train and validation window streams of a run (validation None when its split is empty).

    On CUDA, batches stay float16 (half the bytes through pinned memory and
    PCIe; :func:`to_device` converts them on the GPU) and loader threads
    allocate them pinned (DataLoader workers' batches are pinned by the DataLoader).
    """
    common = dict(features=features, batch_size=cfg.batch_size, buffer_shards=cfg.buffer_shards,
                  seed=cfg.seed, storage_options=storage_options, rank=rank, world_size=world,
                  dtype="float16" if device.type == "cuda" else "float32",
                  pin_memory=device.type == "cuda" and cfg.loader == "threads")
    # Loader threads share this process's open store; worker processes open their own from the URI.
    if cfg.loader == "threads":
        source = store
    train_ds = WindowStream(source, split="train", folds=cfg.train_folds, variants="all", shuffle=True, **common)
    if not len(split_clips(store, cfg.val_split, folds=cfg.val_folds)):
        logger.warning("store %s has no %s clips: early stopping and the schedule follow the train loss",
                       store.uri, f"fold {list(cfg.val_folds)}" if cfg.val_folds else repr(cfg.val_split))
        return train_ds, None
    val_ds = WindowStream(source, split=cfg.val_split, folds=cfg.val_folds, variants="original", shuffle=False,
                          **common)
    return train_ds, val_ds


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, x: Mapping[str, torch.Tensor], y: torch.Tensor,
               cfg: TrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch already on ``device``; ``(loss, logits)``, neither synchronised.

    Nothing here waits for the GPU (no ``.item()``), so the next batch's copy
    and the loader's work overlap this step's kernels.
    """
    with autocast(device, cfg.amp):
        logits = net(x)
    loss = nn.functional.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss.detach(), logits.detach()


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.lr_factor,
                                                          patience=cfg.lr_patience, min_lr=cfg.min_lr)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.min_lr)
    return None


@torch.no_grad()
def evaluate_loss(model: nn.Module, loader: Any, device: torch.device, amp: bool = True) -> tuple[float, float, int]:
    """Mean cross-entropy and accuracy over every window of ``loader`` (summed over DDP ranks)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, windows
    for x, y in loader:
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        totals[0] += nn.functional.cross_entropy(logits, y, reduction="sum")
        totals[1] += (logits.argmax(1) == y).sum()
        totals[2] += len(y)
    if dist.is_initialized():
        dist.all_reduce(totals)
    model.train(was_training)
    n = int(totals[2].item())
    if n == 0:
        return float("nan"), float("nan"), 0
    return float(totals[0] / n), float(totals[1] / n), n


def _rng_state(device: torch.device) -> dict[str, Any]:
    """The generators the run draws from: the CPU's and, on CUDA, the training GPU's only.

    One GPU's state (not ``get_rng_state_all``): a run resumes on a machine
    with another number of GPUs, or under torchrun on another rank's GPU.
    """
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if device.type != "cuda" or cuda is None:
        return
    if isinstance(cuda, (list, tuple)):  # checkpoints before one-GPU states: every GPU's, this rank's first
        if not cuda:
            return
        cuda = cuda[0]
    torch.cuda.set_rng_state(cuda, device)


# ---------------------------------------------------------------------------
# the training run
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class _Progress:
    """Where a run stands: the next epoch and the early-stopping state (restored on resume)."""

    start_epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False


def train(store: StoreSource, model: str | TrainConfig, out_dir: str | Path, *, resume: bool = False,
          storage_options: Mapping[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """Train a model on the store's train split (or folds); checkpoints and logs go to ``out_dir``.

    Parameters
    ----------
    store : a store URI (or an open store object).
    model : a model name (then ``options`` are :class:`TrainConfig` fields,
        e.g. ``epochs=20, lr=1e-3``) or a whole :class:`TrainConfig`.
    out_dir : checkpoint folder (``checkpoint.pt``, ``best.pt``, ``metrics.jsonl``, ``config.json``).
    resume : continue from ``out_dir/checkpoint.pt`` exactly where it stopped
        (the saved config is used; only :data:`RESUMABLE_OVERRIDES` may change).

    Returns
    -------
    dict : epochs run, best validation loss and its epoch, whether it stopped early, the checkpoint folder.

    Raises
    ------
    ModelError
        ``out_dir`` already holds a run and ``resume`` is false, or nothing to resume.
    ConfigMismatchError
        Resuming on a store with other feature settings or labels.
    """
    out = Path(out_dir)
    if isinstance(model, TrainConfig):
        cfg = dataclasses.replace(model, **options) if options else model
    else:
        cfg = TrainConfig.from_dict({"model": model, **options})
    if cfg.model in NON_NEURAL:
        return train_svm(store, out_dir, cfg, storage_options=storage_options)
    cfg, state = _resumed(cfg, given=set(options) if not isinstance(model, TrainConfig) else set(), out=out,
                          resume=resume)

    # setup: device, threads, ranks, seed, the store
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # cuDNN/cuBLAS handles, pinned-memory threads and NCCL use this GPU
    rank, world = init_distributed(device)
    torch.manual_seed(cfg.seed)
    source = store
    store = open_source(store, storage_options)
    if state is not None:
        check_store(state, store, what=f"checkpoint {out / 'checkpoint.pt'}")

    # model and optimizer
    net, model = _make_model(cfg, store, state, device, world)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg)

    # data
    train_ds, val_ds = make_streams(source, store, cfg, device, model.features, rank=rank, world=world,
                                    storage_options=storage_options)
    train_loader = make_loader(train_ds, cfg, device)
    val_loader = make_loader(val_ds, cfg, device) if val_ds is not None else None

    progress = _Progress() if state is None else _restore(state, optimizer, scheduler, device, cfg, out)
    base = run_metadata(store, cfg, model.features)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(base, indent=2))

    # one loop: an epoch of training, validation, the schedule, a checkpoint
    epoch = progress.start_epoch - 1
    for epoch in range(progress.start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        train_loss, train_acc, n_windows = _train_epoch(net, optimizer, train_loader, len(train_ds), cfg, device,
                                                        epoch, rank, world)
        if val_loader is not None:
            val_loss, val_acc, _ = evaluate_loss(model, val_loader, device, cfg.amp)
        else:
            val_loss, val_acc = train_loss, train_acc
        lr = optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_loss)
        elif scheduler is not None:
            scheduler.step()
        improved = _track(progress, val_loss, epoch, cfg.patience)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                  "val_acc": val_acc, "lr": lr, "windows": n_windows,
                  "time_s": round(time.perf_counter() - t0, 3), "split": cfg.val_split, "store": base["store"]["uri"]}
        if rank == 0:
            _save_epoch(out, base, record, model, optimizer, scheduler, progress, epoch, improved, device)
        if world > 1:
            dist.barrier()
        if progress.stopped_early:
            logger.info("early stop: no better %s loss for %d epochs (best %.4f at epoch %d)",
                        cfg.val_split, cfg.patience, progress.best_loss, progress.best_epoch + 1)
            break
    return {"epochs": epoch + 1, "best_loss": progress.best_loss, "best_epoch": progress.best_epoch + 1,
            "stopped_early": progress.stopped_early, "out": str(out), "rank": rank, "world_size": world}


def _resumed(cfg: TrainConfig, *, given: set[str], out: Path,
             resume: bool) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's config and, when resuming, its last checkpoint (whose config wins but for the resumable options).

    ``given``: the options passed by name, warned about when a resume ignores them.
    """
    latest = out / "checkpoint.pt"
    if not resume:
        if latest.exists():
            raise ModelError(f"{out} already holds a training run; pass --resume to continue it or choose "
                             "another --out")
        return cfg, None
    if not latest.is_file():
        raise ModelError(f"--resume: no {latest} to resume from; drop --resume to start a new run")
    state = load_checkpoint(latest, which="latest")
    saved = TrainConfig.from_dict(state["train_config"])
    changed = {k for k in RESUMABLE_OVERRIDES if getattr(cfg, k) != getattr(saved, k)}
    ignored = sorted(f.name for f in dataclasses.fields(TrainConfig)
                     if f.name not in RESUMABLE_OVERRIDES and getattr(cfg, f.name) != getattr(saved, f.name))
    if ignored and set(ignored) & given:
        logger.warning("resuming %s with its saved %s; the options given for them are ignored "
                       "(only %s may change on resume)", latest, ignored, ", ".join(RESUMABLE_OVERRIDES))
    return dataclasses.replace(saved, **{k: getattr(cfg, k) for k in changed}), state


def _make_model(cfg: TrainConfig, store: ReadableStore, state: Mapping[str, Any] | None, device: torch.device,
                world: int) -> tuple[nn.Module, GenreClassifier]:
    """The network (normalised on the train clips, or the checkpoint's weights) and its DDP wrapper."""
    model = build_model(cfg.model, n_classes=len(store.labels), feature_bands=store.feature_bands,
                        **cfg.model_kwargs)
    if state is None:
        stats = normalisation_stats(store, split_clips(store, "train", folds=cfg.train_folds), model.features)
        model.set_normalisation(stats)
    else:
        model.load_state_dict(state["model"])
    model.to(device)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return net, model


def _restore(state: Mapping[str, Any], optimizer: torch.optim.Optimizer, scheduler: Any, device: torch.device,
             cfg: TrainConfig, out: Path) -> _Progress:
    """Put the optimizer, schedule and RNGs back where the checkpoint left them."""
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    progress = _Progress(int(state["epoch"]) + 1, float(state["best_loss"]), int(state["best_epoch"]),
                         int(state["bad_epochs"]))
    _set_rng_state(state["rng"], device)
    if state.get("stopped_early"):
        logger.info("%s already stopped early at epoch %d; nothing to resume", out, state["epoch"])
        progress.start_epoch = cfg.epochs
    return progress


def _train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, loader: Any, batches: int, cfg: TrainConfig,
                 device: torch.device, epoch: int, rank: int, world: int) -> tuple[float, float, int]:
    """One pass over the training windows: (mean loss, accuracy, windows), summed over the ranks."""
    net.train()
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, correct (on the device: no sync)
    n_windows = 0
    bar = tqdm(total=batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
               disable=not cfg.progress or rank != 0, leave=False)
    # Ranks may hold different numbers of windows; Join shadows the
    # collectives of ranks that ran out so the others do not hang.
    join = Join([net]) if world > 1 else contextlib.nullcontext()
    with join:
        for step, (x, y) in enumerate(loader):
            x, y = to_device(x, device), y.to(device, non_blocking=True)
            loss, logits = train_step(net, optimizer, x, y, cfg, device)
            totals += torch.stack([loss.double() * len(y), (logits.argmax(1) == y).sum().double()])
            n_windows += len(y)
            bar.update(1)
            # loss.item() waits for the GPU: only for a shown bar, every 20th batch
            if not bar.disable and step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    totals = torch.cat([totals, torch.tensor([float(n_windows)], dtype=torch.float64).to(device)])
    if world > 1:
        dist.all_reduce(totals)
    n_train = max(1.0, float(totals[2]))
    return float(totals[0]) / n_train, float(totals[1]) / n_train, int(totals[2])


def _track(progress: _Progress, val_loss: float, epoch: int, patience: int) -> bool:
    """Early stopping's bookkeeping after an epoch; True when it improved on the best loss."""
    improved = val_loss < progress.best_loss
    if improved:
        progress.best_loss, progress.best_epoch, progress.bad_epochs = val_loss, epoch, 0
    else:
        progress.bad_epochs += 1
    progress.stopped_early = progress.bad_epochs >= patience
    return improved


def _save_epoch(out: Path, base: Mapping[str, Any], record: Mapping[str, Any], model: nn.Module,
                optimizer: torch.optim.Optimizer, scheduler: Any, progress: _Progress, epoch: int,
                improved: bool, device: torch.device) -> None:
    """Rank 0: the epoch's metrics line, the latest checkpoint, and best.pt when it improved."""
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    logger.info("epoch %d: train loss %.4f acc %.3f, val loss %.4f acc %.3f, lr %.2g",
                record["epoch"], record["train_loss"], record["train_acc"], record["val_loss"], record["val_acc"],
                record["lr"])
    ckpt = {**base, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "epoch": epoch, "best_loss": progress.best_loss, "best_epoch": progress.best_epoch,
            "bad_epochs": progress.bad_epochs, "stopped_early": progress.stopped_early, "rng": _rng_state(device),
            "metrics": record}
    if improved:
        save_checkpoint(ckpt, out / "best.pt")
    save_checkpoint(ckpt, out / "checkpoint.pt")
