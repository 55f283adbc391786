"""Seeded augmentations: time-stretch, pitch-shift, additive noise, gain.

Every augmentation is a pure function of (signal, sample rate, parameters),
registered by name in :data:`pipeline.config.AUGMENTATIONS` with the
parameters it draws; :func:`draw_params` and :func:`apply_augmentation` serve
every registered one. The parameters of a variant are drawn from a generator
seeded with a SHA-256 of (global seed, clip id, variant name), never with
Python's salted ``hash()``, in the order the registration lists them.
Rebuilding or resuming a store therefore repeats every variant bit for bit,
and the drawn parameters are returned so the store records them.

Time-stretch and pitch-shift method
-----------------------------------
Both use :func:`phase_vocoder_stretch`, our own float32 phase vocoder
(n_fft 2048, hop 512, Hann window, centred zero-padded frames) with
identity phase locking (Laroche and Dolson, 1999): every bin takes the phase
of the spectral peak whose region it lies in plus its own analysis phase
offset from that peak, which keeps the partials of a note vertically
coherent and removes most of the "phasiness" of a plain phase vocoder. The
phase advance of an output step depends only on the two input frames it
reads, so one pass per output frame (:func:`_vocoder_frames`, compiled)
interpolates the magnitude, advances the running phase and locks it to the
frame's peaks, with the two input rows in cache; the FFTs, the
trigonometric functions and the resampling stay numpy/scipy/soxr. Pitch-shift is a stretch by
``1 / 2**(semitones/12)`` followed by a soxr resampling by the same factor,
so the duration is kept (as ``librosa.effects.pitch_shift`` does).

Measured with :func:`bench.stretch_study.compare_stretch_methods` (``pipeline bench stretch``) on 30 s of 22,050 Hz
synthetic music whose exact stretched and shifted versions are rendered from
the same score: harmonic notes (3-6 partials, 5 Hz vibrato, attack/decay),
one voice (``voices=1``) or four mixed voices (``voices=4``, dense chords),
plus a click every 0.5 s for the transient measure. Stretch rate 0.9, shift
+2 semitones; CPU seconds, one thread, best of 3, librosa 0.11, on this
project's shared 2-core machine at a load average of ~10 (timings taken at
a load below 1 were ~10% lower; the quality figures are deterministic).
"dist" is the mean absolute log-mel difference from the exact rendering
(dB, 128 bands, 80 dB floor); "RMS" the RMS of the stretched music over the
original's (1 = loudness kept); "smear" the fraction of the energy within
+-50 ms of each stretched click that lies outside +-10 ms (0 = sharp);
"cents" the pitch error of a stretched / shifted 440 Hz tone:

====================  =======  =====  =========  =========  ====  =====  ===========
method                stretch  shift  dist 1 v.  dist 4 v.  RMS   smear  cents
                      (s)      (s)    str./sh.   str./sh.   4 v.         str./sh.
====================  =======  =====  =========  =========  ====  =====  ===========
librosa 0.11 PV       0.091    0.099  3.14/4.62  3.96/4.18  0.71  0.63   0.003/0.004
ours, no phase lock   0.028    0.040  3.12/4.65  3.96/4.20  0.71  0.63   0.000/0.000
ours, identity lock   0.042    0.051  1.96/2.45  2.47/2.48  0.94  0.47   0.000/0.000
WSOLA (numba)         0.085    0.092  1.58/1.98  2.58/2.58  0.99  0.06   0.39/-0.05
====================  =======  =====  =========  =========  ====  =====  ===========

Chosen: our phase vocoder with identity phase locking. It has the lowest
distortion on dense polyphonic music (what genre datasets hold), about 2x
less than librosa's; it is ~2x faster than librosa and than WSOLA (float32,
no complex128 temporaries; the table's timings predate the compiled
per-frame kernels, which took another ~25-35% off with the same output bit
for bit); it keeps the loudness (a plain phase vocoder loses
~3 dB because unlocked partials partly cancel between overlapping frames)
and the pitch exactly. (Its kernels are numba, cached on disk like the
feature kernels and compiled by :func:`pipeline.extract.warm_up` before
workers fork.) WSOLA (:func:`bench.stretch_study.wsola_stretch`, Verhelst and
Roelands 1993, kept for the comparison only) wins on sparse textures and keeps clicks sharp (smear
0.06 vs 0.47): transient smearing over the 93 ms frame is the known
weakness of the choice; a harmonic/percussive split with WSOLA for the
percussive part (Driedger, Mueller and Ewert 2014) would remove it at about
twice the cost. (librosa costs ~0.09 s per effect here, less than feared:
the saving is ~0.1 core-second per clip; the quality gain is the larger win.)

Noise and gain
--------------
White Gaussian noise is scaled by its *measured* power so that the SNR over
the signal (mean power of the input / mean power of the noise) is exactly
the drawn value; a silent input gets no noise (its SNR is undefined). Gain is
a float32 multiplication by ``10**(gain_db / 20)``; nothing is clipped,
because features are computed on floats, not written to 16-bit files.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import math
from typing import Callable, Mapping

import numpy as np
import scipy.fft
import soxr
from numba import njit

from pipeline.config import AUGMENTATIONS, AugmentConfig
from pipeline.dsp.filterbanks import centred_frames, hann_window, overlap_add
from pipeline.dsp.registered import resolve
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

#: STFT size and hop of the phase vocoder (93 ms / 23 ms at 22,050 Hz).
PV_N_FFT = 2048
PV_HOP = 512


# --------------------------------------------------------------------------
# Seeding and parameter draws
# --------------------------------------------------------------------------
def variant_rng(seed: int, clip_id: str, variant: str) -> np.random.Generator:
    """Generator for one (global seed, clip, variant), stable across processes.

    Parameters
    ----------
    seed : int
        Global augmentation seed (``AugmentConfig.seed``).
    clip_id : str
        Clip identifier from the manifest.
    variant : str
        Variant name.

    Returns
    -------
    numpy.random.Generator
        PCG64 seeded from the first 8 bytes of SHA-256 of the three values,
        NUL-separated (so ("a", "bc") and ("ab", "c") differ).
    """
    digest = hashlib.sha256(f"{seed}\x00{clip_id}\x00{variant}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def draw_params(variant: str, *, clip_id: str, cfg: AugmentConfig) -> dict[str, float]:
    """Draw the parameters of one augmented variant of one clip.

    Parameters
    ----------
    variant : str
        A name registered in :data:`pipeline.config.AUGMENTATIONS`.
    clip_id : str
        Clip identifier; with ``cfg.seed`` and ``variant`` it seeds the draw.
    cfg : AugmentConfig
        Ranges of every parameter.

    Returns
    -------
    dict
        JSON-able parameters, in the augmentation's order: for the built-in
        ones ``{"rate"}`` (time_stretch, >1 is shorter), ``{"semitones"}``
        (pitch_shift), ``{"snr_db", "noise_seed"}`` (noise), ``{"gain_db"}``
        (gain). A ranged value is a uniform float draw within its range of
        ``cfg``; a seed an integer in [0, 2**31).

    Raises
    ------
    ConfigError
        ``variant`` is not a registered augmentation (the message lists them).
    """
    spec = AUGMENTATIONS[variant]
    rng = variant_rng(cfg.seed, clip_id, variant)
    params: dict[str, float] = {}
    for param in spec.params:
        if param.range is None:
            params[param.name] = int(rng.integers(2**31))
        else:
            params[param.name] = float(rng.uniform(*param.bounds(cfg)))
    return params


def _param(variant: str, params: Mapping[str, float], name: str) -> float:
    try:
        value = float(params[name])
    except KeyError as exc:
        raise ConfigError(
            f"parameters {dict(params)!r} of augmentation {variant!r} lack {name!r}; "
            f"draw them with draw_params({variant!r}, ...)"
        ) from exc
    if not math.isfinite(value):
        raise ConfigError(f"augmentation {variant!r} parameter {name}={value!r} must be finite")
    return value


@functools.lru_cache(maxsize=None)
def _takes_sr(function: Callable[..., np.ndarray]) -> bool:
    try:
        return "sr" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


# --------------------------------------------------------------------------
# Phase vocoder
# --------------------------------------------------------------------------
#: Frames per block of the phase vocoder's analysis and synthesis: one block's
#: spectra and frames (~2 MB at n_fft 2048) stay in the L2 cache from the FFT
#: to what reads them, where whole-clip arrays (~10 MB each for 30 s) went out
#: to memory and back. Each frame's transform and each element's magnitude,
#: phase, sine and cosine do not depend on the others, so blocks change no bit.
_BLOCK_FRAMES = 128


def _analysis(y: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude and phase (``np.abs``, ``np.angle``) of :func:`pipeline.dsp.features.stft` of ``y``,
    [frames, bins] float32 each, computed block by block of frames."""
    frames = centred_frames(y, n_fft, hop)
    mag = np.empty((len(frames), n_fft // 2 + 1), np.float32)
    phase = np.empty_like(mag)
    for t0 in range(0, len(frames), _BLOCK_FRAMES):
        t1 = min(t0 + _BLOCK_FRAMES, len(frames))
        spec = scipy.fft.rfft(frames[t0:t1] * window, axis=-1)
        np.abs(spec, out=mag[t0:t1])
        np.arctan2(spec.imag, spec.real, out=phase[t0:t1])  # np.angle(spec), written in place
    return mag, phase


def _synthesis(mag: np.ndarray, phases: np.ndarray, n_fft: int, hop: int, window: np.ndarray,
               length: int) -> np.ndarray:
    """Weighted overlap-add inverse of the STFT ``mag * exp(i phases)`` [frames, bins], float32 [shape=(length,)].

    ``sum_t w * frame_t / sum_t w**2`` (left undivided where the window sum
    of squares is not above float32 tiny), from sample ``n_fft // 2`` on.
    Blocks of frames run from the last to the first, which adds the frames
    into every output sample in the order the original block-shifted numpy
    additions did (the latest frame first), so every sum is theirs bit for bit.
    """
    n_frames, n_bins = mag.shape
    total = np.zeros((n_frames + n_fft // hop - 1) * hop, np.float32)
    for t0 in reversed(range(0, n_frames, _BLOCK_FRAMES)):
        t1 = min(t0 + _BLOCK_FRAMES, n_frames)
        spec = np.empty((t1 - t0, n_bins), np.complex64)
        pairs = spec.view(np.float32).reshape(t1 - t0, n_bins, 2)
        np.multiply(mag[t0:t1], np.cos(phases[t0:t1]), out=pairs[..., 0])
        np.multiply(mag[t0:t1], np.sin(phases[t0:t1]), out=pairs[..., 1])
        frames = scipy.fft.irfft(spec, n=n_fft, axis=1, workers=1).astype(np.float32, copy=False)
        overlap_add(frames, window, hop, total[t0 * hop:], True)
    out = _normalised(total, window, hop, n_frames, n_fft // 2, length)
    if len(out) < length:
        out = np.pad(out, (0, length - len(out)))
    return out


@njit(cache=True, nogil=True)
def _normalised(total, window, hop, n_frames, start, length):
    """``total[start:start + length]`` divided by the window sum of squares of ``n_frames`` frames
    (summed as ``total``, the last frame first), where that is above float32 tiny."""
    n_fft = window.shape[0]
    norm = np.zeros(total.shape[0], np.float32)
    win_sq = window * window
    for t in range(n_frames - 1, -1, -1):
        seg = norm[t * hop:t * hop + n_fft]
        for i in range(n_fft):
            seg[i] += win_sq[i]
    stop = min(start + length, total.shape[0])
    out = np.empty(max(stop - start, 0), np.float32)
    tiny = np.finfo(np.float32).tiny
    for i in range(start, stop):
        n = norm[i]
        out[i - start] = total[i] / n if n > tiny else total[i]
    return out


def phase_vocoder_stretch(y: np.ndarray, rate: float, *, n_fft: int = PV_N_FFT, hop: int = PV_HOP,
                          phase_lock: bool = True) -> np.ndarray:
    """Time-stretch a mono signal by ``rate`` without changing its pitch.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal (any float dtype; computed in float32).
    rate : float
        Speed factor: > 1 is faster (shorter), < 1 slower (longer).
    n_fft, hop : int
        STFT size and hop in samples; ``n_fft`` must be a multiple of ``hop``.
    phase_lock : bool
        Identity phase locking (Laroche and Dolson 1999); False gives the
        plain phase vocoder (Flanagan and Golden 1966) as librosa implements it.

    Returns
    -------
    np.ndarray [shape=(round(n / rate),), dtype=float32]
    """
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(f"time-stretch rate={rate!r} must be a positive finite number")
    if hop <= 0 or n_fft <= 0 or n_fft % hop:
        raise ConfigError(f"phase vocoder n_fft={n_fft} must be a positive multiple of hop={hop}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    length = int(round(len(y) / rate))
    if len(y) == 0 or length == 0:
        return np.zeros(length, np.float32)
    # Periodic Hann, as librosa's default window: its squares overlap-add to
    # a constant at hop n_fft / 4.
    window = hann_window(n_fft)
    mag, phase = _analysis(y, n_fft, hop, window)
    n_frames = len(mag)

    # Output step k reads input frames i_k and i_k + 1 at fractional time
    # k * rate (the last frame is its own successor).
    steps = np.arange(0.0, n_frames, rate)
    idx = steps.astype(np.int64)
    idx_next = np.minimum(idx + 1, n_frames - 1)
    alpha = (steps - idx).astype(np.float32)

    # Phase accumulation. The synthesis hop equals the analysis hop (the
    # stretch resamples frame times instead), so the usual "expected advance
    # + wrapped deviation" increment equals the measured phase difference
    # between input frames i and i+1 modulo 2 pi, which is all that matters.
    mag_out, phases = _vocoder_frames(mag, phase, idx, idx_next, alpha, phase_lock)
    return _synthesis(mag_out, phases, n_fft, hop, window, length)


@njit(cache=True, nogil=True, inline="always")
def _remainder(a, b):
    # numpy's float remainder (npy_remainder: fmod, then moved to the sign of
    # ``b``), so the reduced phases are np.remainder's bit for bit; fmod is
    # exact in IEEE arithmetic.
    mod = np.fmod(a, b)
    if mod != 0:
        if (b < 0) != (mod < 0):
            mod += b
    else:
        mod = np.copysign(np.float32(0.0), b)
    return mod


@njit(cache=True, nogil=True)
def _vocoder_frames(mag, phase, idx, idx_next, alpha, phase_lock):
    """Magnitudes and phases of the output frames, one pass per output frame.

    Output frame k reads input frames ``i = idx[k]`` and ``j = idx_next[k]``:

    - magnitude ``mag[i] + alpha[k] * (mag[j] - mag[i])``;
    - phase: a running sum that starts at ``phase[0]`` and adds
      ``phase[j] - phase[i]`` of the previous output frame, reduced modulo
      2 pi every 32 frames (as ``np.remainder``), so float32 keeps ~1e-5 rad
      resolution however long the signal;
    - with ``phase_lock``, that phase is locked to its region's peak
      (:func:`_lock_frame`).

    Every value is rounded exactly as the whole-array numpy expressions that
    these loops replace (``np.take`` of rows, a Python loop of row additions,
    ten array passes and an ``np.repeat`` for the regions), which cost ~3x
    more: here the two input rows stay in cache and only the two outputs
    are written.

    Parameters
    ----------
    mag, phase : float32 [shape=(frames, bins)]
        Magnitude and phase of the input STFT (time-major).
    idx, idx_next : int64 [shape=(steps,)]
    alpha : float32 [shape=(steps,)]
        Interpolation weight of frame ``idx_next[k]``.
    phase_lock : bool

    Returns
    -------
    mag_out, phases : float32 [shape=(steps, bins)]
    """
    n_steps = idx.shape[0]
    n_bins = mag.shape[1]
    mag_out = np.empty((n_steps, n_bins), np.float32)
    phases = np.empty((n_steps, n_bins), np.float32)
    acc = phase[0].copy()
    offset = np.empty(n_bins, np.float32)
    peak = np.empty(n_bins, np.bool_)
    left = np.empty(n_bins, np.int64)
    two_pi = np.float32(2 * np.pi)
    for k in range(n_steps):
        if k > 0:
            before = phase[idx[k - 1]]
            after = phase[idx_next[k - 1]]
            for b in range(n_bins):
                acc[b] = acc[b] + (after[b] - before[b])
            if k % 32 == 0:
                for b in range(n_bins):
                    acc[b] = _remainder(acc[b], two_pi)
        lo = mag[idx[k]]
        hi = mag[idx_next[k]]
        m = mag_out[k]
        weight = alpha[k]
        for b in range(n_bins):
            m[b] = lo[b] + weight * (hi[b] - lo[b])
        if phase_lock:
            _lock_frame(acc, m, phase[idx[k]], phases[k], offset, peak, left)
        else:
            phases[k] = acc
    return mag_out, phases


@njit(cache=True, nogil=True)
def _lock_frame(acc, mag, phase_in, out, offset, peak, left):
    """Identity phase locking of one frame's accumulated phases to their region's peak.

    ``out[bin] = phase_in[bin] + (acc[peak] - phase_in[peak])``, where
    ``peak`` is the nearest spectral peak of ``bin`` (a local maximum of
    ``mag``: ``mag[c] > mag[c - 1]`` and ``mag[c] >= mag[c + 1]``; an end bin
    above its neighbour), the left one at equal distance: a peak's region
    runs from half-way after the previous peak to half-way to the next one,
    and bins before the first (after the last) peak belong to it. A frame
    without peaks (constant magnitude, e.g. digital silence) is one region,
    bin 0's. ``offset``, ``peak`` and ``left`` are scratch rows [bins].

    The peaks of music are where the data puts them, so every choice here
    is a select, not a branch (a first version that branched on each peak
    took about twice as long).
    """
    n_bins = mag.shape[0]
    for c in range(n_bins):
        offset[c] = acc[c] - phase_in[c]
    for c in range(1, n_bins - 1):
        peak[c] = (mag[c] > mag[c - 1]) & (mag[c] >= mag[c + 1])
    if n_bins > 1:
        peak[0] = mag[0] > mag[1]
        peak[n_bins - 1] = mag[n_bins - 1] > mag[n_bins - 2]
    else:
        peak[0] = False
    # Distances to a missing neighbour peak are "far" (ties go left).
    far = 4 * n_bins
    last = -far
    for c in range(n_bins):
        last = c if peak[c] else last
        left[c] = last
    if last < 0:
        left[:] = 0
        last = 0
    nxt = far
    for c in range(n_bins - 1, -1, -1):
        nxt = c if peak[c] else nxt
        before = left[c]
        owner = nxt if nxt - c < c - before else before
        out[c] = phase_in[c] + offset[owner]


# --------------------------------------------------------------------------
# The four built-in augmentations (registered in pipeline.config.AUGMENTATIONS)
# --------------------------------------------------------------------------
def time_stretch(y: np.ndarray, *, rate: float) -> np.ndarray:
    """Stretch ``y`` [shape=(n,)] to ``round(n / rate)`` samples, pitch kept (float32)."""
    return phase_vocoder_stretch(y, rate)


def pitch_shift(y: np.ndarray, *, sr: int, semitones: float, quality: str = "HQ") -> np.ndarray:
    """Shift the pitch of ``y`` [shape=(n,)] by ``semitones``, length kept (float32).

    A phase-vocoder stretch by ``1 / f`` (``f = 2**(semitones / 12)``) makes
    the signal ``f`` times longer at the same pitch; resampling it by ``1 / f``
    with soxr restores the duration and multiplies every frequency by ``f``.
    """
    y = np.ascontiguousarray(y, dtype=np.float32)
    factor = 2.0 ** (semitones / 12.0)
    stretched = phase_vocoder_stretch(y, 1.0 / factor)
    shifted = soxr.resample(stretched, float(sr), float(sr) / factor, quality=quality)
    out = np.zeros(len(y), np.float32)
    n = min(len(y), len(shifted))
    out[:n] = shifted[:n]
    return out


def add_noise(y: np.ndarray, *, snr_db: float, noise_seed: int) -> np.ndarray:
    """Add white Gaussian noise at exactly ``snr_db`` (mean powers over ``y``), float32."""
    y = np.asarray(y, dtype=np.float32)
    power = float(np.mean(np.square(y, dtype=np.float64))) if len(y) else 0.0
    if power == 0.0:
        return y.copy()
    noise = np.random.default_rng(int(noise_seed)).standard_normal(len(y), dtype=np.float32)
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    scale = math.sqrt(power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return y + np.float32(scale) * noise


def apply_gain(y: np.ndarray, *, gain_db: float) -> np.ndarray:
    """Multiply ``y`` by ``10**(gain_db / 20)`` (float32, not clipped)."""
    return np.asarray(y, dtype=np.float32) * np.float32(10.0 ** (gain_db / 20.0))


def apply_augmentation(variant: str, samples: np.ndarray, *, sr: int,
                       params: Mapping[str, float]) -> np.ndarray:
    """Apply one augmentation with parameters from :func:`draw_params`.

    Parameters
    ----------
    variant : str
        A name registered in :data:`pipeline.config.AUGMENTATIONS`.
    samples : np.ndarray [shape=(n,)]
        Mono signal at ``sr`` Hz (the valid, unpadded part of a clip).
    sr : int
        Sample rate in Hz.
    params : mapping
        The drawn parameters (see :func:`draw_params`).

    Returns
    -------
    np.ndarray [dtype=float32]
        ``round(n / rate)`` samples for time_stretch, ``n`` for the other
        built-in ones. Deterministic: equal inputs give bit-identical outputs.
    """
    spec = AUGMENTATIONS[variant]
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ConfigError(f"augmentation {variant!r} needs a mono signal of shape (n,), got shape {samples.shape}")
    kwargs: dict[str, float | int] = {}
    for param in spec.params:
        value = _param(variant, params, param.name)
        kwargs[param.name] = int(value) if param.range is None else value
    function = resolve(spec.apply, what=f"augmentation {variant!r}")
    if _takes_sr(function):
        kwargs["sr"] = sr
    return function(samples, **kwargs)
