"""Frozen, validated configuration for every stage of the feature pipeline.

One dataclass per stage (audio front end, features, windows, augmentation),
composed into :class:`PipelineConfig`. A config serialises to a plain dict of
JSON types (``to_dict``), comes back from one (``from_dict``, which rejects
unknown keys and lists the valid ones) and hashes to a stable fingerprint
(``config_hash``). The whole dict is written into every store, so a reader
never has to guess a default.

An invalid config cannot exist: each ``__post_init__`` validates every field
and raises :class:`~pipeline.errors.ConfigError` naming the field, the bad
value and what would be accepted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar, Union

from pipeline import validate
from pipeline.errors import ConfigError
from stores.metadata import FeatureInfo, RecordedConfig, WindowInfo
from stores.schema import ORIGINAL  # the un-augmented variant's name, always stored first
#: Excerpt positions of a longer file (``audio.excerpt``, ``load_clip(excerpt=)``).
EXCERPTS: tuple[str, ...] = ("centre", "start")
#: Metadata key of a config field added after stores existed: ``to_dict`` leaves it out while it
#: is at its default, so stores built before it keep their config hash (and fingerprint).
RECORDED_IF_SET = "recorded_if_set"
#: The augmentations a default config stores, in the order variants are stored.
DEFAULT_AUGMENTATIONS: tuple[str, ...] = ("time_stretch", "pitch_shift", "noise", "gain")

T = TypeVar("T")
#: A registered DSP function: the callable itself, or ``"module:attribute"``
#: naming it (the DSP layer, which calls it, imports it on first use; this
#: module never imports the layers above it).
FunctionRef = Union[str, Callable[..., Any]]


# --------------------------------------------------------------------------
# Registries: features and augmentations by name
# --------------------------------------------------------------------------
class Registry(Generic[T]):
    """Name -> entry, in registration order; an unknown name is an error listing the valid ones.

    The order is meaningful: features are stored in it. Registering happens at
    import time (this module registers the built-in entries), so a process
    knows an entry as soon as the module that registers it is imported.

    Parameters
    ----------
    kind : str
        What an entry is ("feature", "augmentation"), for messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` and return it; a name is registered once.

        Raises
        ------
        ConfigError
            ``name`` is not a lower-case identifier, is ``"original"`` or is
            already registered.
        """
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower() or "__" in name:
            raise ConfigError(f"{self.kind} name {name!r} must be a lower-case Python identifier without '__' "
                              "(it names store arrays)")
        if name == ORIGINAL:
            raise ConfigError(f"{self.kind} name {ORIGINAL!r} is reserved for the un-augmented variant")
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is already registered; unregister it first or choose another name")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its entry (tests register and remove their own)."""
        entry = self[name]
        del self._entries[name]
        return entry

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self._entries)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def values(self) -> tuple[T, ...]:
        return tuple(self._entries.values())

    def items(self) -> tuple[tuple[str, T], ...]:
        return tuple(self._entries.items())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


@dataclasses.dataclass(frozen=True)
class Feature:
    """A per-frame feature of every store: how many bands it has, what computes it and
    what its values are (the units and description its store array records).

    Attributes
    ----------
    name : str
        The store array's name.
    bands : str or int
        The :class:`FeatureConfig` field holding the band count (``"n_mels"``),
        or a fixed count (CENS: 12).
    compute : callable or "module:attribute"
        ``compute(spectra, cfg) -> float32 [shape=(bands, frames)]`` from the
        shared spectra of one signal (:class:`pipeline.dsp.features.Spectra`)
        and the :class:`FeatureConfig`.
    units : str
        Units of the values ("dB", or "" when they have none).
    description : str
        One line saying what the feature is, written beside its array.
    optional : bool
        Computed only where a config names it in ``features.extra`` (a store
        gains it by ``pipeline build --update``, see :mod:`stores.updates`);
        the others are in every store.
    params : tuple of str
        The :class:`FeatureConfig` fields only this feature reads: an update
        that adds the feature may set them, any other change of them is a
        change of the feature (not an update).
    """

    name: str
    bands: str | int
    compute: FunctionRef
    units: str = ""
    description: str = ""
    optional: bool = False
    params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        fields = {f.name for f in dataclasses.fields(FeatureConfig)}
        if isinstance(self.bands, str):
            if self.bands not in fields:
                raise ConfigError(f"feature {self.name!r}: bands={self.bands!r} is not a FeatureConfig field")
        else:
            validate.integer(f"feature {self.name!r}.bands", self.bands, minimum=1)
        object.__setattr__(self, "params", tuple(self.params))
        unknown = [p for p in self.params if p not in fields]
        if unknown:
            raise ConfigError(f"feature {self.name!r}: params {unknown} are not FeatureConfig fields")

    def n_bands(self, cfg: "FeatureConfig") -> int:
        return int(getattr(cfg, self.bands)) if isinstance(self.bands, str) else self.bands

    def recorded(self, cfg: "FeatureConfig") -> FeatureInfo:
        """What a store records of this feature under ``cfg``."""
        return FeatureInfo(self.n_bands(cfg), self.units, self.description or self.name)


@dataclasses.dataclass(frozen=True)
class AugmentParam:
    """One parameter an augmentation draws for each clip-variant.

    Attributes
    ----------
    name : str
        Keyword of the augmentation function; with the variant it names the
        store's parameter array.
    range : str, (float, float) or None
        Uniform float draw over the :class:`AugmentConfig` field of that name
        (``"stretch_rate"``) or over a fixed (low, high); ``None`` draws a
        seed, an integer in [0, 2**31) (e.g. of the noise added).
    """

    name: str
    range: str | tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(f"augmentation parameter name {self.name!r} must be a Python identifier")
        if isinstance(self.range, str):
            if self.range not in {f.name for f in dataclasses.fields(AugmentConfig)}:
                raise ConfigError(f"augmentation parameter {self.name!r}: range={self.range!r} is not an "
                                  "AugmentConfig field")
        elif self.range is not None:
            validate.number_range(f"augmentation parameter.{self.name}", self.range, -math.inf, math.inf)
            object.__setattr__(self, "range", (float(self.range[0]), float(self.range[1])))

    def bounds(self, cfg: "AugmentConfig") -> tuple[float, float]:
        """(low, high) of the uniform draw."""
        return getattr(cfg, self.range) if isinstance(self.range, str) else self.range  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """An augmentation: its pure function and the parameters drawn for it.

    Attributes
    ----------
    name : str
        The variant name in a config and a store.
    apply : callable or "module:attribute"
        ``apply(y, **params) -> float32 [shape=(m,)]`` of a mono signal ``y``
        [shape=(n,)]; it is also given ``sr=`` (Hz) if it has a keyword
        parameter named ``sr``.
    params : tuple of AugmentParam
        Drawn in this order from the variant's generator (the order is part of
        the stored numbers: never reorder an existing augmentation's).
    rate_param : str, optional
        The parameter that divides the length (``m = round(n / rate)``:
        time-stretch); ``None`` keeps the length. Sizes the store's frames.
    gain_db_param : str, optional
        Set only if the augmentation does nothing but multiply the signal by
        ``10 ** (param / 20)`` (gain): then its features are derived from the
        original's (``features.derive_scaled_variants``).
    """

    name: str
    apply: FunctionRef
    params: tuple[AugmentParam, ...] = ()
    rate_param: str | None = None
    gain_db_param: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ConfigError(f"augmentation {self.name!r} lists a parameter twice: {names}")
        for field in ("rate_param", "gain_db_param"):
            value = getattr(self, field)
            if value is not None and value not in names:
                raise ConfigError(f"augmentation {self.name!r}: {field}={value!r} is not one of its "
                                  f"parameters {names}")

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def max_samples(self, n_samples: int, cfg: "AugmentConfig") -> int | None:
        """Longest output for ``n_samples`` input samples; ``None`` if the length is kept."""
        if self.rate_param is None:
            return None
        param = next(p for p in self.params if p.name == self.rate_param)
        return int(math.ceil(n_samples / param.bounds(cfg)[0]))


#: Every per-frame feature a store holds, in store order.
FEATURES: Registry[Feature] = Registry("feature")
#: Every augmentation a config may name.
AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation")


def register_feature(feature: Feature) -> Feature:
    """Add ``feature`` to every store built from now on (see :data:`FEATURES`)."""
    return FEATURES.register(feature.name, feature)


def register_augmentation(augmentation: Augmentation) -> Augmentation:
    """Make ``augmentation`` a valid ``augment.variants`` name (see :data:`AUGMENTATIONS`)."""
    return AUGMENTATIONS.register(augmentation.name, augmentation)


def canonical_hash(value: Any, default: Any = None) -> str:
    """SHA-256 of the canonical JSON of ``value`` (sorted keys, no spaces): equal values, equal hashes.

    ``default`` is ``json.dumps``'s fallback for values JSON cannot hold.
    """
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=default)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """Decoding: what signal a clip becomes before any feature is computed.

    Attributes
    ----------
    sample_rate : int
        Target rate in Hz; every file is resampled to it (soxr).
    clip_seconds : float
        Fixed clip length. Longer files contribute their excerpt of this length;
        shorter ones are zero-padded and their valid length recorded.
    excerpt : {"centre", "start"}
        Which part of a longer file is kept ("centre", as FMA's clips were cut).
    resample_quality : {"VHQ", "HQ", "MQ"}
        soxr quality preset.
    """

    sample_rate: int = 22050
    clip_seconds: float = 30.0
    excerpt: str = "centre"
    resample_quality: str = "HQ"

    def __post_init__(self) -> None:
        validate.integer("audio.sample_rate", self.sample_rate, minimum=1)
        validate.number("audio.clip_seconds", self.clip_seconds, positive=True)
        validate.one_of("audio.excerpt", self.excerpt, EXCERPTS)
        validate.one_of("audio.resample_quality", self.resample_quality, ("VHQ", "HQ", "MQ"))

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Spectral features, all at one STFT hop so their frames align.

    Attributes
    ----------
    n_fft, hop_length : int
        STFT size and hop in samples (Hann window, centred frames).
    n_mels : int
        Bands of the log-mel spectrogram of the original signal (paper: 128).
    hp_n_mels : int
        Bands of the log-mel spectra of the harmonic and percussive parts.
        64 by default: these feed the Bi-GRU as a per-frame sequence, where
        128 + 128 + 12 inputs would triple the GRU's input weights for detail
        the CNN branch already sees in the 128-band mel; 64 Slaney bands still
        resolve about a semitone below 1 kHz. It also halves their storage.
    fmin, fmax : float
        Mel filterbank edges in Hz; ``fmax`` 0 means sample_rate / 2.
    top_db : float
        Dynamic range kept by the dB conversion (as ``librosa.power_to_db``,
        ref=1.0, amin=1e-10); 0 disables the floor.
    n_mfcc : int
        MFCCs of the harmonic part (DCT-II, ortho) from its 128-band log-mel.
    hpss_kernel_harmonic, hpss_kernel_percussive : int
        Median filter lengths in frames (time) and bins (frequency),
        as ``librosa.decompose.hpss(kernel_size=(h, p))``.
    hpss_power, hpss_margin : float
        Soft-mask exponent and margin, as in ``librosa.decompose.hpss``.
    cens_bins_per_octave, cens_n_octaves, cens_win_len_smooth : int
        CQT resolution and smoothing of CENS, as ``librosa.feature.chroma_cens``.
    cens_fmin : float
        Lowest CQT frequency in Hz (C1 = 32.703 Hz, librosa's default).
    cens_tuning : float
        Tuning offset in fractions of a bin; fixed (not estimated per clip) so
        that a clip's features do not depend on a noisy tuning estimate.
    derive_scaled_variants : bool
        Derive the features of a variant that only scales the signal (gain)
        from the original's by exact identities (HPSS masks and CENS do not
        change, mel powers scale by the gain squared, the dB floors are
        applied afterwards) instead of computing them afresh: ~1/200 of the
        cost, equal up to float32 rounding. False computes them afresh, as
        stores built before this option did.
    extra : tuple of str
        Optional registered features (:attr:`Feature.optional`) stored after
        the built-in ones, in this order: ``["tempogram"]``. A store gains
        one without recomputing anything else through ``pipeline build
        --update`` with a config that appends it here.
    tempogram_win_length : int
        Autocorrelation window of the ``tempogram`` feature in frames, which
        is also its number of lags (bands): 384 frames (8.9 s at hop 512),
        as ``librosa.feature.tempogram``.
    """

    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    hp_n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 0.0
    top_db: float = 80.0
    n_mfcc: int = 13
    hpss_kernel_harmonic: int = 31
    hpss_kernel_percussive: int = 31
    hpss_power: float = 2.0
    hpss_margin: float = 1.0
    cens_bins_per_octave: int = 36
    cens_n_octaves: int = 7
    cens_win_len_smooth: int = 41
    cens_fmin: float = 32.70319566257483
    cens_tuning: float = 0.0
    derive_scaled_variants: bool = True
    # Fields added after stores existed: left out of the canonical dict while at their default
    # (PipelineConfig.to_dict), so that the stores built before keep their config hash.
    extra: tuple[str, ...] = dataclasses.field(default=(), metadata={RECORDED_IF_SET: True})
    tempogram_win_length: int = dataclasses.field(default=384, metadata={RECORDED_IF_SET: True})

    def __post_init__(self) -> None:
        for name in ("n_fft", "hop_length", "n_mels", "hp_n_mels", "n_mfcc",
                     "hpss_kernel_harmonic", "hpss_kernel_percussive",
                     "cens_bins_per_octave", "cens_n_octaves", "cens_win_len_smooth"):
            validate.integer(f"features.{name}", getattr(self, name), minimum=1)
        if self.hop_length > self.n_fft:
            raise ConfigError(f"features.hop_length={self.hop_length} must not exceed n_fft={self.n_fft}")
        if self.n_mfcc > self.n_mels:
            raise ConfigError(f"features.n_mfcc={self.n_mfcc} must not exceed n_mels={self.n_mels}")
        if self.cens_bins_per_octave % 12:
            raise ConfigError(
                f"features.cens_bins_per_octave={self.cens_bins_per_octave} must be a multiple of 12"
            )
        for name in ("fmin", "fmax", "top_db"):
            value = getattr(self, name)
            validate.number(f"features.{name}", value)
            if value < 0:
                raise ConfigError(f"features.{name}={value!r} must be >= 0")
        if self.fmax and self.fmax <= self.fmin:
            raise ConfigError(f"features.fmax={self.fmax} must exceed fmin={self.fmin} (or be 0 for sr/2)")
        validate.number("features.hpss_power", self.hpss_power, positive=True)
        validate.number("features.hpss_margin", self.hpss_margin)
        if self.hpss_margin < 1.0:
            raise ConfigError(f"features.hpss_margin={self.hpss_margin} must be >= 1.0")
        validate.flag("features.derive_scaled_variants", self.derive_scaled_variants)
        validate.integer("features.tempogram_win_length", self.tempogram_win_length, minimum=2)
        object.__setattr__(self, "extra", tuple(self.extra))
        optional = [f.name for f in FEATURES.values() if f.optional]
        for name in self.extra:
            if name not in optional:
                raise ConfigError(f"features.extra names {name!r}, which is not an optional registered feature; "
                                  f"valid: {', '.join(optional) or '(none registered)'}")
        if len(set(self.extra)) != len(self.extra):
            raise ConfigError(f"features.extra={list(self.extra)!r} lists a feature twice")
        validate.number("features.cens_fmin", self.cens_fmin, positive=True)
        validate.number("features.cens_tuning", self.cens_tuning)
        if not -0.5 <= self.cens_tuning < 0.5:
            raise ConfigError(f"features.cens_tuning={self.cens_tuning} must be in [-0.5, 0.5)")

    def feature_names(self) -> tuple[str, ...]:
        """The features a store of this config holds, in store order: every registered
        feature that is not optional (:data:`FEATURES` order), then :attr:`extra`."""
        return (*(f.name for f in FEATURES.values() if not f.optional), *self.extra)

    def feature_bands(self) -> dict[str, int]:
        """Name -> number of bands of each feature of :meth:`feature_names`, in store order."""
        return {name: FEATURES[name].n_bands(self) for name in self.feature_names()}

    def n_frames(self, n_samples: int) -> int:
        """Frames of a centred STFT of ``n_samples`` samples."""
        return 1 + n_samples // self.hop_length


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    """The 3 s analysis windows cut from clip-level frames at read time."""

    window_seconds: float = 3.0
    overlap: float = 0.5

    def __post_init__(self) -> None:
        validate.number("window.window_seconds", self.window_seconds, positive=True)
        validate.number("window.overlap", self.overlap)
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"window.overlap={self.overlap} must be in [0, 1)")

    def window_frames(self, sample_rate: int, hop_length: int) -> int:
        """Frames in one window (3 s at 22,050 Hz, hop 512: 130)."""
        return 1 + int(round(self.window_seconds * sample_rate)) // hop_length

    def hop_frames(self, sample_rate: int, hop_length: int) -> int:
        """Frames between window starts (50% overlap of 130 frames: 65)."""
        return max(1, int(round(self.window_frames(sample_rate, hop_length) * (1.0 - self.overlap))))


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Augmented variants and the ranges their parameters are drawn from.

    Parameters of a variant are drawn from a seed derived from
    (``seed``, clip id, variant name), so rebuilds and resumes repeat them
    bit for bit.

    Attributes
    ----------
    seed : int
        Global seed of all augmentation draws.
    variants : tuple of str
        Augmentations stored beside the original, names registered in
        :data:`AUGMENTATIONS`.
    stretch_rate : (float, float)
        Time-stretch rate range (>1 is faster/shorter); paper: +-10%.
    pitch_semitones : (float, float)
        Pitch-shift range in semitones; paper: +-2.
    noise_snr_db : (float, float)
        Signal-to-noise ratio of added white Gaussian noise, dB.
    gain_db : (float, float)
        Gain range in dB.
    augment_splits : tuple of str
        Splits whose clips get augmented variants ("train" by default; a
        build that uses folds augments every clip).
    """

    seed: int = 0
    variants: tuple[str, ...] = DEFAULT_AUGMENTATIONS
    stretch_rate: tuple[float, float] = (0.9, 1.1)
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    augment_splits: tuple[str, ...] = ("train",)

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"augment.seed={self.seed!r} must be a non-negative integer")
        object.__setattr__(self, "variants", tuple(self.variants))
        object.__setattr__(self, "augment_splits", tuple(self.augment_splits))
        for name in self.variants:
            validate.one_of("augment.variants", name, AUGMENTATIONS.names())
        if len(set(self.variants)) != len(self.variants):
            raise ConfigError(f"augment.variants={list(self.variants)!r} lists a variant twice")
        for name, lo, hi in (("stretch_rate", 0.5, 2.0), ("pitch_semitones", -12.0, 12.0),
                             ("noise_snr_db", -20.0, 120.0), ("gain_db", -60.0, 60.0)):
            value = getattr(self, name)
            validate.number_range(f"augment.{name}", value, lo, hi)
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        for split in self.augment_splits:
            validate.one_of("augment.augment_splits", split, ("train", "val", "test", "all"))

    @property
    def variant_names(self) -> tuple[str, ...]:
        """All stored variants: the original first, then the augmentations."""
        return (ORIGINAL, *self.variants)


_SECTIONS: dict[str, type] = {
    "audio": AudioConfig,
    "features": FeatureConfig,
    "window": WindowConfig,
    "augment": AugmentConfig,
}
#: (section, field, default) of every field recorded only when it differs from its default.
_RECORDED_IF_SET: tuple[tuple[str, str, Any], ...] = tuple(
    (section, f.name, f.default) for section, cls in _SECTIONS.items() for f in dataclasses.fields(cls)
    if f.metadata.get(RECORDED_IF_SET))


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything that determines the numbers in a feature store."""

    audio: AudioConfig = dataclasses.field(default_factory=AudioConfig)
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    window: WindowConfig = dataclasses.field(default_factory=WindowConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        nyquist = self.audio.sample_rate / 2
        if self.features.fmax > nyquist:
            raise ConfigError(
                f"features.fmax={self.features.fmax} exceeds the Nyquist frequency {nyquist:g} Hz of "
                f"audio.sample_rate={self.audio.sample_rate}; lower it or use 0 for sample_rate / 2"
            )
        if self.features.n_fft > self.audio.clip_samples:
            raise ConfigError(
                f"features.n_fft={self.features.n_fft} exceeds the clip length "
                f"({self.audio.clip_samples} samples); lower n_fft or raise audio.clip_seconds"
            )
        if self.window.window_seconds > self.audio.clip_seconds:
            raise ConfigError(
                f"window.window_seconds={self.window.window_seconds} exceeds "
                f"audio.clip_seconds={self.audio.clip_seconds}"
            )

    # -- derived quantities the store and the trainer share ---------------
    @property
    def window_frames(self) -> int:
        return self.window.window_frames(self.audio.sample_rate, self.features.hop_length)

    @property
    def window_hop_frames(self) -> int:
        return self.window.hop_frames(self.audio.sample_rate, self.features.hop_length)

    @property
    def min_samples(self) -> int:
        """Shortest decodable clip: one analysis window."""
        return int(round(self.window.window_seconds * self.audio.sample_rate))

    @property
    def max_frames(self) -> int:
        """Frames of the longest stored variant (the slowest time-stretch)."""
        longest = self.audio.clip_samples
        stretched = [n for n in (AUGMENTATIONS[v].max_samples(longest, self.augment) for v in self.augment.variants)
                     if n is not None]
        if stretched:
            longest = max(stretched)
        return self.features.n_frames(longest)

    # -- serialisation -----------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain JSON types only (tuples become lists); fields marked :data:`RECORDED_IF_SET` are
        left out while at their default."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        for section, name, default in _RECORDED_IF_SET:
            if getattr(getattr(self, section), name) == default:
                del data[section][name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PipelineConfig":
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys are errors."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a pipeline config must be a mapping of sections, got {type(data).__name__}")
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ConfigError(
                f"unknown config section(s) {sorted(unknown)}; valid sections: {sorted(_SECTIONS)}"
            )
        sections = {}
        for name, section_cls in _SECTIONS.items():
            values = dict(data.get(name) or {})
            valid = {f.name for f in dataclasses.fields(section_cls)}
            bad = set(values) - valid
            if bad:
                raise ConfigError(f"unknown key(s) {sorted(bad)} in [{name}]; valid keys: {sorted(valid)}")
            for key, value in values.items():
                if isinstance(value, list):
                    values[key] = tuple(value)
            sections[name] = section_cls(**values)
        return cls(**sections)

    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON form; equal configs, equal hashes."""
        return canonical_hash(self.to_dict())

    def recorded(self) -> RecordedConfig:
        """This config as a store records it (:class:`stores.metadata.RecordedConfig`): the
        whole dict and its hash, the variants, each registered feature's bands, units and
        description, the frame counts and the window."""
        window = WindowInfo(window_frames=self.window_frames, window_hop_frames=self.window_hop_frames,
                            window_seconds=self.window.window_seconds, overlap=self.window.overlap,
                            hop_length=self.features.hop_length, sample_rate=self.audio.sample_rate)
        return RecordedConfig(
            config=self.to_dict(), config_hash=self.config_hash(), variants=tuple(self.augment.variant_names),
            features={name: FEATURES[name].recorded(self.features) for name in self.features.feature_names()},
            max_frames=self.max_frames, window=window,
        )

    def replace(self, **sections: Any) -> "PipelineConfig":
        return dataclasses.replace(self, **sections)


def load_config(path: str | Path | None) -> PipelineConfig:
    """Read a TOML or JSON config file (sections as in :class:`PipelineConfig`).

    ``None`` gives the defaults.
    """
    if path is None:
        return PipelineConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing .toml or .json file")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from exc
    return PipelineConfig.from_dict(data)


# --------------------------------------------------------------------------
# The built-in features and augmentations
# --------------------------------------------------------------------------
# A feature's one home: its function, band count, units and description,
# registered together; the store writer records units and description from
# here (PipelineConfig.recorded). Registered here rather than beside their
# functions because checkpoints and recipes read configs (variant names, band
# counts) without loading the DSP layer; the functions are named
# "module:attribute" and imported by the DSP layer when it first calls them.
for _feature in (
    Feature("mel", "n_mels", "pipeline.dsp.features:log_mel",
            "dB", "log-mel spectrogram of the signal (power dB)"),
    Feature("harmonic_mel", "hp_n_mels", "pipeline.dsp.features:harmonic_log_mel",
            "dB", "log-mel spectrogram of the HPSS harmonic part (power dB)"),
    Feature("percussive_mel", "hp_n_mels", "pipeline.dsp.features:percussive_log_mel",
            "dB", "log-mel spectrogram of the HPSS percussive part (power dB)"),
    Feature("mfcc", "n_mfcc", "pipeline.dsp.features:harmonic_mfcc", "", "MFCCs of the harmonic part"),
    Feature("cens", 12, "pipeline.dsp.features:harmonic_cens", "", "chroma energy normalised statistics (CENS)"),
    Feature("tempogram", "tempogram_win_length", "pipeline.dsp.features:onset_tempogram", "",
            "autocorrelation tempogram of the onset strength of the log-mel (optional: features.extra)",
            optional=True, params=("tempogram_win_length",)),
):
    register_feature(_feature)

for _augmentation in (
    Augmentation("time_stretch", "pipeline.dsp.augment:time_stretch",
                 (AugmentParam("rate", "stretch_rate"),), rate_param="rate"),
    Augmentation("pitch_shift", "pipeline.dsp.augment:pitch_shift", (AugmentParam("semitones", "pitch_semitones"),)),
    Augmentation("noise", "pipeline.dsp.augment:add_noise",
                 (AugmentParam("snr_db", "noise_snr_db"), AugmentParam("noise_seed"))),
    Augmentation("gain", "pipeline.dsp.augment:apply_gain", (AugmentParam("gain_db", "gain_db"),),
                 gain_db_param="gain_db"),
):
    register_augmentation(_augmentation)
del _feature, _augmentation
