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

``config`` is a :class:`stores.metadata.RecordedConfig`: the configuration
as recorded data (its dict and hash, variants, each feature's bands, units
and description, the window); ``PipelineConfig.recorded()`` makes one.

The layout, dtype and compression are described (with measurements) in
:mod:`stores.schema`; accepted URIs in :mod:`stores.uri`; remote storage
(credentials, masking, error hints) in :mod:`stores.remote`; the errors,
rooted in :class:`stores.errors.StoreError`, in :mod:`stores.errors`. This
package is the bottom layer: it imports no other package of the project,
and never Dask, torch or the audio stack.
"""

from stores.errors import StoreError
from stores.metadata import FeatureInfo, MetadataError, RecordedConfig, StoreMetadata
from stores.protocol import ReadableStore, StoreSource
from stores.reader import FeatureStore, open_store
from stores.schema import FORMAT_NAME, SCHEMA_VERSION
from stores.writer import ClipResult, Layout, StoreWriter, create_store, open_writer

__all__ = [
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "ClipResult",
    "FeatureInfo",
    "FeatureStore",
    "Layout",
    "MetadataError",
    "ReadableStore",
    "RecordedConfig",
    "StoreError",
    "StoreMetadata",
    "StoreSource",
    "StoreWriter",
    "create_store",
    "open_store",
    "open_writer",
]
