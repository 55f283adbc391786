"""Writing a store: create (or reopen to resume), write whole shards, finalize.

The protocol the builder follows::

    writer = create_store(uri, config=cfg, clips=columns, ...)   # one process
    for i in writer.pending_shards():                            # any processes,
        open_writer(uri).write_shard(i, results)                 # one task per shard
    writer.finalize()                                            # one process

``create_store`` writes every array's metadata, the root attributes and the
per-clip columns known from the manifest. A shard's task writes every array's
objects of that shard and, last, the shard's content digest: a shard whose
digest is set is finished, so a rerun skips it. ``finalize`` derives the
store's fingerprint from the config and the digests, marks the store
complete and consolidates the metadata, once, as the only writer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import zarr
import zarr.errors
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.core.sync import sync

from stores import schema
from stores.backend_errors import ROOT_FIX
from stores.columns import read_whole
from stores.errors import ConfigMismatchError, StoreDamageError, StoreError
from stores.listing import root_metadata_missing
from stores.metadata import BuildSummary, DatasetInfo, FeatureInfo, RecordedConfig, StoreMetadata
from stores.schema import ORIGINAL, Layout
from stores.shards import shard_encoder
from stores.uri import make_store, quiet_consolidated_warning, redact_uri, remote_errors
from stores.versions import (ReadOnlyVersionError, begin_transaction, commit_transaction, describe_clips,
                             location_repository, split_version, version_of)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ClipResult:
    """What the build produced for one clip, ready to be written.

    status : "ok" or "failed".
    reason : why the clip failed ("" when ok); never an absolute path.
    duration_s : duration of the source file in seconds (NaN if unknown).
    features : variant -> feature name -> float [shape=(bands, frames)]; float16
        values are taken as already rounded by :func:`schema.round_mantissa`
        (with :data:`schema.MANTISSA_BITS`), anything else is rounded here,
        ``frames <= max_frames``; variants not computed are simply absent.
    params : variant -> augmentation parameter -> value actually drawn.
    """

    status: str
    reason: str = ""
    duration_s: float = math.nan
    features: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    params: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)


def columns_hash(columns: Mapping[str, Sequence[Any]]) -> str:
    """SHA-256 of the static per-clip columns: identifies the clip list of a store."""
    h = hashlib.sha256()
    for name in schema.STATIC_COLUMNS:
        h.update(name.encode() + b"\x00")
        h.update("\x1f".join(str(v) for v in columns[name]).encode() + b"\x1e")
    return h.hexdigest()


def shard_digest(features: Mapping[str, np.ndarray], valid_frames: np.ndarray,
                 outcome: Mapping[str, np.ndarray], aug: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of everything one shard stores, exactly as it reads back.

    Parameters
    ----------
    features : name -> float16 [shape=(clips, variants, bands, max_frames)]
    valid_frames : int32 [shape=(clips, variants)]
    outcome : outcome column -> [shape=(clips,)]
    aug : augmentation array name -> float64 [shape=(clips,)], NaN = absent
    """
    h = hashlib.sha256()
    for name in sorted(features):
        h.update(name.encode())
        h.update(np.ascontiguousarray(features[name], dtype=np.float16).tobytes())
    h.update(np.ascontiguousarray(valid_frames, dtype=np.int32).tobytes())
    for name in sorted(outcome):
        values = np.asarray(outcome[name])
        h.update(name.encode())
        if values.dtype.kind in "fc":
            values = values.astype(np.float64)
            h.update(np.isnan(values).tobytes() + np.nan_to_num(values, nan=0.0).tobytes())
        else:
            h.update("\x1f".join(str(v) for v in values).encode())
    for name in sorted(aug):
        values = np.asarray(aug[name], dtype=np.float64)
        h.update(name.encode() + np.isnan(values).tobytes() + np.nan_to_num(values, nan=0.0).tobytes())
    return h.hexdigest()


def store_fingerprint(config_hash: str, clips_hash: str, digests: Sequence[str]) -> str:
    """SHA-256 of the config, the clip list and every shard's digest: a finished store's fingerprint."""
    h = hashlib.sha256()
    h.update(config_hash.encode() + clips_hash.encode())
    for d in digests:
        h.update(d.encode())
    return h.hexdigest()


def _open_group(uri: str | Path, storage_options: Mapping[str, Any] | None, mode: str) -> zarr.Group:
    """The root group of ``uri``: mode "r" its newest version (or one ``@VERSION``), "r+"/"w" a
    transaction's view (``uri`` ends in ``@txn-<id>``, see :mod:`stores.versions`)."""
    store = make_store(uri, storage_options=storage_options, read_only=(mode == "r"))
    with quiet_consolidated_warning(), remote_errors(uri, writing=(mode == "w")):
        if mode == "w":
            return zarr.open_group(store, mode="w", zarr_format=3)
        # Never the consolidated view while writing: it may be stale.
        return zarr.open_group(store, mode=mode, use_consolidated=False)


class StoreWriter:
    """Write access to one store. Cheap to open: build tasks open their own.

    Use :func:`create_store` (the coordinating process) or :func:`open_writer`
    (a build task) rather than the constructor.

    Attributes
    ----------
    metadata : StoreMetadata
        The root attributes (parsed from the group unless given).
    """

    def __init__(self, group: zarr.Group, uri: str, metadata: StoreMetadata | None = None, *,
                 target_uri: str | None = None) -> None:
        self.group = group
        self.uri = uri
        self.metadata = StoreMetadata.from_attrs(dict(group.attrs), uri=uri) if metadata is None else metadata
        self.layout: Layout = self.metadata.shards
        self.variants: tuple[str, ...] = self.metadata.variants
        self.feature_bands: dict[str, int] = dict(self.metadata.features)
        self.max_frames = self.metadata.max_frames
        self.aug_arrays: dict[str, dict[str, str]] = {v: dict(p) for v, p in self.metadata.aug_params.items()}
        self._arrays = _array_handles(uri, self.metadata)
        #: The version this writer's store is (after :meth:`finalize`: the version it committed).
        self.version = version_of(group.store)
        #: What Dask tasks open with :func:`open_writer`: the store with this writer's transaction.
        self.target_uri = uri if target_uri is None else target_uri

    @property
    def attrs(self) -> dict[str, Any]:
        """The root attributes as written (JSON types): ``metadata.to_attrs()``."""
        return self.metadata.to_attrs()

    def _encoder(self, name: str):
        """Our shard encoder of feature array ``name`` (None: not our layout); made once per process and store."""
        key = ("encoder", name)
        if key not in self._arrays:
            self._arrays[key] = shard_encoder(self.array(name))
        return self._arrays[key]

    def array(self, name: str) -> zarr.Array:
        """The store's array ``name``; opened once per process and store (opening reads its metadata)."""
        array = self._arrays.get(name)
        if array is None:
            array = self._arrays[name] = self.group[name]
        return array

    # -- build state -------------------------------------------------------
    def shard_digests(self) -> list[str]:
        """Digest of every shard, "" for shards not written yet."""
        return [str(d) for d in read_whole(self.group[schema.SHARD_DIGEST])]  # one concurrent fetch

    def pending_shards(self) -> list[int]:
        """Shards that a build still has to write."""
        return [i for i, d in enumerate(self.shard_digests()) if not d]

    # -- one shard ---------------------------------------------------------
    def write_shard(self, shard_index: int, results: Sequence[ClipResult]) -> str:
        """Write every array's objects of one shard, then mark it done.

        Parameters
        ----------
        shard_index : int
        results : one :class:`ClipResult` per clip of the shard, in clip order.

        Returns
        -------
        str
            The shard's content digest (also stored in ``shard_digest``).
        """
        start, stop = self.layout.shard_range(shard_index)
        n = stop - start
        if len(results) != n:
            raise StoreError(
                f"shard {shard_index} of {self.uri} holds clips {start}..{stop - 1} ({n} clips) "
                f"but {len(results)} results were given"
            )
        n_var = len(self.variants)
        var_index = {v: j for j, v in enumerate(self.variants)}
        blocks = {name: np.zeros((n, n_var, bands, self.max_frames), np.float16)
                  for name, bands in self.feature_bands.items()}
        valid = np.zeros((n, n_var), np.int32)
        outcome = {
            "duration_s": np.full(n, np.nan),
            "status": np.empty(n, dtype=object),
            "reason": np.empty(n, dtype=object),
        }
        aug = {array: np.full(n, np.nan) for params in self.aug_arrays.values() for array in params.values()}
        bits = self.metadata.layout.mantissa_bits
        for c, result in enumerate(results):
            clip = start + c
            if result.status not in (schema.STATUS_OK, schema.STATUS_FAILED):
                raise StoreError(f"clip {clip}: status {result.status!r} must be 'ok' or 'failed'")
            outcome["duration_s"][c] = result.duration_s
            outcome["status"][c] = result.status
            outcome["reason"][c] = result.reason
            if result.status != schema.STATUS_OK:
                continue
            if ORIGINAL not in result.features:
                raise StoreError(f"clip {clip} is 'ok' but has no {ORIGINAL!r} features")
            for variant, feats in result.features.items():
                if variant not in var_index:
                    raise StoreError(
                        f"clip {clip}: variant {variant!r} is not in the store's variants {list(self.variants)}"
                    )
                j = var_index[variant]
                missing = set(self.feature_bands) - set(feats)
                if missing:
                    raise StoreError(f"clip {clip} variant {variant!r} lacks features {sorted(missing)}")
                frames = None
                for name, bands in self.feature_bands.items():
                    x = np.asarray(feats[name])
                    if x.ndim != 2 or x.shape[0] != bands or x.shape[1] > self.max_frames:
                        raise StoreError(
                            f"clip {clip} variant {variant!r} feature {name!r} has shape {x.shape}; "
                            f"the store expects ({bands}, frames <= {self.max_frames})"
                        )
                    if frames is not None and x.shape[1] != frames:
                        raise StoreError(
                            f"clip {clip} variant {variant!r}: features differ in frame count "
                            f"({name!r} has {x.shape[1]}, others {frames}); they must share one STFT hop"
                        )
                    frames = x.shape[1]
                    # float16 features were rounded by the caller (schema.round_mantissa); float32 are rounded here.
                    blocks[name][c, j, :, :frames] = x if x.dtype == np.float16 and bits == schema.MANTISSA_BITS \
                        else schema.round_mantissa(x, bits)
                valid[c, j] = frames
                for param, value in result.params.get(variant, {}).items():
                    array = self.aug_arrays.get(variant, {}).get(param)
                    if array is None:
                        raise StoreError(
                            f"clip {clip} variant {variant!r}: parameter {param!r} has no array in the store "
                            f"(known: {sorted(self.aug_arrays.get(variant, {}))})"
                        )
                    aug[array][c] = float(value)
        outcome["status"] = outcome["status"].astype(str)
        outcome["reason"] = outcome["reason"].astype(str)

        digest = shard_digest(blocks, valid, outcome, aug)
        columns = {schema.VALID_FRAMES: valid, **outcome, **aug}
        self._write_objects(shard_index, start, stop, blocks, columns)
        # Written last: a shard is only "done" once all of its data is.
        self.array(schema.SHARD_DIGEST)[shard_index] = digest
        return digest

    def _write_objects(self, shard_index: int, start: int, stop: int, blocks: Mapping[str, np.ndarray],
                       columns: Mapping[str, np.ndarray], first_variant: int = 0) -> None:
        """Every object of the shard, written concurrently in one round trip: feature
        shards by our own encoder (:class:`stores.shards.ShardEncoder`) where the layout
        is ours (else by zarr-python), the per-clip columns by zarr-python.

        With ``first_variant`` (an update appending variants) only the feature
        objects holding variants from there on are written: ``blocks`` are
        whole shards, the stored variants' objects stay as they are.
        """
        writes = []
        for name, block in blocks.items():
            array = self.array(name)
            encoder = self._encoder(name)
            if encoder is None:
                columns_from = (slice(start, stop), slice(first_variant, None))
                writes.append(array._async_array.setitem(columns_from, block[:, first_variant:]))
            else:
                writes.append(encoder.write(shard_index, block,
                                            encoder.parts(range(first_variant, block.shape[1]))))
        for name, values in columns.items():
            writes.append(self.array(name)._async_array.setitem(slice(start, stop), values))

        async def write_all() -> None:
            await asyncio.gather(*writes)

        with remote_errors(self.uri, writing=True):
            sync(write_all())

    # -- the end -------------------------------------------------------------
    def finalize(self) -> str:
        """Mark the store complete and consolidate its metadata; return its fingerprint.

        Raises
        ------
        StoreError
            Some shards are not written yet.
        """
        digests = self.shard_digests()
        pending = [i for i, d in enumerate(digests) if not d]
        if pending:
            raise StoreError(
                f"cannot finalize {self.uri}: {len(pending)} shard(s) not built yet "
                f"(first: {pending[:5]}); rerun the build to finish them"
            )
        fingerprint = store_fingerprint(self.metadata.config_hash, self.metadata.clips_hash, digests)
        if self.metadata.complete and self.metadata.fingerprint == fingerprint:
            # a rerun of a finished build (or an update with nothing to add): nothing changed, no new version
            self.version = version_of(self.group.store)
            return fingerprint
        status = read_whole(self.group["status"])
        summary = BuildSummary(n_ok=int(np.sum(status == schema.STATUS_OK)),
                               n_failed=int(np.sum(status == schema.STATUS_FAILED)))
        # Existing attributes keep their places; summary and finished come last.
        metadata = self.metadata.finished_with(fingerprint, summary)
        self.group.attrs.update(metadata.to_attrs())
        with quiet_consolidated_warning():
            zarr.consolidate_metadata(self.group.store)
        self.metadata = metadata
        self.version = commit_transaction(self.group.store, self.target_uri, fingerprint=fingerprint,
                                          change=f"build: {describe_clips(self.group['split'][:])}").id
        logger.info("finalized %s (fingerprint %s, version %s)", self.uri, fingerprint[:12], self.version)
        return fingerprint


#: Array handles (and their shard encoders) of recently written stores, per process:
#: (uri, identity of the store) -> name -> array, ("encoder", name) -> ShardEncoder or None.
_ARRAY_HANDLES: "dict[tuple, dict[Any, Any]]" = {}
_ARRAY_HANDLES_KEPT = 8


def _array_handles(uri: str, metadata: StoreMetadata) -> dict[Any, Any]:
    """The per-process cache of ``uri``'s opened arrays (a build task writes one shard, and
    opening its ~20 arrays costs more than writing their small per-clip objects).

    Keyed by what identifies one store's arrays: a store re-created at the same
    URI with another config, clip list or layout gets fresh handles.
    """
    key = (uri, metadata.config_hash, metadata.clips_hash, json.dumps(metadata.layout.to_attrs(), sort_keys=True),
           metadata.provenance.created)
    handles = _ARRAY_HANDLES.pop(key, None) or {}
    _ARRAY_HANDLES[key] = handles  # most recent last
    while len(_ARRAY_HANDLES) > _ARRAY_HANDLES_KEPT:
        _ARRAY_HANDLES.pop(next(iter(_ARRAY_HANDLES)))
    return handles


def open_writer(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None) -> StoreWriter:
    """Open an existing store for writing shards (what a build task does)."""
    shown = redact_uri(uri)
    try:
        group = _open_group(uri, storage_options, "r+")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError) as exc:
        raise StoreError(f"no store to write at {shown}; create it with create_store first") from exc
    # not a feature store, a newer schema or damaged attributes: StoreError subclasses naming the fix
    return StoreWriter(group, shown, StoreMetadata.from_attrs(dict(group.attrs), uri=shown), target_uri=str(uri))


def create_store(
    uri: str | Path,
    *,
    config: RecordedConfig | Any,
    clips: Mapping[str, Sequence[Any]],
    labels: Sequence[str],
    aug_params: Mapping[str, Sequence[str]],
    dataset: Mapping[str, Any],
    augmented_splits: Sequence[str] = ("train",),
    clips_per_shard: int | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> StoreWriter:
    """Create a store, or reopen one built with the same inputs to resume it.

    Parameters
    ----------
    uri : str or Path
        Where the store lives (see :mod:`stores.uri`); never a zip or HTTP URL.
    config : RecordedConfig
        Everything that determines the numbers, as the store records it
        (written in full, with its hash, the features' band counts, units and
        descriptions); any object with a ``recorded()`` method giving one
        (a :class:`pipeline.config.PipelineConfig`) is taken too.
    clips : mapping
        The static per-clip columns of :data:`stores.schema.STATIC_COLUMNS`,
        each a sequence of length ``n_clips`` (``source`` relative to the
        dataset root).
    labels : sequence of str
        Label names; ``label_index`` indexes them.
    aug_params : mapping
        Variant -> names of its drawn parameters (one float array each).
    dataset : mapping
        ``name``, ``split_scheme``, ``n_folds``, ``source`` (citation) of the
        dataset; stored as provenance. Never absolute paths.
    augmented_splits : sequence of str
        Splits whose clips get augmented variants ("all" for every clip).
    clips_per_shard : int, optional
        Default: the existing store's (resume), else
        :func:`stores.schema.auto_clips_per_shard` of the clip count.
    overwrite : bool
        Replace a store built from other inputs instead of refusing.
    storage_options : mapping, optional
        fsspec options of remote URIs (never written to the store).

    Raises
    ------
    ConfigMismatchError
        A store exists at ``uri`` built with another config, clip list or
        layout, and ``overwrite`` is False.
    """
    shown = redact_uri(uri)
    config = recorded_config(config)
    for name in schema.STATIC_COLUMNS:
        if name not in clips:
            raise StoreError(f"column {name!r} missing; create_store needs {list(schema.STATIC_COLUMNS)}")
    location, ref = split_version(uri)
    if ref is not None:
        raise ReadOnlyVersionError(f"cannot build into {shown}: a store URI with @{ref} is one version, read-only; "
                                   f"build into {redact_uri(location)} (its newest version)")
    try:
        versioned = location_repository(uri, storage_options, writable=False).head() is not None
    except FileNotFoundError:  # nothing there yet (a zip file that does not exist)
        versioned = False
    existing = None if overwrite else _existing_metadata(uri, storage_options, shown)
    if clips_per_shard is None:
        # Resuming keeps the store's layout; a new store sizes its shards to the collection.
        clips_per_shard = existing.layout.clips_per_shard if existing is not None \
            else schema.auto_clips_per_shard(len(clips["clip_id"]))
    layout = Layout(len(clips["clip_id"]), clips_per_shard)
    for name in schema.STATIC_COLUMNS:
        if len(clips[name]) != layout.n_clips:
            raise StoreError(f"column {name!r} has {len(clips[name])} values, clip_id has {layout.n_clips}")
    for source in clips["source"]:
        if Path(str(source)).is_absolute():
            raise StoreError(
                f"source {source!r} is an absolute path; stores hold paths relative to the dataset root"
            )
    clips_hash = columns_hash(clips)

    if existing is not None:
        problems = _differences(existing, config, clips_hash, layout)
        if problems:
            raise ConfigMismatchError(
                f"refusing to write into the existing store {shown}: " + "; ".join(problems)
                + ". Pass --overwrite (overwrite=True) to replace it"
                + (" (a new version; the old ones stay readable as STORE@VERSION)" if versioned else "")
                + ", or choose another --out"
            )
        # repair instead of rebuild: damaged shards become "not built" for the resume logic
        from stores.integrity import find_damage  # they read through stores.reader, which imports this module
        from stores.reader import open_store
        from stores.repair import mark_damage
        if versioned:
            # Its newest version is this store already: nothing to write, unless something is damaged;
            # then the repair is one new version (readers of the damaged one are not disturbed).
            if not find_damage(open_store(uri, storage_options=storage_options, allow_incomplete=True), engine="auto"):
                logger.info("%s is built with these inputs already (version unchanged)", shown)
                return StoreWriter(_open_group(uri, storage_options, "r"), shown)
            target = begin_transaction(uri, storage_options, existing, fresh=False, change="repair of damaged objects",
                                       intent=f"repair|{config.config_hash}|{clips_hash}|{existing.fingerprint}")
            logger.info("repairing %s as a new version", shown)
            writer = open_writer(target, storage_options=storage_options)
            mark_damage(writer, target, clips=clips, storage_options=storage_options)
            return writer
        logger.info("resuming the existing store %s", shown)
        writer = open_writer(uri, storage_options=storage_options)
        mark_damage(writer, str(uri), clips=clips, storage_options=storage_options)
        return writer

    metadata = StoreMetadata.for_new_store(
        config=config, clips_hash=clips_hash, labels=labels, layout=layout, augmented_splits=augmented_splits,
        aug_params=_aug_array_names(aug_params, config.variants), dataset=DatasetInfo.of_mapping(dataset),
    )
    target = uri
    if versioned:
        # Replacing a versioned store is one more version: the new objects go into a transaction.
        target = begin_transaction(uri, storage_options, None, fresh=True, change=f"rebuild: {describe_clips(clips['split'])}",
                                   intent=f"build|{config.config_hash}|{clips_hash}|{clips_per_shard}")
        resumable = _existing_metadata(target, storage_options, shown)
        if resumable is not None and not _differences(resumable, config, clips_hash, layout):
            logger.info("resuming the interrupted rebuild of %s", shown)
            return open_writer(target, storage_options=storage_options)
    group = _open_group(target, storage_options, "w")
    _create_arrays(group, metadata, config.features, clips)
    group.attrs.update(metadata.to_attrs())
    logger.info("created %s: %d clips, %d shards of %d, variants %s", shown, layout.n_clips, layout.n_shards,
                layout.clips_per_shard, metadata.variants)
    return StoreWriter(group, redact_uri(target), metadata, target_uri=str(target))


def _aug_array_names(aug_params: Mapping[str, Sequence[str]], variants: Sequence[str]) -> dict[str, dict[str, str]]:
    """Variant -> drawn parameter -> the array that holds it."""
    arrays: dict[str, dict[str, str]] = {}
    for variant, params in aug_params.items():
        if variant not in variants:
            raise StoreError(f"augmentation parameters given for {variant!r}, not a variant of {list(variants)}")
        arrays[variant] = {param: schema.aug_array_name(variant, param) for param in params}
    return arrays


def create_feature_array(group: zarr.Group, name: str, info: FeatureInfo, metadata: StoreMetadata) -> None:
    """The empty feature array ``name`` of the store ``metadata`` describes: float16
    ``(clip, variant, band, frame)``, one object per shard of clips (``schema.py``)."""
    layout, bands, max_frames = metadata.shards, info.bands, metadata.max_frames
    n, nv, cps = layout.n_clips, len(metadata.variants), layout.clips_per_shard
    compressor = BloscCodec(cname=schema.BLOSC_CNAME, clevel=schema.BLOSC_CLEVEL, shuffle=schema.BLOSC_SHUFFLE)
    # Every chunk ends with its CRC32C (Zarr's crc32c codec), so every reader checks every byte it
    # decodes (schema.py, "Read checks").
    crc = [Crc32cCodec()] if schema.CHUNK_CHECKSUMS else []
    group.create_array(
        name, shape=(n, nv, bands, max_frames), chunks=(1, 1, bands, max_frames),
        shards=(cps, nv, bands, max_frames), dtype=schema.FEATURE_DTYPE, compressors=[compressor, *crc],
        fill_value=0.0, dimension_names=("clip", "variant", schema.feature_dim(name), "frame"),
        attributes={"units": info.units, "description": info.description or name},
    )


def _create_arrays(group: zarr.Group, metadata: StoreMetadata, features: Mapping[str, FeatureInfo],
                   clips: Mapping[str, Sequence[Any]]) -> None:
    """Every array of a new store, described by ``metadata`` (feature arrays' units and descriptions by
    ``features``); the static per-clip columns filled from ``clips``."""
    layout = metadata.shards
    variants, max_frames = metadata.variants, metadata.max_frames
    n, nv, cps = layout.n_clips, len(variants), layout.clips_per_shard
    # the per-clip arrays: zarr's default Zstd, then the CRC32C of each chunk
    crc = [Crc32cCodec()] if schema.CHUNK_CHECKSUMS else []
    columns = {"compressors": [ZstdCodec(level=0, checksum=False), *crc]}

    for name in metadata.features:
        create_feature_array(group, name, features[name], metadata)
    group.create_array(schema.VALID_FRAMES, shape=(n, nv), chunks=(cps, nv), dtype="int32", fill_value=0,
                       dimension_names=("clip", "variant"), **columns)
    variant_array = group.create_array(schema.VARIANT, shape=(nv,), chunks=(nv,), dtype=str, fill_value="",
                                       dimension_names=("variant",), **columns)
    variant_array[:] = np.array(variants)
    for name, kind in schema.STATIC_COLUMNS.items():
        arr = group.create_array(name, shape=(n,), chunks=(n,), dtype=str if kind == "str" else kind,
                                 fill_value="" if kind == "str" else 0, dimension_names=("clip",), **columns)
        values = np.array([str(v) for v in clips[name]]) if kind == "str" else np.asarray(clips[name], dtype=kind)
        arr[:] = values
    for name, kind in schema.OUTCOME_COLUMNS.items():
        fill: Any = {"float64": np.nan, "str": ""}[kind]
        if name == "status":
            fill = schema.STATUS_PENDING
        group.create_array(name, shape=(n,), chunks=(cps,), dtype=str if kind == "str" else kind,
                           fill_value=fill, dimension_names=("clip",), **columns)
    for variant, params in metadata.aug_params.items():
        for param, array in params.items():
            group.create_array(array, shape=(n,), chunks=(cps,), dtype="float64", fill_value=np.nan,
                               dimension_names=("clip",), attributes={"variant": variant, "parameter": param},
                               **columns)
    group.create_array(schema.SHARD_DIGEST, shape=(layout.n_shards,), chunks=(1,), dtype=str, fill_value="",
                       dimension_names=("shard",), **columns)


def _differences(existing: StoreMetadata, config: RecordedConfig, clips_hash: str, layout: Layout) -> list[str]:
    """Why an existing store cannot be resumed with these inputs (empty: it can)."""
    problems = []
    if existing.schema_version != schema.SCHEMA_VERSION:
        problems.append(f"schema version {existing.schema_version} != {schema.SCHEMA_VERSION}")
    config_hash = config.config_hash
    if existing.config_hash != config_hash:
        problems.append(f"config hash {existing.config_hash[:12]} != {config_hash[:12]} "
                        f"(differing sections: {_config_diff(existing.config_dict(), config)})")
    if existing.clips_hash != clips_hash:
        problems.append(f"clip list differs ({existing.layout.n_clips} clips stored, {layout.n_clips} now)")
    if existing.layout.clips_per_shard != layout.clips_per_shard:
        problems.append(f"clips_per_shard {existing.layout.clips_per_shard} != {layout.clips_per_shard}")
    return problems


def recorded_config(config: RecordedConfig | Any) -> RecordedConfig:
    """``config`` as the store records it: itself, or its ``recorded()`` (a ``PipelineConfig``'s)."""
    if isinstance(config, RecordedConfig):
        return config
    recorded = getattr(config, "recorded", None)
    if not callable(recorded):
        raise StoreError(f"config {type(config).__name__} is not a RecordedConfig and has no recorded() method")
    return recorded()


def _existing_metadata(uri: str | Path, storage_options: Mapping[str, Any] | None,
                       shown: str) -> StoreMetadata | None:
    """The metadata of the store at ``uri``, or None when nothing is there.

    Raises
    ------
    ConfigMismatchError
        Something is there that is not a feature store this code can resume
        (another Zarr group, a newer schema, damaged root attributes).
    """
    try:
        group = _open_group(uri, storage_options, "r")
    except StoreDamageError as exc:  # the root zarr.json is not JSON: what made the shards is unknown
        raise ConfigMismatchError(f"refusing to write into the existing store {shown}: {exc.problem}; "
                                  f"{ROOT_FIX}") from exc
    except (FileNotFoundError, zarr.errors.NodeNotFoundError) as exc:
        try:
            lost = root_metadata_missing(make_store(uri, storage_options=storage_options), shown)
        except StoreError:  # nothing to list there (a zip that does not exist): nothing to keep
            return None
        if isinstance(lost, StoreDamageError):  # arrays without a root: never wiped without --overwrite
            raise ConfigMismatchError(f"refusing to write into the existing store {shown}: {lost}") from exc
        return None
    try:
        return StoreMetadata.from_attrs(dict(group.attrs), uri=shown)
    except StoreError as exc:
        raise ConfigMismatchError(
            f"refusing to write into the existing store {shown}: {exc}. "
            "Pass --overwrite (overwrite=True) to replace it, or choose another --out"
        ) from exc


def _config_diff(stored: Mapping[str, Any], config: RecordedConfig) -> list[str]:
    """Dotted names of config fields that differ between a stored dict and ``config``."""
    now = config.config
    diff = []
    for section in sorted(set(stored) | set(now)):
        a, b = stored.get(section, {}) or {}, now.get(section, {}) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                diff.append(f"{section}.{key}")
    return diff or ["(none found; the hash algorithm or a default changed)"]
