"""The feature store: a self-describing Zarr v3 group of clip-level features.

The reader API (what the trainer codes against)::

    open_store(uri, *, storage_options=None, allow_incomplete=False) -> FeatureStore

and the writer API (what ``pipeline build`` uses)::

    create_store(uri, *, config, clips, labels, aug_params, dataset, ...) -> StoreWriter
    open_writer(uri, *, storage_options=None) -> StoreWriter
    StoreWriter.pending_shards() / write_shard(i, results) / finalize()

The root attributes are one type, :class:`stores.metadata.StoreMetadata`
(written and parsed there only); :class:`stores.protocol.ReadableStore` is the
type of an open store in ``model`` and ``workflows``.

The layout, dtype and compression are described (with measurements) in
:mod:`stores.schema`; accepted URIs in :mod:`stores.uri`. This package never
imports Dask or torch.
"""

from stores.metadata import MetadataError, StoreMetadata
from stores.protocol import ReadableStore, StoreSource
from stores.reader import FeatureStore, open_store
from stores.schema import FORMAT_NAME, SCHEMA_VERSION
from stores.writer import ClipResult, Layout, StoreWriter, create_store, open_writer

__all__ = [
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "ClipResult",
    "FeatureStore",
    "Layout",
    "MetadataError",
    "ReadableStore",
    "StoreMetadata",
    "StoreSource",
    "StoreWriter",
    "create_store",
    "open_store",
    "open_writer",
]
