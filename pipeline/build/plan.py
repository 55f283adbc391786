"""The plan of a build, decided before any task runs: the clips in store
order, the failures allowed, the store created (or reopened to resume), the
credentials split between this process and the workers, and one
:class:`~pipeline.build.shard_task.ShardTask` per pending shard."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pipeline.build.shard_task import ShardTask, clip_variants
from pipeline.build.update import aug_param_names, growth_of, open_newest, start_extension, start_growth
from pipeline.config import PipelineConfig
from pipeline.datasets.base import Manifest
from pipeline.errors import BuildError, ConfigError
from pipeline.isolation import ClipLimits
from pipeline.sources import check_root, is_remote, join_root
from stores import create_store
from stores.remote import local_path, redact_uri, scheme_of, split_credentials
from stores.schema import STATIC_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import distributed

logger = logging.getLogger(__name__)

def parse_max_failures(value: str | int | float, n_clips: int) -> int:
    """Failed clips allowed: a count ("3"), a fraction ("0.05") or a percentage ("5%").

    Returns
    -------
    int
        The number of failed clips that still counts as a successful build.
    """
    text = str(value).strip()
    try:
        if text.endswith("%"):
            fraction: float | None = float(text[:-1]) / 100.0
        elif isinstance(value, float) or any(ch in text for ch in ".eE"):
            fraction = float(text)
        else:
            fraction, count = None, int(text)
    except ValueError as exc:
        raise ConfigError(
            f"--max-failures={value!r} must be a count (3), a fraction (0.05) or a percentage (5%)"
        ) from exc
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"--max-failures={value!r}: a fraction must lie in [0, 1] (a percentage in [0%, 100%])")
        return int(math.floor(fraction * n_clips + 1e-9))
    if count < 0:
        raise ConfigError(f"--max-failures={value!r} must not be negative")
    return count


def augmented_splits(manifest: Manifest, config: PipelineConfig) -> tuple[str, ...]:
    """Splits whose clips get augmented variants, as recorded in the store.

    ``("all",)`` when the split scheme has folds (each clip trains in some
    fold); else ``augment_splits`` (train by default, or "all").
    """
    return ("all",) if manifest.n_folds > 0 else tuple(config.augment.augment_splits)


def _static_columns(manifest: Manifest) -> dict[str, list[Any]]:
    labels = list(manifest.labels)
    cols: dict[str, list[Any]] = {k: [] for k in STATIC_COLUMNS}
    for clip in manifest.clips:
        if clip.label not in labels:
            raise BuildError(f"clip {clip.clip_id}: label {clip.label!r} is not one of the manifest's labels {labels}")
        cols["clip_id"].append(clip.clip_id)
        cols["label"].append(clip.label)
        cols["label_index"].append(labels.index(clip.label))
        cols["split"].append(clip.split)
        cols["fold"].append(clip.fold)
        cols["group"].append(clip.group)
        cols["source"].append(clip.path)
    return cols


def _writable_uri(out_uri: str | Path) -> str:
    """A URI that other processes resolve to the same place (local paths made absolute)."""
    path = local_path(out_uri)
    return str(path.resolve()) if path is not None else str(out_uri)



def store_order(manifest: Manifest) -> Manifest:
    """The manifest's clips in the order the store keeps them.

    Grouped by split (train, val, test, then clips outside the scheme), and
    within a split in the order of a SHA-256 of the clip id. Adapters list
    clips by label, so shards of consecutive clips would each hold one or two
    genres, and a trainer shuffling through a buffer of a few shards would
    see batches of a few genres at a time; hashed order makes every shard a
    label-mixed sample. Grouping by split keeps a split's clips in few shards:
    training reads no val/test-only shards and evaluation no train shards.
    The order depends only on the clip ids and splits, so every build of the
    same manifest (and a resumed one) agrees.
    """
    rank = {split: i for i, split in enumerate(("train", "val", "test"))}

    def key(clip: Any) -> tuple[int, str]:
        return rank.get(clip.split, len(rank)), hashlib.sha256(clip.clip_id.encode()).hexdigest()

    return dataclasses.replace(manifest, clips=tuple(sorted(manifest.clips, key=key)))



@dataclasses.dataclass
class BuildPlan:
    """What a build will do, decided before any task runs."""

    shown: str  # the store URI as it may be printed
    uri: str
    options: dict[str, Any]  # the store's storage options (this process)
    writer: Any  # stores.StoreWriter
    tasks: list[ShardTask]
    n_workers: int  # 0: serial
    worker_env: dict[str, str]  # credentials for the workers of a LocalCluster we start
    allowed_failures: int
    config: PipelineConfig
    vanished: tuple[str, ...] = ()  # clips of the store whose files are gone (an update keeps them)



def make_plan(manifest: Manifest, out_uri: str | Path, *, config: PipelineConfig, workers: int | None,
          scheduler: "str | distributed.Client | None", overwrite: bool, max_failures: str | int | float,
          storage_options: Mapping[str, Any] | None, clips_per_shard: int | None, clip_limits: ClipLimits,
          source_storage_options: Mapping[str, Any] | None, update: bool = False) -> BuildPlan:
    """Check the inputs, create (or reopen, or start an update of) the store, and make one task per pending shard."""
    shown = redact_uri(out_uri)
    if len(manifest) == 0:
        raise BuildError(f"the manifest of {manifest.dataset!r} has no clips; nothing to build into {shown}")
    manifest = store_order(manifest)
    if workers is not None and (isinstance(workers, bool) or workers < 0):
        raise ConfigError(f"workers={workers!r} must be 0 (serial) or a positive number of processes")
    allowed = parse_max_failures(max_failures, len(manifest))
    serial = scheduler is None and workers == 0
    if scheme_of(out_uri) == "memory" and not serial:
        raise BuildError(
            f"{shown} is an in-process memory store that worker processes cannot reach; "
            "build it with workers=0 (--workers 0) or write to a folder or object storage"
        )
    uri = _writable_uri(out_uri)
    options = dict(storage_options or {})
    source_options = dict(source_storage_options or {})
    (task_options, task_source_options), worker_env = split_credentials(serial, scheduler, options, source_options)
    if is_remote(manifest.root):
        check_root(manifest.root, source_options)  # a missing bucket or bad credentials: one line, up front

    growth = None if overwrite else growth_of(manifest, uri, options, update=update)
    extension = start_extension(uri, config, options) if growth is not None and not growth.new else None
    if growth is not None and growth.new:
        writer, store_clips = start_growth(uri, growth, manifest, config, options)
    elif extension is not None:
        writer, store_clips = extension.writer, extension.clips
    else:
        writer = create_store(
            uri, config=config, clips=_static_columns(manifest), labels=manifest.labels,
            aug_params=aug_param_names(config.augment.variants),
            dataset={"name": manifest.dataset, "split_scheme": manifest.split_scheme,
                     "n_folds": manifest.n_folds, "source": manifest.source,
                     "skipped": {group.why: group.paths for group in manifest.skipped}},
            augmented_splits=augmented_splits(manifest, config), clips_per_shard=clips_per_shard,
            overwrite=overwrite, storage_options=options,
        ) if growth is None else open_newest(uri, options, config)
        store_clips = dict(enumerate(manifest.clips))
    augmented = writer.metadata.augmented_splits
    extend, add_features = (extension.added_variants, extension.added_features) if extension else ((), ())
    tasks = []
    for i in writer.pending_shards():
        start, stop = writer.layout.shard_range(i)
        clips = tuple(
            (c.clip_id, join_root(manifest.root, c.path), c.path,
             extension.variants[j] if extension is not None else clip_variants(c, augmented, config))
            for j, c in ((j, store_clips[j]) for j in range(start, stop))
        )
        tasks.append(ShardTask(i, clips, config, writer.target_uri, task_options, clip_limits, task_source_options,
                               extend=extend, add_features=add_features))
    n_workers = 0 if serial else (workers or min(os.cpu_count() or 1, max(1, len(tasks))))
    logger.info("%s: %d of %d shards to build (%d clips)", shown, len(tasks), writer.layout.n_shards,
                sum(len(t.clips) for t in tasks))
    return BuildPlan(shown, uri, options, writer, tasks, n_workers, worker_env, allowed, config,
                     growth.vanished if growth is not None else ())

