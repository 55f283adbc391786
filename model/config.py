"""The trainer's one configuration: :class:`TrainConfig`, for ``pipeline train``, recipes and checkpoints.

``pipeline train``'s flags are generated from its fields (workflows/cli/train.py)
and a recipe's ``[train]`` table holds its fields beside the list of models
(:class:`workflows.recipe.TrainSection`), so a default or a check lives here
only.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from pipeline import validate
from pipeline.errors import ConfigError

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
    lr : Adam's learning rate.
    weight_decay : Adam's L2 penalty.
    patience : epochs without a better validation loss before stopping.
    schedule : "plateau" (ReduceLROnPlateau on validation loss, factor
        lr_factor after lr_patience bad epochs), "cosine" (to min_lr over
        the epochs) or "none".
    lr_factor : "plateau": the factor the learning rate is cut by.
    lr_patience : "plateau": bad epochs before a cut.
    min_lr : the lowest learning rate either schedule goes to.
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
        from model.networks import model_names  # torch: the CLI builds its flags from this module without it

        validate.one_of("train.model", self.model, model_names())
        for name in ("epochs", "batch_size", "patience", "lr_patience", "buffer_shards"):
            validate.integer(f"train.{name}", getattr(self, name), minimum=1)
        for name in ("seed", "threads", "loader_workers"):
            validate.integer(f"train.{name}", getattr(self, name), minimum=0)
        for name in ("lr", "lr_factor", "min_lr"):
            validate.number(f"train.{name}", getattr(self, name), positive=True)
        validate.number("train.weight_decay", self.weight_decay, minimum=0)
        validate.number("train.grad_clip", self.grad_clip, minimum=0)
        validate.one_of("train.loader", self.loader, LOADERS)
        validate.one_of("train.schedule", self.schedule, SCHEDULES)
        validate.text("train.device", self.device)
        validate.text("train.val_split", self.val_split)
        validate.flag("train.amp", self.amp)
        validate.flag("train.progress", self.progress)
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        object.__setattr__(self, "train_folds", validate.integer_list("train.train_folds", tuple(self.train_folds)))
        object.__setattr__(self, "val_folds", validate.integer_list("train.val_folds", tuple(self.val_folds)))
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
