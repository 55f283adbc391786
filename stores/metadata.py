"""The store's root attributes as a type: written and parsed in this one place.

A store's ``zarr.json`` holds these root attributes (JSON)::

    format, schema_version        what the store is (readers check these first)
    complete, fingerprint         build state; the fingerprint is set by ``finalize``
    config, config_hash           the full pipeline config (every parameter) and its hash
    clips_hash                    identifies the clip list (the static per-clip columns)
    labels, variants              label names; stored variants, "original" first
    features, max_frames          feature name -> bands; frames of every feature array
    window                        window parameters, so the trainer never guesses
    augmented_splits, aug_params  splits that got augmented variants; variant -> param -> array
    layout                        clips per shard, chunking, dtype, rounding, codec
    dataset, provenance           where the clips came from; who built the store, when, with what
    summary, finished             ok/failed counts and finish time (set by ``finalize``)

:class:`StoreMetadata` is that set as a frozen dataclass whose parts validate
themselves when made, so an invalid one cannot exist.
:meth:`StoreMetadata.to_attrs` is what a writer writes;
:meth:`StoreMetadata.from_attrs` parses and validates what a reader reads, and
names the store, the attribute and the fix when one is missing or malformed.
``from_attrs(attrs).to_attrs() == attrs`` for every store this package has
written (the names, the values and their order), so the format and the
fingerprints of stores do not depend on this module.

Nothing outside this module reads or writes root attribute keys directly.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import platform
from importlib import metadata as _metadata
from typing import Any, Mapping, Sequence

from stores.errors import SchemaVersionError, StoreError, StoreNotFoundError
from stores import schema
from stores.schema import ORIGINAL, Layout

#: Libraries whose versions determine the numbers in a store (provenance).
LIBRARIES = ("numpy", "scipy", "librosa", "numba", "soxr", "soundfile", "av", "zarr", "numcodecs")

#: What to do about a store whose root attributes are damaged.
_FIX = ("its zarr.json is damaged or was not written by harmonic-feature-store; "
        "rebuild it with `pipeline build --overwrite --out <store>`")


class MetadataError(StoreError, ValueError):
    """A root attribute of a store is missing or malformed.

    ``field`` is its dotted name (``"layout.clips_per_shard"``).
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


# -- validators: each returns the value unchanged (exact round trip) or raises ---------------------

def _fail(field: str, value: Any, expected: str) -> MetadataError:
    return MetadataError(f"root attribute {field!r} is {value!r} ({type(value).__name__}); expected {expected}",
                         field)


def _int(field: str, value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, value, "an integer")
    if minimum is not None and value < minimum:
        raise _fail(field, value, f"an integer >= {minimum}")
    return value


def _number(field: str, value: Any, *, positive: bool = False) -> float:
    # ints are kept as ints: the attribute must write back exactly as it was read
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(field, value, "a finite number")
    if positive and value <= 0:
        raise _fail(field, value, "a positive number")
    return value


def _str(field: str, value: Any, *, nonempty: bool = False) -> str:
    if not isinstance(value, str) or (nonempty and not value):
        raise _fail(field, value, "a non-empty string" if nonempty else "a string")
    return value


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(field, value, "true or false")
    return value


def _optional_str(field: str, value: Any) -> str | None:
    return None if value is None else _str(field, value, nonempty=True)


def _strings(field: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _fail(field, value, "a list of strings")
    for i, item in enumerate(value):
        _str(f"{field}[{i}]", item)
    return tuple(value)


def _mapping(field: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(field, value, "a mapping")
    for key in value:
        _str(f"{field} (a key)", key)
    return value


class _FrozenDict(dict):
    """A dict that cannot change once made; unlike ``MappingProxyType`` it pickles (a reader
    is sent to other processes) and serialises to JSON as it is."""

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("store metadata is read-only; make a new StoreMetadata (dataclasses.replace) instead")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore

    def __reduce__(self) -> tuple[Any, ...]:
        return _FrozenDict, (dict(self),)

    def __copy__(self) -> _FrozenDict:
        return self

    def __deepcopy__(self, memo: dict) -> _FrozenDict:
        return self


def _freeze(value: Any) -> Any:
    """A read-only copy of a JSON value: mappings as read-only dicts, lists as tuples."""
    if isinstance(value, Mapping):
        return _FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """The JSON value of :func:`_freeze`'s: dicts and lists again."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _section(attrs: Mapping[str, Any], key: str, prefix: str = "") -> Any:
    field = f"{prefix}{key}"
    if key not in attrs:
        raise MetadataError(f"root attribute {field!r} is missing", field)
    return attrs[key]


def _fields(cls: type, attrs: Any, prefix: str) -> dict[str, Any]:
    """The values of dataclass ``cls``'s fields from the attribute mapping ``attrs`` (all required)."""
    section = _mapping(prefix.rstrip("."), attrs)
    return {f.name: _section(section, f.name, prefix) for f in dataclasses.fields(cls)}


# -- the parts ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WindowInfo:
    """How the trainer cuts windows from the clip-level frames (the ``window`` attribute).

    window_frames, window_hop_frames : frames of one window and between window starts.
    window_seconds : float, seconds of one window; overlap : float in [0, 1).
    hop_length : STFT hop in samples; sample_rate : Hz.
    """

    window_frames: int
    window_hop_frames: int
    window_seconds: float
    overlap: float
    hop_length: int
    sample_rate: int

    def __post_init__(self) -> None:
        _int("window.window_frames", self.window_frames, minimum=1)
        _int("window.window_hop_frames", self.window_hop_frames, minimum=1)
        _number("window.window_seconds", self.window_seconds, positive=True)
        if not 0 <= _number("window.overlap", self.overlap) < 1:
            raise _fail("window.overlap", self.overlap, "a number in [0, 1)")
        _int("window.hop_length", self.hop_length, minimum=1)
        _int("window.sample_rate", self.sample_rate, minimum=1)

    @classmethod
    def from_attrs(cls, attrs: Any) -> WindowInfo:
        return cls(**_fields(cls, attrs, "window."))

    def to_attrs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CodecInfo:
    """The compressor of the feature arrays (``layout.codec``), e.g. Blosc lz4-9 with bit shuffle."""

    name: str
    cname: str
    clevel: int
    shuffle: str

    def __post_init__(self) -> None:
        _str("layout.codec.name", self.name, nonempty=True)
        _str("layout.codec.cname", self.cname)
        _int("layout.codec.clevel", self.clevel)
        _str("layout.codec.shuffle", self.shuffle)

    @classmethod
    def from_attrs(cls, attrs: Any) -> CodecInfo:
        return cls(**_fields(cls, attrs, "layout.codec."))

    def to_attrs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LayoutInfo:
    """The storage layout of the feature arrays (the ``layout`` attribute).

    n_clips, clips_per_shard, n_shards : the clip axis and its shards (see :class:`schema.Layout`).
    chunk, shard : descriptions of one chunk and one shard.
    dtype : stored dtype of features; mantissa_bits : mantissa bits kept when rounding to it.
    codec : the compressor; fill_value : value of frames never written.
    """

    n_clips: int
    clips_per_shard: int
    n_shards: int
    chunk: str
    shard: str
    dtype: str
    mantissa_bits: int
    codec: CodecInfo
    fill_value: float

    def __post_init__(self) -> None:
        _int("layout.n_clips", self.n_clips, minimum=1)
        _int("layout.clips_per_shard", self.clips_per_shard, minimum=1)
        shards = Layout(self.n_clips, self.clips_per_shard).n_shards
        if _int("layout.n_shards", self.n_shards) != shards:
            raise _fail("layout.n_shards", self.n_shards,
                        f"{shards} ({self.n_clips} clips in shards of {self.clips_per_shard})")
        _str("layout.chunk", self.chunk)
        _str("layout.shard", self.shard)
        _str("layout.dtype", self.dtype, nonempty=True)
        _int("layout.mantissa_bits", self.mantissa_bits, minimum=1)
        if not isinstance(self.codec, CodecInfo):
            raise _fail("layout.codec", self.codec, "a CodecInfo")
        _number("layout.fill_value", self.fill_value)

    @classmethod
    def of_layout(cls, layout: Layout) -> LayoutInfo:
        """What this package writes for a new store of ``layout`` (the constants of :mod:`stores.schema`)."""
        return cls(
            n_clips=layout.n_clips, clips_per_shard=layout.clips_per_shard, n_shards=layout.n_shards,
            chunk="one clip-variant: (1, 1, bands, max_frames)", shard="clips_per_shard clips x all variants",
            dtype=schema.FEATURE_DTYPE, mantissa_bits=schema.MANTISSA_BITS,
            codec=CodecInfo(name="blosc", cname=schema.BLOSC_CNAME, clevel=schema.BLOSC_CLEVEL,
                            shuffle=schema.BLOSC_SHUFFLE),
            fill_value=0.0,
        )

    @property
    def shards(self) -> Layout:
        """How clips map to shards."""
        return Layout(self.n_clips, self.clips_per_shard)

    @classmethod
    def from_attrs(cls, attrs: Any) -> LayoutInfo:
        values = _fields(cls, attrs, "layout.")
        return cls(**{**values, "codec": CodecInfo.from_attrs(values["codec"])})

    def to_attrs(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "codec": self.codec.to_attrs()}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Where the clips came from (the ``dataset`` attribute); never an absolute path.

    name : dataset name; split_scheme : how splits were assigned; n_folds : folds (0: none);
    source : citation or origin of the dataset.
    skipped : why -> the dataset-relative paths of the files under the root
        that are not clips (``"that are not audio": ["rock/cover.jpg", ...]``);
        written only when some file was skipped (stores from before it have none).
    """

    name: str
    split_scheme: str
    n_folds: int
    source: str
    skipped: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _str("dataset.name", self.name)
        _str("dataset.split_scheme", self.split_scheme)
        _int("dataset.n_folds", self.n_folds, minimum=0)
        _str("dataset.source", self.source)
        skipped = {}
        for why, paths in _mapping("dataset.skipped", self.skipped).items():
            skipped[why] = _strings(f"dataset.skipped.{why}", paths)
            for path in skipped[why]:
                if path.startswith("/") or path[1:3] in (":/", ":\\"):
                    raise _fail(f"dataset.skipped.{why}", path, "paths relative to the dataset root")
        object.__setattr__(self, "skipped", _freeze(skipped))

    @classmethod
    def of_mapping(cls, dataset: Mapping[str, Any]) -> DatasetInfo:
        """From ``create_store``'s ``dataset`` argument (missing keys are empty)."""
        return cls(name=str(dataset.get("name", "")), split_scheme=str(dataset.get("split_scheme", "")),
                   n_folds=int(dataset.get("n_folds", 0)), source=str(dataset.get("source", "")),
                   skipped={str(k): tuple(v) for k, v in dict(dataset.get("skipped") or {}).items()})

    @classmethod
    def from_attrs(cls, attrs: Any) -> DatasetInfo:
        section = _mapping("dataset", attrs)
        required = {f.name: _section(section, f.name, "dataset.") for f in dataclasses.fields(cls)
                    if f.name != "skipped"}
        return cls(**required, skipped=section.get("skipped", {}))

    def to_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"name": self.name, "split_scheme": self.split_scheme, "n_folds": self.n_folds,
                                 "source": self.source}
        if self.skipped:
            attrs["skipped"] = {why: list(paths) for why, paths in self.skipped.items()}
        return attrs


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Who built the store, when and with what (the ``provenance`` attribute).

    libraries : library -> version (and ``python``); created : ISO 8601 UTC time;
    schema : "<format> v<version>".
    """

    package: str
    package_version: str
    libraries: Mapping[str, str]
    created: str
    schema: str

    def __post_init__(self) -> None:
        _str("provenance.package", self.package)
        _str("provenance.package_version", self.package_version)
        for name, version in _mapping("provenance.libraries", self.libraries).items():
            _str(f"provenance.libraries.{name}", version)
        object.__setattr__(self, "libraries", _freeze(self.libraries))
        _str("provenance.created", self.created)
        _str("provenance.schema", self.schema)

    @classmethod
    def of_this_build(cls) -> Provenance:
        """This package's and its libraries' versions, now."""
        return cls(package="harmonic-feature-store", package_version=_package_version(),
                   libraries=_library_versions(), created=_now(),
                   schema=f"{schema.FORMAT_NAME} v{schema.SCHEMA_VERSION}")

    @classmethod
    def from_attrs(cls, attrs: Any) -> Provenance:
        return cls(**_fields(cls, attrs, "provenance."))

    def to_attrs(self) -> dict[str, Any]:
        return {"package": self.package, "package_version": self.package_version,
                "libraries": _thaw(self.libraries), "created": self.created, "schema": self.schema}


@dataclasses.dataclass(frozen=True)
class BuildSummary:
    """Clips that built and that failed (the ``summary`` attribute of a finished store)."""

    n_ok: int
    n_failed: int

    def __post_init__(self) -> None:
        _int("summary.n_ok", self.n_ok, minimum=0)
        _int("summary.n_failed", self.n_failed, minimum=0)

    @classmethod
    def from_attrs(cls, attrs: Any) -> BuildSummary:
        return cls(**_fields(cls, attrs, "summary."))

    def to_attrs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """What a store records of one feature: its band count, and the ``units`` and
    ``description`` attributes of its array (as registered with the feature's function)."""

    bands: int
    units: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        _int("features.bands", self.bands, minimum=1)
        _str("features.units", self.units)
        _str("features.description", self.description)


@dataclasses.dataclass(frozen=True)
class RecordedConfig:
    """The configuration that determines a store's numbers, as the store records it: data, not code.

    The layer that computes features makes one (``PipelineConfig.recorded()``);
    this package writes and compares it without knowing what the values mean.

    config : the whole configuration as JSON-able sections (written in full).
    config_hash : its hash (compared on resume, part of the fingerprint).
    variants : variant names, :data:`~stores.schema.ORIGINAL` first.
    features : feature name -> :class:`FeatureInfo`, in store order.
    max_frames : frames of the longest clip a store holds.
    window : how the trainer cuts windows.
    """

    config: Mapping[str, Mapping[str, Any]]
    config_hash: str
    variants: tuple[str, ...]
    features: Mapping[str, FeatureInfo]
    max_frames: int
    window: WindowInfo

    def feature_bands(self) -> dict[str, int]:
        """Feature name -> bands, as the ``features`` root attribute holds them."""
        return {name: info.bands for name, info in self.features.items()}


# -- the whole ------------------------------------------------------------------------------------------

#: Root attribute names in the order they are written.
ATTRIBUTE_NAMES = ("format", "schema_version", "complete", "fingerprint", "config", "config_hash", "clips_hash",
                   "labels", "variants", "features", "max_frames", "window", "augmented_splits", "aug_params",
                   "layout", "dataset", "provenance", "summary", "finished")
#: Attributes that only a finished store has (``finalize`` adds them).
_FINISH_ATTRIBUTES = ("summary", "finished")


@dataclasses.dataclass(frozen=True)
class StoreMetadata:
    """The root attributes of a store, validated (see the module docstring for each).

    config : the pipeline config as stored (a read-only mapping of sections;
        :meth:`config_dict` thaws it).
    features : feature name -> bands (read-only mapping).
    aug_params : variant -> drawn parameter -> array holding it (read-only mappings).
    summary, finished : None until the store is finalized.
    extra : root attributes this package does not write (added by someone
        else), kept so that they write back unchanged.
    """

    format: str
    schema_version: int
    complete: bool
    fingerprint: str | None
    config: Mapping[str, Any]
    config_hash: str
    clips_hash: str
    labels: tuple[str, ...]
    variants: tuple[str, ...]
    features: Mapping[str, int]
    max_frames: int
    window: WindowInfo
    augmented_splits: tuple[str, ...]
    aug_params: Mapping[str, Mapping[str, str]]
    layout: LayoutInfo
    dataset: DatasetInfo
    provenance: Provenance
    summary: BuildSummary | None = None
    finished: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format != schema.FORMAT_NAME:
            raise _fail("format", self.format, repr(schema.FORMAT_NAME))
        version = _int("schema_version", self.schema_version, minimum=1)
        if version > schema.SCHEMA_VERSION:
            raise _fail("schema_version", version, f"at most {schema.SCHEMA_VERSION}")
        _bool("complete", self.complete)
        _optional_str("fingerprint", self.fingerprint)
        if self.complete and self.fingerprint is None:
            raise _fail("fingerprint", self.fingerprint, "the fingerprint of a complete store")
        for section, values in _mapping("config", self.config).items():
            _mapping(f"config.{section}", values)
        _str("config_hash", self.config_hash, nonempty=True)
        _str("clips_hash", self.clips_hash, nonempty=True)
        _strings("labels", self.labels)
        if not _strings("variants", self.variants) or self.variants[0] != ORIGINAL:
            raise _fail("variants", self.variants, f"a list of variant names, {ORIGINAL!r} first")
        if not _mapping("features", self.features):
            raise _fail("features", self.features, "at least one feature name -> bands")
        for name, bands in self.features.items():
            _int(f"features.{name}", bands, minimum=1)
        _int("max_frames", self.max_frames, minimum=1)
        for name, part, kind in (("window", self.window, WindowInfo), ("layout", self.layout, LayoutInfo),
                                 ("dataset", self.dataset, DatasetInfo), ("provenance", self.provenance, Provenance)):
            if not isinstance(part, kind):
                raise _fail(name, part, f"a {kind.__name__}")
        _strings("augmented_splits", self.augmented_splits)
        for variant, params in _mapping("aug_params", self.aug_params).items():
            if variant not in self.variants:
                raise _fail("aug_params", variant, f"a variant of {list(self.variants)}")
            for param, array in _mapping(f"aug_params.{variant}", params).items():
                _str(f"aug_params.{variant}.{param}", array, nonempty=True)
        if self.summary is not None and not isinstance(self.summary, BuildSummary):
            raise _fail("summary", self.summary, "a BuildSummary or None")
        _optional_str("finished", self.finished)
        clash = set(_mapping("extra", self.extra)) & set(ATTRIBUTE_NAMES)
        if clash:
            raise _fail("extra", sorted(clash), "attributes other than the store's own")
        # Read-only all the way down: a metadata object cannot change after it was checked.
        for name in ("labels", "variants", "augmented_splits"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("config", "features", "aug_params", "extra"):
            object.__setattr__(self, name, _freeze(getattr(self, name)))

    # -- making one ---------------------------------------------------------------------------
    @classmethod
    def for_new_store(cls, *, config: RecordedConfig, clips_hash: str, labels: Sequence[str], layout: Layout,
                      augmented_splits: Sequence[str], aug_params: Mapping[str, Mapping[str, str]],
                      dataset: DatasetInfo, provenance: Provenance | None = None) -> StoreMetadata:
        """The metadata :func:`stores.writer.create_store` writes: not complete, no fingerprint yet.

        Parameters
        ----------
        config : everything that determines the numbers, as recorded (written in full; its hash).
        clips_hash : hash of the static per-clip columns.
        layout : clips and shards.
        aug_params : variant -> drawn parameter -> name of its array.
        provenance : default: :meth:`Provenance.of_this_build`, now.
        """
        return cls(
            format=schema.FORMAT_NAME, schema_version=schema.SCHEMA_VERSION, complete=False, fingerprint=None,
            config=_thaw(config.config), config_hash=config.config_hash, clips_hash=clips_hash,
            labels=tuple(labels), variants=tuple(config.variants),
            features=config.feature_bands(), max_frames=config.max_frames,
            window=config.window, augmented_splits=tuple(augmented_splits),
            aug_params={v: dict(p) for v, p in aug_params.items()}, layout=LayoutInfo.of_layout(layout),
            dataset=dataset, provenance=provenance or Provenance.of_this_build(),
        )

    def finished_with(self, fingerprint: str, summary: BuildSummary,
                      finished: str | None = None) -> StoreMetadata:
        """This metadata marked complete, as :meth:`StoreWriter.finalize` writes it (``finished``: default now)."""
        return dataclasses.replace(self, complete=True, fingerprint=fingerprint, summary=summary,
                                   finished=finished or _now())

    # -- the attributes ---------------------------------------------------------------------------
    def to_attrs(self) -> dict[str, Any]:
        """The root attributes (JSON types) in the order they are written."""
        attrs: dict[str, Any] = {
            "format": self.format,
            "schema_version": self.schema_version,
            "complete": self.complete,
            "fingerprint": self.fingerprint,
            "config": _thaw(self.config),
            "config_hash": self.config_hash,
            "clips_hash": self.clips_hash,
            "labels": list(self.labels),
            "variants": list(self.variants),
            "features": _thaw(self.features),
            "max_frames": self.max_frames,
            "window": self.window.to_attrs(),
            "augmented_splits": list(self.augmented_splits),
            "aug_params": _thaw(self.aug_params),
            "layout": self.layout.to_attrs(),
            "dataset": self.dataset.to_attrs(),
            "provenance": self.provenance.to_attrs(),
        }
        if self.summary is not None:
            attrs["summary"] = self.summary.to_attrs()
        if self.finished is not None:
            attrs["finished"] = self.finished
        attrs.update(_thaw(self.extra))
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], *, uri: str = "the store") -> StoreMetadata:
        """Parse and validate a store's root attributes.

        Parameters
        ----------
        attrs : the root attributes as read (``dict(group.attrs)``).
        uri : the store's URI (credentials removed), for the messages.

        Raises
        ------
        StoreNotFoundError
            The attributes are not those of a feature store (no or another ``format``).
        SchemaVersionError
            A newer schema version than this code reads.
        MetadataError
            An attribute is missing or malformed; the message names the
            store, the attribute and the fix.
        """
        check_format(attrs, uri=uri)
        try:
            return cls._parse(attrs)
        except MetadataError as exc:
            raise MetadataError(f"{uri}: {exc}; {_FIX}", exc.field) from None

    @classmethod
    def _parse(cls, attrs: Mapping[str, Any]) -> StoreMetadata:
        required = [name for name in ATTRIBUTE_NAMES if name not in _FINISH_ATTRIBUTES]
        values = {name: _section(attrs, name) for name in required}
        summary = attrs.get("summary")
        return cls(**{
            **values,
            "window": WindowInfo.from_attrs(values["window"]),
            "layout": LayoutInfo.from_attrs(values["layout"]),
            "dataset": DatasetInfo.from_attrs(values["dataset"]),
            "provenance": Provenance.from_attrs(values["provenance"]),
            "summary": None if summary is None else BuildSummary.from_attrs(summary),
            "finished": attrs.get("finished"),
            "extra": {k: v for k, v in attrs.items() if k not in ATTRIBUTE_NAMES},
        })

    # -- what readers ask ---------------------------------------------------------------------------
    def config_dict(self) -> dict[str, dict[str, Any]]:
        """The stored config as plain JSON types (what ``PipelineConfig.to_dict()`` gave;
        ``PipelineConfig.from_dict`` parses it back)."""
        return _thaw(self.config)

    @property
    def shards(self) -> Layout:
        """How the store's clips map to shards."""
        return self.layout.shards

    def aug_arrays(self) -> list[str]:
        """Names of every augmentation parameter array, sorted."""
        return sorted(array for params in self.aug_params.values() for array in params.values())


def check_format(attrs: Mapping[str, Any], *, uri: str = "the store") -> None:
    """Refuse attributes that are not a feature store's, or of a newer schema version.

    Raises
    ------
    StoreNotFoundError
        No ``format`` attribute, or another one: a Zarr group but not a feature store.
    SchemaVersionError
        ``schema_version`` is newer than this code reads (or not an integer).
    """
    if attrs.get("format") != schema.FORMAT_NAME:
        raise StoreNotFoundError(
            f"{uri} holds a Zarr group but not a {schema.FORMAT_NAME} store "
            f"(format attribute {attrs.get('format')!r})"
        )
    version = attrs.get("schema_version")
    if not isinstance(version, int) or version > schema.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{uri} was written with store schema version {version!r}; this code reads versions "
            f"<= {schema.SCHEMA_VERSION}. Upgrade harmonic-feature-store to read it"
        )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _package_version() -> str:
    try:
        return _metadata.version("harmonic-feature-store")
    except _metadata.PackageNotFoundError:
        return "unknown (not installed as a package)"
