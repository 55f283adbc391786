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
reads, so all increments are computed at once and accumulated as a running
sum (a loop of plain vector additions, ~1,400 for 30 s); the peak regions of
all frames are assigned at once with ``np.repeat``. Pitch-shift is a stretch by
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
no complex128 temporaries, phases accumulated row by row, regions assigned
with one ``np.repeat``); it keeps the loudness (a plain phase vocoder loses
~3 dB because unlocked partials partly cancel between overlapping frames)
and the pitch exactly; and it is plain numpy, so no worker pays a ~2 s JIT
compile. WSOLA (:func:`bench.stretch_study.wsola_stretch`, Verhelst and
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

from pipeline.config import AUGMENTATIONS, AugmentConfig
from pipeline.dsp.features import stft
from pipeline.dsp.filterbanks import hann_window
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
def _istft(spec: np.ndarray, n_fft: int, hop: int, window: np.ndarray, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`pipeline.dsp.features.stft`, float32 [shape=(length,)]."""
    frames = scipy.fft.irfft(spec, n=n_fft, axis=1, workers=1).astype(np.float32, copy=False)
    frames *= window
    n_frames = frames.shape[0]
    overlap = n_fft // hop
    # Overlap-add as `overlap` shifted block additions instead of a frame loop.
    out = np.zeros((n_frames + overlap - 1, hop), np.float32)
    norm = np.zeros((n_frames + overlap - 1, hop), np.float32)
    blocks = frames.reshape(n_frames, overlap, hop)
    win_sq = (window * window).reshape(overlap, hop)
    for j in range(overlap):
        out[j:j + n_frames] += blocks[:, j]
        norm[j:j + n_frames] += win_sq[j]
    out = out.ravel()[n_fft // 2:n_fft // 2 + length]
    norm = norm.ravel()[n_fft // 2:n_fft // 2 + length]
    tiny = np.finfo(np.float32).tiny
    np.divide(out, norm, out=out, where=norm > tiny)
    if len(out) < length:
        out = np.pad(out, (0, length - len(out)))
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
    spec = stft(y, n_fft=n_fft, hop_length=hop)
    n_frames, n_bins = spec.shape

    # Output step k reads input frames i_k and i_k + 1 at fractional time
    # k * rate (the last frame is its own successor).
    steps = np.arange(0.0, n_frames, rate)
    idx = steps.astype(np.int64)
    idx_next = np.minimum(idx + 1, n_frames - 1)
    alpha = (steps - idx).astype(np.float32)[:, None]

    mag = np.abs(spec)
    phase = np.angle(spec)
    mag_lo = np.take(mag, idx, axis=0)
    mag_out = mag_lo + alpha * (np.take(mag, idx_next, axis=0) - mag_lo)
    phase_in = np.take(phase, idx, axis=0)

    # Phase accumulation. The synthesis hop equals the analysis hop (the
    # stretch resamples frame times instead), so the usual "expected advance
    # + wrapped deviation" increment equals the measured phase difference
    # between input frames i and i+1 modulo 2 pi, which is all that matters.
    increment = np.take(phase, idx_next, axis=0)
    increment -= phase_in
    acc = _accumulate_rows(phase[0], increment[:-1])

    if phase_lock:
        acc = _lock_phases(acc, mag_out, phase_in)
    out_spec = np.empty(acc.shape, np.complex64)
    pairs = out_spec.view(np.float32).reshape(*acc.shape, 2)
    np.multiply(mag_out, np.cos(acc), out=pairs[..., 0])
    np.multiply(mag_out, np.sin(acc), out=pairs[..., 1])
    return _istft(out_spec, n_fft, hop, window, length)


def _accumulate_rows(first: np.ndarray, increments: np.ndarray) -> np.ndarray:
    """Running phase sum: row 0 is ``first``, row k adds ``increments[k - 1]``.

    A loop over rows of vector additions: numpy's ``cumsum(axis=0)`` walks
    the array column by column and is ~5x slower here. Every 32 rows the
    phase is reduced modulo 2 pi, so float32 keeps ~1e-5 rad resolution
    however long the signal.

    Parameters
    ----------
    first : float32 [shape=(bins,)]
    increments : float32 [shape=(frames - 1, bins)]

    Returns
    -------
    float32 [shape=(frames, bins)]
    """
    acc = np.empty((len(increments) + 1, len(first)), np.float32)
    acc[0] = first
    two_pi = np.float32(2 * np.pi)
    for k in range(1, len(acc)):
        np.add(acc[k - 1], increments[k - 1], out=acc[k])
        if k % 32 == 0:
            np.remainder(acc[k], two_pi, out=acc[k])
    return acc


def _lock_phases(acc: np.ndarray, mag: np.ndarray, phase_in: np.ndarray) -> np.ndarray:
    """Identity phase locking of accumulated phases to their region's peak.

    Parameters
    ----------
    acc : float32 [shape=(frames, bins)]
        Phase-vocoder phases of the output frames.
    mag : float32 [shape=(frames, bins)]
        Output magnitudes; peaks are local maxima along bins (ends included).
    phase_in : float32 [shape=(frames, bins)]
        Analysis phases of the input frame each output frame reads.

    Returns
    -------
    float32 [shape=(frames, bins)]
        ``acc[peak] + phase_in[bin] - phase_in[peak]`` where ``peak`` is the
        nearest spectral peak of ``bin`` in the same frame (regions split
        half-way between neighbouring peaks).
    """
    n_frames, n_bins = mag.shape
    peak = np.empty(mag.shape, bool)
    peak[:, 1:-1] = (mag[:, 1:-1] > mag[:, :-2]) & (mag[:, 1:-1] >= mag[:, 2:])
    peak[:, 0] = mag[:, 0] > mag[:, 1]
    peak[:, -1] = mag[:, -1] > mag[:, -2]
    # A frame without peaks (constant magnitude, e.g. digital silence) gets
    # one at bin 0, so that every frame has at least one region.
    peak[:, 0] |= ~peak.any(axis=1)
    # Flat indices of the peaks, in increasing order. The region of a peak
    # starts half-way after the previous peak of its frame (at bin 0 for the
    # first peak of a frame) and runs to the next region's start, so regions
    # tile the flattened array and one np.repeat assigns every bin its peak.
    flat = np.flatnonzero(peak)
    row = flat // n_bins
    col = flat - row * n_bins
    start = flat - col  # frame start for the first peak of a frame
    same_row = row[1:] == row[:-1]
    start[1:] += np.where(same_row, (col[1:] + col[:-1]) // 2 + 1, 0)
    lengths = np.diff(start, append=n_frames * n_bins)
    region = np.repeat(flat, lengths)
    offset = (acc - phase_in).ravel()
    return phase_in + np.take(offset, region).reshape(n_frames, n_bins)


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
