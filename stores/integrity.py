"""Damage: finding every object of a store that differs from what its build wrote, and naming it.

What is checked, and against what (README, "Read checks"):

- a feature shard object (each of a shard's objects along the variant axis,
  in a store extended with variants): its chunk index against the index's
  CRC32C, the chunks it lists against the bytes before it (nothing cut off or
  added), each chunk against its own CRC32C (stores built since the read
  checks: Zarr's ``crc32c`` codec after Blosc), and the object's presence
  where its variants hold computed frames (:meth:`stores.shards.ShardDecoder.check`,
  :meth:`~stores.shards.ShardDecoder.check_present`);
- a chunk of any other array: its CRC32C (new stores; zarr-python checks it
  when it decodes), else only that it decodes;
- a built shard's per-clip column objects: present (a "pending" status or an
  ok clip without frames in a built shard means the object is gone);
- a built shard as a whole: the SHA-256 digest its task recorded, recomputed
  from everything read back (catches what per-object checks cannot: every
  change in a store built before the per-chunk checksums);
- the static per-clip columns against the root's ``clips_hash``; every
  array's ``zarr.json`` against the copy in the root's consolidated metadata;
  every object against the arrays' grids (a stray object belongs to none).

:func:`find_damage` is what ``pipeline verify`` reports and what a rerun of
the build repairs (:func:`stores.writer.create_store` marks the damaged shards
"not built", so the resume logic rebuilds exactly those).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Callable

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from stores.errors import StoreDamageError
from stores import schema
from stores.backend_errors import REPAIR_FIX, translate
from stores.listing import ROOT_METADATA, forget_listings
from stores.updates import padding_rows
from stores.versions import unreferenced_plain_objects
from stores.writer import columns_hash, shard_digest

logger = logging.getLogger(__name__)


def clips_of_shard(store: Any, shard: int) -> str:
    """``"clips 12-15 (c12, c13, c14, c15)"``: the clips shard ``shard`` holds, by index and id."""
    start, stop = store.shards[shard]
    try:
        ids = [str(x) for x in store.group["clip_id"][start:stop]]
        names = ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "")
        return f"clips {start}-{stop - 1} ({names})"
    except Exception:  # noqa: BLE001 - the id column itself may be what is damaged
        return f"clips {start}-{stop - 1}"


def damage_error(store: Any, array: str, shard: int, problem: str, key: str = "") -> StoreDamageError:
    """The one-line error of a reader that met damage: the store, the array, the shard (its object
    ``key`` where known) and its clips, what was found, the fix."""
    obj = f"object {key!r}, " if key else ""
    where = f"shard {shard} of array {array!r} ({obj}{clips_of_shard(store, shard)})" if shard >= 0 \
        else f"array {array!r}"
    return StoreDamageError(f"{store.uri}: {where} is damaged: {problem}; {REPAIR_FIX.format(uri=store.uri)}",
                            array=array, shard=shard, problem=problem, key=key)


@dataclasses.dataclass(frozen=True)
class Damage:
    """One damaged object (or shard) of a store.

    array : the array's name ("" for the store or a shard as a whole).
    shard : the shard index (-1: the array as a whole, e.g. its metadata or a one-chunk column).
    key : the object's key in the store ("" where the damage is not one object's).
    problem : what was found.
    """

    array: str
    shard: int
    key: str
    problem: str

    def describe(self) -> str:
        where = [f"shard {self.shard}" if self.shard >= 0 else "", f"array {self.array!r}" if self.array else "",
                 f"object {self.key!r}" if self.key else ""]
        return " ".join(w for w in where if w) + f": {self.problem}"


def _message(exc: BaseException, uri: str) -> str:
    """What an exception says about one object, without the store's own fix text."""
    if isinstance(exc, StoreDamageError):
        return exc.problem
    error = translate(exc, uri)
    if error is not None and not isinstance(error, StoreDamageError):
        raise error from exc  # the store cannot be reached at all: not damage, stop
    if "checksum do not match" in str(exc):
        return "fails its CRC32C checksum (a byte of it changed)"
    return f"does not decode ({type(exc).__name__}: {exc})"


def _chunk_key(array: zarr.Array, index: tuple[int, ...]) -> str:
    key = array.metadata.encode_chunk_key(index)
    path = array.store_path.path
    return f"{path}/{key}" if path else key


def _grid(array: zarr.Array) -> tuple[int, ...]:
    """Objects per dimension of ``array`` (shards for a sharded array)."""
    shape = array.metadata.to_dict()["chunk_grid"]["configuration"]["chunk_shape"]
    return tuple(-(-int(n) // int(c)) for n, c in zip(array.shape, shape))


def array_names(store: Any) -> list[str]:
    """Every array a store of this format has, by its metadata."""
    return [*store.feature_bands, schema.VALID_FRAMES, schema.VARIANT, *schema.CLIP_COLUMNS,
            *store.metadata.aug_arrays(), schema.SHARD_DIGEST]


def find_damage(store: Any, *, on_shard: Callable[[int, dict[str, np.ndarray], np.ndarray], None] | None = None,
                engine: str = "zarr") -> list[Damage]:
    """Every damaged object of ``store`` (a :class:`stores.reader.FeatureStore`), in one pass.

    Parameters
    ----------
    on_shard : called with ``(shard, blocks, valid)`` for every built shard whose
        objects pass their checks, after its digest is compared
        (``blocks``: feature name -> float16 ``(clips, variants, bands, frames)``;
        ``valid``: its ``valid_frames`` rows), so ``verify`` checks values without reading twice.
    engine : how a shard whose objects pass is decoded for its digest: "zarr"
        (zarr-python, the reference reader ``verify`` uses) or "auto" (the
        fast decoder, bit-identical: a repair pass over a large store).

    Returns
    -------
    list of Damage, array metadata first, then strays, then by shard.

    Raises
    ------
    StoreError
        The store cannot be reached at all (credentials, network): that is
        not damage, and is not reported as such.
    """
    raw = store.group.store
    damage: list[Damage] = []
    arrays: dict[str, zarr.Array] = {}
    for name in array_names(store):
        problem = _array_metadata_problem(store, raw, name)
        if problem:
            damage.append(Damage(name, -1, f"{name}/{ROOT_METADATA}", problem))
            continue
        try:
            arrays[name] = store.array(name)
        except Exception as exc:  # noqa: BLE001 - damaged metadata of one array must not hide the others
            damage.append(Damage(name, -1, f"{name}/{ROOT_METADATA}", _message(exc, store.uri)))
    damage += _strays(store, raw, arrays)

    for name in (*schema.STATIC_COLUMNS, schema.VARIANT):
        if name in arrays:
            try:
                arrays[name][:]
            except Exception as exc:  # noqa: BLE001
                damage.append(Damage(name, -1, _chunk_key(arrays[name], (0,)), _message(exc, store.uri)))
    if not any(d.array in schema.STATIC_COLUMNS for d in damage) and all(n in arrays for n in schema.STATIC_COLUMNS):
        if columns_hash({n: [str(v) for v in arrays[n][:]] for n in schema.STATIC_COLUMNS}) \
                != store.metadata.clips_hash:
            damage.append(Damage("", -1, "", "the per-clip columns (clip_id, label, split, ...) differ from the "
                                             "clip list the root's clips_hash records"))

    features = [n for n in store.feature_bands if n in arrays]
    per_shard = [n for n in (schema.VALID_FRAMES, *schema.OUTCOME_COLUMNS, *store.metadata.aug_arrays())
                 if n in arrays]
    digests_array = arrays.get(schema.SHARD_DIGEST)
    # a digest is recomputed from every feature and column: not when one array's metadata is damaged
    digestible = len(features) == len(store.feature_bands) \
        and len(per_shard) == 1 + len(schema.OUTCOME_COLUMNS) + len(store.metadata.aug_arrays())
    real_rows = _real_rows(arrays, store.n_clips)
    for i, (start, stop) in enumerate(store.shards):
        found: list[Damage] = []
        digest = ""
        if digests_array is not None:
            try:
                digest = str(digests_array[i])
            except Exception as exc:  # noqa: BLE001
                found.append(Damage(schema.SHARD_DIGEST, i, _chunk_key(digests_array, (i,)), _message(exc, store.uri)))
            else:
                if not digest:
                    continue  # not built (yet): the build writes it whole, whatever is there now
        columns: dict[str, np.ndarray] = {}
        for name in per_shard:
            try:
                columns[name] = arrays[name][start:stop]
            except Exception as exc:  # noqa: BLE001
                key = _chunk_key(arrays[name], (i,) + (0,) * (arrays[name].ndim - 1))
                found.append(Damage(name, i, key, _message(exc, store.uri)))
        valid = columns.get(schema.VALID_FRAMES)
        found += _missing_columns(arrays, columns, i, real_rows[start:stop])
        for name in features:
            decoder = store._decoder(name)  # None: not our layout, checked by zarr-python's read and the digest
            if decoder is not None:
                found += [Damage(name, i, key, problem) for key, problem in _feature_object_problems(decoder, i, valid)]
        damage += found
        if found or not digest or not digestible:
            continue  # damage already named, not built, or an array unreadable: its digest cannot be recomputed
        try:
            blocks = store.read_shard(i, features=features, engine=engine)
        except Exception as exc:  # noqa: BLE001 - what the object checks could not name
            damage.append(Damage("", i, "", _message(exc, store.uri)))
            continue
        # padding rows (stores.updates) close the last shard of a store before it grew: the digest covers its clips only
        n_real = int(real_rows[start:stop].sum())
        real_blocks = {n: block[:n_real] for n, block in blocks.items()}
        outcome = {n: columns[n][:n_real] for n in schema.OUTCOME_COLUMNS}
        aug = {n: columns[n][:n_real] for n in store.metadata.aug_arrays()}
        if shard_digest(real_blocks, valid[:n_real], outcome, aug) != digest:
            damage.append(Damage("", i, "", "its content differs from the digest its build recorded "
                                            "(an object is missing, or changed where no checksum covers it)"))
            continue
        if on_shard is not None:
            on_shard(i, blocks, valid)
    return damage


def _real_rows(arrays: dict[str, zarr.Array], n_clips: int) -> np.ndarray:
    """bool [shape=(n_clips,)]: rows that are clips, not the padding rows of a grown store (stores.updates).

    Read from the clip_id column alone: ``store.clips`` refuses a finished store whose
    per-clip columns read as 'pending', the very damage this pass names shard by shard.
    """
    try:
        return ~padding_rows(arrays["clip_id"][:])
    except Exception:  # noqa: BLE001 - a damaged or missing clip_id column is named above; count every row
        return np.ones(n_clips, dtype=bool)


def _missing_columns(arrays: dict[str, zarr.Array], columns: dict[str, np.ndarray], shard: int,
                     real: np.ndarray) -> list[Damage]:
    """Per-clip column objects of a built shard that read as their fill value where a build never
    leaves it: a status "pending", an ok clip without original frames (the object is gone)."""
    damage = []
    status = columns.get("status")
    # padding rows of a grown store (``real`` False) are pending by design
    if status is not None and ((status == schema.STATUS_PENDING) & real[:len(status)]).any():
        damage.append(Damage("status", shard, _chunk_key(arrays["status"], (shard,)),
                             "the object is missing (its clips read as 'pending' in a built shard)"))
    valid = columns.get(schema.VALID_FRAMES)
    if status is not None and valid is not None and ((status == schema.STATUS_OK) & (valid[:, 0] == 0)).any():
        damage.append(Damage(schema.VALID_FRAMES, shard, _chunk_key(arrays[schema.VALID_FRAMES], (shard, 0)),
                             "the object is missing (ok clips of a built shard read without frames)"))
    return damage


def _array_metadata_problem(store: Any, raw: zarr.abc.store.Store, name: str) -> str:
    """What is wrong with array ``name``'s own zarr.json ("" if nothing): missing, not JSON,
    or differing from the copy in the root's consolidated metadata."""
    buffer = sync(raw.get(f"{name}/{ROOT_METADATA}", prototype=default_buffer_prototype()))
    if buffer is None:
        return "its zarr.json is missing"
    try:
        document = json.loads(buffer.to_bytes())
    except ValueError as exc:
        return f"its zarr.json is not JSON ({exc})"
    copy = consolidated_entry(raw, name)
    if copy is not None and document != copy:
        return "its zarr.json differs from the copy in the root's consolidated metadata"
    if not isinstance(document, dict) or document.get("node_type") != "array" or "shape" not in document:
        return "its zarr.json is not the metadata of a Zarr v3 array"
    return ""


def consolidated_entry(raw: zarr.abc.store.Store, name: str) -> dict[str, Any] | None:
    """Array ``name``'s metadata as the root's consolidated metadata records it (None: no copy)."""
    buffer = sync(raw.get(ROOT_METADATA, prototype=default_buffer_prototype()))
    if buffer is None:
        return None
    try:
        root = json.loads(buffer.to_bytes())
        return (root.get("consolidated_metadata") or {}).get("metadata", {}).get(name)
    except (ValueError, AttributeError):
        return None


def _feature_object_problems(decoder: Any, shard: int, valid: np.ndarray | None) -> list[tuple[str, str]]:
    """``(key, problem)`` of every object of ``shard`` that ``decoder`` (a :class:`stores.shards.ShardDecoder`)
    reads and finds damaged: one object per shard, or one per variant part of a store extended with
    variants (all fetched at once); ``valid``: the shard's valid frame counts (None: unreadable)."""
    problems = []
    for part, data in sync(decoder.fetch(shard)).items():
        try:
            if data is None:
                decoder.check_present(shard, {part: None}, valid)
            else:
                decoder.check(shard, data, part)
        except StoreDamageError as exc:
            problems.append((exc.key, exc.problem))
    return problems


def _strays(store: Any, raw: zarr.abc.store.Store, arrays: dict[str, zarr.Array]) -> list[Damage]:
    """Objects that belong to no array of the store (nothing where listing is impossible: HTTP)."""
    async def keys() -> list[str]:
        return [key async for key in raw.list()]

    try:
        listed = sync(keys())
    except Exception:  # noqa: BLE001 - HTTP cannot list: strays are unknowable there
        return []
    finally:
        forget_listings(raw)
    # a version lists only its manifest's keys: objects in the folder's plain layout that no version refers to
    # are what a plain zarr/xarray reader of the folder would still meet
    outside = unreferenced_plain_objects(raw) or []
    listed = sorted(set(listed) | set(outside))
    grids = {name: _grid(array) for name, array in arrays.items()}
    known = set(array_names(store))
    strays = []
    for key in listed:
        if key == ROOT_METADATA:
            continue
        name, _, rest = key.partition("/")
        if name in known and rest == ROOT_METADATA:
            continue
        parts = rest.split("/")
        if name in grids and len(parts) == len(grids[name]) + 1 and parts[0] == "c" \
                and all(p.isdigit() for p in parts[1:]) \
                and all(int(p) < g for p, g in zip(parts[1:], grids[name])):
            continue
        if name not in grids and name in known:
            continue  # inside an array whose metadata is damaged: reported with it
        strays.append(Damage(name if name in known else "", -1, key,
                             "stray object: no array of the store has such a chunk (delete it)"))
    return strays
