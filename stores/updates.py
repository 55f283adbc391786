"""Updating a store in place, as a new version: more clips (grow), more augmentation variants or
more features (extend).

A grown store keeps every object of its clips as it was: the new clips go
into new shards. When the last shard of the store is not full, the clip axis
first gets *padding rows* up to the next shard boundary (``clip_id`` empty,
status "pending", no frames), so the new clips start a shard of their own and
the old last shard's objects stay byte for byte. Readers never select padding
rows (they are not "ok"); :func:`padding_rows` counts them for ``verify``.

An extension by variants grows the variant axis by whole shards (the new
variants' chunks go into new objects beside the stored ones); an extension
by features creates the new feature arrays only. Either way every stored
object keeps its bytes; only the per-shard digests are written anew.

Everything is written through a transaction (:mod:`stores.versions`): a
reader of the version before keeps reading it, a killed update leaves that
version newest, and running the same update again resumes its shards.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import zarr

from stores.errors import ConfigMismatchError, StoreError
from stores import schema
from stores.metadata import RecordedConfig, StoreMetadata
from stores.schema import Layout
from stores.uri import redact_uri
from stores.versions import begin_transaction, describe_clips, split_version
from stores.writer import (StoreWriter, columns_hash, create_feature_array, _config_diff, _existing_metadata,
                           _open_group, open_writer, recorded_config, shard_digest)

logger = logging.getLogger(__name__)

#: ``clip_id`` of a padding row (a real clip always has an id).
PADDING_CLIP_ID = schema.PADDING_CLIP_ID
#: Values of the static columns in a padding row.
_PADDING = {"clip_id": PADDING_CLIP_ID, "label": "", "label_index": 0, "split": "", "fold": -1, "group": "",
            "source": ""}


def padding_rows(clip_ids: Sequence[str]) -> np.ndarray:
    """bool [shape=(n_clips,)]: rows of the clip axis that are padding, not clips."""
    return np.fromiter((str(c) == PADDING_CLIP_ID for c in clip_ids), dtype=bool, count=len(clip_ids))


def open_existing(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None) -> Any:
    """The newest version of the store at ``uri`` (finished or not), a :class:`stores.reader.FeatureStore`;
    None when there is no store.

    Raises
    ------
    ConfigMismatchError
        Something is there that is not a feature store an update can start from.
    """
    from stores.reader import open_store

    if _existing_metadata(uri, storage_options, redact_uri(uri)) is None:
        return None
    return open_store(uri, storage_options=storage_options, allow_incomplete=True)


def _finished_store(uri: str | Path, storage_options: Mapping[str, Any] | None, shown: str) -> StoreMetadata:
    """The metadata of the finished store an update starts from.

    Raises
    ------
    StoreError
        ``uri`` pins a version (read-only).
    ConfigMismatchError
        No finished store at ``uri``.
    """
    if split_version(uri)[1] is not None:
        raise StoreError(f"cannot update {shown}: a pinned version is read-only; update the store without @VERSION")
    existing = _existing_metadata(uri, storage_options, shown)
    if existing is None or not existing.complete:
        raise ConfigMismatchError(f"cannot update {shown}: there is no finished store there; build it first "
                                  "(without --update), or rerun that build to finish it")
    return existing


def _unfinished(existing: StoreMetadata, **changes: Any) -> StoreMetadata:
    """The metadata of an update of ``existing`` under way: not complete, no fingerprint, summary or
    finish time yet, and ``changes``."""
    return dataclasses.replace(existing, complete=False, fingerprint=None, summary=None, finished=None, **changes)


def _begin_update(uri: str | Path, storage_options: Mapping[str, Any] | None, existing: StoreMetadata, shown: str, *,
                  change: str, intent: str, started: Callable[[StoreMetadata], bool]) -> tuple[str, StoreWriter | None]:
    """The transaction of an update (:func:`stores.versions.begin_transaction`) and, when a killed
    run of the same update had finished setting it up (``started`` of its metadata), the writer
    that resumes it; else None and the caller sets the transaction up (its attributes last)."""
    target = begin_transaction(uri, storage_options, existing, fresh=False, change=change, intent=intent)
    before = _existing_metadata(target, storage_options, shown)
    if before is not None and started(before):
        logger.info("resuming the update of %s (%s)", shown, change)
        return target, open_writer(target, storage_options=storage_options)
    return target, None


def grow_store(uri: str | Path, *, config: RecordedConfig | Any, clips: Mapping[str, Sequence[Any]],
               storage_options: Mapping[str, Any] | None = None) -> StoreWriter:
    """Start (or resume) the update that appends ``clips`` to the store at ``uri``.

    Parameters
    ----------
    uri : the store (its newest version is the base; never ``@VERSION``).
    config : must be the store's own config (features and variants unchanged).
    clips : the static per-clip columns (:data:`stores.schema.STATIC_COLUMNS`) of the
        new clips only, in the order they are to be stored; their split and
        fold already decided (:mod:`pipeline.build.update` keeps the store's).

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
    existing = _finished_store(uri, storage_options, shown)
    config = recorded_config(config)
    check_same_config(existing, config, shown)
    config_hash = config.config_hash
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
    clips_hash = columns_hash(columns)
    target, resumed = _begin_update(uri, storage_options, existing, shown, change=f"+{describe_clips(clips['split'])}",
                                    intent=f"grow|{config_hash}|{clips_hash}|{cps}",
                                    started=lambda meta: meta.clips_hash == clips_hash)
    if resumed is not None:
        return resumed
    group = _open_group(target, storage_options, "r+")
    layout = Layout(n_total, cps)
    _resize_clip_axis(group, existing, n_total, layout.n_shards)
    for name, kind in schema.STATIC_COLUMNS.items():
        values = columns[name][n_old:]
        group[name][n_old:] = np.array([str(v) for v in values]) if kind == "str" else np.asarray(values, dtype=kind)
    metadata = _unfinished(existing, clips_hash=clips_hash,
                           layout=dataclasses.replace(existing.layout, n_clips=n_total, n_shards=layout.n_shards))
    # Written last, all at once: a half-done setup is recognised (other clips_hash) and redone.
    group.attrs.put(metadata.to_attrs())
    logger.info("%s: adding %d clips (%d padding rows) in shards %d..%d", shown, n_new, n_pad,
                (n_old + n_pad) // cps, layout.n_shards - 1)
    return StoreWriter(group, redact_uri(target), metadata, target_uri=str(target))


def check_same_config(existing: StoreMetadata, config: RecordedConfig | Any, shown: str) -> None:
    """Refuse an update whose config is not the store's, naming what differs and the way out.

    Raises
    ------
    ConfigMismatchError
    """
    config = recorded_config(config)
    if existing.config_hash == config.config_hash:
        return
    differing = _config_diff(existing.config_dict(), config)
    raise ConfigMismatchError(
        f"cannot update {shown} with another config (differing: {', '.join(differing)}): changing a feature's "
        "parameters is not an update, it makes other numbers. An update may append augmentation variants "
        "(augment.variants) or optional features (features.extra), each in an update of its own, not together with "
        "new clips: add new clips with the store's own config first, then extend. Otherwise build a new store "
        "(another --out, or --overwrite: a new version of this one)"
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


def appended_variants(existing: StoreMetadata, config: RecordedConfig | Any) -> tuple[str, ...]:
    """The augmentation variants ``config`` adds to the store's, when that is all it changes; else ().

    Only appending is an extension: the stored variants keep their positions
    on the variant axis, and every other setting (parameter ranges included)
    must be the store's own.
    """
    config = recorded_config(config)
    old, new = tuple(existing.variants), tuple(config.variants)
    if len(new) <= len(old) or new[:len(old)] != old:
        return ()
    return new[len(old):] if _same_config_but(existing, config, ("augment.variants",)) else ()


def extend_store(uri: str | Path, *, config: RecordedConfig | Any, aug_params: Mapping[str, Sequence[str]],
                 n_augmented: int, storage_options: Mapping[str, Any] | None = None) -> StoreWriter:
    """Start (or resume) the update that adds ``config``'s new augmentation variants to the store at ``uri``.

    The variant axis grows by whole shards: the stored variants keep their
    shard objects byte for byte and the new variants of a shard's clips go
    into a new object beside them. Every shard is pending afterwards; a task
    writes only its new variants (:func:`write_extension`) and the shard's
    digest over everything it now holds. ``n_augmented``: the clips the
    new variants are computed for (the log says it).

    Raises
    ------
    ConfigMismatchError
        ``config`` changes anything but appending variants.
    """
    shown = redact_uri(uri)
    existing = _finished_store(uri, storage_options, shown)
    config = recorded_config(config)
    added = appended_variants(existing, config)
    if not added:
        check_same_config(existing, config, shown)
        raise ConfigMismatchError(f"{shown}: the config adds no variant to the store's {list(existing.variants)}")
    variants = tuple(config.variants)
    aug_arrays = {**{v: dict(p) for v, p in existing.aug_params.items()},
                  **{v: {param: schema.aug_array_name(v, param) for param in aug_params.get(v, ())} for v in added}}
    metadata = _unfinished(existing, config=dict(config.config), config_hash=config.config_hash, variants=variants,
                           aug_params=aug_arrays)
    target, resumed = _begin_update(uri, storage_options, existing, shown,
                                    change=f"+variant {', '.join(added)} for {n_augmented:,} clips",
                                    intent=f"extend|{config.config_hash}|{existing.clips_hash}",
                                    started=lambda meta: meta.config_hash == metadata.config_hash)
    if resumed is not None:
        return resumed
    group = _open_group(target, storage_options, "r+")
    n, nv = existing.layout.n_clips, len(variants)
    for name in existing.features:
        array = group[name]
        array.resize((n, nv, *array.shape[2:]))
    group[schema.VALID_FRAMES].resize((n, nv))
    names = group[schema.VARIANT]
    names.resize((nv,))
    names[len(existing.variants):] = np.array(added)
    cps = existing.layout.clips_per_shard
    for variant in added:
        for param, array in aug_arrays[variant].items():
            group.create_array(array, shape=(n,), chunks=(cps,), dtype="float64", fill_value=np.nan,
                               dimension_names=("clip",), attributes={"variant": variant, "parameter": param})
    group[schema.SHARD_DIGEST][:] = ""  # every shard gets its new variants (or none) and a new digest
    group.attrs.put(metadata.to_attrs())  # last: a half-done setup is recognised (old config hash) and redone
    logger.info("%s: adding variant(s) %s to %d shards", shown, ", ".join(added), existing.layout.n_shards)
    return StoreWriter(group, redact_uri(target), metadata, target_uri=str(target))


def write_extension(writer: StoreWriter, shard_index: int, results: Sequence[Any], added: Sequence[str]) -> str:
    """Write the new variants of one shard's clips and the shard's digest; return the digest.

    ``results`` are :class:`stores.writer.ClipResult` per clip of the shard
    whose ``features``/``params`` hold only ``added`` variants (none for a clip
    that does not get them); status, reason and duration of the clips stay as
    stored. The stored variants are read back for the digest, never rewritten.
    """
    start, stop = writer.layout.shard_range(shard_index)
    variants = writer.variants
    first = variants.index(added[0])
    blocks = {name: np.asarray(writer.array(name).oindex[start:stop, :first]) for name in writer.feature_bands}
    valid = np.zeros((stop - start, len(variants)), np.int32)
    valid[:, :first] = writer.array(schema.VALID_FRAMES)[start:stop, :first]
    new_blocks = {name: np.zeros((stop - start, len(variants) - first, bands, writer.max_frames), np.float16)
                  for name, bands in writer.feature_bands.items()}
    new_aug = {array: np.full(stop - start, np.nan) for v in added for array in writer.aug_arrays.get(v, {}).values()}
    bits = writer.metadata.layout.mantissa_bits
    for c, result in enumerate(results):
        for variant, feats in result.features.items():
            j = variants.index(variant) - first
            for name in writer.feature_bands:
                x = np.asarray(feats[name])
                new_blocks[name][c, j, :, :x.shape[1]] = x if x.dtype == np.float16 else schema.round_mantissa(x, bits)
                valid[c, first + j] = x.shape[1]
            for param, value in result.params.get(variant, {}).items():
                new_aug[writer.aug_arrays[variant][param]][c] = float(value)
    full = {name: np.concatenate([blocks[name], new_blocks[name]], axis=1) for name in blocks}
    # only the objects holding the new variants are written (by our encoder where the layout is ours)
    writer._write_objects(shard_index, start, stop, full, {schema.VALID_FRAMES: valid, **new_aug}, first_variant=first)
    return _write_digest(writer, shard_index, full, valid)


def appended_features(existing: StoreMetadata, config: RecordedConfig | Any,
                      free_keys: Sequence[str] = ()) -> tuple[str, ...]:
    """The features ``config`` adds after the store's, when that is all it changes; else ().

    The stored features must be the first of ``config``'s, with the same
    bands; every other setting must be the store's own except the dotted
    config keys of ``free_keys`` (the computing layer names them: the list of
    optional features and the parameters only the added features read).
    """
    config = recorded_config(config)
    old, new = list(existing.features), list(config.features)
    if len(new) <= len(old) or new[:len(old)] != old:
        return ()
    if any(config.features[name].bands != existing.features[name] for name in old):
        return ()
    return tuple(new[len(old):]) if _same_config_but(existing, config, free_keys) else ()


def _same_config_but(existing: StoreMetadata, config: RecordedConfig, keys: Sequence[str]) -> bool:
    """Whether ``config`` is the store's own except the dotted config ``keys`` (``"augment.variants"``)."""
    def without(sections: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        out = {section: dict(values or {}) for section, values in sections.items()}
        for key in keys:
            section, _, field = key.partition(".")
            out.get(section, {}).pop(field, None)
        return out

    return without(config.config) == without(existing.config_dict())


def add_features(uri: str | Path, *, config: RecordedConfig | Any, added: Sequence[str],
                 storage_options: Mapping[str, Any] | None = None) -> StoreWriter:
    """Start (or resume) the update that adds the feature arrays ``added`` to the store at ``uri``.

    ``config`` is the store's config with ``added`` appended (checked by the
    caller with :func:`appended_features`). The new arrays get the store's
    layout (every clip, every variant); the stored arrays are not touched.
    Every shard is pending afterwards; a task writes only the new features of
    its clips (:func:`write_added_features`) and the shard's digest.

    Raises
    ------
    ConfigMismatchError
        No finished store at ``uri``, or ``config`` does not only append ``added``.
    """
    shown = redact_uri(uri)
    existing = _finished_store(uri, storage_options, shown)
    config = recorded_config(config)
    stored = list(existing.features)
    if list(config.features) != [*stored, *added]:
        raise ConfigMismatchError(f"cannot add features {list(added)} to {shown}: the config's features "
                                  f"{list(config.features)} are not the store's {stored} followed by them")
    metadata = _unfinished(existing, config=dict(config.config), config_hash=config.config_hash,
                           features={**existing.features, **{n: config.features[n].bands for n in added}})
    target, resumed = _begin_update(uri, storage_options, existing, shown, change=f"+feature {', '.join(added)}",
                                    intent=f"features|{config.config_hash}|{existing.clips_hash}",
                                    started=lambda meta: meta.config_hash == metadata.config_hash)
    if resumed is not None:
        return resumed
    group = _open_group(target, storage_options, "r+")
    for name in added:
        if name in group:  # a half-done setup of this update: created again, empty
            del group[name]
        create_feature_array(group, name, config.features[name], metadata)
    group[schema.SHARD_DIGEST][:] = ""  # every shard gets its new features and a new digest
    group.attrs.put(metadata.to_attrs())  # last: a half-done setup is recognised (old config hash) and redone
    logger.info("%s: adding feature(s) %s to %d shards", shown, ", ".join(added), existing.layout.n_shards)
    return StoreWriter(group, redact_uri(target), metadata, target_uri=str(target))


def write_added_features(writer: StoreWriter, shard_index: int, results: Sequence[Any], added: Sequence[str]) -> str:
    """Write the new features ``added`` of one shard's clips and the shard's digest; return the digest.

    ``results`` are :class:`stores.writer.ClipResult` per clip of the shard
    whose ``features`` hold, for each variant the clip has stored, only the
    ``added`` features (none for a clip that is not ok). Their frame counts
    must be the stored ``valid_frames``: the same signal, the same frames.

    Raises
    ------
    StoreError
        A result's shape or frame count does not match what the store holds.
    """
    start, stop = writer.layout.shard_range(shard_index)
    variants = writer.variants
    valid = np.asarray(writer.array(schema.VALID_FRAMES)[start:stop], dtype=np.int32)
    bits = writer.metadata.layout.mantissa_bits
    blocks = {name: np.zeros((stop - start, len(variants), writer.feature_bands[name], writer.max_frames), np.float16)
              for name in added}
    for c, result in enumerate(results):
        if result.status != schema.STATUS_OK and valid[c].any():
            source = writer.group["source"][start + c]
            raise StoreError(
                f"clip {start + c} ({source}) is stored but could not be computed again for the new feature(s) "
                f"{', '.join(added)}: {result.reason}. The store stays at the version before; restore the file "
                "and rerun the update, or build a new store without the clip"
            )
        for variant, feats in result.features.items():
            j = variants.index(variant)
            for name in added:
                x = np.asarray(feats[name])
                if x.ndim != 2 or x.shape[0] != writer.feature_bands[name] or x.shape[1] != valid[c, j]:
                    raise StoreError(
                        f"clip {start + c} variant {variant!r}: the new feature {name!r} has shape {x.shape}, the "
                        f"store holds {valid[c, j]} frames of it with {writer.feature_bands[name]} bands; the clip's "
                        "signal is not the one stored (its audio file changed?): build a new store"
                    )
                blocks[name][c, j, :, :x.shape[1]] = x if x.dtype == np.float16 else schema.round_mantissa(x, bits)
    writer._write_objects(shard_index, start, stop, blocks, {})
    stored = {name: np.asarray(writer.array(name)[start:stop]) for name in writer.feature_bands if name not in blocks}
    return _write_digest(writer, shard_index, {**stored, **blocks}, valid)


def _write_digest(writer: StoreWriter, shard_index: int, features: Mapping[str, np.ndarray], valid: np.ndarray) -> str:
    """The digest of shard ``shard_index`` over ``features`` (every feature's whole block), ``valid``
    and the stored columns, written to ``shard_digest`` (last: the shard is done) and returned."""
    start, _ = writer.layout.shard_range(shard_index)
    group = writer.group
    # the digest covers the shard's clips, not the padding rows that close a grown store's old last shard
    real = int((~padding_rows(group["clip_id"][start:start + len(valid)])).sum())
    outcome = {name: group[name][start:start + real] for name in schema.OUTCOME_COLUMNS}
    aug = {name: group[name][start:start + real] for name in writer.metadata.aug_arrays()}
    digest = shard_digest({name: block[:real] for name, block in features.items()}, valid[:real], outcome, aug)
    writer.array(schema.SHARD_DIGEST)[shard_index] = digest
    return digest
