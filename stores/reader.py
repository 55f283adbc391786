"""Reading a store: everything a trainer or an analyst needs from its URI alone.

>>> store = open_store("s3://bucket/gtzan.zarr", storage_options={...})  # doctest: +SKIP
>>> train = store.select(split="train")
>>> feats = store.read_clip(train[0], variant="original")  # name -> (bands, frames)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import zarr
import zarr.errors
from zarr.core.sync import sync

from stores import schema
from stores.backend_errors import ROOT_FIX, is_checksum_mismatch
from stores.columns import read_whole
from stores.errors import StoreDamageError, StoreError, StoreIncompleteError, StoreNotFoundError
from stores.integrity import damage_error
from stores.listing import root_metadata_missing
from stores.metadata import StoreMetadata
from stores.schema import ORIGINAL
from stores.shards import ShardDecoder, shard_decoder
from stores.versions import LEGACY_VERSION, split_version, version_of
from stores.uri import (READ_ONLY_SCHEMES, filesystem, is_zip, local_path, make_store, quiet_consolidated_warning,
                        redact_uri, remote_errors, scheme_of)

logger = logging.getLogger(__name__)


def _as_set(value: Any) -> set | None:
    if value is None:
        return None
    if isinstance(value, (str, int, np.integer)):
        return {value}
    return set(value)


class FeatureStore:
    """A finished (or, on request, unfinished) feature store opened for reading.

    Attributes
    ----------
    uri : str
        The store's URI with any credentials removed.
    group : zarr.Group
        The underlying Zarr group, for access beyond this API.
    metadata : StoreMetadata
        The root attributes, parsed and validated (see :mod:`stores.metadata`).
    """

    def __init__(self, group: zarr.Group, uri: str | Path,
                 storage_options: Mapping[str, Any] | None = None, metadata: StoreMetadata | None = None) -> None:
        self.group = group
        self.uri = redact_uri(uri)
        self._raw_uri = str(uri)
        self._storage_options = dict(storage_options or {})
        self.metadata = StoreMetadata.from_attrs(dict(group.attrs), uri=self.uri) if metadata is None else metadata
        self._arrays: dict[str, zarr.Array] = {}
        self._decoders: dict[str, ShardDecoder | None] = {}
        self._verify_chunks = True

    def __repr__(self) -> str:
        return (f"FeatureStore({self.uri!r}, clips={self.n_clips}, variants={list(self.variants)}, "
                f"complete={self.complete})")

    def array(self, name: str) -> zarr.Array:
        """The Zarr array ``name`` (opened once; its metadata is not re-read per access)."""
        arr = self._arrays.get(name)
        if arr is None:
            try:
                arr = self.group[name]
            except KeyError as exc:
                raise StoreError(f"{self.uri} has no array {name!r}") from exc
            self._arrays[name] = arr
        return arr

    def column(self, name: str) -> np.ndarray:
        """The whole array ``name`` (a per-clip column, ``valid_frames``), every chunk checked
        (strings as str, a 1-D column read directly as an object array, see :mod:`stores.columns`).

        Raises
        ------
        StoreDamageError
            A chunk fails its checksum or does not decode: names the first
            such chunk's shard, its clips and the fix.
        """
        array = self.array(name)
        try:
            with remote_errors(self._raw_uri):
                return read_whole(array)
        except Exception as exc:
            if not isinstance(exc, (StoreDamageError, ValueError, RuntimeError)) \
                    or (isinstance(exc, StoreError) and not isinstance(exc, StoreDamageError)):
                raise
            problem = getattr(exc, "problem", str(exc)) if not is_checksum_mismatch(exc.__cause__ or exc) \
                else "a chunk fails its CRC32C checksum (a byte of it changed)"
            step = int(array.chunks[0])
            for first in range(0, array.shape[0], step):
                try:
                    array[first:first + step]
                except Exception:  # noqa: BLE001 - this is the damaged chunk: name it below
                    shard = first // self.clips_per_shard if step <= self.clips_per_shard else -1
                    raise damage_error(self, name, shard, problem) from exc
            raise damage_error(self, name, -1, problem) from exc

    # -- description ---------------------------------------------------------
    @functools.cached_property
    def attrs(self) -> dict[str, Any]:
        """The root attributes as stored (JSON types): ``metadata.to_attrs()``."""
        return self.metadata.to_attrs()

    @property
    def config(self) -> dict[str, dict[str, Any]]:
        """The recorded config, as JSON-able sections (``PipelineConfig.from_dict`` parses it)."""
        return self.metadata.config_dict()

    @property
    def config_hash(self) -> str:
        return self.metadata.config_hash

    @property
    def fingerprint(self) -> str:
        """Identifies config and contents: equal fingerprints, equal data.

        An unfinished store has none yet; its config and clip-list hashes
        stand in, prefixed "incomplete-".
        """
        fp = self.metadata.fingerprint
        return fp if fp else f"incomplete-{self.config_hash[:16]}-{self.metadata.clips_hash[:16]}"

    @property
    def complete(self) -> bool:
        return self.metadata.complete

    @property
    def version(self) -> str:
        """The version this reader reads (and keeps reading while writers commit newer ones);
        ``"legacy"`` for a store built before versions (see :mod:`stores.versions`)."""
        return version_of(self.group.store)

    @property
    def pinned_uri(self) -> str:
        """``STORE@VERSION``: opens exactly this version again (what checkpoints record)."""
        location = split_version(self.uri)[0]
        return str(location) if self.version == LEGACY_VERSION else f"{location}@{self.version}"

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

    # A reader's attributes never change: what the hot paths ask for is derived once.
    @functools.cached_property
    def variants(self) -> tuple[str, ...]:
        """Stored variants, the original first."""
        return self.metadata.variants

    @functools.cached_property
    def feature_bands(self) -> dict[str, int]:
        return dict(self.metadata.features)

    @property
    def window_frames(self) -> int:
        return self.metadata.window.window_frames

    @property
    def window_hop_frames(self) -> int:
        return self.metadata.window.window_hop_frames

    @property
    def max_frames(self) -> int:
        return self.metadata.max_frames

    @property
    def n_clips(self) -> int:
        return self.metadata.layout.n_clips

    @property
    def clips_per_shard(self) -> int:
        return self.metadata.layout.clips_per_shard

    # -- per-clip tables -------------------------------------------------------
    @functools.cached_property
    def static_clips(self) -> pd.DataFrame:
        """One row per clip, the columns of :data:`schema.STATIC_COLUMNS` only (what the collection
        said of each clip: one object per column, where the outcome columns are one per shard;
        an update's plan needs no more)."""
        return self._table(schema.STATIC_COLUMNS)

    def _table(self, columns: Mapping[str, str]) -> pd.DataFrame:
        data = {}
        for name, kind in columns.items():
            values = self.column(name)
            data[name] = values.astype(object).astype(str) if kind == "str" else values
        frame = pd.DataFrame(data)
        frame.index.name = "clip"
        return frame

    @functools.cached_property
    def clips(self) -> pd.DataFrame:
        """One row per clip (row i = clip index i), columns of :data:`schema.CLIP_COLUMNS`."""
        outcome = self._table(schema.OUTCOME_COLUMNS)
        frame = pd.concat([self.static_clips, outcome], axis=1)  # CLIP_COLUMNS' order
        # padding rows (empty clip_id, stores.updates) close the last shard of a store before it grew: never built
        pending = np.flatnonzero((frame["status"].to_numpy() == schema.STATUS_PENDING)
                                 & (frame["clip_id"].to_numpy() != schema.PADDING_CLIP_ID))
        if self.complete and len(pending):  # a finished build left no clip pending: the object is gone
            raise damage_error(self, "status", int(pending[0]) // self.clips_per_shard,
                               f"{len(pending)} clips read as 'pending' in a finished store (an object of the "
                               "per-clip columns is missing)")
        return frame

    @functools.cached_property
    def valid_frames(self) -> np.ndarray:
        """int32 [shape=(n_clips, n_variants)]: frames computed; 0 = variant absent."""
        valid = np.asarray(self.column(schema.VALID_FRAMES), dtype=np.int32)
        lost = np.flatnonzero((valid[:, 0] == 0) & (self.clips["status"].to_numpy() == schema.STATUS_OK))
        if self.complete and len(lost):  # every ok clip has original frames: the object is gone
            raise damage_error(self, schema.VALID_FRAMES, int(lost[0]) // self.clips_per_shard,
                               f"{len(lost)} ok clips read without frames (a valid_frames object is missing)")
        return valid

    @functools.cached_property
    def aug_params(self) -> pd.DataFrame:
        """The augmentation parameters drawn: columns "<variant>.<param>", NaN where absent."""
        columns = {}
        for variant, params in self.metadata.aug_params.items():
            for param, array in params.items():
                columns[f"{variant}.{param}"] = self.column(array)
        frame = pd.DataFrame(columns, index=pd.RangeIndex(self.n_clips, name="clip"))
        return frame

    def select(self, split: str | Iterable[str] | None = None, fold: int | Iterable[int] | None = None,
               label: str | Iterable[str] | None = None, status: str | None = schema.STATUS_OK) -> np.ndarray:
        """Clip indices matching every given filter (each a value or a collection).

        Returns
        -------
        np.ndarray [shape=(n,)], int64, ascending.
        """
        clips = self.clips
        mask = np.ones(len(clips), bool)
        for column, wanted in (("split", split), ("fold", fold), ("label", label), ("status", status)):
            values = _as_set(wanted)
            if values is None:
                continue
            if column == "label":
                unknown = {v for v in values if v not in self.labels}
                if unknown:
                    raise StoreError(f"unknown label(s) {sorted(unknown)} in {self.uri}; labels: {list(self.labels)}")
            mask &= clips[column].isin(values).to_numpy()
        return np.flatnonzero(mask).astype(np.int64)

    # -- features --------------------------------------------------------------
    def _features(self, features: Sequence[str] | None) -> list[str]:
        names = list(self.feature_bands) if features is None else list(features)
        unknown = [n for n in names if n not in self.feature_bands]
        if unknown:
            raise StoreError(f"unknown feature(s) {unknown} in {self.uri}; features: {list(self.feature_bands)}")
        return names

    def read_clip(self, index: int, variant: str = ORIGINAL,
                  features: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """One clip-variant's features, trimmed to its valid frames.

        Returns
        -------
        dict
            feature name -> float32 [shape=(bands, valid_frames)].

        Raises
        ------
        StoreError
            Unknown variant or feature, index out of range, or the variant
            was not computed for this clip (failed clip, or an augmented
            variant of a clip outside the augmented splits).
        """
        if variant not in self.variants:
            raise StoreError(f"unknown variant {variant!r} in {self.uri}; variants: {list(self.variants)}")
        index = int(index)
        if not 0 <= index < self.n_clips:
            raise StoreError(f"clip index {index} out of range 0..{self.n_clips - 1} in {self.uri}")
        names = self._features(features)
        j = self.variants.index(variant)
        frames = int(self.valid_frames[index, j])
        if frames == 0:
            status = self.clips["status"].iat[index]
            why = (f"the clip's status is {status!r}" if status != schema.STATUS_OK else
                   f"augmented variants exist only for splits {list(self.metadata.augmented_splits)}")
            raise StoreError(f"variant {variant!r} of clip {index} was not computed in {self.uri}: {why}")
        result = {}
        for name in names:
            try:
                with remote_errors(self._raw_uri):
                    result[name] = np.asarray(self.array(name)[index, j, :, :frames], dtype=np.float32)
            except StoreDamageError as exc:  # zarr-python's crc32c codec: name the shard, its clips, the fix
                raise damage_error(self, name, index // self.clips_per_shard,
                                   f"the chunk of clip {index}, variant {variant!r} fails its checksum "
                                   "(a byte of it changed)") from exc
        return result

    @functools.cached_property
    def layout(self) -> schema.Layout:
        return self.metadata.shards

    @functools.cached_property
    def shards(self) -> list[tuple[int, int]]:
        """``(start, stop)`` clip-index ranges of the shards, in order."""
        return [self.layout.shard_range(i) for i in range(self.layout.n_shards)]

    def read_shard(self, shard_index: int, features: Sequence[str] | None = None, *,
                   variants: Sequence[int] | None = None, out: Mapping[str, np.ndarray] | None = None,
                   engine: str = "auto") -> dict[str, np.ndarray]:
        """Whole shards, as stored: one object read per feature.

        Parameters
        ----------
        shard_index : int
        features : names to read (default: all).
        variants : variant columns to decode (default: all); the others are
            zero in new arrays and left as they are in ``out``. Evaluation
            reads only the original variant, a fifth of the decoding.
        out : name -> float16 [shape=(clips_in_shard, n_variants, bands, max_frames)], C-contiguous
            Arrays to decode into (a loader reuses its buffers across shards).
        engine : "auto" decodes shards directly (:mod:`stores.shards`, several
            times faster) when the array has the layout this package writes,
            else through zarr-python; "zarr" always uses zarr-python (``verify``
            does, as the reference reader).

        Returns
        -------
        dict
            feature name -> float16 [shape=(clips_in_shard, n_variants, bands, max_frames)];
            frames past ``valid_frames`` and absent variants are 0.
        """
        if engine not in ("auto", "zarr"):
            raise StoreError(f"engine={engine!r} must be 'auto' or 'zarr'")
        shards = self.shards
        if not 0 <= shard_index < len(shards):
            raise StoreError(f"shard index {shard_index} out of range 0..{len(shards) - 1} in {self.uri}")
        start, stop = shards[shard_index]
        columns = None if variants is None else sorted({int(v) for v in variants})
        if columns is not None and not all(0 <= v < len(self.variants) for v in columns):
            raise StoreError(f"variant columns {columns} out of range 0..{len(self.variants) - 1} in {self.uri}")
        names = self._features(features)
        result = {}
        # credentials revoked or the connection dropped mid-training: name the store and the fix
        with remote_errors(self._raw_uri):
            decoders = {name: self._decoder(name) for name in names} if engine == "auto" else {}
            direct = [name for name, decoder in decoders.items() if decoder is not None]
            fetched = {}
            if direct:
                # every feature's objects (those holding the variants asked for) requested at once: on object
                # stores the round trips overlap
                fetched = dict(zip(direct, sync(_gather(*(decoders[name].fetch(shard_index, columns)
                                                          for name in direct)))))
            for name in names:
                target = None if out is None else out.get(name)
                if target is None:
                    shape = (stop - start, len(self.variants), self.feature_bands[name], self.max_frames)
                    target = np.zeros(shape, dtype=schema.FEATURE_DTYPE)
                try:
                    if name in fetched:
                        if any(data is None for data in fetched[name].values()):  # valid_frames read only then
                            decoders[name].check_present(shard_index, fetched[name], self.valid_frames[start:stop])
                        result[name] = decoders[name].decode(shard_index, fetched[name], target, columns)
                    else:
                        selection = slice(None) if columns is None else columns
                        target[:, selection] = self.array(name).oindex[start:stop, selection]
                        result[name] = target
                except StoreDamageError as exc:
                    key = exc.key or (decoders[name].key(shard_index) if decoders.get(name) else "")
                    raise damage_error(self, name, shard_index, exc.problem, key) from exc
                except ValueError as exc:  # zarr-python's crc32c codec
                    if not is_checksum_mismatch(exc):
                        raise
                    raise damage_error(self, name, shard_index, "a chunk fails its CRC32C checksum "
                                                                "(a byte of it changed)") from exc
        return result

    def _decoder(self, name: str) -> ShardDecoder | None:
        if name not in self._decoders:
            decoder = self._decoders[name] = shard_decoder(self.array(name), self.uri)
            if decoder is not None:
                decoder.verify_chunks = self._verify_chunks
        return self._decoders[name]

    def set_chunk_checks(self, enabled: bool) -> None:
        """Check (the default) or skip the per-chunk CRC32C of the fast shard reads.

        Only ``pipeline bench loader`` turns it off, to report what the
        checks cost; the chunk index and chunk sizes are checked either way.
        """
        self._verify_chunks = bool(enabled)
        for decoder in self._decoders.values():
            if decoder is not None:
                decoder.verify_chunks = self._verify_chunks

    # -- size ------------------------------------------------------------------
    @functools.cached_property
    def nbytes_stored(self) -> int:
        """Bytes the store occupies (-1 where the location cannot be listed, e.g. HTTP)."""
        location = split_version(self._raw_uri)[0]  # every version's objects: what the location occupies
        if is_zip(location):
            return local_path(location).stat().st_size
        if scheme_of(location) in READ_ONLY_SCHEMES:
            return -1
        folder = local_path(location)
        if folder is not None:  # os.scandir: ~10x faster than fsspec's du on a store of 25,000 clips
            return _folder_bytes(folder)
        fs, root = filesystem(location, storage_options=self._storage_options)
        # a cached listing (of this folder or one below it) may predate the newest version's objects
        for cached in [p for p in getattr(fs, "dircache", {}) if str(p).startswith(root.rstrip("/"))]:
            fs.invalidate_cache(cached)
        return int(fs.du(root, total=True))


def _folder_bytes(folder: Path) -> int:
    """Bytes of every file below ``folder`` (links not followed)."""
    total, pending = 0, [str(folder)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


async def _gather(*coroutines: Any) -> list[Any]:
    return list(await asyncio.gather(*coroutines))


def open_store(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None,
               allow_incomplete: bool = False) -> FeatureStore:
    """Open the feature store at ``uri`` for reading.

    Parameters
    ----------
    uri : str or Path
        Local path, ``file://``, ``memory://``, ``s3://``, ``gs://`` (fsspec),
        ``http(s)://`` or a ``.zip`` file.
    storage_options : mapping, optional
        fsspec options (endpoint, credentials) of remote URIs.
    allow_incomplete : bool
        Open a store whose build has not finished (for inspection).

    Raises
    ------
    StoreNotFoundError
        Nothing that looks like a feature store is at ``uri``.
    SchemaVersionError
        The store was written by a newer schema version.
    MetadataError
        A root attribute is missing or malformed (see :mod:`stores.metadata`).
    StoreIncompleteError
        The build has not finished and ``allow_incomplete`` is False.
    """
    shown = redact_uri(uri)
    # credentials, endpoint, bucket, HTTP status, a bad zip, metadata that is not JSON: one line each
    with remote_errors(uri):
        store = make_store(uri, storage_options=storage_options, read_only=True)
        try:
            with quiet_consolidated_warning():
                group = zarr.open_group(store, mode="r")
        except (FileNotFoundError, zarr.errors.NodeNotFoundError) as exc:
            if isinstance(exc, StoreError):
                raise
            raise root_metadata_missing(store, shown) from exc
        except (zarr.errors.MetadataValidationError, zarr.errors.NodeTypeValidationError, KeyError, TypeError,
                ValueError) as exc:
            raise StoreDamageError(
                f"the root zarr.json of {shown} is not valid Zarr v3 group metadata ({type(exc).__name__}: {exc}); "
                + ROOT_FIX) from exc
        try:
            metadata = StoreMetadata.from_attrs(dict(group.attrs), uri=shown)
        except StoreNotFoundError as exc:
            arrays = sorted(group.array_keys())
            if not arrays:
                raise
            raise StoreDamageError(f"{exc}, though it holds {len(arrays)} arrays ({', '.join(arrays[:6])}"
                                   f"{', ...' if len(arrays) > 6 else ''}): its root metadata is damaged; "
                                   + ROOT_FIX) from exc
        if metadata.complete:
            return FeatureStore(group, uri, storage_options, metadata)
        if not allow_incomplete:
            raise StoreIncompleteError(
                f"the build of {shown} has not finished; rerun the same `pipeline build` command to resume it "
                "(`pipeline info`/`pipeline verify` show an unfinished store as it is)"
            )
        # An unfinished store may have grown since any consolidated view.
        with quiet_consolidated_warning():
            group = zarr.open_group(store, mode="r", use_consolidated=False)
        return FeatureStore(group, uri, storage_options)
