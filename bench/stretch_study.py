"""The study behind :mod:`pipeline.dsp.augment`'s choice of time-stretch method.

:func:`compare_stretch_methods` reproduces the table in that module's
docstring: librosa's phase vocoder, ours with and without identity phase
locking, and WSOLA (:func:`wsola_stretch`), timed and scored against exact
re-renderings of a synthetic score (:func:`score_signal`). Nothing in a
build imports this module.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Callable

import numpy as np
import soxr

from pipeline.dsp.augment import phase_vocoder_stretch
from pipeline.dsp.filterbanks import hann_window
from pipeline.errors import ConfigError


def score_signal(seconds: float, sr: int, *, time_scale: float = 1.0, pitch_factor: float = 1.0,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic music from a fixed score, rendered at a tempo and transposition.

    Notes (3-6 harmonics, 5 Hz vibrato, attack/decay envelopes) and clicks
    at score times multiplied by ``time_scale``, pitches multiplied by
    ``pitch_factor``, so a stretch or shift has an exact reference.

    Returns
    -------
    (signal float32 [shape=(round(seconds * time_scale * sr),)],
     click times in seconds [shape=(n_clicks,)])
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * time_scale * sr))
    t = np.arange(n) / sr
    y = np.zeros(n)
    onset = 0.0
    while onset < seconds - 0.5:
        dur = float(rng.uniform(0.3, 1.2))
        f0 = 110.0 * 2 ** (int(rng.integers(0, 30)) / 12) * pitch_factor
        a, b = onset * time_scale, (onset + dur) * time_scale
        lo, hi = int(a * sr), min(n, int(b * sr))
        tt = t[lo:hi] - a
        env = np.minimum(tt / 0.01, 1.0) * np.exp(-tt / (0.5 * time_scale))
        vib = 0.003 * np.sin(2 * np.pi * 5.0 * tt)
        for h in range(1, int(rng.integers(3, 7)) + 1):
            if f0 * h < 0.45 * sr:
                phase = 2 * np.pi * f0 * h * (tt + vib / (2 * np.pi * 5.0))
                y[lo:hi] += env * np.sin(phase) / h
        onset += dur * float(rng.uniform(0.4, 1.0))
    clicks = np.arange(0.25, seconds, 0.5) * time_scale
    for c in clicks:
        i = int(c * sr)
        y[i:i + 32] += np.hanning(32) * 1.5
    return (0.2 * y).astype(np.float32), clicks


def wsola_stretch(y: np.ndarray, rate: float, *, frame: int = 1024, tolerance: int = 256,
                  corr_len: int = 512) -> np.ndarray:
    """Time-stretch by WSOLA (Verhelst and Roelands 1993); the compared alternative.

    Hann frames of ``frame`` samples are overlap-added at a synthesis hop of
    ``frame / 2``; each is taken from near its nominal input position
    ``k * hop * rate``, shifted by up to ``tolerance`` samples to the offset
    whose first ``corr_len`` samples best correlate with the natural
    continuation of the previous frame (coarse search every 4 samples, then
    +-3 around the best). Compiled with numba on first use (~1 s), so it is
    only used by :func:`compare_stretch_methods`.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    rate : float
        Speed factor (> 1 shorter).

    Returns
    -------
    np.ndarray [shape=(round(n / rate),), dtype=float32]
    """
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(f"time-stretch rate={rate!r} must be a positive finite number")
    length = int(round(len(y) / rate))
    hop = frame // 2
    pad = tolerance + frame
    # The kernel does no bounds checks: pad the end beyond the last frame it
    # can read (two synthesis hops past the end, at any rate, plus tolerance).
    x = np.pad(np.asarray(y, dtype=np.float32), (pad, pad + int(4 * frame * max(rate, 1.0))))
    window = hann_window(frame)
    out = _wsola_kernel()(x, float(rate), frame, hop, tolerance, corr_len, pad, length, window)
    return out[:length]


@functools.lru_cache(maxsize=1)
def _wsola_kernel() -> Callable:
    """The numba-compiled WSOLA loop (compiled once per process, on first use)."""
    import numba  # numba: the study's kernels, compiled only when the study runs

    @numba.njit(cache=False, fastmath=False)
    def kernel(x, rate, frame, hop, tol, corr_len, pad, length, window):  # pragma: no cover
        n_out = length // hop + 2
        out = np.zeros(n_out * hop + frame, np.float32)
        norm = np.zeros(n_out * hop + frame, np.float32)
        prev = pad  # input position of the previous frame
        for k in range(n_out):
            nominal = pad + int(round(k * hop * rate))
            best, best_score = nominal, -np.inf
            if k > 0:
                cont = prev + hop  # where the previous frame would continue
                for step in (4, 1):
                    lo = -tol if step == 4 else max(-tol, best - nominal - 3)
                    hi = tol if step == 4 else min(tol, best - nominal + 3)
                    for d in range(lo, hi + 1, step):
                        pos = nominal + d
                        score = 0.0
                        for i in range(corr_len):
                            score += x[cont + i] * x[pos + i]
                        if score > best_score:
                            best_score, best = score, pos
            for i in range(frame):
                out[k * hop + i] += window[i] * x[best + i]
                norm[k * hop + i] += window[i]
            prev = best
        for i in range(len(out)):
            if norm[i] > 1e-3:
                out[i] /= norm[i]
        return out

    return kernel


def compare_stretch_methods(seconds: float = 30.0, sr: int = 22050, *, rate: float = 0.9,
                            semitones: float = 2.0, voices: int = 1,
                            repeats: int = 3) -> dict[str, dict[str, float]]:
    """Speed and quality of librosa's phase vocoder and ours, with and without phase locking.

    Parameters
    ----------
    seconds, sr : float, int
        Length (s) and rate (Hz) of the synthetic test music.
    rate, semitones : float
        The stretch and the shift measured.
    voices : int
        Independent scores mixed into the test music (4 gives dense
        polyphony: overlapping chords of harmonic notes).
    repeats : int
        Timings are the minimum process (CPU) time over this many runs.

    Returns
    -------
    dict
        method -> {"stretch_s", "shift_s", "stretch_dist_db", "shift_dist_db",
        "stretch_rms_ratio", "click_smear", "stretch_pitch_cents",
        "shift_pitch_cents"}.
        Distortions are mean absolute log-mel differences (dB, 128 bands,
        80 dB floor) from the exact re-synthesis; ``click_smear`` is the
        fraction of energy within +-50 ms of each stretched click that lies
        outside +-10 ms; ``stretch_rms_ratio`` is the RMS of the stretched
        music over the original's (1 = loudness kept); pitch errors are in
        cents for a 440 Hz tone.
    """
    import librosa  # librosa: the study's reference only

    factor = 2.0 ** (semitones / 12.0)

    def mix(**kw: float) -> np.ndarray:
        return sum(score_signal(seconds, sr, seed=v, **kw)[0] for v in range(voices))

    original = mix()
    stretched_ref = mix(time_scale=1.0 / rate)
    shifted_ref = mix(pitch_factor=factor)
    clicks = np.zeros(int(seconds * sr), np.float32)
    click_times = np.arange(0.25, seconds, 0.5)
    for c in click_times:
        clicks[int(c * sr):int(c * sr) + 32] = np.hanning(32)
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(int(5 * sr)) / sr)).astype(np.float32)

    def logmel(y: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
        return librosa.power_to_db(mel, ref=1.0, top_db=80.0)

    def distortion(out: np.ndarray, ref: np.ndarray) -> float:
        a, b = logmel(out), logmel(ref)
        n = min(a.shape[1], b.shape[1])
        return float(np.mean(np.abs(a[:, :n] - b[:, :n])))

    def smear(out: np.ndarray) -> float:
        inside = outside = 0.0
        for c in click_times / rate:
            centre = int(c * sr) + 16
            near = out[max(0, centre - int(0.05 * sr)):centre + int(0.05 * sr)].astype(np.float64) ** 2
            core = out[max(0, centre - int(0.01 * sr)):centre + int(0.01 * sr)].astype(np.float64) ** 2
            inside += core.sum()
            outside += near.sum() - core.sum()
        return float(outside / max(inside + outside, 1e-30))

    def cents(y: np.ndarray, target: float) -> float:
        body = y[sr // 2: -sr // 2].astype(np.float64)
        spec = np.abs(np.fft.rfft(body * np.hanning(len(body)), 4 * len(body)))
        k = int(np.argmax(spec[1:-1])) + 1
        a, b, c = np.log(spec[k - 1:k + 2] + 1e-30)
        freq = (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / (4 * len(body))
        return float(1200 * np.log2(freq / target))

    def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
        best = math.inf
        for _ in range(repeats):
            t0 = time.process_time()
            out = fn()
            best = min(best, time.process_time() - t0)
        return out, best

    def resample_shift(stretched_y: np.ndarray, n: int) -> np.ndarray:
        out = soxr.resample(stretched_y, float(sr), float(sr) / factor, quality="HQ")
        return np.pad(out, (0, max(0, n - len(out))))[:n]

    def ours_shift(y: np.ndarray, lock: bool) -> np.ndarray:
        return resample_shift(phase_vocoder_stretch(y, 1.0 / factor, phase_lock=lock), len(y))

    methods: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
        "librosa": (lambda y: librosa.effects.time_stretch(y, rate=rate),
                    lambda y: librosa.effects.pitch_shift(y, sr=sr, n_steps=semitones)),
        "ours_no_lock": (lambda y: phase_vocoder_stretch(y, rate, phase_lock=False),
                         lambda y: ours_shift(y, False)),
        "ours_identity_lock": (lambda y: phase_vocoder_stretch(y, rate, phase_lock=True),
                               lambda y: ours_shift(y, True)),
        "wsola_numba": (lambda y: wsola_stretch(y, rate),
                        lambda y: resample_shift(wsola_stretch(y, 1.0 / factor), len(y))),
    }
    results: dict[str, dict[str, float]] = {}
    for name, (stretch_fn, shift_fn) in methods.items():
        stretch_fn(original[: sr])  # warm up (librosa's first call compiles)
        out_stretch, t_stretch = timed(lambda: stretch_fn(original))
        out_shift, t_shift = timed(lambda: shift_fn(original))
        results[name] = {
            "stretch_s": t_stretch,
            "shift_s": t_shift,
            "stretch_dist_db": distortion(out_stretch, stretched_ref),
            "shift_dist_db": distortion(out_shift, shifted_ref),
            "stretch_rms_ratio": float(np.sqrt(np.mean(np.square(out_stretch, dtype=np.float64))
                                               / np.mean(np.square(original, dtype=np.float64)))),
            "click_smear": smear(stretch_fn(clicks)),
            "stretch_pitch_cents": cents(stretch_fn(tone), 440.0),
            "shift_pitch_cents": cents(shift_fn(tone), 440.0 * factor),
        }
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    """The figures of :func:`compare_stretch_methods`, one row per method (``pipeline bench stretch``)."""
    columns = ("stretch_s", "shift_s", "stretch_dist_db", "shift_dist_db", "stretch_rms_ratio", "click_smear",
               "stretch_pitch_cents", "shift_pitch_cents")
    width = max(len(name) for name in results)
    lines = [f"{'method':<{width}}  " + "  ".join(f"{c:>19}" for c in columns)]
    lines += [f"{name:<{width}}  " + "  ".join(f"{row[c]:>19.4f}" for c in columns) for name, row in results.items()]
    return "\n".join(lines)
