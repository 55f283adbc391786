"""Augmentations do what they say, deterministically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.build import build_store
from pipeline.config import (AUGMENTATIONS, AudioConfig, AugmentConfig, AugmentParam, Augmentation, PipelineConfig,
                             register_augmentation)
from bench import stretch_study
from pipeline.dsp import augment
from pipeline.dsp.augment import apply_augmentation, draw_params, variant_rng
from pipeline.dsp.features import stft
from pipeline.dsp.filterbanks import hann_window
from pipeline.dsp.registered import resolve
from pipeline.errors import ConfigError
from pipeline.extract import process_clip
from pipeline.isolation import shutdown_children
from stores import open_store
from tests.audio_fixtures import dominant_frequency
from tests.pipeline.build.test_build import manifest  # noqa: F401  (the synthetic dataset fixture)

SR = 22050


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _tone(seconds=4.0, freq=440.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _music(rng, seconds=4.0):
    """Harmonic notes plus noise: a signal with partials, onsets and a noise floor."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for i, f0 in enumerate((220.0, 330.0, 262.0, 392.0)):
        env = np.clip(1 - np.abs(t - 0.5 - i) / 0.6, 0, None)
        y += env * sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
    return (0.3 * y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


# --------------------------------------------------------------------------
# Time-stretch and pitch-shift
# --------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.9, 0.95, 1.07, 1.1])
def test_stretch_changes_length_by_rate_and_keeps_pitch(rate):
    y = _tone(4.0, 440.0)
    out = apply_augmentation("time_stretch", y, sr=SR, params={"rate": rate})
    assert out.dtype == np.float32
    assert len(out) == int(round(len(y) / rate))
    body = out[SR // 2: len(out) - SR // 2]
    assert dominant_frequency(body, SR) == pytest.approx(440.0, rel=1e-3)
    # Energy is preserved (no fade, no blow-up) away from the ends.
    assert np.sqrt(np.mean(body ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_stretch_moves_an_onset_by_the_rate():
    y = np.zeros(4 * SR, np.float32)
    onset = 2 * SR
    y[onset:] = _tone(2.0, 440.0)
    rate = 0.9
    out = apply_augmentation("time_stretch", y, sr=SR, params={"rate": rate})
    envelope = np.abs(out) > 0.25
    measured = int(np.argmax(envelope))
    assert abs(measured - onset / rate) < 0.03 * SR  # within ~one STFT hop or so


@pytest.mark.parametrize("semitones", [-2.0, -0.7, 1.3, 2.0])
@pytest.mark.parametrize("freq", [220.0, 1000.0])
def test_pitch_shift_moves_a_tone_by_the_semitones(semitones, freq):
    y = _tone(4.0, freq)
    out = apply_augmentation("pitch_shift", y, sr=SR, params={"semitones": semitones})
    assert out.dtype == np.float32
    assert len(out) == len(y)
    measured = dominant_frequency(out[SR // 2: -SR // 2], SR)
    cents = 1200 * np.log2(measured / freq)
    assert cents == pytest.approx(100 * semitones, abs=2.0)


def _log_spec(y):
    return np.log10(np.abs(stft(y, n_fft=2048, hop_length=512)) + 1e-4)


@pytest.mark.parametrize("rate", [0.9, 1.1])
def test_identity_phase_locking_is_closer_to_the_exact_stretch(rate):
    """Against music rendered exactly at the stretched tempo, phase locking
    gives a smaller log-spectral error than the plain phase vocoder."""
    original, _ = stretch_study.score_signal(5.0, SR)
    exact, _ = stretch_study.score_signal(5.0, SR, time_scale=1.0 / rate)
    ref = _log_spec(exact)

    def error(out):
        got = _log_spec(out)
        n = min(len(got), len(ref))
        return float(np.mean(np.abs(got[:n] - ref[:n])))

    out_locked = augment.phase_vocoder_stretch(original, rate, phase_lock=True)
    out_plain = augment.phase_vocoder_stretch(original, rate, phase_lock=False)
    assert error(out_locked) < 0.85 * error(out_plain)
    # Locked partials do not cancel between frames: the loudness is kept.
    rms = lambda y: float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    assert rms(out_locked) / rms(exact) == pytest.approx(1.0, abs=0.1)


def test_stretch_by_one_is_the_identity():
    y = _tone(2.0) + 0.1 * _tone(2.0, 3000.0)
    for lock in (True, False):
        np.testing.assert_allclose(augment.phase_vocoder_stretch(y, 1.0, phase_lock=lock), y, atol=1e-4)


def test_stretch_and_shift_handle_silence_and_short_input():
    silence = np.zeros(SR, np.float32)
    assert not apply_augmentation("time_stretch", silence, sr=SR, params={"rate": 0.9}).any()
    assert not apply_augmentation("pitch_shift", silence, sr=SR, params={"semitones": 1.0}).any()
    tiny = _tone(0.01)
    assert len(apply_augmentation("time_stretch", tiny, sr=SR, params={"rate": 1.1})) == round(len(tiny) / 1.1)
    assert len(apply_augmentation("pitch_shift", tiny, sr=SR, params={"semitones": 1.0})) == len(tiny)


# -- the compiled phase-vocoder kernels: the numbers of the numpy code they replaced --

def _reference_stretch(y, rate, *, n_fft=2048, hop=512, phase_lock=True):
    """The phase vocoder as whole-array numpy expressions (how it was written before its kernels were compiled)."""
    length = int(round(len(y) / rate))
    spec = stft(y, n_fft=n_fft, hop_length=hop)
    n_frames, n_bins = spec.shape
    steps = np.arange(0.0, n_frames, rate)
    idx = steps.astype(np.int64)
    idx_next = np.minimum(idx + 1, n_frames - 1)
    alpha = (steps - idx).astype(np.float32)[:, None]
    mag, phase = np.abs(spec), np.angle(spec)
    mag_lo = np.take(mag, idx, axis=0)
    mag_out = mag_lo + alpha * (np.take(mag, idx_next, axis=0) - mag_lo)
    phase_in = np.take(phase, idx, axis=0)
    increment = np.take(phase, idx_next, axis=0) - phase_in
    acc = np.empty_like(phase_in)
    acc[0] = phase[0]
    for k in range(1, len(acc)):
        np.add(acc[k - 1], increment[k - 1], out=acc[k])
        if k % 32 == 0:
            np.remainder(acc[k], np.float32(2 * np.pi), out=acc[k])
    if phase_lock:
        acc = _reference_lock(acc, mag_out, phase_in)
    return _reference_synthesis(mag_out, acc, n_fft, hop, length)


def _reference_synthesis(mag, phases, n_fft, hop, length):
    """Inverse STFT of ``mag * exp(i phases)``: one inverse FFT, windowed frames added as shifted blocks."""
    import scipy.fft

    window = hann_window(n_fft)
    out_spec = np.empty(mag.shape, np.complex64)
    out_spec.real = mag * np.cos(phases)
    out_spec.imag = mag * np.sin(phases)
    frames = scipy.fft.irfft(out_spec, n=n_fft, axis=1).astype(np.float32) * window
    overlap = n_fft // hop
    out = np.zeros((len(frames) + overlap - 1, hop), np.float32)
    norm = np.zeros_like(out)
    for j in range(overlap):
        out[j:j + len(frames)] += frames.reshape(len(frames), overlap, hop)[:, j]
        norm[j:j + len(frames)] += (window * window).reshape(overlap, hop)[j]
    out = out.ravel()[n_fft // 2:n_fft // 2 + length]
    norm = norm.ravel()[n_fft // 2:n_fft // 2 + length]
    np.divide(out, norm, out=out, where=norm > np.finfo(np.float32).tiny)
    return np.pad(out, (0, length - len(out)))


def _reference_lock(acc, mag, phase_in):
    """Identity phase locking by a nearest-peak search per bin (peaks: local maxima, ties to the left)."""
    out = np.empty_like(acc)
    n_bins = mag.shape[1]
    for t in range(len(mag)):
        m = mag[t]
        peaks = [0] if m[0] > m[1] else []
        peaks += [c for c in range(1, n_bins - 1) if m[c] > m[c - 1] and m[c] >= m[c + 1]]
        peaks += [n_bins - 1] if m[-1] > m[-2] else []
        peaks = np.array(peaks or [0])
        bins = np.arange(n_bins)
        distance = np.abs(bins[:, None] - peaks[None, :])
        owner = peaks[np.argmin(distance, axis=1)]  # argmin takes the first (left) of equal distances
        out[t] = phase_in[t] + (acc[t, owner] - phase_in[t, owner])
    return out


@pytest.mark.parametrize("rate", [0.8, 0.9, 1.0, 1.1, 1.3])
@pytest.mark.parametrize("phase_lock", [True, False])
def test_stretch_kernels_give_the_numpy_numbers_bit_for_bit(rng, rate, phase_lock):
    y = _music(rng, 2.0)
    ours = augment.phase_vocoder_stretch(y, rate, phase_lock=phase_lock)
    np.testing.assert_array_equal(ours, _reference_stretch(y, rate, phase_lock=phase_lock))


@pytest.mark.parametrize("n_fft,hop", [(512, 128), (256, 128), (64, 16)])
def test_stretch_kernels_bit_for_bit_at_other_sizes_and_with_flat_frames(rng, n_fft, hop):
    # Quantised magnitudes give plateaus (equal neighbours), silence frames without any peak.
    y = np.round(_music(rng, 0.5) * 8) / 8
    y[len(y) // 3: len(y) // 2] = 0
    ours = augment.phase_vocoder_stretch(y, 0.93, n_fft=n_fft, hop=hop)
    np.testing.assert_array_equal(ours, _reference_stretch(y, 0.93, n_fft=n_fft, hop=hop))


def test_locking_takes_the_nearest_peak_and_the_left_one_at_a_tie():
    mag = np.array([[0, 3, 0, 0, 0, 3, 1, 1, 2, 2]], np.float32)  # peaks 1, 5 and the plateau's 8 (>= right)
    acc = np.arange(10, dtype=np.float32)[None] * 10
    phase_in = np.zeros_like(acc)
    out = np.empty_like(acc)
    scratch = (np.empty(10, np.float32), np.empty(10, np.bool_), np.empty(10, np.int64))
    augment._lock_frame(acc[0], mag[0], phase_in[0], out[0], *scratch)
    # bin 3 is 2 from peak 1 and 2 from peak 5: the left one; bins 6 and 7 lie between 5 and 8.
    np.testing.assert_array_equal(out[0], [10, 10, 10, 10, 50, 50, 50, 80, 80, 80])
    np.testing.assert_array_equal(out, _reference_lock(acc, mag, phase_in))
    flat = np.ones((1, 10), np.float32)  # no peak: one region, bin 0's
    augment._lock_frame(acc[0], flat[0], phase_in[0], out[0], *scratch)
    np.testing.assert_array_equal(out[0], np.zeros(10))


def test_phase_remainder_is_numpys(rng):
    two_pi = np.float32(2 * np.pi)
    values = np.concatenate([rng.uniform(-1e3, 1e3, 20_000), two_pi * np.arange(-40, 41), [0.0, -0.0, 1e-40, -1e-40],
                             np.nextafter(two_pi, np.float32(0)) * np.arange(-3, 4)]).astype(np.float32)
    got = np.array([augment._remainder(v, two_pi) for v in values], np.float32)
    expected = np.remainder(values, two_pi)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


# Frame counts below, at and around multiples of the 128-frame blocks.
@pytest.mark.parametrize("n_frames", [1, 5, 127, 128, 129, 300])
@pytest.mark.parametrize("n_fft,hop", [(2048, 512), (512, 256)])
def test_blocked_synthesis_is_the_whole_array_inverse_bit_for_bit(rng, n_frames, n_fft, hop):
    mag = rng.uniform(0, 2, (n_frames, n_fft // 2 + 1)).astype(np.float32)
    mag[::9] = 0  # silent frames
    phases = rng.uniform(-40, 40, mag.shape).astype(np.float32)
    window = hann_window(n_fft)
    for length in (1, (n_frames - 1) * hop + 3, (n_frames + 9) * hop):  # the last one is zero-padded
        np.testing.assert_array_equal(augment._synthesis(mag, phases, n_fft, hop, window, length),
                                      _reference_synthesis(mag, phases, n_fft, hop, length))


@pytest.mark.parametrize("seconds", [0.05, 1.0, 3.1])
def test_blocked_analysis_is_the_stft_magnitude_and_phase_bit_for_bit(rng, seconds):
    y = _music(rng, seconds)
    spec = stft(y, n_fft=2048, hop_length=512)
    mag, phase = augment._analysis(y, 2048, 512, hann_window(2048))
    np.testing.assert_array_equal(mag, np.abs(spec))
    np.testing.assert_array_equal(phase, np.angle(spec))


# --------------------------------------------------------------------------
# Noise and gain
# --------------------------------------------------------------------------
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 17.5, 30.0])
def test_noise_reaches_the_requested_snr(rng, snr_db):
    y = _music(rng)
    out = apply_augmentation("noise", y, sr=SR, params={"snr_db": snr_db, "noise_seed": 7})
    noise = out.astype(np.float64) - y
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert snr == pytest.approx(snr_db, abs=0.05)
    # White: flat spectrum, uncorrelated with the signal.
    assert abs(np.corrcoef(noise, y)[0, 1]) < 0.05


def test_noise_on_silence_adds_nothing():
    silence = np.zeros(SR, np.float32)
    out = apply_augmentation("noise", silence, sr=SR, params={"snr_db": 10.0, "noise_seed": 1})
    assert not out.any()


@pytest.mark.parametrize("gain_db", [-6.0, -1.5, 0.0, 3.0, 6.0])
def test_gain_scales_rms_exactly(rng, gain_db):
    y = _music(rng)
    out = apply_augmentation("gain", y, sr=SR, params={"gain_db": gain_db})
    ratio = np.sqrt(np.mean(out.astype(np.float64) ** 2) / np.mean(y.astype(np.float64) ** 2))
    assert 20 * np.log10(ratio) == pytest.approx(gain_db, abs=1e-5)


# --------------------------------------------------------------------------
# Determinism and parameter draws
# --------------------------------------------------------------------------
def test_variant_rng_separates_seed_clip_and_variant():
    draws = {variant_rng(s, c, v).random() for s in (0, 1) for c in ("a", "b") for v in ("noise", "gain")}
    assert len(draws) == 8
    # NUL separation: ("ab", "c") differs from ("a", "bc").
    assert variant_rng(0, "ab", "c").random() != variant_rng(0, "a", "bc").random()


def test_draws_are_known_values():
    """Pin the derivation (SHA-256 of seed, clip id, variant): Python's hash() would vary per process."""
    import hashlib

    digest = hashlib.sha256(b"0\x00clip-1\x00gain").digest()
    expected = np.random.default_rng(int.from_bytes(digest[:8], "little")).uniform(-6.0, 6.0)
    assert draw_params("gain", clip_id="clip-1", cfg=AugmentConfig()) == {"gain_db": float(expected)}


@pytest.mark.parametrize("variant", AUGMENTATIONS)
def test_same_seed_same_output_bit_for_bit(rng, variant):
    y = _music(rng)
    cfg = AugmentConfig(seed=3)
    p1 = draw_params(variant, clip_id="fma/000002", cfg=cfg)
    p2 = draw_params(variant, clip_id="fma/000002", cfg=AugmentConfig(seed=3))
    assert p1 == p2
    a = apply_augmentation(variant, y, sr=SR, params=p1)
    b = apply_augmentation(variant, y.copy(), sr=SR, params=p2)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("variant", AUGMENTATIONS)
def test_different_clips_and_seeds_get_different_parameters(variant):
    cfg = AugmentConfig()
    drawn = [draw_params(variant, clip_id=f"clip-{i}", cfg=cfg) for i in range(20)]
    assert len({json.dumps(d, sort_keys=True) for d in drawn}) == 20
    other_seed = draw_params(variant, clip_id="clip-0", cfg=AugmentConfig(seed=1))
    assert other_seed != drawn[0]


def test_parameters_lie_in_their_ranges_and_are_json():
    cfg = AugmentConfig(stretch_rate=(0.92, 1.05), pitch_semitones=(-1.0, 0.5),
                        noise_snr_db=(15.0, 20.0), gain_db=(-3.0, 1.0))
    for i in range(200):
        cid = f"c{i}"
        assert 0.92 <= draw_params("time_stretch", clip_id=cid, cfg=cfg)["rate"] <= 1.05
        assert -1.0 <= draw_params("pitch_shift", clip_id=cid, cfg=cfg)["semitones"] <= 0.5
        noise = draw_params("noise", clip_id=cid, cfg=cfg)
        assert 15.0 <= noise["snr_db"] <= 20.0 and isinstance(noise["noise_seed"], int)
        assert -3.0 <= draw_params("gain", clip_id=cid, cfg=cfg)["gain_db"] <= 1.0
        assert json.loads(json.dumps(noise)) == noise


def test_unknown_variant_and_bad_params_raise_config_errors():
    y = _tone(1.0)
    with pytest.raises(ConfigError, match="time_stretch"):  # lists the valid names
        draw_params("reverb", clip_id="x", cfg=AugmentConfig())
    with pytest.raises(ConfigError, match="reverb"):
        apply_augmentation("reverb", y, sr=SR, params={})
    with pytest.raises(ConfigError, match="rate"):
        apply_augmentation("time_stretch", y, sr=SR, params={"semitones": 1.0})
    with pytest.raises(ConfigError, match="positive"):
        apply_augmentation("time_stretch", y, sr=SR, params={"rate": 0.0})
    with pytest.raises(ConfigError, match="mono"):
        apply_augmentation("gain", np.zeros((2, 100), np.float32), sr=SR, params={"gain_db": 1.0})


# --------------------------------------------------------------------------
# The registry: a new augmentation is one function plus its registration
# --------------------------------------------------------------------------
def reverse_and_scale(y: np.ndarray, *, sr: int, level: float) -> np.ndarray:
    """A test augmentation: ``y`` played backwards, times ``level`` (float32)."""
    if sr != SR:
        raise ConfigError(f"reverse_and_scale was given sr={sr}, expected {SR}")
    return np.float32(level) * np.ascontiguousarray(np.asarray(y, np.float32)[::-1])


@pytest.fixture
def registered_reverse():
    """``reverse`` registered for one test; sandbox children forked before (or with) it are stopped,
    so that every build forks children that know exactly what this process registered."""
    spec = register_augmentation(Augmentation("reverse", reverse_and_scale, (AugmentParam("level", (0.5, 1.0)),)))
    shutdown_children()
    try:
        yield spec
    finally:
        AUGMENTATIONS.unregister("reverse")
        shutdown_children()


def test_every_built_in_augmentation_resolves_to_its_function():
    functions = {name: resolve(spec.apply, what=name) for name, spec in AUGMENTATIONS.items()}
    assert functions == {"time_stretch": augment.time_stretch, "pitch_shift": augment.pitch_shift,
                         "noise": augment.add_noise, "gain": augment.apply_gain}


def test_a_registered_augmentation_draws_and_applies(registered_reverse):
    cfg = AugmentConfig(seed=3, variants=("reverse",))
    params = draw_params("reverse", clip_id="c1", cfg=cfg)
    assert params == draw_params("reverse", clip_id="c1", cfg=cfg) != draw_params("reverse", clip_id="c2", cfg=cfg)
    assert list(params) == ["level"] and 0.5 <= params["level"] <= 1.0
    y = _tone(1.0)
    out = apply_augmentation("reverse", y, sr=SR, params=params)
    np.testing.assert_array_equal(out, np.float32(params["level"]) * y[::-1])
    with pytest.raises(ConfigError, match="lack 'level'"):
        apply_augmentation("reverse", y, sr=SR, params={})


def test_a_registered_augmentation_builds_into_a_store(manifest, registered_reverse):
    cfg = PipelineConfig(audio=AudioConfig(clip_seconds=4.0), augment=AugmentConfig(variants=("gain", "reverse")))
    uri = "memory://registry/reverse.zarr"
    summary = build_store(manifest, uri, config=cfg, workers=0, clips_per_shard=3, progress=False, max_failures=1)
    assert summary.n_failed == 1  # the one file that is not audio
    store = open_store(uri)
    assert store.variants == ("original", "gain", "reverse")
    clips = store.clips
    train = (clips["split"] == "train") & (clips["status"] == "ok")
    levels = store.aug_params["reverse.level"]
    assert levels[~train].isna().all()
    for i in np.flatnonzero(train.to_numpy()):
        clip_id = clips["clip_id"].iat[i]
        assert levels.iat[i] == draw_params("reverse", clip_id=clip_id, cfg=cfg.augment)["level"]
        stored = store.read_clip(i, "reverse")
        record = next(c for c in manifest.clips if c.clip_id == clip_id)
        expected = process_clip(manifest.root / record.path, clip_id, cfg, ("reverse",)).features["reverse"]
        for name, values in expected.items():
            np.testing.assert_allclose(stored[name], values, rtol=2**-8, atol=1e-2, err_msg=name)
