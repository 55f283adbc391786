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
import time
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.join import Join
from torch.utils.data import DataLoader

from model.checkpoint import check_store, load_checkpoint, run_metadata, save_checkpoint
from model.data import ThreadedLoader, WindowStream, normalisation_stats, open_source, split_clips
from model.networks import NON_NEURAL, build_model, model_names
from model.runtime import autocast, init_distributed, resolve_device, to_device
from pipeline.errors import ConfigError, ModelError
from stores.protocol import ReadableStore, StoreSource

logger = logging.getLogger(__name__)

SCHEDULES = ("plateau", "cosine", "none")
LOADERS = ("threads", "processes")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every training choice; saved in the checkpoint and ``config.json``.

    Attributes
    ----------
    model : a name from :func:`model.networks.model_names`.
    model_kwargs : builder knobs overriding the preset (e.g. ``{"gru_hidden": 64}``).
    epochs : maximum epochs.
    batch_size : windows per optimisation step (per rank under DDP).
    lr, weight_decay : Adam's learning rate and L2 penalty.
    patience : epochs without a better validation loss before stopping.
    schedule : "plateau" (ReduceLROnPlateau on validation loss, factor
        ``lr_factor`` after ``lr_patience`` bad epochs), "cosine" (to
        ``min_lr`` over ``epochs``) or "none".
    grad_clip : max gradient norm, 0 for none.
    seed : seeds model initialisation, dropout and the loader's shuffling.
    device : "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
    amp : bf16 autocast on CUDA.
    threads : torch intra-op threads (0: torch's default). On a shared CPU
        machine 1 avoids threads spin-waiting for busy cores (measured up to
        20x slower steps with 2 threads on 2 loaded cores).
    loader : "threads" (default): ``loader_workers`` threads of the training
        process decode and gather batches (:class:`~model.data.ThreadedLoader`;
        that work runs without the GIL, and no batch crosses processes);
        "processes": ``loader_workers`` DataLoader worker processes (each
        batch then crosses through shared memory: measured 4x slower here).
    loader_workers : loader threads or worker processes per rank (0: load in the training thread).
    buffer_shards : shards shuffled together in each worker.
    val_split : the split that drives early stopping.
    train_folds, val_folds : cross-validation: train on the clips of
        ``train_folds`` (every stored variant) and validate on ``val_folds``
        instead of the split column.
    progress : show a tqdm progress bar.
    """

    model: str = "dfn"
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    patience: int = 10
    schedule: str = "plateau"
    lr_factor: float = 0.5
    lr_patience: int = 3
    min_lr: float = 1e-6
    grad_clip: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    threads: int = 0
    loader: str = "threads"
    loader_workers: int = 2
    buffer_shards: int = 4
    val_split: str = "val"
    train_folds: tuple[int, ...] = ()
    val_folds: tuple[int, ...] = ()
    progress: bool = True

    def __post_init__(self) -> None:
        if self.model not in model_names():
            raise ConfigError(f"model={self.model!r} is not one of {', '.join(model_names())}")
        for name in ("epochs", "batch_size", "patience", "lr_patience", "buffer_shards"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"train.{name}={value!r} must be a positive integer")
        if self.threads < 0:
            raise ConfigError(f"train.threads={self.threads} must be >= 0 (0: torch's default)")
        if self.loader_workers < 0:
            raise ConfigError(f"train.loader_workers={self.loader_workers} must be >= 0")
        if self.loader not in LOADERS:
            raise ConfigError(f"train.loader={self.loader!r} is not one of {', '.join(LOADERS)}")
        for name in ("lr", "lr_factor", "min_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"train.{name}={value!r} must be a positive number")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        object.__setattr__(self, "train_folds", tuple(int(f) for f in self.train_folds))
        object.__setattr__(self, "val_folds", tuple(int(f) for f in self.val_folds))
        if set(self.train_folds) & set(self.val_folds):
            raise ConfigError(f"train.train_folds={list(self.train_folds)} and val_folds={list(self.val_folds)} "
                              f"overlap; a fold is either trained or validated on")
        if bool(self.train_folds) != bool(self.val_folds):
            raise ConfigError("train.train_folds and train.val_folds must be given together")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        valid = {f.name for f in dataclasses.fields(cls)}
        bad = set(data) - valid
        if bad:
            raise ConfigError(f"unknown training option(s) {sorted(bad)}; valid: {sorted(valid)}")
        return cls(**data)


#: Options that may change when resuming: run-time settings, not the model or its data (the
#: loader settings change only the order of the batches, as a different number of workers does).
RESUMABLE_OVERRIDES = ("epochs", "device", "loader", "loader_workers", "progress", "patience", "threads")


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
        import multiprocessing

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
    if isinstance(model, TrainConfig):
        cfg = dataclasses.replace(model, **options) if options else model
    else:
        cfg = TrainConfig.from_dict({"model": model, **options})
    if cfg.model in NON_NEURAL:
        from model.svm import train_svm

        return train_svm(store, out_dir, cfg, storage_options=storage_options)
    out = Path(out_dir)
    latest = out / "checkpoint.pt"
    state: dict[str, Any] | None = None
    if resume:
        if not latest.is_file():
            raise ModelError(f"--resume: no {latest} to resume from; drop --resume to start a new run")
        state = load_checkpoint(latest, which="latest")
        saved = TrainConfig.from_dict(state["train_config"])
        changed = {k for k in RESUMABLE_OVERRIDES if getattr(cfg, k) != getattr(saved, k)}
        ignored = sorted(f.name for f in dataclasses.fields(TrainConfig)
                         if f.name not in RESUMABLE_OVERRIDES and getattr(cfg, f.name) != getattr(saved, f.name))
        if ignored and not isinstance(model, TrainConfig) and set(ignored) & set(options):
            logger.warning("resuming %s with its saved %s; the options given for them are ignored "
                           "(only %s may change on resume)", latest, ignored, ", ".join(RESUMABLE_OVERRIDES))
        cfg = dataclasses.replace(saved, **{k: getattr(cfg, k) for k in changed})
    elif latest.exists():
        raise ModelError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")

    # -- setup --------------------------------------------------------------
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
        check_store(state, store, what=f"checkpoint {latest}")
    labels = list(store.labels)

    # -- model ----------------------------------------------------------------
    model = build_model(cfg.model, n_classes=len(labels), feature_bands=store.feature_bands, **cfg.model_kwargs)
    if state is None:
        stats = normalisation_stats(store, split_clips(store, "train", folds=cfg.train_folds), model.features)
        model.set_normalisation(stats)
    else:
        model.load_state_dict(state["model"])
    model.to(device)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg)

    # -- data -----------------------------------------------------------------
    train_ds, val_ds = make_streams(source, store, cfg, device, model.features, rank=rank, world=world,
                                    storage_options=storage_options)
    train_loader = make_loader(train_ds, cfg, device)
    val_loader = make_loader(val_ds, cfg, device) if val_ds is not None else None
    batches = len(train_ds)

    # -- resume ---------------------------------------------------------------
    start_epoch, best_loss, best_epoch, bad_epochs = 0, math.inf, -1, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        best_loss, best_epoch = float(state["best_loss"]), int(state["best_epoch"])
        bad_epochs = int(state["bad_epochs"])
        _set_rng_state(state["rng"], device)
        if state.get("stopped_early"):
            logger.info("%s already stopped early at epoch %d; nothing to resume", out, state["epoch"])
            start_epoch = cfg.epochs
    base = run_metadata(store, cfg, model.features)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(base, indent=2))

    # -- loop -----------------------------------------------------------------
    from tqdm.auto import tqdm

    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        net.train()
        totals = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, correct (on the device: no sync)
        n_windows = 0
        bar = tqdm(total=batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not cfg.progress or rank != 0, leave=False)
        # Ranks may hold different numbers of windows; Join shadows the
        # collectives of ranks that ran out so the others do not hang.
        join = Join([net]) if world > 1 else contextlib.nullcontext()
        with join:
            for step, (x, y) in enumerate(train_loader):
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
        train_loss, train_acc = float(totals[0]) / n_train, float(totals[1]) / n_train
        if val_loader is not None:
            val_loss, val_acc, _ = evaluate_loss(model, val_loader, device, cfg.amp)
        else:
            val_loss, val_acc = train_loss, train_acc
        lr = optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_loss)
        elif scheduler is not None:
            scheduler.step()

        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
        else:
            bad_epochs += 1
        stopped_early = bad_epochs >= cfg.patience
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                  "val_acc": val_acc, "lr": lr, "windows": int(totals[2]),
                  "time_s": round(time.perf_counter() - t0, 3), "split": cfg.val_split, "store": base["store"]["uri"]}
        if rank == 0:
            with open(out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            logger.info("epoch %d: train loss %.4f acc %.3f, val loss %.4f acc %.3f, lr %.2g",
                        epoch + 1, train_loss, train_acc, val_loss, val_acc, lr)
            ckpt = {**base, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else {},
                    "epoch": epoch, "best_loss": best_loss, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                    "stopped_early": stopped_early, "rng": _rng_state(device), "metrics": record}
            if improved:
                save_checkpoint(ckpt, out / "best.pt")
            save_checkpoint(ckpt, latest)
        if world > 1:
            dist.barrier()
        if stopped_early:
            logger.info("early stop: no better %s loss for %d epochs (best %.4f at epoch %d)",
                        cfg.val_split, cfg.patience, best_loss, best_epoch + 1)
            break
    return {"epochs": epoch + 1, "best_loss": best_loss, "best_epoch": best_epoch + 1,
            "stopped_early": stopped_early, "out": str(out), "rank": rank, "world_size": world}
