"""The type of an open store as its consumers (``model``, ``workflows``) see it.

:class:`ReadableStore` is the part of :class:`stores.reader.FeatureStore`
that the trainer, evaluation and the recipes use. It is a
:class:`typing.Protocol`: anything with these members is one (the real
reader, or an in-memory fake in tests), without subclassing.

>>> def n_train(store: ReadableStore) -> int:  # doctest: +SKIP
...     return len(store.select(split="train"))
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Protocol, Sequence, TypeAlias, runtime_checkable

import numpy as np
import pandas as pd

from stores import schema
from stores.schema import ORIGINAL


@runtime_checkable
class ReadableStore(Protocol):
    """A feature store open for reading (see :class:`stores.reader.FeatureStore` for each member)."""

    @property
    def uri(self) -> str:
        """The store's URI without credentials."""
        ...

    @property
    def config(self) -> dict[str, dict[str, Any]]:
        """The pipeline config the store was built with, as recorded (JSON-able sections)."""
        ...

    @property
    def config_hash(self) -> str: ...

    @property
    def fingerprint(self) -> str:
        """Identifies config and contents: equal fingerprints, equal data."""
        ...

    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def variants(self) -> tuple[str, ...]:
        """Stored variants, the original first."""
        ...

    @property
    def feature_bands(self) -> Mapping[str, int]:
        """Feature name -> bands."""
        ...

    @property
    def window_frames(self) -> int: ...

    @property
    def window_hop_frames(self) -> int: ...

    @property
    def max_frames(self) -> int: ...

    @property
    def shards(self) -> Sequence[tuple[int, int]]:
        """``(start, stop)`` clip-index ranges of the shards, in order."""
        ...

    @property
    def clips(self) -> pd.DataFrame:
        """One row per clip, columns of :data:`stores.schema.CLIP_COLUMNS`."""
        ...

    @property
    def valid_frames(self) -> np.ndarray:
        """int32 [shape=(n_clips, n_variants)]: frames computed; 0 = variant absent."""
        ...

    def select(self, split: str | Iterable[str] | None = None, fold: int | Iterable[int] | None = None,
               label: str | Iterable[str] | None = None, status: str | None = schema.STATUS_OK) -> np.ndarray:
        """Clip indices matching every given filter, ascending."""
        ...

    def read_clip(self, index: int, variant: str = ORIGINAL,
                  features: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """One clip-variant's features: name -> float32 [shape=(bands, valid_frames)]."""
        ...

    def read_shard(self, shard_index: int, features: Sequence[str] | None = None, *,
                   variants: Sequence[int] | None = None, out: Mapping[str, np.ndarray] | None = None,
                   engine: str = "auto") -> dict[str, np.ndarray]:
        """Whole shards: name -> float16 [shape=(clips_in_shard, n_variants, bands, max_frames)]."""
        ...


#: What functions that open a store themselves accept: a URI (local path,
#: ``s3://``, ...) or an already open store.
StoreSource: TypeAlias = str | os.PathLike[str] | ReadableStore
