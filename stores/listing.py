"""What a store location holds, as far as it can be listed: for the messages about a lost root.

Listings go through the Zarr store, so every scheme that can list (folders,
zips, object stores) answers; HTTP cannot, and is then said to hold nothing.
"""

from __future__ import annotations

import zarr
from zarr.core.sync import sync

from stores.errors import StoreDamageError, StoreError, StoreNotFoundError
from stores.backend_errors import ROOT_FIX

#: The metadata document of a Zarr v3 node (the root's holds the store's attributes).
ROOT_METADATA = "zarr.json"


def root_metadata_missing(store: zarr.abc.store.Store, shown: str) -> StoreError:
    """Why nothing opens at ``shown``: a folder of arrays whose root ``zarr.json`` is gone
    (damage: a StoreDamageError), or nothing there at all (StoreNotFoundError)."""
    arrays = [name for name in _top_level(store) if _exists(store, f"{name}/{ROOT_METADATA}")]
    if arrays:
        listed = ", ".join(arrays[:6]) + (", ..." if len(arrays) > 6 else "")
        return StoreDamageError(
            f"{shown} holds {len(arrays)} arrays ({listed}) but no root zarr.json: the store's root metadata "
            "(its configuration and fingerprint, recorded nowhere else) is lost; " + ROOT_FIX,
            problem="root zarr.json missing")
    return StoreNotFoundError(
        f"no feature store at {shown}: nothing there (check the path/URI, its bucket, "
        "and --storage-option credentials), or run `pipeline build --out` to create one")


def _top_level(store: zarr.abc.store.Store) -> list[str]:
    async def names() -> list[str]:
        return sorted([name async for name in store.list_dir("")])

    try:
        return sync(names())
    except Exception:  # noqa: BLE001 - a location that cannot be listed (HTTP) has nothing more to say
        return []
    finally:
        forget_listings(store)


def forget_listings(store: zarr.abc.store.Store) -> None:
    """Drop the directory listings an fsspec filesystem cached while we listed ``store``.

    s3fs answers size queries from them (a whole-object read asks for the
    size first), so an object written after a listing would read as absent
    through the same cached filesystem: a resumed build's new shard digests
    read back as "not built".
    """
    invalidate = getattr(getattr(store, "fs", None), "invalidate_cache", None)
    if invalidate is not None:
        invalidate()


def _exists(store: zarr.abc.store.Store, key: str) -> bool:
    try:
        return bool(sync(store.exists(key)))
    except Exception:  # noqa: BLE001 - as unlistable: unknown counts as absent
        return False
