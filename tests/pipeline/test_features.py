"""Parity of the fast feature extractor with librosa, on synthetic signals.

Tolerances (float32 throughout; librosa orders some products differently):
- median filters: bit-identical to scipy.ndimage.median_filter(mode="reflect");
- HPSS components: max |ours - librosa| <= 1e-5 of max |D|;
- log-mel (dB, 80 dB floor): max abs diff <= 0.01 dB;
- MFCC: max abs diff <= 0.01 (values span hundreds);
- CENS: max abs diff <= 1e-4 and correlation >= 0.9999 (entries in [0, 1]).
"""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
import scipy.ndimage

from bench.features import reference_features
from pipeline.build import build_store
from pipeline.config import FEATURES, AudioConfig, AugmentConfig, Feature, FeatureConfig, PipelineConfig, register_feature
from pipeline.dsp import features as features_module
from pipeline.dsp.cens import chroma_cens
from pipeline.dsp.features import FEATURE_NAMES, extract_features, hpss, istft, stft
from pipeline.dsp.median import median_filter_axis
from pipeline.dsp.registered import resolve
from pipeline.errors import ConfigError, FeatureError, PipelineError
from pipeline.extract import process_clip
from pipeline.isolation import shutdown_children
from stores import open_store
from tests.pipeline.build.test_build import manifest  # noqa: F401  (the synthetic dataset fixture)

SR = 22050


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _tones_and_clicks(rng: np.random.Generator, seconds: float = 3.0) -> np.ndarray:
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (196.0, 246.9, 293.7, 587.3))
    clicks = np.zeros(n)
    clicks[:: SR // 4] = 1.0
    y = y + np.convolve(clicks, rng.standard_normal(256) * np.exp(-np.arange(256) / 30.0), mode="same")
    y = y + 0.02 * rng.standard_normal(n)
    return (0.8 * y / np.max(np.abs(y))).astype(np.float32)


def _chirp(rng: np.random.Generator, seconds: float = 3.0) -> np.ndarray:
    y = librosa.chirp(fmin=80.0, fmax=6000.0, sr=SR, duration=seconds) * 0.5
    return (y + 0.01 * rng.standard_normal(len(y))).astype(np.float32)


def _noise(rng: np.random.Generator, seconds: float = 3.0) -> np.ndarray:
    return (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


SIGNALS = {"tones_clicks": _tones_and_clicks, "chirp": _chirp, "noise": _noise}


def _librosa_features(y: np.ndarray, cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """The plain-librosa reference of ``pipeline bench features``, on the test's signal."""
    return reference_features(y, SR, PipelineConfig(features=cfg))


# -- median filter ---------------------------------------------------------

@pytest.mark.parametrize("k", [1, 4, 9, 31])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape", [(200, 70), (5, 140), (140, 3)])
def test_median_filter_matches_scipy_exactly(rng, shape, axis, k):
    X = rng.random(shape).astype(np.float32)
    X[:, ::4] = np.round(X[:, ::4] * 3)  # ties, which a sorted window must handle
    size = [1, 1]
    size[axis] = k
    expected = scipy.ndimage.median_filter(X, size=size, mode="reflect")
    np.testing.assert_array_equal(median_filter_axis(X, k, axis), expected)


@pytest.mark.parametrize("k", [2, 7, 31])
@pytest.mark.parametrize("axis", [0, 1])
def test_median_filter_removes_the_leaving_value_among_many_equal_ones(rng, k, axis):
    # The window drops the first of its values equal to the leaving one (the
    # values below it stay put); with few distinct values and infinities,
    # most leaving values have equal neighbours in the window.
    X = rng.integers(0, 3, (150, 90)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.inf
    X[rng.random(X.shape) < 0.05] = -np.inf
    size = [1, 1]
    size[axis] = k
    np.testing.assert_array_equal(median_filter_axis(X, k, axis),
                                  scipy.ndimage.median_filter(X, size=size, mode="reflect"))


def test_median_filter_float64_and_bad_arguments(rng):
    X = rng.random((50, 20))
    np.testing.assert_array_equal(median_filter_axis(X, 7, 1),
                                  scipy.ndimage.median_filter(X, size=(1, 7), mode="reflect"))
    with pytest.raises(FeatureError, match="positive integer"):
        median_filter_axis(X, 0, 0)
    with pytest.raises(FeatureError, match="axis"):
        median_filter_axis(X, 3, 2)
    with pytest.raises(FeatureError, match="2-D"):
        median_filter_axis(X[0], 3, 0)
    assert median_filter_axis(np.zeros((0, 5), np.float32), 3, 0).shape == (0, 5)
    X[3, 4] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        median_filter_axis(X, 3, 0)


def test_median_filter_orders_infinities_like_scipy(rng):
    X = rng.random((40, 70)).astype(np.float32)
    X[::7, ::5] = np.inf
    X[::11, ::3] = -np.inf
    for axis, size in ((0, (9, 1)), (1, (1, 9))):
        np.testing.assert_array_equal(median_filter_axis(X, 9, axis),
                                      scipy.ndimage.median_filter(X, size=size, mode="reflect"))


# -- building blocks --------------------------------------------------------

def test_stft_istft_match_librosa(rng):
    y = _tones_and_clicks(rng, 2.0)
    X = stft(y, n_fft=2048, hop_length=512)
    D = librosa.stft(y, n_fft=2048, hop_length=512)
    assert X.shape == D.T.shape and X.dtype == np.complex64
    assert np.max(np.abs(X - D.T)) <= 1e-5 * np.max(np.abs(D))
    y_back = istft(X, n_fft=2048, hop_length=512, length=len(y))
    ref = librosa.istft(D, hop_length=512, length=len(y))
    assert np.max(np.abs(y_back - ref)) < 1e-5


@pytest.mark.parametrize("power,margin", [(2.0, 1.0), (1.0, 1.0), (2.0, 3.0)])
def test_hpss_matches_librosa(rng, power, margin):
    y = _tones_and_clicks(rng, 2.0)
    D = librosa.stft(y, n_fft=1024, hop_length=256)
    H, P = hpss(D, kernel_size=(17, 31), power=power, margin=margin)
    H_ref, P_ref = librosa.decompose.hpss(D, kernel_size=(17, 31), power=power, margin=margin)
    scale = np.max(np.abs(D))
    assert np.max(np.abs(H - H_ref)) <= 1e-5 * scale
    assert np.max(np.abs(P - P_ref)) <= 1e-5 * scale
    # The separation is not trivial: the tones go to H, the clicks to P.
    assert np.sum(np.abs(H) ** 2) > 0.1 * np.sum(np.abs(D) ** 2)
    assert np.sum(np.abs(P) ** 2) > 0.01 * np.sum(np.abs(D) ** 2)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("hop", [384, 500])
def test_cens_with_hops_that_stop_decimation(rng, hop):
    """librosa halves the rate only while the hop is even (384 = 3 * 2**7; 500 = 125 * 4)."""
    y = _tones_and_clicks(rng, 2.0)
    kwargs = dict(sr=SR, hop_length=hop, fmin=32.70319566257483, bins_per_octave=12, n_octaves=7, tuning=0.0,
                  win_len_smooth=11)
    ours = chroma_cens(y, **kwargs)
    ref = librosa.feature.chroma_cens(y=y, **kwargs)
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) <= 1e-4


def test_cens_matches_librosa_on_chirp(rng):
    y = _chirp(rng, 3.0)
    ours = chroma_cens(y, sr=SR, hop_length=512, fmin=32.70319566257483, bins_per_octave=36, n_octaves=7,
                       tuning=0.0, win_len_smooth=41)
    ref = librosa.feature.chroma_cens(y=y, sr=SR, hop_length=512, fmin=32.70319566257483, bins_per_octave=36,
                                      n_octaves=7, tuning=0.0, win_len_smooth=41)
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) <= 1e-4


# -- the extractor ---------------------------------------------------------

@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_extract_features_matches_librosa(rng, signal):
    y = SIGNALS[signal](rng)
    cfg = FeatureConfig()
    ours = extract_features(y, sr=SR, cfg=cfg)
    ref = _librosa_features(y, cfg)
    n_frames = 1 + len(y) // cfg.hop_length
    assert tuple(ours) == FEATURE_NAMES
    for name, bands in cfg.feature_bands().items():
        a = ours[name]
        assert a.shape == (bands, n_frames), name
        assert a.dtype == np.float32 and a.flags.c_contiguous, name
        b = ref[name][:, :n_frames]
        tol = {"mel": 0.01, "harmonic_mel": 0.01, "percussive_mel": 0.01, "mfcc": 0.01, "cens": 1e-4}[name]
        assert np.max(np.abs(a - b)) <= tol, (name, float(np.max(np.abs(a - b))))
    assert np.corrcoef(ours["cens"].ravel(), ref["cens"][:, :n_frames].ravel())[0, 1] >= 0.9999


def test_extract_features_non_default_config(rng):
    """Other bands, kernels, fmax, top_db off, and a CENS with other resolution and smoothing."""
    cfg = FeatureConfig(n_fft=1024, hop_length=256, n_mels=96, hp_n_mels=40, fmin=30.0, fmax=8000.0, top_db=0.0,
                        n_mfcc=20, hpss_kernel_harmonic=17, hpss_kernel_percussive=9, hpss_margin=2.0,
                        cens_bins_per_octave=24, cens_n_octaves=6, cens_win_len_smooth=21, cens_tuning=0.2)
    y = _tones_and_clicks(rng, 2.5)
    ours = extract_features(y, sr=SR, cfg=cfg)
    ref = _librosa_features(y, cfg)
    for name in FEATURE_NAMES:
        n_frames = ours[name].shape[1]
        assert n_frames == 1 + len(y) // 256
        tol = 1e-4 if name == "cens" else 0.02
        # Without a dB floor near-silent bins reach -100 dB, where float32
        # rounding of tiny powers is relatively larger.
        assert np.max(np.abs(ours[name] - ref[name][:, :n_frames])) <= tol, name


@pytest.mark.filterwarnings("ignore:n_fft=.*is too large:UserWarning")  # librosa's CQT on a 2048-sample clip
def test_float64_input_and_shortest_signal(rng):
    cfg = FeatureConfig()
    y = _chirp(rng, 1.0)
    a = extract_features(y, sr=SR, cfg=cfg)
    b = extract_features(y.astype(np.float64), sr=SR, cfg=cfg)
    for name in FEATURE_NAMES:
        np.testing.assert_array_equal(a[name], b[name])
    # n_fft samples: 5 frames, far fewer than the 31-frame median kernel.
    short = extract_features(y[: cfg.n_fft], sr=SR, cfg=cfg)
    ref = _librosa_features(y[: cfg.n_fft], cfg)
    for name, bands in cfg.feature_bands().items():
        assert short[name].shape == (bands, 1 + cfg.n_fft // cfg.hop_length)
        tol = 1e-4 if name == "cens" else 0.01
        assert np.max(np.abs(short[name] - ref[name][:, : short[name].shape[1]])) <= tol, name


def test_features_change_with_the_signal(rng):
    cfg = FeatureConfig()
    a = extract_features(_tones_and_clicks(rng), sr=SR, cfg=cfg)
    b = extract_features(_noise(rng), sr=SR, cfg=cfg)
    for name in FEATURE_NAMES:
        assert not np.allclose(a[name], b[name]), name


def test_silence_gives_finite_features():
    cfg = FeatureConfig()
    out = extract_features(np.zeros(SR * 2, np.float32), sr=SR, cfg=cfg)
    for name, value in out.items():
        assert np.isfinite(value).all(), name
    np.testing.assert_allclose(out["mel"], -100.0, atol=1e-3)  # the amin floor, 1e-10
    assert np.all(out["cens"] == 0.0)


# -- validation --------------------------------------------------------------

@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 4096), np.float32), "mono 1-D"),
    (np.zeros(4096, np.int16), "floating-point"),
    (np.zeros(1000, np.float32), "shorter than features.n_fft"),
    (np.full(4096, np.nan, np.float32), "NaN or Inf"),
])
def test_bad_signals_raise_feature_error(bad, match):
    with pytest.raises(FeatureError, match=match) as info:
        extract_features(bad, sr=SR, cfg=FeatureConfig())
    assert isinstance(info.value, PipelineError) and isinstance(info.value, ValueError)


def test_bad_sample_rate_and_fmax():
    y = np.zeros(4096, np.float32)
    with pytest.raises(FeatureError, match="sr=0"):
        extract_features(y, sr=0, cfg=FeatureConfig())
    with pytest.raises(FeatureError, match="exceeds Nyquist"):
        extract_features(y, sr=8000, cfg=FeatureConfig(fmax=6000.0))


def test_cens_that_does_not_fit_the_rate_raises():
    with pytest.raises(FeatureError, match="Nyquist"):
        extract_features(np.zeros(8192, np.float32), sr=8000, cfg=FeatureConfig(cens_n_octaves=8))


@pytest.mark.parametrize("field,value,match", [
    ("n_fft", 0, "positive integer"),
    ("hop_length", 4096, "must not exceed n_fft"),
    ("n_mfcc", 200, "must not exceed n_mels"),
    ("cens_bins_per_octave", 30, "multiple of 12"),
    ("hpss_margin", 0.5, ">= 1.0"),
    ("hpss_power", -1.0, "positive finite"),
    ("cens_tuning", 0.7, r"\[-0.5, 0.5\)"),
    ("fmax", 10.0, "must exceed fmin"),
])
def test_feature_config_validation(field, value, match):
    kwargs = {field: value}
    if field == "fmax":
        kwargs["fmin"] = 20.0
    with pytest.raises(ConfigError, match=match):
        FeatureConfig(**kwargs)


def test_feature_config_round_trips():
    cfg = FeatureConfig(hp_n_mels=32)
    assert FeatureConfig(**dataclasses.asdict(cfg)) == cfg


# -- the registry: a new feature is one function plus its registration -------

def log_energy(spectra: features_module.Spectra, cfg: FeatureConfig) -> np.ndarray:
    """A test feature: the frame energy in dB, [1, T]."""
    return features_module.power_to_db(spectra.power.sum(axis=0, keepdims=True), top_db=None)


@pytest.fixture
def registered_energy():
    """``log_energy`` registered for one test; sandbox children are stopped on both sides (they
    are forked once per thread and would keep the registry they were forked with)."""
    spec = register_feature(Feature("log_energy", 1, log_energy))
    shutdown_children()
    try:
        yield spec
    finally:
        FEATURES.unregister("log_energy")
        shutdown_children()


def test_every_built_in_feature_resolves_to_its_function():
    functions = {name: resolve(spec.compute, what=name) for name, spec in FEATURES.items()}
    assert functions == {"mel": features_module.log_mel, "harmonic_mel": features_module.harmonic_log_mel,
                         "percussive_mel": features_module.percussive_log_mel,
                         "mfcc": features_module.harmonic_mfcc, "cens": features_module.harmonic_cens,
                         "tempogram": features_module.onset_tempogram}


@pytest.mark.parametrize("ref, match", [
    ("no_colon", "must be written 'package.module:function'"),
    ("pipeline.no_such_module:f", "cannot import 'pipeline.no_such_module'"),
    ("pipeline.dsp.features:no_such_function", "has no function 'no_such_function'"),
])
def test_a_bad_function_reference_names_it(ref, match):
    with pytest.raises(ConfigError, match=match):
        resolve(ref, what="feature 'x'")


def test_a_registered_feature_is_extracted_last(rng, registered_energy):
    y = _tones_and_clicks(rng)
    cfg = FeatureConfig()
    out = extract_features(y, sr=SR, cfg=cfg)
    assert tuple(out) == features_module.FEATURE_NAMES == (*FEATURE_NAMES, "log_energy")
    assert cfg.feature_bands()["log_energy"] == 1
    power = np.abs(stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length)) ** 2
    np.testing.assert_allclose(out["log_energy"][0], 10 * np.log10(power.sum(axis=1)), atol=1e-3)


def test_a_feature_of_the_wrong_shape_is_named(rng):
    register_feature(Feature("too_wide", 2, log_energy))
    try:
        with pytest.raises(FeatureError, match=r"feature 'too_wide' .* returned shape \(1, \d+\), not .*\(2, \d+\)"):
            extract_features(_tones_and_clicks(rng), sr=SR, cfg=FeatureConfig())
    finally:
        FEATURES.unregister("too_wide")


def test_a_registered_feature_builds_into_a_store(manifest, registered_energy):
    cfg = PipelineConfig(audio=AudioConfig(clip_seconds=4.0), augment=AugmentConfig(variants=("gain",)))
    uri = "memory://registry/energy.zarr"
    build_store(manifest, uri, config=cfg, workers=0, clips_per_shard=3, progress=False, max_failures=1)
    store = open_store(uri)
    assert store.feature_bands == {**FeatureConfig().feature_bands(), "log_energy": 1}
    record = manifest.clips[0]
    i = int(np.flatnonzero(store.clips["clip_id"].to_numpy() == record.clip_id)[0])
    expected = process_clip(manifest.root / record.path, record.clip_id, cfg).features["original"]["log_energy"]
    np.testing.assert_allclose(store.read_clip(i, features=["log_energy"])["log_energy"], expected, rtol=2**-8)


# -- kernels that replaced slower ones: the same numbers --------------------

@pytest.mark.parametrize("n_fft,hop", [(2048, 512), (1024, 256), (512, 100)])
def test_frequency_major_stft_is_the_stft_bit_for_bit(rng, n_fft, hop):
    y = _tones_and_clicks(rng, 1.5)
    X = features_module.stft_frequency_major(y, n_fft=n_fft, hop_length=hop)
    assert X.flags.c_contiguous and X.dtype == np.complex64
    np.testing.assert_array_equal(X, stft(y, n_fft=n_fft, hop_length=hop).T)
    S = features_module.magnitude(X)
    np.testing.assert_array_equal(S, np.sqrt(X.real * X.real + X.imag * X.imag))
    sizes = np.maximum(np.abs(X.real), np.abs(X.imag))
    assert features_module._smallest_entry(X) == sizes[sizes > 0].min()


@pytest.mark.parametrize("n_frames", [1, 63, 64, 65, 128, 200])
def test_blocked_frequency_major_stft_is_one_call_bit_for_bit(rng, n_frames):
    import scipy.fft

    from pipeline.dsp.filterbanks import centred_frames

    y = _tones_and_clicks(rng, 10.0)[: (n_frames - 1) * 512 + 11]
    X = features_module.stft_frequency_major(y, n_fft=2048, hop_length=512)
    one_call = scipy.fft.rfft((centred_frames(y, 2048, 512) * features_module.hann_window(2048)).T, axis=0)
    assert X.shape == (1025, n_frames) and X.flags.c_contiguous
    np.testing.assert_array_equal(X, one_call)


def _one_call_istft(X: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """The inverse STFT as it was computed before it ran in blocks: one inverse FFT of all
    (time-major, contiguous) frames, then a frame-by-frame overlap-add."""
    import scipy.fft

    frames = scipy.fft.irfft(np.ascontiguousarray(X), n=n_fft, axis=-1).astype(np.float32)
    out = np.zeros(n_fft + hop * (len(frames) - 1), np.float32)
    window = features_module.hann_window(n_fft)
    for t, frame in enumerate(frames):
        out[t * hop: t * hop + n_fft] += frame * window
    out *= features_module._inverse_window_sumsquare(n_fft, hop, len(frames))
    return np.pad(out[n_fft // 2: n_fft // 2 + length], (0, max(0, length - (len(out) - n_fft // 2))))


# Frame counts below, at and around multiples of the 128-frame blocks.
@pytest.mark.parametrize("n_frames", [5, 127, 128, 129, 256, 300])
@pytest.mark.parametrize("n_fft,hop", [(2048, 512), (512, 128)])
def test_blocked_inverse_stft_is_one_call_bit_for_bit(rng, n_frames, n_fft, hop):
    y = _tones_and_clicks(rng, (n_frames - 1) * hop / SR + 1e-3)[: (n_frames - 1) * hop + 7]
    X = features_module.stft_frequency_major(y, n_fft=n_fft, hop_length=hop)
    assert X.shape[1] == n_frames
    mask = rng.uniform(0, 1, X.shape).astype(np.float32)
    mask[:, ::7] = 0  # whole frames of zeros
    expected = _one_call_istft(np.multiply(X, mask).T, n_fft, hop, len(y))
    ours = features_module.masked_istft(X, mask, n_fft=n_fft, hop_length=hop, length=len(y))
    assert ours.dtype == np.float32 and ours.flags.c_contiguous
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(istft(X.T, n_fft=n_fft, hop_length=hop, length=len(y) + 999),
                                  _one_call_istft(X.T, n_fft, hop, len(y) + 999))


def test_harmonic_signal_is_the_inverse_stft_of_the_masked_stft(rng):
    y = _tones_and_clicks(rng, 3.0)
    spectra = features_module.spectra_of(y, sr=SR, cfg=FeatureConfig())
    H = np.multiply(spectra.stft_fm, spectra.harmonic_mask).T
    np.testing.assert_array_equal(spectra.harmonic_signal, _one_call_istft(H, 2048, 512, len(y)))


def _octave_spectra(y: np.ndarray, plan) -> list[np.ndarray]:
    """Each octave's spectra of the kernels' bins, time-major, from one FFT call per octave (the
    multirate CQT's front end as librosa computes it)."""
    import scipy.fft

    from pipeline.dsp.cens import decimate
    from pipeline.dsp.filterbanks import centred_frames

    spectra = []
    for i, octave in enumerate(plan.octaves):
        if i and plan.octaves[i - 1].halve_after:
            y = decimate(y, 2)
        spec = scipy.fft.rfft(centred_frames(y, octave.n_fft, octave.hop), axis=-1)
        spectra.append(spec[:, octave.lo:octave.hi])
    return spectra


def _one_call_cqt_magnitude(y: np.ndarray, plan) -> np.ndarray:
    """The sparse CQT as it was computed before its FFTs ran in blocks: one FFT call per octave."""
    from pipeline.dsp.cens import _sparse_magnitude

    spectra = [np.ascontiguousarray(spec.T) for spec in _octave_spectra(y, plan)]
    out = np.empty((plan.n_bins, min(spec.shape[1] for spec in spectra)), np.float32)
    for i, (octave, spec) in enumerate(zip(plan.octaves, spectra)):
        bpo = octave.indptr.shape[0] - 1
        _sparse_magnitude(spec, octave.indptr, octave.indices, octave.values, out, plan.n_bins - bpo * (i + 1))
    return out


@pytest.mark.parametrize("n_frames", [3, 128, 129, 400])
@pytest.mark.parametrize("hop", [512, 500])
def test_blocked_cqt_is_one_fft_call_bit_for_bit(rng, n_frames, hop):
    from pipeline.dsp.cens import cqt_magnitude_fm
    from pipeline.dsp.filterbanks import cqt_plan

    plan = cqt_plan(SR, hop, 32.70319566257483, 36, 7, 0.0)
    y = _tones_and_clicks(rng, n_frames * hop / SR)[: (n_frames - 1) * hop + 5]
    ours = cqt_magnitude_fm(y, plan)
    assert ours.shape == (252, n_frames)
    np.testing.assert_array_equal(ours, _one_call_cqt_magnitude(y, plan))


def _dense_cqt_magnitude(y: np.ndarray, plan) -> np.ndarray:
    """The CQT as it was computed before the sparse kernel: time-major spectra times the dense kernels."""
    responses = [np.abs(spec @ octave.basis_t) for octave, spec in zip(plan.octaves, _octave_spectra(y, plan))]
    n_frames = min(r.shape[0] for r in responses)
    return np.concatenate([r[:n_frames] for r in reversed(responses)], axis=1)


def test_sparse_cqt_equals_the_dense_product(rng):
    from pipeline.dsp.cens import cqt_magnitude, cqt_magnitude_fm
    from pipeline.dsp.filterbanks import cqt_plan

    plan = cqt_plan(SR, 512, 32.70319566257483, 36, 7, 0.0)
    for octave in plan.octaves:
        # The compressed columns hold exactly the kernels' non-zeros.
        dense = np.zeros_like(octave.basis_t)
        for j in range(dense.shape[1]):
            rows = octave.indices[octave.indptr[j]:octave.indptr[j + 1]]
            dense[rows, j] = octave.values[octave.indptr[j]:octave.indptr[j + 1]]
        np.testing.assert_array_equal(dense, octave.basis_t)
        assert len(octave.values) < 0.3 * octave.basis_t.size
    y = _tones_and_clicks(rng, 3.0)
    ours = cqt_magnitude_fm(y, plan)
    ref = _dense_cqt_magnitude(y, plan)
    assert ours.shape == ref.T.shape and ours.flags.c_contiguous
    # Float32 sums of the same products in another order.
    assert np.max(np.abs(ours - ref.T)) <= 1e-5 * np.max(ref)
    np.testing.assert_array_equal(cqt_magnitude(y, plan), ours.T)


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_cens_is_unchanged_by_the_sparse_cqt(rng, signal):
    """CENS keeps its bits: it reads the CQT only through the quantised chroma."""
    from pipeline.dsp.cens import _QUANT_STEPS, _normalize_frames
    from pipeline.dsp.filterbanks import cqt_plan, smoothing_window

    y = SIGNALS[signal](rng)
    plan = cqt_plan(SR, 512, 32.70319566257483, 36, 7, 0.0)
    chroma = _normalize_frames(_dense_cqt_magnitude(y, plan) @ plan.chroma.T, 1)
    quant = np.zeros_like(chroma)
    for step in _QUANT_STEPS:
        quant += (chroma > step) * np.float32(0.25)
    smooth = scipy.ndimage.convolve1d(quant, smoothing_window(41), axis=0, mode="constant")
    before = np.ascontiguousarray(_normalize_frames(smooth, 2).T, dtype=np.float32)
    ours = chroma_cens(y, sr=SR, hop_length=512, fmin=32.70319566257483, bins_per_octave=36, n_octaves=7,
                       tuning=0.0, win_len_smooth=41)
    np.testing.assert_array_equal(ours, before)


# -- the gain variant, derived from the original's spectra ------------------

def _half_silent(rng: np.random.Generator) -> np.ndarray:
    """Tones and clicks, then digital silence: the amin and top_db floors both act."""
    y = _tones_and_clicks(rng, 3.0)
    y[len(y) // 2:] = 0.0
    return y


@pytest.mark.parametrize("gain_db", [-60.0, -6.0, 0.0, 3.5, 60.0])
@pytest.mark.parametrize("make", [_tones_and_clicks, _half_silent, _noise])
def test_scaled_spectra_give_the_features_of_the_scaled_signal(rng, make, gain_db):
    cfg = FeatureConfig()
    y = make(rng)
    g = 10.0 ** (gain_db / 20.0)
    y_gain = (y * np.float32(g)).astype(np.float32)
    original = features_module.spectra_of(y, sr=SR, cfg=cfg)
    scaled = original.scaled(g, y_gain)
    assert scaled is not None
    derived = features_module.features_of_spectra(scaled)
    direct = extract_features(y_gain, sr=SR, cfg=cfg)
    for name in FEATURE_NAMES:
        assert derived[name].shape == direct[name].shape and derived[name].dtype == np.float32
        if name == "cens" and make is _half_silent:
            # In digital silence the CQT holds only the rounding noise of
            # the decimation (librosa's too), which no gain scales exactly:
            # equal where there is signal.
            np.testing.assert_array_equal(derived[name][:, :30], direct[name][:, :30])
        elif name == "cens":
            # Normalised: the scaling cancels exactly (quantised chroma).
            np.testing.assert_array_equal(derived[name], direct[name])
        else:
            # Float32 rounding of a scaled STFT against a scaled mel power.
            assert np.max(np.abs(derived[name] - direct[name])) <= 5e-3, name
    # The floors are the direct computation's, not the original's shifted:
    # silence sits at amin (-100 dB) or top_db below the maximum (+60 dB).
    if make is _half_silent:
        silent = direct["mel"][:, -10:]
        np.testing.assert_array_equal(derived["mel"][:, -10:], silent)
        # amin in dB as this machine's float32 log10 gives it (-100 or one step below: numpy's SIMD log10
        # rounds differently on different CPUs)
        amin_db = features_module.power_to_db(np.zeros((1, 1), np.float32), top_db=None)[0, 0]
        assert np.all(silent == max(amin_db, direct["mel"].max() - np.float32(80.0)))
    # The original's own features are untouched by the derivation.
    again = features_module.features_of_spectra(original)
    for name, value in extract_features(y, sr=SR, cfg=cfg).items():
        np.testing.assert_array_equal(again[name], value)


def test_scaled_spectra_scale_what_a_registered_feature_reads(rng):
    cfg = FeatureConfig()
    y = _tones_and_clicks(rng, 2.0)
    original = features_module.spectra_of(y, sr=SR, cfg=cfg)
    scaled = original.scaled(2.0, y * np.float32(2.0))
    np.testing.assert_allclose(scaled.power, 4.0 * original.power, rtol=1e-6)
    np.testing.assert_allclose(scaled.percussive_power, 4.0 * original.percussive_power, rtol=1e-6)
    np.testing.assert_allclose(scaled.stft, 2.0 * original.stft, rtol=1e-6)
    np.testing.assert_allclose(scaled.harmonic_signal, 2.0 * original.harmonic_signal, rtol=1e-6)
    assert scaled.harmonic_mask is original.harmonic_mask and scaled.n_frames == original.n_frames
    np.testing.assert_allclose(log_energy(scaled, cfg), log_energy(original, cfg) + 10 * np.log10(4.0), atol=1e-4)


def test_scaling_that_would_cross_float32_tiny_is_not_derived(rng):
    cfg = FeatureConfig()
    # STFT entries around 1e-16: a gain of 1/1000 takes their squares below
    # float32 tiny, where magnitudes underflow and the soft masks see zeros.
    y = (1e-17 * rng.standard_normal(SR)).astype(np.float32)
    original = features_module.spectra_of(y, sr=SR, cfg=cfg)
    assert original.scaled(1e-3, y * np.float32(1e-3)) is None
    # A bad factor or a signal of another length is refused too.
    y = _noise(rng, 1.0)
    original = features_module.spectra_of(y, sr=SR, cfg=cfg)
    assert original.scaled(0.0, y) is None
    assert original.scaled(float("nan"), y) is None
    assert original.scaled(2.0, y[:-1]) is None
    assert original.scaled(2.0, 2 * y) is not None
    assert original.scaled(1e-3, y * np.float32(1e-3)) is not None


# -- the optional tempogram --------------------------------------------------

@pytest.mark.parametrize("signal", sorted(SIGNALS))
@pytest.mark.parametrize("win_length", [384, 64, 7])
def test_tempogram_matches_librosa(rng, signal, win_length):
    y = SIGNALS[signal](rng, seconds=12.0)
    cfg = FeatureConfig(extra=("tempogram",), tempogram_win_length=win_length)
    ours = extract_features(y, sr=SR, cfg=cfg)
    assert tuple(ours) == (*FEATURE_NAMES, "tempogram")
    # librosa's onset strength of its own default log-mel (= our mel feature to float32 rounding)
    reference = librosa.feature.tempogram(y=y, sr=SR, hop_length=cfg.hop_length, win_length=win_length)
    assert ours["tempogram"].shape == reference.shape == (win_length, 1 + len(y) // cfg.hop_length)
    np.testing.assert_allclose(ours["tempogram"], reference, atol=2e-5)
    assert np.abs(ours["tempogram"]).max() == pytest.approx(1.0)


def test_tempogram_of_silence_stays_zero():
    tempo = extract_features(np.zeros(3 * SR, np.float32), sr=SR,
                             cfg=FeatureConfig(extra=("tempogram",), tempogram_win_length=16))["tempogram"]
    assert not np.any(tempo) and np.all(np.isfinite(tempo))


def test_the_tempogram_alone_costs_no_medians(rng, monkeypatch):
    """An update that adds the tempogram asks for it alone: the power is all it reads."""
    cfg = FeatureConfig(extra=("tempogram",), tempogram_win_length=16)
    y = _noise(rng)
    expected = extract_features(y, sr=SR, cfg=cfg)
    monkeypatch.setattr(features_module, "hpss_medians", lambda *a: pytest.fail("the medians were computed"))
    alone = features_module.features_of_spectra(features_module.spectra_of(y, sr=SR, cfg=cfg), ["tempogram"])
    assert np.array_equal(alone["tempogram"], expected["tempogram"])


def test_optional_features_are_computed_only_when_a_config_names_them(rng):
    assert "tempogram" in FEATURES and FEATURES["tempogram"].optional
    assert "tempogram" not in extract_features(_noise(rng), sr=SR, cfg=FeatureConfig())
    assert "tempogram" not in FeatureConfig().feature_bands()
    with pytest.raises(ConfigError, match="not an optional registered feature; valid: tempogram"):
        FeatureConfig(extra=("mel",))
    with pytest.raises(ConfigError, match="lists a feature twice"):
        FeatureConfig(extra=("tempogram", "tempogram"))
    with pytest.raises(ConfigError, match="tempogram_win_length"):
        FeatureConfig(tempogram_win_length=1)
