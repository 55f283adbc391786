"""pipeline.extract: one clip, every variant; the gain variant derived from the original's spectra."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ORIGINAL, AudioConfig, FeatureConfig, PipelineConfig
from pipeline.dsp.augment import apply_augmentation, draw_params
from pipeline.dsp.features import ScaledSpectra, extract_features
from pipeline.extract import derives_from_original, process_signal, variant_spectra

SR = 22050


@pytest.fixture
def signal() -> np.ndarray:
    rng = np.random.default_rng(5)
    t = np.arange(4 * SR) / SR
    y = 0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.2 * np.sin(2 * np.pi * 330.0 * t)
    y[:: SR // 2] += 0.9
    return (y + 0.01 * rng.standard_normal(len(y))).astype(np.float32)


def _cfg(derive: bool) -> PipelineConfig:
    return PipelineConfig(audio=AudioConfig(clip_seconds=4.0), features=FeatureConfig(derive_scaled_variants=derive))


def test_only_the_gain_variant_is_derived_and_only_when_configured():
    assert [v for v in _cfg(True).augment.variant_names if derives_from_original(v, _cfg(True))] == ["gain"]
    assert not any(derives_from_original(v, _cfg(False)) for v in _cfg(False).augment.variant_names)


def test_derived_gain_variant_against_computing_it(signal):
    variants = _cfg(True).augment.variant_names
    derived = process_signal(signal, "clip-1", _cfg(True), variants)
    computed = process_signal(signal, "clip-1", _cfg(False), variants)
    # Stored order and drawn parameters do not depend on the order of work.
    assert tuple(derived.features) == tuple(computed.features) == variants
    assert tuple(derived.params) == variants and derived.params == computed.params
    for variant in variants:
        for name, value in computed.features[variant].items():
            if variant == "gain":
                tol = 0.0 if name == "cens" else 5e-3
                assert np.max(np.abs(derived.features[variant][name] - value)) <= tol, name
            else:
                np.testing.assert_array_equal(derived.features[variant][name], value)
    # Computed, the gain variant is the extractor on the gain signal, as before.
    cfg = _cfg(False)
    y = apply_augmentation("gain", signal, sr=SR, params=draw_params("gain", clip_id="clip-1", cfg=cfg.augment))
    for name, value in extract_features(y, sr=SR, cfg=cfg.features).items():
        np.testing.assert_array_equal(computed.features["gain"][name], value)


def test_gain_without_the_original_is_computed(signal):
    cfg = _cfg(True)
    alone = process_signal(signal, "clip-2", cfg, ("gain",))
    drawn = draw_params("gain", clip_id="clip-2", cfg=cfg.augment)
    y = apply_augmentation("gain", signal, sr=SR, params=drawn)
    for name, value in extract_features(y, sr=SR, cfg=cfg.features).items():
        np.testing.assert_array_equal(alone.features["gain"][name], value)
    assert alone.params["gain"] == drawn


def test_variant_spectra_derives_from_the_original(signal):
    cfg = _cfg(True)
    original = variant_spectra(ORIGINAL, signal, {}, cfg, original=None)
    gain = variant_spectra("gain", signal * np.float32(2.0), {"gain_db": 20 * np.log10(2.0)}, cfg, original=original)
    assert isinstance(gain, ScaledSpectra)
    noise = variant_spectra("noise", signal, {"snr_db": 20.0, "noise_seed": 1}, cfg, original=original)
    assert not isinstance(noise, ScaledSpectra)
