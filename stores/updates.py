"""Updating a store in place, as a new version: more clips (grow).

A grown store keeps every object of its clips as it was: the new clips go
into new shards. When the last shard of the store is not full, the clip axis
first gets *padding rows* up to the next shard boundary (``clip_id`` empty,
status "pending", no frames), so the new clips start a shard of their own and
the old last shard's objects stay byte for byte. Readers never select padding
rows (they are not "ok"); :func:`padding_rows` counts them for ``verify``.

Everything is written through a transaction (:mod:`stores.versions`): a
reader of the version before keeps reading it, a killed update leaves that
version newest, and running the same update again resumes its shards.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import zarr

from pipeline.config import PipelineConfig
from pipeline.errors import ConfigMismatchError, StoreError
from stores import schema
from stores.metadata import StoreMetadata
from stores.schema import Layout
from stores.uri import redact_uri
from stores.versions import begin_transaction, describe_clips, split_version
from stores.writer import (StoreWriter, _columns_hash, _config_diff, _existing_metadata, _open_group, open_writer)

logger = logging.getLogger(__name__)

#: ``clip_id`` of a padding row (a real clip always has an id).
PADDING_CLIP_ID = ""
#: Values of the static columns in a padding row.
_PADDING = {"clip_id": PADDING_CLIP_ID, "label": "", "label_index": 0, "split": "", "fold": -1, "group": "",
            "source": ""}


def padding_rows(clip_ids: Sequence[str]) -> np.ndarray:
    """bool [shape=(n_clips,)]: rows of the clip axis that are padding, not clips."""
    return np.asarray(clip_ids, dtype=str) == PADDING_CLIP_ID


def stored_clip_ids(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None) -> list[str] | None:
    """Clip ids of the newest version of the store at ``uri`` (padding left out); None when there is no store."""
    from stores.reader import open_store

    shown = redact_uri(uri)
    if _existing_metadata(uri, storage_options, shown) is None:
        return None
    store = open_store(uri, storage_options=storage_options, allow_incomplete=True)
    ids = store.clips["clip_id"].astype(str).to_numpy()
    return [str(i) for i in ids[~padding_rows(ids)]]


def grow_store(uri: str | Path, *, config: PipelineConfig, clips: Mapping[str, Sequence[Any]],
               storage_options: Mapping[str, Any] | None = None) -> StoreWriter:
    """Start (or resume) the update that appends ``clips`` to the store at ``uri``.

    Parameters
    ----------
    uri : the store (its newest version is the base; never ``@VERSION``).
    config : must be the store's own config (features and variants unchanged).
    clips : the static per-clip columns (:data:`stores.schema.STATIC_COLUMNS`) of the
        new clips only, in the order they are to be stored; their split and
        fold already decided (:mod:`pipeline.update` keeps the store's).

    Returns
    -------
    StoreWriter
        Its pending shards are the new ones; ``target_uri`` is the transaction
        the tasks write through; ``finalize`` commits the new version.

    Raises
    ------
    ConfigMismatchError
        No finished store at ``uri``, another config, or an id already stored.
    """
    shown = redact_uri(uri)
    if split_version(uri)[1] is not None:
        raise StoreError(f"cannot update {shown}: a pinned version is read-only; update the store without @VERSION")
    existing = _existing_metadata(uri, storage_options, shown)
    if existing is None or not existing.complete:
        raise ConfigMismatchError(f"cannot update {shown}: there is no finished store there; build it first "
                                  "(without --update), or rerun that build to finish it")
    check_same_config(existing, config, shown)
    config_hash = config.config_hash()
    cps = existing.layout.clips_per_shard
    n_old = existing.layout.n_clips
    n_pad = -n_old % cps
    n_new = len(clips["clip_id"])
    if n_new == 0:
        raise StoreError(f"no new clips to add to {shown}")
    n_total = n_old + n_pad + n_new
    # The static columns after the update: the stored ones, the padding, the new clips.
    old_group = _open_group(uri, storage_options, "r")
    stored = {name: old_group[name][:] for name in schema.STATIC_COLUMNS}
    clash = set(map(str, clips["clip_id"])) & set(map(str, stored["clip_id"]))
    if clash:
        raise ConfigMismatchError(f"cannot add clips {sorted(clash)[:5]} to {shown}: they are stored already")
    columns = {name: [*stored[name].tolist(), *[_PADDING[name]] * n_pad, *list(clips[name])]
               for name in schema.STATIC_COLUMNS}
    clips_hash = _columns_hash(columns)
    change = f"+{describe_clips(clips['split'])}"
    target = begin_transaction(uri, storage_options, existing, fresh=False, change=change,
                               intent=f"grow|{config_hash}|{clips_hash}|{cps}")
    started = _existing_metadata(target, storage_options, shown)
    if started is not None and started.clips_hash == clips_hash:
        logger.info("resuming the update of %s (%s)", shown, change)
        return open_writer(target, storage_options=storage_options)

    group = _open_group(target, storage_options, "r+")
    layout = Layout(n_total, cps)
    _resize_clip_axis(group, existing, n_total, layout.n_shards)
    for name, kind in schema.STATIC_COLUMNS.items():
        values = columns[name][n_old:]
        group[name][n_old:] = np.array([str(v) for v in values]) if kind == "str" else np.asarray(values, dtype=kind)
    metadata = dataclasses.replace(
        existing, complete=False, fingerprint=None, summary=None, finished=None, clips_hash=clips_hash,
        layout=dataclasses.replace(existing.layout, n_clips=n_total, n_shards=layout.n_shards),
    )
    # Written last, all at once: a half-done setup is recognised (other clips_hash) and redone.
    group.attrs.put(metadata.to_attrs())
    logger.info("%s: adding %d clips (%d padding rows) in shards %d..%d", shown, n_new, n_pad,
                (n_old + n_pad) // cps, layout.n_shards - 1)
    return StoreWriter(group, redact_uri(target), metadata, target_uri=str(target))


def check_same_config(existing: StoreMetadata, config: PipelineConfig, shown: str) -> None:
    """Refuse an update whose config is not the store's, naming what differs and the way out.

    Raises
    ------
    ConfigMismatchError
    """
    if existing.config_hash == config.config_hash():
        return
    differing = _config_diff(existing.config_dict(), config)
    raise ConfigMismatchError(
        f"cannot update {shown} with another config (differing: {', '.join(differing)}): changing a feature's "
        "parameters is not an update, it makes other numbers, and adding a feature or variant to a store is not "
        "implemented yet; build a new store (another --out, or --overwrite: a new version of this one)"
    )


def newest_writer(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None) -> StoreWriter:
    """A writer on the newest version of ``uri``, read-only: an update with nothing to add (its
    ``finalize`` commits nothing)."""
    shown = redact_uri(uri)
    return StoreWriter(_open_group(uri, storage_options, "r"), shown)


def _resize_clip_axis(group: zarr.Group, metadata: StoreMetadata, n_clips: int, n_shards: int) -> None:
    """Every per-clip array to ``n_clips`` rows (new chunks only: zarr keeps the ones inside the old shape)."""
    per_clip = [*metadata.features, schema.VALID_FRAMES, *schema.STATIC_COLUMNS, *schema.OUTCOME_COLUMNS,
                *metadata.aug_arrays()]
    for name in per_clip:
        array = group[name]
        array.resize((n_clips, *array.shape[1:]))
    group[schema.SHARD_DIGEST].resize((n_shards,))
