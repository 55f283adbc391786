"""``pipeline bench features``: our extraction of every variant vs a plain librosa script.

The benchmark writes its own real-length test files into a temporary folder
(no dataset needed): 30 s, 44.1 kHz stereo MP3 (libmp3lame through PyAV),
as FMA holds, and 30 s, 22,050 Hz mono 16-bit big-endian Sun ``.au``, as
GTZAN holds, with musical content (chords with harmonics, percussive noise
bursts on the beat, a little broadband noise).

Both sides then process every clip into all variants (original + the
configured augmentations, with the same drawn parameters):

- ours: :func:`pipeline.extract.process_clip`, the exact code a build runs;
- reference: what a user would write with librosa: ``librosa.load``,
  ``librosa.effects.time_stretch`` / ``pitch_shift``, numpy noise and gain,
  ``librosa.stft`` -> ``librosa.decompose.hpss`` ->
  ``librosa.feature.melspectrogram`` / ``power_to_db`` / ``mfcc`` and
  ``librosa.istft`` -> ``librosa.feature.chroma_cens``.

Timing is CPU time of this process (``time.process_time``, i.e. core-seconds
summed over every thread) with BLAS/OpenMP limited to one thread and numba
running single-threaded code, so the figure is core-seconds per clip. One
warm-up clip per side runs first and is *not* timed: it pays numba's JIT
compilation (or cache load) and the one-off filterbank construction, which a
build pays once per worker process, not per clip. On a shared machine other
processes slow memory and caches down, so repeated runs vary by ~10%.

Parity is measured on the original variant of every clip, on the signal our
decoder produced (so it isolates the features from decoder differences):
our features vs the librosa reference features of that same signal; a
variant whose features are derived from the original's (gain) is compared
with librosa on its own signal.

Beside the totals it reports, on the same clips in the same run:

- the stages of one clip (decode, each augmentation, each variant's
  features, in the order a build runs them);
- the kernels inside the original's features (STFT, medians, masks, mels,
  MFCC, inverse STFT, CQT, CENS; median of three runs);
- the floor: what no build of a clip can skip without changing a stored
  number (its decode, its augmentations, and one STFT plus the two HPSS
  medians per variant whose features are computed rather than derived), and
  our cost as a multiple of it.
- beside the floor, CENS's bare transforms (per computed variant the
  inverse FFTs of the harmonic part, the CQT's decimations and octave FFTs):
  what CENS cannot skip while it agrees with librosa to float32 rounding,
  and our cost as a multiple of floor + them.

Timing runs with the allocator a build's processes use
(:func:`pipeline.build.allocator.tune_allocator`), on both sides.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.fft
import soundfile as sf
from threadpoolctl import threadpool_limits

from pipeline.build.allocator import tune_allocator
from pipeline.config import ORIGINAL, AudioConfig, PipelineConfig
from pipeline.dsp.augment import apply_augmentation, draw_params
from pipeline.errors import PipelineError
from pipeline.dsp.cens import decimate, chroma_cens_parts, cqt_magnitude
from pipeline.dsp.features import (Spectra, features_of_spectra, harmonic_log_mel, harmonic_mfcc, hpss_medians,
                                   hpss_parts, log_mel, magnitude, masked_istft, percussive_log_mel, spectra_of,
                                   stft_frequency_major)
from pipeline.dsp.filterbanks import centred_frames, cqt_plan
from pipeline.extract import decode, derives_from_original, features_of_signal, process_clip, variant_spectra

logger = logging.getLogger(__name__)

_MP3_RATE = 44100
_AU_RATE = 22050


# -- test material ----------------------------------------------------------

def synth_music(seconds: float, sr: int, *, seed: int, channels: int = 1) -> np.ndarray:
    """A deterministic, music-like test signal.

    Chords of three notes with five decaying harmonics each, changing every
    half second; a noise burst with a fast decay on every beat (120 bpm) and
    a softer one on the off-beats; broadband noise 40 dB down.

    Returns
    -------
    np.ndarray [shape=(channels, n)], float32, peak 0.8
        The channels differ slightly (pan and noise), as in a stereo mix.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    out = np.zeros((channels, n))
    note_len = int(sr * 0.5)
    for start in range(0, n, note_len):
        stop = min(n, start + note_len)
        root = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        seg_t = t[start:stop] - t[start]
        env = np.exp(-seg_t * 1.5)
        for semis in (0, 4, 7):
            f0 = root * 2 ** (semis / 12)
            phase = rng.uniform(0, 2 * np.pi)
            for h in range(1, 6):
                if f0 * h >= sr / 2:
                    break
                tone = env * np.sin(2 * np.pi * f0 * h * t[start:stop] + phase) / h
                for c in range(channels):
                    out[c, start:stop] += tone * (1.0 - 0.2 * c * (semis / 7))
    beat = int(sr * 0.5)
    burst_len = int(sr * 0.08)
    decay = np.exp(-np.arange(burst_len) / (sr * 0.012))
    for k, start in enumerate(range(0, n - burst_len, beat // 2)):
        level = 1.2 if k % 2 == 0 else 0.5
        burst = rng.standard_normal(burst_len) * decay * level
        out[:, start:start + burst_len] += burst
    out += 0.01 * rng.standard_normal(out.shape)
    out *= 0.8 / np.max(np.abs(out))
    return out.astype(np.float32)


def write_mp3(path: Path, audio: np.ndarray, sr: int, bit_rate: int = 192_000) -> None:
    """Encode [channels, n] float32 audio to MP3 with libmp3lame (PyAV)."""
    import av  # PyAV: writes the MP3 test clips; loaded by the benchmark only

    layout = "stereo" if audio.shape[0] == 2 else "mono"
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=sr, layout=layout)
        stream.bit_rate = bit_rate
        step = 1152
        for start in range(0, audio.shape[1], step):
            chunk = np.ascontiguousarray(audio[:, start:start + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_au(path: Path, audio: np.ndarray, sr: int) -> None:
    """Write mono audio as a Sun .au file, 16-bit big-endian PCM (GTZAN's format)."""
    sf.write(str(path), audio.T, sr, format="AU", subtype="PCM_16", endian="BIG")


def make_bench_clips(folder: str | Path, clips_per_format: int, *, seconds: float = 30.0) -> list[Path]:
    """Write ``clips_per_format`` MP3 (44.1 kHz stereo) and .au (22,050 Hz mono) files into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(clips_per_format):
        mp3 = folder / f"bench_{i:03d}.mp3"
        write_mp3(mp3, synth_music(seconds, _MP3_RATE, seed=2 * i, channels=2), _MP3_RATE)
        au = folder / f"bench_{i:03d}.au"
        write_au(au, synth_music(seconds, _AU_RATE, seed=2 * i + 1, channels=1), _AU_RATE)
        paths += [mp3, au]
    return paths


# -- the librosa reference --------------------------------------------------

def reference_features(y: np.ndarray, sr: int, cfg: PipelineConfig) -> dict[str, np.ndarray]:
    """The five features as a user would compute them with librosa (no shortcuts)."""
    import librosa  # librosa (~1 s to import): the reference side of the benchmark only

    f = cfg.features
    fmax = f.fmax or sr / 2
    top_db = f.top_db or None
    D = librosa.stft(y, n_fft=f.n_fft, hop_length=f.hop_length)
    H, P = librosa.decompose.hpss(D, kernel_size=(f.hpss_kernel_harmonic, f.hpss_kernel_percussive),
                                  power=f.hpss_power, margin=f.hpss_margin)

    def logmel(X: np.ndarray, n_mels: int) -> np.ndarray:
        mel = librosa.feature.melspectrogram(S=np.abs(X) ** 2, sr=sr, n_fft=f.n_fft, n_mels=n_mels,
                                             fmin=f.fmin, fmax=fmax)
        return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=top_db)

    y_h = librosa.istft(H, hop_length=f.hop_length, n_fft=f.n_fft, length=len(y))
    out = {
        "mel": logmel(D, f.n_mels),
        "harmonic_mel": logmel(H, f.hp_n_mels),
        "percussive_mel": logmel(P, f.hp_n_mels),
        "mfcc": librosa.feature.mfcc(S=logmel(H, f.n_mels), n_mfcc=f.n_mfcc),
        "cens": librosa.feature.chroma_cens(y=y_h, sr=sr, hop_length=f.hop_length, fmin=f.cens_fmin,
                                            tuning=f.cens_tuning, n_octaves=f.cens_n_octaves,
                                            bins_per_octave=f.cens_bins_per_octave,
                                            win_len_smooth=f.cens_win_len_smooth),
    }
    n_frames = f.n_frames(len(y))
    return {k: np.asarray(v[:, :n_frames], dtype=np.float32) for k, v in out.items()}


def reference_augment(variant: str, y: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
    """The augmentations as a user would write them with librosa and numpy."""
    import librosa  # librosa (~1 s to import): the reference side of the benchmark only

    if variant == "time_stretch":
        return librosa.effects.time_stretch(y, rate=params["rate"])
    if variant == "pitch_shift":
        return librosa.effects.pitch_shift(y, sr=sr, n_steps=params["semitones"])
    if variant == "noise":
        power = float(np.mean(y.astype(np.float64) ** 2))
        noise = np.random.default_rng(int(params["noise_seed"])).standard_normal(len(y))
        return (y + noise * math.sqrt(power / 10 ** (params["snr_db"] / 10))).astype(np.float32)
    if variant == "gain":
        return (y * 10 ** (params["gain_db"] / 20)).astype(np.float32)
    raise PipelineError(f"the benchmark reference has no augmentation {variant!r}")


def reference_process(path: Path, clip_id: str, cfg: PipelineConfig,
                      variants: tuple[str, ...]) -> dict[str, dict[str, np.ndarray]]:
    """Decode with ``librosa.load`` and compute every variant's features with librosa."""
    import librosa  # librosa (~1 s to import): the reference side of the benchmark only

    a = cfg.audio
    duration = librosa.get_duration(path=str(path))
    offset = max(0.0, (duration - a.clip_seconds) / 2) if a.excerpt == "centre" else 0.0
    y, sr = librosa.load(str(path), sr=a.sample_rate, mono=True, offset=offset, duration=a.clip_seconds)
    out = {}
    for variant in variants:
        if variant == ORIGINAL:
            signal = y
        else:
            signal = reference_augment(variant, y, sr, draw_params(variant, clip_id=clip_id, cfg=cfg.augment))
        out[variant] = reference_features(signal, sr, cfg)
    return out


# -- parity -----------------------------------------------------------------

def feature_parity(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per feature: max |ours - ref|, mean |ours - ref| and the Pearson correlation."""
    out = {}
    for name, a in ours.items():
        b = ref[name]
        if a.shape != b.shape:
            raise PipelineError(f"parity: feature {name!r} has shape {a.shape} but the reference has {b.shape}")
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else 1.0
        out[name] = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "correlation": corr}
    return out


def _worst(parities: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    worst: dict[str, dict[str, float]] = {}
    for parity in parities:
        for name, figures in parity.items():
            w = worst.setdefault(name, {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "correlation": 1.0})
            w["max_abs_diff"] = max(w["max_abs_diff"], figures["max_abs_diff"])
            w["mean_abs_diff"] = max(w["mean_abs_diff"], figures["mean_abs_diff"])
            w["correlation"] = min(w["correlation"], figures["correlation"])
    return worst


# -- the benchmark ----------------------------------------------------------

def _timed(into: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``, adding its CPU seconds to ``into[name]``; return its result."""
    t0 = time.process_time()
    result = fn()
    into[name] = into.get(name, 0.0) + time.process_time() - t0
    return result


def _stage_breakdown(path: Path, clip_id: str, cfg: PipelineConfig) -> dict[str, float]:
    """CPU seconds of our decode, each augmentation and each variant's features (one clip).

    The variants run as a build runs them (:func:`pipeline.extract.process_signal`):
    a variant derived from the original's spectra (gain) right after it.
    """
    stages: dict[str, float] = {}
    clip = _timed(stages, "decode", lambda: decode(path, cfg))
    signal = clip.samples[: clip.valid_samples]
    original = None
    for variant in sorted(cfg.augment.variant_names, key=lambda v: (v != ORIGINAL, not derives_from_original(v, cfg))):
        y, drawn = signal, {}
        if variant != ORIGINAL:
            drawn = draw_params(variant, clip_id=clip_id, cfg=cfg.augment)
            y = _timed(stages, f"augment_{variant}",
                       lambda: apply_augmentation(variant, signal, sr=cfg.audio.sample_rate, params=drawn))
        spectra = _timed(stages, f"features_{variant}", lambda: variant_spectra(variant, y, drawn, cfg, original=original))
        _timed(stages, f"features_{variant}", lambda: features_of_spectra(spectra))
        if variant == ORIGINAL:
            original = spectra
    return stages


#: The kernels inside one variant's features, in the order they run.
KERNELS = ("stft", "medians", "masks", "mels", "mfcc", "inverse_stft", "cqt", "cens")


def _kernel_breakdown(y: np.ndarray, cfg: PipelineConfig, repeats: int = 3) -> dict[str, float]:
    """Median over ``repeats`` runs of :func:`_kernels_once` (one run is a few milliseconds a kernel,
    which a shared machine's other processes easily double)."""
    runs = [_kernels_once(y, cfg) for _ in range(repeats)]
    return {name: float(np.median([run[name] for run in runs])) for name in runs[0]}


def _kernels_once(y: np.ndarray, cfg: PipelineConfig) -> dict[str, float]:
    """CPU seconds of each kernel of :data:`KERNELS` inside the features of one signal.

    ``masks`` includes the magnitude (and its transpose) that the medians
    read; ``mels`` the three log-mel features; ``mfcc`` the harmonic part's
    128-band log-mel and the DCT; ``inverse_stft`` the harmonic waveform
    (masking, inverse FFT, overlap-add); ``cqt`` its constant-Q magnitude
    (FFTs, products, decimation); ``cens`` the rest of CENS (chroma fold,
    normalisation, quantisation, smoothing). ``other`` is what the whole
    feature extraction of ``y`` costs beyond them (checks, copies).
    """
    f = cfg.features
    sr = cfg.audio.sample_rate
    k: dict[str, float] = {}
    X = _timed(k, "stft", lambda: stft_frequency_major(y, n_fft=f.n_fft, hop_length=f.hop_length))
    S = _timed(k, "masks", lambda: magnitude(X))
    harm, perc = _timed(k, "medians", lambda: hpss_medians(S, f))
    _timed(k, "masks", lambda: hpss_parts(S, harm, perc, f))
    spectra = spectra_of(y, sr=sr, cfg=f)
    _ = (spectra.power, spectra.harmonic_power)  # computed on first use: timed above, not inside the mels
    _timed(k, "mels", lambda: (log_mel(spectra, f), harmonic_log_mel(spectra, f), percussive_log_mel(spectra, f)))
    _timed(k, "mfcc", lambda: harmonic_mfcc(spectra, f))
    y_h = _timed(k, "inverse_stft", lambda: Spectra.harmonic_signal.func(spectra))
    plan = cqt_plan(sr, f.hop_length, float(f.cens_fmin), f.cens_bins_per_octave, f.cens_n_octaves,
                    float(f.cens_tuning))
    _timed(k, "cqt", lambda: cqt_magnitude(y_h, plan))
    _timed(k, "cens", lambda: chroma_cens_parts(y_h, sr=sr, hop_length=f.hop_length, fmin=f.cens_fmin,
                                                bins_per_octave=f.cens_bins_per_octave, n_octaves=f.cens_n_octaves,
                                                tuning=f.cens_tuning, win_len_smooth=f.cens_win_len_smooth))
    k["cens"] = max(0.0, k["cens"] - k["cqt"])
    t0 = time.process_time()
    features_of_signal(y, cfg)
    whole = time.process_time() - t0
    out = {name: k[name] for name in KERNELS}
    out["other"] = max(0.0, whole - sum(out.values()))
    return out


def _floor(path: Path, clip_id: str, cfg: PipelineConfig) -> dict[str, float]:
    """CPU seconds of what no build of this clip can skip without changing a stored number.

    The decode, every augmentation, and per variant whose features are
    computed (not derived from the original's) one STFT and the two HPSS
    medians. Returns the parts and ``total``.
    """
    f = cfg.features
    parts: dict[str, float] = {}
    clip = _timed(parts, "decode", lambda: decode(path, cfg))
    signal = clip.samples[: clip.valid_samples]
    for variant in cfg.augment.variant_names:
        y = signal
        if variant != ORIGINAL:
            drawn = draw_params(variant, clip_id=clip_id, cfg=cfg.augment)
            y = _timed(parts, "augment", lambda: apply_augmentation(variant, signal, sr=cfg.audio.sample_rate,
                                                                     params=drawn))
        if derives_from_original(variant, cfg):
            continue
        X = _timed(parts, "stft_and_medians", lambda: stft_frequency_major(y, n_fft=f.n_fft, hop_length=f.hop_length))
        S = magnitude(X)  # the medians' input; not part of the floor
        harm, perc = _timed(parts, "stft_and_medians", lambda: hpss_medians(S, f))
        if "cens" in f.feature_names():
            parts["cens_transforms"] = (parts.get("cens_transforms", 0.0)
                                        + _cens_transforms(X, hpss_parts(S, harm, perc, f)[0], len(y), cfg))
    cens = parts.pop("cens_transforms", 0.0)
    parts["total"] = sum(parts.values())
    parts["cens_transforms"] = cens
    return parts


def _cens_transforms(X: np.ndarray, mask: np.ndarray, n: int, cfg: PipelineConfig) -> float:
    """CPU seconds of the bare transforms behind CENS of one signal: its masked STFT's inverse FFTs,
    then the CQT's decimations and octave FFTs of the harmonic waveform (no products, overlap-add,
    copies or magnitudes).

    A lower bound of what a CENS that agrees with librosa to float32 rounding
    needs beyond the floor: its quantisation turns any approximation of the
    CQT (a shorter kernel, another route from the STFT) into changed values.
    The masked spectrum and the waveform are computed untimed.
    """
    f = cfg.features
    H = np.multiply(X, mask).T
    y_h = masked_istft(X, mask, n_fft=f.n_fft, hop_length=f.hop_length, length=n)
    plan = cqt_plan(cfg.audio.sample_rate, f.hop_length, float(f.cens_fmin), f.cens_bins_per_octave,
                    f.cens_n_octaves, float(f.cens_tuning))
    t0 = time.process_time()
    scipy.fft.irfft(H, n=f.n_fft, axis=-1)
    if plan.early_downsample:
        y_h = decimate(y_h, 2 ** plan.early_downsample)
    for i, octave in enumerate(plan.octaves):
        if i and plan.octaves[i - 1].halve_after:
            y_h = decimate(y_h, 2)
        scipy.fft.rfft(centred_frames(y_h, octave.n_fft, octave.hop), axis=-1)
    return time.process_time() - t0


def bench_features(clips_per_format: int = 2, *, clip_seconds: float = 30.0,
                   cfg: PipelineConfig | None = None, folder: str | Path | None = None) -> dict[str, Any]:
    """Time our extraction of every variant against the librosa reference.

    Parameters
    ----------
    clips_per_format : int > 0
        Clips of each format (MP3 44.1 kHz stereo and .au 22,050 Hz mono).
    clip_seconds : float > 0
        Length of the generated files; also the decoded clip length.
    cfg : PipelineConfig, optional
        Defaults to the default config with ``audio.clip_seconds = clip_seconds``.
    folder : path, optional
        Where to write the test files (default: a temporary folder, removed after).

    Returns
    -------
    dict
        ``ours_core_s_per_clip``, ``reference_core_s_per_clip``, ``speedup``,
        ``parity`` (worst over clips, per feature), ``ours_stage_core_s``
        (one clip, per stage), per-format timings and the settings.
    """
    if isinstance(clips_per_format, bool) or not isinstance(clips_per_format, int) or clips_per_format <= 0:
        raise PipelineError(f"bench features: clips={clips_per_format!r} must be a positive integer")
    if cfg is None:
        cfg = PipelineConfig().replace(audio=AudioConfig(clip_seconds=float(clip_seconds)))
    variants = cfg.augment.variant_names
    import numba  # numba's threading layer: asked only while the benchmark reports it

    numba_threads = numba.get_num_threads()
    # One thread for BLAS/OpenMP (threadpoolctl) and for any numba parallel
    # region, so CPU time is the cost of one single-threaded worker.
    numba.set_num_threads(1)
    # The allocator of a build's processes (every build task tunes it): both
    # sides, and the floor, run with it.
    tune_allocator()
    try:
        return _bench_features(clips_per_format, clip_seconds, cfg, variants, folder)
    finally:
        numba.set_num_threads(numba_threads)


def _bench_features(clips_per_format: int, clip_seconds: float, cfg: PipelineConfig, variants: tuple[str, ...],
                    folder: str | Path | None) -> dict[str, Any]:
    """The body of :func:`bench_features`, run with numba pinned to one thread."""

    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp, threadpool_limits(limits=1):
        root = Path(folder) if folder is not None else Path(tmp)
        paths = make_bench_clips(root, clips_per_format, seconds=clip_seconds)
        logger.info("wrote %d bench clips (%.1f s each) to %s", len(paths), clip_seconds, root)

        # Warm-up, untimed: numba JIT / cache load, filterbanks, librosa's lazy imports.
        process_clip(paths[0], "warmup", cfg, variants)
        reference_process(paths[0], "warmup", cfg, variants)

        ours_s: dict[str, float] = {}
        ref_s: dict[str, float] = {}
        floor_s: dict[str, dict[str, float]] = {}
        parities = []
        derived_parities: dict[str, list[dict[str, dict[str, float]]]] = {}
        for path in paths:
            clip_id = path.stem + path.suffix
            t0 = time.process_time()
            result = process_clip(path, clip_id, cfg, variants)
            ours_s[path.name] = time.process_time() - t0

            floor_s[path.name] = _floor(path, clip_id, cfg)

            t0 = time.process_time()
            reference_process(path, clip_id, cfg, variants)
            ref_s[path.name] = time.process_time() - t0

            # Parity on our decoded original (untimed).
            samples = decode(path, cfg)
            signal = samples.samples[: samples.valid_samples]
            parities.append(feature_parity(result.features[ORIGINAL],
                                           reference_features(signal, cfg.audio.sample_rate, cfg)))
            # A derived variant (gain) against librosa on its own signal.
            for variant in variants:
                if derives_from_original(variant, cfg):
                    y = apply_augmentation(variant, signal, sr=cfg.audio.sample_rate,
                                           params=draw_params(variant, clip_id=clip_id, cfg=cfg.augment))
                    derived_parities.setdefault(variant, []).append(
                        feature_parity(result.features[variant], reference_features(y, cfg.audio.sample_rate, cfg)))
            logger.info("%s: ours %.3f s, floor %.3f s, reference %.3f s", path.name, ours_s[path.name],
                        floor_s[path.name]["total"], ref_s[path.name])
        stages = _stage_breakdown(paths[0], paths[0].name, cfg)
        first = decode(paths[0], cfg)
        kernels = _kernel_breakdown(first.samples[: first.valid_samples], cfg)

    ours = float(np.mean(list(ours_s.values())))
    ref = float(np.mean(list(ref_s.values())))
    floor = float(np.mean([f["total"] for f in floor_s.values()]))
    by_format = {}
    for suffix in (".mp3", ".au"):
        names = [p.name for p in paths if p.suffix == suffix]
        fmt_ours = float(np.mean([ours_s[n] for n in names]))
        fmt_ref = float(np.mean([ref_s[n] for n in names]))
        fmt_floor = float(np.mean([floor_s[n]["total"] for n in names]))
        by_format[suffix.lstrip(".")] = {
            "ours_core_s_per_clip": fmt_ours,
            "reference_core_s_per_clip": fmt_ref,
            "floor_core_s_per_clip": fmt_floor,
            "speedup": fmt_ref / fmt_ours if fmt_ours > 0 else float("inf"),
            "floor_multiple": fmt_ours / fmt_floor if fmt_floor > 0 else float("inf"),
        }
    floor_parts = {k: float(np.mean([f.get(k, 0.0) for f in floor_s.values()]))
                   for k in ("decode", "augment", "stft_and_medians")}
    cens_transforms = float(np.mean([f.get("cens_transforms", 0.0) for f in floor_s.values()]))
    with_cens = floor + cens_transforms
    return {
        "ours_core_s_per_clip": ours,
        "reference_core_s_per_clip": ref,
        "speedup": ref / ours if ours > 0 else float("inf"),
        "floor_core_s_per_clip": floor,
        "floor_parts_core_s": floor_parts,
        "floor_multiple": ours / floor if floor > 0 else float("inf"),
        "cens_transforms_core_s_per_clip": cens_transforms,
        "floor_with_cens_transforms_multiple": ours / with_cens if with_cens > 0 else float("inf"),
        "computed_variants": [v for v in variants if not derives_from_original(v, cfg)],
        "parity": _worst(parities),
        "derived_parity": {v: _worst(p) for v, p in derived_parities.items()},
        "ours_stage_core_s": stages,
        "kernel_core_s": kernels,
        "by_format": by_format,
        "clips": len(paths),
        "clip_seconds": float(clip_seconds),
        "variants": list(variants),
        "threads": 1,
        "timer": "time.process_time (core-seconds, all threads of the process)",
        "warmup_excluded": True,
    }


def format_report(result: dict[str, Any]) -> str:
    """The figures of :func:`bench_features` as the lines ``pipeline bench features`` prints."""
    fp = result["floor_parts_core_s"]
    lines = [
        f"clips: {result['clips']} ({result['clip_seconds']:.0f} s each: MP3 44.1 kHz stereo + .au 22,050 Hz), "
        f"variants: {', '.join(result['variants'])}; one thread; warm-up clip excluded (numba JIT, filterbanks)",
        f"ours:      {result['ours_core_s_per_clip']:.3f} core-s per clip (all variants)",
        f"reference: {result['reference_core_s_per_clip']:.3f} core-s per clip (librosa)",
        f"speedup:   {result['speedup']:.1f}x",
        f"floor:     {result['floor_core_s_per_clip']:.3f} core-s per clip (decode {fp['decode']:.3f}, augmentations "
        f"{fp['augment']:.3f}, STFT + 2 medians of {len(result['computed_variants'])} computed variants "
        f"{fp['stft_and_medians']:.3f}); ours = {result['floor_multiple']:.2f}x the floor",
        f"CENS's transforms: {result['cens_transforms_core_s_per_clip']:.3f} core-s per clip (inverse FFTs of the "
        f"harmonic part, the CQT's decimations and octave FFTs, bare); floor with them "
        f"{result['floor_core_s_per_clip'] + result['cens_transforms_core_s_per_clip']:.3f}, "
        f"ours = {result['floor_with_cens_transforms_multiple']:.2f}x that",
    ]
    for fmt, figures in result["by_format"].items():
        lines.append(f"  {fmt}: ours {figures['ours_core_s_per_clip']:.3f} s, "
                     f"reference {figures['reference_core_s_per_clip']:.3f} s ({figures['speedup']:.1f}x), "
                     f"floor {figures['floor_core_s_per_clip']:.3f} s (ours {figures['floor_multiple']:.2f}x)")
    lines.append("our stages, one clip (core-s): " +
                 ", ".join(f"{k} {v:.3f}" for k, v in result["ours_stage_core_s"].items()))
    lines.append("kernels of the original's features, same clip (core-s): " +
                 ", ".join(f"{k} {v:.4f}" for k, v in result["kernel_core_s"].items()))
    lines.append("parity on the original variant (worst clip): feature  max|diff|  mean|diff|  correlation")
    for name, p in result["parity"].items():
        lines.append(f"  {name:15s} {p['max_abs_diff']:.2e}  {p['mean_abs_diff']:.2e}  {p['correlation']:.6f}")
    for variant, parity in result["derived_parity"].items():
        lines.append(f"parity of the {variant} variant, derived from the original's, against librosa on its signal:")
        for name, p in parity.items():
            lines.append(f"  {name:15s} {p['max_abs_diff']:.2e}  {p['mean_abs_diff']:.2e}  {p['correlation']:.6f}")
    return "\n".join(lines)
