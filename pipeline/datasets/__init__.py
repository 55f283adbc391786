"""Dataset adapters: a dataset root folder -> a :class:`~pipeline.datasets.base.Manifest`.

One adapter per dataset, found by name in :data:`DATASETS`:

==============  ===========================================  ====================================
name            layout under root                            split schemes (default first)
==============  ===========================================  ====================================
demo            generated: <genre>/<genre>.NNNNN.wav         random, artist, folds, artist-folds
gtzan           genres/<genre>/<genre>.000NN.au|.wav         fault-filtered, random, folds
fma-small       fma_metadata/tracks.csv, fma_small/...       official, folds
fma-medium      fma_metadata/tracks.csv, fma_medium/...      official, folds
fma-large       fma_metadata/tracks.csv, fma_large/...       official, folds
folder          <label>/<audio files>                        random, folds
==============  ===========================================  ====================================

``load_manifest("gtzan", "/data/gtzan", split="random", seed=1)`` validates
the name, the split scheme and the options (each adapter's keyword
arguments), then calls the adapter. Adapters only list files and read
metadata; they never decode audio. Every adapter takes a local root or a URI
(s3://, gs://, http(s)://, file://; :mod:`pipeline.sources`) with fsspec
``storage_options`` for it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline.datasets import demo, fma, folder, gtzan
from pipeline.datasets.base import SPLITS, ClipRecord, Manifest
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["DATASETS", "ClipRecord", "DatasetAdapter", "Manifest", "SPLITS", "list_datasets", "load_manifest"]


#: Keyword parameters of every loader that are not dataset options.
_NOT_OPTIONS = frozenset({"split", "storage_options"})


@dataclasses.dataclass(frozen=True)
class DatasetAdapter:
    """A named dataset: its loader, split schemes and a one-line description.

    load : ``load(root, *, split, storage_options, **options) -> Manifest``;
        its keyword-only parameters other than ``split`` and
        ``storage_options`` are the adapter's options.
    split_schemes : valid ``split`` values, the default first.
    root_required : False when the adapter can work without a root (demo).
    """

    name: str
    load: Callable[..., Manifest]
    split_schemes: tuple[str, ...]
    description: str
    root_required: bool = True

    @property
    def default_split(self) -> str:
        return self.split_schemes[0]

    @property
    def options(self) -> dict[str, Any]:
        """Option name -> default value, from the loader's signature."""
        params = inspect.signature(self.load).parameters.values()
        # Arguments a functools.partial already fixes (fma's subset) are not options.
        bound = set(getattr(self.load, "keywords", {}) or {})
        return {p.name: p.default for p in params
                if p.kind is p.KEYWORD_ONLY and p.name not in _NOT_OPTIONS and p.name not in bound}

    def manifest(self, root: str | Path | None, *, split: str | None = None,
                 storage_options: Mapping[str, Any] | None = None, **options: Any) -> Manifest:
        """Validate ``split`` and ``options``, then load the manifest."""
        scheme = self.default_split if split is None else split
        if scheme not in self.split_schemes:
            raise ConfigError(f"unknown split scheme {scheme!r} for dataset {self.name!r}; "
                              f"valid: {', '.join(self.split_schemes)}")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(f"unknown option(s) {unknown} for dataset {self.name!r}; valid options: {valid}")
        return self.load(root, split=scheme, storage_options=storage_options, **options)


DATASETS: dict[str, DatasetAdapter] = {
    "demo": DatasetAdapter("demo", demo.load_demo, demo.SPLIT_SCHEMES,
                           "synthetic genres generated into a cache folder (harmony x rhythm design)",
                           root_required=False),
    "gtzan": DatasetAdapter("gtzan", gtzan.load_gtzan, gtzan.SPLIT_SCHEMES,
                            "GTZAN, 10 genres x 100 clips; fault-filtered artist-aware split by default"),
    "fma-small": DatasetAdapter("fma-small", functools.partial(fma.load_fma, subset="small"),
                                fma.SPLIT_SCHEMES, "FMA small: 8,000 tracks, 8 balanced genres"),
    "fma-medium": DatasetAdapter("fma-medium", functools.partial(fma.load_fma, subset="medium"),
                                 fma.SPLIT_SCHEMES, "FMA medium: 25,000 tracks, 16 unbalanced genres"),
    "fma-large": DatasetAdapter("fma-large", functools.partial(fma.load_fma, subset="large"),
                                fma.SPLIT_SCHEMES, "FMA large: 106,574 tracks, those with a top genre"),
    "folder": DatasetAdapter("folder", folder.load_folder, folder.SPLIT_SCHEMES,
                             "any <root>/<label>/<audio> collection"),
}


def list_datasets() -> list[str]:
    """Registered dataset names, in registry order."""
    return list(DATASETS)


def get_adapter(dataset: str) -> DatasetAdapter:
    """The adapter called ``dataset``, or a :class:`ConfigError` listing the valid names."""
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ConfigError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}") from None


def load_manifest(dataset: str, root: str | Path | None, *, split: str | None = None,
                  storage_options: Mapping[str, Any] | None = None, **options: Any) -> Manifest:
    """The manifest of ``dataset`` at ``root`` under split scheme ``split``.

    Parameters
    ----------
    dataset : str
        A name from :func:`list_datasets`.
    root : path, URI or None
        Dataset root folder, or a URI of one in object storage (s3://,
        gs://, http(s)://, file://); ``None`` only for "demo" (user cache folder).
    split : str, optional
        Split scheme; ``None`` for the adapter's default.
    storage_options : mapping, optional
        fsspec options of a remote root (endpoint, credentials); credentials
        may instead come from the environment. Ignored for local roots.
    **options
        Adapter options (e.g. ``seed``, ``n_folds``; demo: ``clips_per_genre``,
        ``clip_seconds``; fma: ``missing``, ``metadata``).

    Raises
    ------
    ConfigError
        Unknown dataset, split scheme or option.
    DatasetError
        Missing root, metadata, empty label folder, no clips; a remote root
        that cannot be read (missing bucket, refused credentials).
    """
    adapter = get_adapter(dataset)
    return adapter.manifest(root, split=split, storage_options=storage_options, **options)
