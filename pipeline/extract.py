"""One clip, every variant: decode -> augment -> features.

This is the unit of work inside a build task (a shard is a loop over its
clips) and the front half of ``pipeline predict``. It composes the pure DSP
functions of :mod:`pipeline.dsp` and knows nothing of Dask or stores.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from pipeline.config import AUGMENTATIONS, ORIGINAL, PipelineConfig
from pipeline.dsp.audio import AudioSource, DecodedClip, load_clip
from pipeline.dsp.augment import apply_augmentation, draw_params
from pipeline.dsp.features import Spectra, extract_features, features_of_spectra, spectra_of


@dataclasses.dataclass
class ClipFeatures:
    """Features of one clip for each requested variant.

    features : variant -> feature name -> float32 [shape=(bands, frames)];
        ``frames`` differs between variants (time-stretch changes length).
    params : variant -> the augmentation parameters actually drawn
        (empty for the original).
    duration_s : duration of the source file in seconds.
    note : "" or what the store's reason column says of an ok clip
        (``"ends early: ..."``, :data:`pipeline.errors.ENDS_EARLY`).
    """

    features: dict[str, dict[str, np.ndarray]]
    params: dict[str, dict[str, float]]
    duration_s: float
    note: str = ""


def decode(path_or_bytes: AudioSource, cfg: PipelineConfig, *, name: str | None = None) -> DecodedClip:
    """Decode a file, its bytes or a binary file object as the config says (rate, excerpt,
    length, minimum length); ``name`` is what messages call it (see :func:`load_clip`)."""
    a = cfg.audio
    return load_clip(path_or_bytes, sample_rate=a.sample_rate, clip_seconds=a.clip_seconds,
                     min_seconds=cfg.window.window_seconds, excerpt=a.excerpt,
                     resample_quality=a.resample_quality, name=name)


def features_of_signal(samples: np.ndarray, cfg: PipelineConfig) -> dict[str, np.ndarray]:
    """Features of an already decoded mono signal at ``cfg.audio.sample_rate``."""
    return extract_features(samples, sr=cfg.audio.sample_rate, cfg=cfg.features)


def process_clip(source: AudioSource, clip_id: str, cfg: PipelineConfig,
                 variants: tuple[str, ...] = (ORIGINAL,), *, name: str | None = None,
                 features: tuple[str, ...] | None = None) -> ClipFeatures:
    """Decode ``source`` once and compute the features of each variant.

    ``source`` is a file path or the file's bytes (a build fetches remote
    clips with :func:`pipeline.sources.fetch_many` and passes them here);
    ``name`` is what error messages call it (default: the path).
    ``features`` limits the work to those features (an update that adds a
    feature to a store computes only it; default: every feature of ``cfg``).

    Augmentations act on the valid (unpadded) audio only, so padding never
    leaks into a stretched or shifted signal; their parameters come from
    (``cfg.augment.seed``, ``clip_id``, variant name) and are returned.

    Raises
    ------
    pipeline.errors.AudioError
        The file cannot be decoded into a usable signal (the reason is in
        the message); callers quarantine the clip.
    """
    clip = decode(source, cfg, name=name)
    computed = process_signal(clip.samples[: clip.valid_samples], clip_id, cfg, variants,
                              duration_s=clip.source_seconds, features=features)
    return dataclasses.replace(computed, note=clip.note)


def process_signal(signal: np.ndarray, clip_id: str, cfg: PipelineConfig,
                   variants: tuple[str, ...] = (ORIGINAL,), *, duration_s: float = 0.0,
                   features: tuple[str, ...] | None = None) -> ClipFeatures:
    """The features of each variant of an already decoded valid signal (see :func:`process_clip`).

    A variant that only scales the signal (gain) is computed right after the
    original, from its spectra (:func:`variant_spectra`), so that the
    original's spectra need not outlive it.
    """
    sr = cfg.audio.sample_rate
    computed: dict[str, dict[str, np.ndarray]] = {}
    params: dict[str, dict[str, float]] = {}
    original: Spectra | None = None
    for variant in sorted(variants, key=lambda v: (v != ORIGINAL, not derives_from_original(v, cfg))):
        if variant != ORIGINAL and not derives_from_original(variant, cfg):
            original = None  # every derived variant is done: its memory goes before the next computed one
        if variant == ORIGINAL:
            drawn: dict[str, float] = {}
            y = signal
        else:
            drawn = draw_params(variant, clip_id=clip_id, cfg=cfg.augment)
            y = apply_augmentation(variant, signal, sr=sr, params=drawn)
        spectra = variant_spectra(variant, y, drawn, cfg, original=original)
        if variant == ORIGINAL:
            original = spectra
        computed[variant] = features_of_spectra(spectra, features)
        params[variant] = drawn
        del spectra  # not alive while the next variant's are computed
    return ClipFeatures({v: computed[v] for v in variants}, {v: params[v] for v in variants}, duration_s)


def derives_from_original(variant: str, cfg: PipelineConfig) -> bool:
    """Whether ``variant``'s features are derived from the original's (see :func:`variant_spectra`)."""
    return _gain_db_param(variant, cfg) is not None


def _gain_db_param(variant: str, cfg: PipelineConfig) -> str | None:
    """The parameter by which ``variant`` only scales the signal (in dB), if it does and the config derives it."""
    if variant == ORIGINAL or not cfg.features.derive_scaled_variants:
        return None
    return AUGMENTATIONS[variant].gain_db_param


def variant_spectra(variant: str, y: np.ndarray, drawn: Mapping[str, float], cfg: PipelineConfig, *,
                    original: Spectra | None) -> Spectra:
    """The :class:`~pipeline.dsp.features.Spectra` of one variant's signal ``y``.

    Derived from the ``original``'s where the variant only scales the signal
    by ``10 ** (gain_db / 20)`` and ``features.derive_scaled_variants`` is on
    (:meth:`~pipeline.dsp.features.Spectra.scaled`: exact identities, equal
    up to float32 rounding); computed from ``y`` otherwise, or where the
    derivation would not be exact.
    """
    gain_param = _gain_db_param(variant, cfg)
    if gain_param is not None and original is not None:
        scaled = original.scaled(10.0 ** (float(drawn[gain_param]) / 20.0), y)
        if scaled is not None:
            return scaled
    return spectra_of(y, sr=cfg.audio.sample_rate, cfg=cfg.features)


_WARM: set[str] = set()


def warm_up(cfg: PipelineConfig) -> None:
    """Run every variant once on a short synthetic signal, once per process and config.

    Compiles the numba kernels and fills the filterbank caches in this
    process, so that the forked children of :mod:`pipeline.isolation`
    inherit them instead of each compiling again.
    """
    key = cfg.config_hash()
    if key in _WARM:
        return
    rng = np.random.default_rng(0)
    seconds = max(2.0 * cfg.window.window_seconds, 1.0)
    signal = (0.1 * rng.standard_normal(int(seconds * cfg.audio.sample_rate))).astype(np.float32)
    process_signal(signal, "warm-up", cfg, tuple(cfg.augment.variant_names))
    _WARM.add(key)
