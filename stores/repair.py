"""Repair instead of rebuild: a rerun of the build over a damaged store rebuilds only what is damaged.

:func:`mark_damage` runs when :func:`stores.writer.create_store` reopens an
existing store built from the same inputs (a resume). It finds every damaged
object (:func:`stores.integrity.find_damage`) and

- rewrites an array's ``zarr.json`` from the copy in the root's consolidated
  metadata, and a static per-clip column from the build's own clip list;
- deletes stray objects (no array has such a chunk);
- marks every damaged shard "not built" (an empty ``shard_digest``) and the
  store unfinished, so the build's resume logic rebuilds exactly those
  shards and ``finalize`` derives the fingerprint again: a deterministic
  build gives the fingerprint of an undamaged build.

The root ``zarr.json`` is the one thing a rerun cannot repair: it alone
records which configuration made the shards (``open_store`` says so).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Mapping, Sequence

import numpy as np
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from stores.errors import StoreDamageError
from stores import schema
from stores.integrity import Damage, consolidated_entry, find_damage
from stores.listing import ROOT_METADATA
from stores.reader import open_store
from stores.versions import delete_unreferenced

logger = logging.getLogger(__name__)


def mark_damage(writer: Any, uri: str, *, clips: Mapping[str, Sequence[Any]],
                storage_options: Mapping[str, Any] | None = None) -> list[Damage]:
    """Repair what can be rewritten in place and mark damaged shards "not built" (see the module docstring).

    Parameters
    ----------
    writer : the :class:`stores.writer.StoreWriter` of the reopened store.
    uri : its URI (with any credentials, as the writer opened it).
    clips : the build's static per-clip columns (equal to the store's: create_store compared their hash).

    Returns
    -------
    list of Damage found (empty: nothing to repair).
    """
    raw = writer.group.store
    found: list[Damage] = []
    for _ in range(2):  # metadata first: the shards of an array are checked once its metadata is back
        damage = find_damage(open_store(uri, storage_options=storage_options, allow_incomplete=True), engine="auto")
        found += damage
        rewritten = _rewrite_in_place(writer, raw, damage, clips)
        if not rewritten:
            break
    shards = sorted({d.shard for d in found if d.shard >= 0})
    if found:
        logger.warning("%s: %d damaged object(s) found%s; rebuilding shard(s) %s", writer.uri, len(found),
                       "".join(f"\n  {d.describe()}" for d in found), shards or "none")
    if shards:
        digests = writer.array(schema.SHARD_DIGEST)
        for shard in shards:
            digests[shard] = ""  # "not built": the resume logic rebuilds it
    if found:
        # unfinished even when no shard is rebuilt (only metadata, a column or a stray repaired): finalize then
        # consolidates again and commits the transaction, so the repair becomes a version rather than being dropped
        unfinished = dataclasses.replace(writer.metadata, complete=False, fingerprint=None, summary=None,
                                         finished=None)
        writer.group.attrs.put(unfinished.to_attrs())
        writer.metadata = unfinished
    return found


def _rewrite_in_place(writer: Any, raw: Any, damage: list[Damage], clips: Mapping[str, Sequence[Any]]) -> bool:
    """Rewrite damaged array metadata and static columns, delete strays; True if anything was rewritten."""
    rewritten = False
    for d in damage:
        if d.shard >= 0:
            continue
        if d.key.endswith(f"/{ROOT_METADATA}"):
            copy = consolidated_entry(raw, d.array)
            if copy is None:
                raise StoreDamageError(
                    f"{writer.uri}: the metadata of array {d.array!r} is damaged ({d.problem}) and the store has no "
                    "consolidated copy of it (an unfinished build); rebuild it with `pipeline build --overwrite`",
                    array=d.array, problem=d.problem)
            _put(raw, d.key, json.dumps(copy, indent=2).encode())
            rewritten = True
        elif d.problem.startswith("stray object"):
            # outside every version (a physical object only): deleted where it lies; a stray a version
            # lists: deleted in the transaction (a tombstone), the committed version untouched
            if not delete_unreferenced(raw, d.key):
                sync(raw.delete(d.key))
        elif d.array in schema.STATIC_COLUMNS or (d.array == "" and not d.key):
            for name, kind in schema.STATIC_COLUMNS.items():
                values = np.array([str(v) for v in clips[name]]) if kind == "str" \
                    else np.asarray(clips[name], dtype=kind)
                writer.group[name][:] = values
            rewritten = True
        elif d.array == schema.VARIANT:
            writer.group[schema.VARIANT][:] = np.array(writer.variants)
            rewritten = True
    return rewritten


def _put(raw: Any, key: str, data: bytes) -> None:
    sync(raw.set(key, default_buffer_prototype().buffer.from_bytes(data)))
