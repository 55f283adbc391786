"""Per-clip spectral features at one STFT hop, equal to librosa's within float32 rounding.

For a mono signal the extractor computes every feature registered in
:data:`pipeline.config.FEATURES` (one function each, of the shared
:class:`Spectra`), with centred frames of one hop so that every feature has
``T = 1 + len(samples) // hop`` frames. The built-in ones:

- ``mel``: log-mel (dB) of the original signal, ``n_mels`` bands;
- ``harmonic_mel`` / ``percussive_mel``: log-mel of the HPSS parts
  (FitzGerald 2010, soft masks as ``librosa.decompose.hpss``), ``hp_n_mels``
  bands each;
- ``mfcc``: ``n_mfcc`` MFCCs (DCT-II, ortho) of the harmonic part's
  ``n_mels``-band log-mel, as ``librosa.feature.mfcc(S=power_to_db(mel_H))``;
- ``cens``: 12-d CENS of the harmonic part's waveform (``istft`` of ``H``), as
  ``librosa.feature.chroma_cens``.

The reference a user would write (librosa.stft -> decompose.hpss ->
feature.melspectrogram / power_to_db / mfcc, istft -> chroma_cens) costs
about 1.3 s per 30 s clip on one core, ~80% of it in
``scipy.ndimage.median_filter``; this module takes ~85 ms of one variant on
the 2-core development machine (2026-12-07, ``pipeline bench features``,
which also times each kernel: STFT ~12 ms, the two medians ~21, inverse
STFT ~14, CQT ~24, masks, mels and MFCC ~10). The same numbers come from:

- a branch-free, SIMD sliding-window median (:mod:`pipeline.dsp.median`),
  bit-identical to ``scipy.ndimage.median_filter(mode="reflect")``
  (~2 x 10 ms instead of ~2 x 0.55 s);
- float32 throughout: frames are strided views with one real FFT each,
  transformed along the contiguous axis of their transposed view so that
  the STFT comes out frequency-major ``[bins, frames]`` (the same numbers
  bit for bit), the layout of the outputs: the magnitude needs no
  transpose and the sparse mel banks give ``[bands, frames]`` directly;
- filterbanks, windows and CQT kernels built once per configuration
  (:mod:`pipeline.dsp.filterbanks`), with the CQT otherwise identical to
  librosa's; its kernel products visit only their ~15% non-zero entries
  (:mod:`pipeline.dsp.cens`; its octaves' FFTs, 15-23 ms, are the
  largest part, then the medians);
- soft masks and the harmonic/percussive power spectra fused into one
  vectorised numba kernel; mel powers computed once per part and band count.

No approximation is made anywhere: differences from librosa are float32
rounding (librosa orders some sums differently), at most ~2e-3 dB on the
log-mels and ~1e-7 on CENS for 30 s clips; the tests bound them.

A signal that is another's times a constant (the gain variant) needs none
of this: :meth:`Spectra.scaled` derives its spectra from the other's by
exact identities (see there), which :func:`pipeline.extract.variant_spectra`
uses when ``features.derive_scaled_variants`` is on.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Sequence

import numpy as np
import scipy.fft
from numba import njit

from pipeline.config import FEATURES, FeatureConfig
from pipeline.dsp.cens import chroma_cens_parts
from pipeline.dsp.filterbanks import centred_frames, dct_ortho, hann_window, mel_basis_sparse, overlap_add
from pipeline.dsp.median import median_filter_axis
from pipeline.dsp.registered import resolve
from pipeline.errors import FeatureError

logger = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    # FEATURE_NAMES (the features of a default config: every registered one that is not optional)
    # follows the registry, also after a registration at run time.
    if name == "FEATURE_NAMES":
        return FeatureConfig().feature_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_AMIN = 1e-10
_TINY32 = float(np.finfo(np.float32).tiny)
#: The smallest STFT entry (max of |re|, |im|) that :meth:`Spectra.scaled` derives from.
_MIN_SCALED_ENTRY = 1e-18


#: Frames per block of :func:`stft_frequency_major` (for 30 s, 64 took ~25% less time than one call
#: over all frames or blocks of 128; 32 about as little).
_STFT_BLOCK_FRAMES = 64


def stft(y: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """Centred STFT with a periodic Hann window and zero padding, time-major.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float32
        Mono signal.
    n_fft, hop_length : int
        Frame length and hop in samples.

    Returns
    -------
    np.ndarray [shape=(1 + n // hop_length, 1 + n_fft // 2)], complex64
        ``librosa.stft(y, n_fft=n_fft, hop_length=hop_length).T``.
    """
    y = np.ascontiguousarray(y, dtype=np.float32)
    return scipy.fft.rfft(centred_frames(y, n_fft, hop_length) * hann_window(n_fft), axis=-1)


def stft_frequency_major(y: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """:func:`stft` in librosa's frequency-major layout [F, T] (C-contiguous), the same numbers bit for bit.

    The windowed frames are transformed along the contiguous axis of their
    transposed view, so the FFT reads as fast as :func:`stft`'s and writes
    the layout that everything after it uses (the magnitude and the masks
    then need no transpose); pocketfft runs the same transform per frame.
    """
    y = np.ascontiguousarray(y, dtype=np.float32)
    frames = centred_frames(y, n_fft, hop_length)
    window = hann_window(n_fft)
    X = np.empty((n_fft // 2 + 1, len(frames)), np.complex64)
    # Blocks of frames: a block's windowed frames and spectra stay in cache
    # until they are copied into X (the whole clip's windowed frames, ~10 MB
    # for 30 s, went out to memory and back); per frame the same transform.
    for t0 in range(0, len(frames), _STFT_BLOCK_FRAMES):
        windowed = frames[t0:t0 + _STFT_BLOCK_FRAMES] * window
        X[:, t0:t0 + _STFT_BLOCK_FRAMES] = scipy.fft.rfft(windowed.T, axis=0)
    return X




@njit(cache=True, nogil=True)
def _magnitude(X, out):
    """``out = |X|`` element-wise, as ``sqrt(re**2 + im**2)``."""
    x = X.reshape(-1)
    o = out.reshape(-1)
    for i in range(x.size):
        v = x[i]
        o[i] = np.sqrt(v.real * v.real + v.imag * v.imag)


@njit(cache=True, nogil=True)
def _smallest_entry(X):
    """The smallest ``max(|re|, |im|)`` of the non-zero entries of ``X`` (inf if none).

    Below ~1e-19 an entry's squares underflow float32 and its magnitude is
    not ``|X|`` any more.
    """
    x = X.reshape(-1)
    smallest = np.float32(np.inf)
    for i in range(x.size):
        size = max(abs(x[i].real), abs(x[i].imag))
        if size > 0 and size < smallest:
            smallest = size
    return float(smallest)


@njit(cache=True, nogil=True, inline="always")
def _pow(x, power):
    return x * x if power == 2.0 else x ** power


@njit(cache=True, nogil=True, error_model="numpy")
def _hpss_parts_kernel(S, harm, perc, power, margin, split, mask_h, pow_h, pow_p):
    # librosa.util.softmask, element-wise and branch-free so that it
    # vectorises: scale by max(x, ref) before the power (no overflow), and
    # give ``split`` (0.5 when margins are 1, else 0) where both medians are
    # below float32 tiny.
    for i in range(S.shape[0]):
        h = harm[i]
        p = perc[i]
        s = S[i]
        h_ref = h * margin
        p_ref = p * margin
        z1 = max(h, p_ref)
        ok1 = z1 >= _TINY32
        z1 = z1 if ok1 else np.float32(1.0)
        a = _pow(h / z1, power)
        b = _pow(p_ref / z1, power)
        z2 = max(p, h_ref)
        ok2 = z2 >= _TINY32
        z2 = z2 if ok2 else np.float32(1.0)
        c = _pow(p / z2, power)
        d = _pow(h_ref / z2, power)
        mh = a / (a + b) if ok1 else split
        mp = c / (c + d) if ok2 else split
        mask_h[i] = mh
        sh = s * mh
        sp = s * mp
        pow_h[i] = sh * sh
        pow_p[i] = sp * sp


def _hpss_parts(S: np.ndarray, harm: np.ndarray, perc: np.ndarray, *, power: float,
                margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Harmonic mask and the power spectra |H|^2, |P|^2 of a magnitude S (any shape, C-contiguous).

    As ``librosa.decompose.hpss`` (one margin for both masks): ``mask_H =
    softmask(harm, margin * perc, power)``, ``mask_P = softmask(perc,
    margin * harm, power)``, ``H = mask_H * S``, ``P = mask_P * S``.
    """
    shape = S.shape
    flat = [a.reshape(-1) for a in (S, harm, perc)]
    mask_h, pow_h, pow_p = (np.empty(S.size, np.float32) for _ in range(3))
    split = np.float32(0.5 if margin == 1.0 else 0.0)
    _hpss_parts_kernel(*flat, np.float32(power), np.float32(margin), split, mask_h, pow_h, pow_p)
    return mask_h.reshape(shape), pow_h.reshape(shape), pow_p.reshape(shape)


def magnitude(X: np.ndarray) -> np.ndarray:
    """``|X|`` float32 of a C-contiguous complex64 array (as ``sqrt(re**2 + im**2)``), same shape."""
    S = np.empty(X.shape, np.float32)
    _magnitude(X, S)
    return S


def hpss_medians(S: np.ndarray, cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """The two HPSS medians of a frequency-major magnitude ``S`` [F, T]: (harmonic, percussive), [F, T] float32.

    The harmonic median runs along time (axis 1), the percussive one along
    frequency (axis 0), both as ``scipy.ndimage.median_filter(mode="reflect")``.
    """
    return (median_filter_axis(S, cfg.hpss_kernel_harmonic, axis=1),
            median_filter_axis(S, cfg.hpss_kernel_percussive, axis=0))


def hpss_parts(S: np.ndarray, harm: np.ndarray, perc: np.ndarray,
               cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HPSS of ``S`` [F, T] from its medians: (mask_H, |H|^2, |P|^2), each [F, T] float32 (see :func:`_hpss_parts`)."""
    return _hpss_parts(S, harm, perc, power=float(cfg.hpss_power), margin=float(cfg.hpss_margin))


def hpss(D: np.ndarray, *, kernel_size: tuple[int, int] = (31, 31), power: float = 2.0,
         margin: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic/percussive separation by median filtering, as ``librosa.decompose.hpss``.

    Parameters
    ----------
    D : np.ndarray [shape=(n_freq, n_frames)], complex64
        STFT in librosa's (frequency-major) layout.
    kernel_size : (int, int)
        Median lengths (harmonic: frames, percussive: bins).
    power : float > 0
        Soft-mask exponent.
    margin : float >= 1
        Mask margin (one value for both masks).

    Returns
    -------
    H, P : np.ndarray [shape=(n_freq, n_frames)], complex64
        ``D * mask_H`` and ``D * mask_P``.
    """
    D = np.asarray(D)
    if D.ndim != 2 or not np.iscomplexobj(D):
        raise FeatureError(f"hpss needs a 2-D complex STFT, got shape {D.shape} dtype {D.dtype}")
    D = np.ascontiguousarray(D, dtype=np.complex64)
    S = np.abs(D)
    harm = median_filter_axis(S, int(kernel_size[0]), axis=1)
    perc = median_filter_axis(S, int(kernel_size[1]), axis=0)
    mask_h, _, _ = _hpss_parts(S, harm, perc, power=float(power), margin=float(margin))
    # The extractor never needs P itself, only |P|^2; here P's mask is the
    # same soft mask with the roles of the medians swapped.
    mask_p, _, _ = _hpss_parts(S, perc, harm, power=float(power), margin=float(margin))
    return D * mask_h, D * mask_p


#: Frames per block of the inverse STFT. One block's spectra and frames
#: (~2 MB at n_fft 2048) are still in the L2 cache when the overlap-add reads
#: them; the whole clip's (~2 x 10 MB for 30 s) went out to memory and back.
#: Each frame's transform does not depend on the others in its call (pocketfft
#: gives a frame alone the bits it gives it in a batch), so blocks change no bit.
_ISTFT_BLOCK_FRAMES = 128


@functools.lru_cache(maxsize=8)
def _inverse_window_sumsquare(n_fft: int, hop_length: int, n_frames: int) -> np.ndarray:
    """1 / sum of squared, shifted Hann windows (0 where that sum is below float32 tiny), float32.

    As ``librosa.filters.window_sumsquare``: a constant of (n_fft, hop,
    frames), so it is computed once per clip length, not per call.
    """
    win_sq = hann_window(n_fft).astype(np.float64) ** 2
    wss = np.zeros(n_fft + hop_length * (n_frames - 1))
    for t in range(n_frames):
        wss[t * hop_length: t * hop_length + n_fft] += win_sq
    wss = wss.astype(np.float32)
    inv = np.zeros_like(wss)
    ok = wss > _TINY32
    inv[ok] = 1.0 / wss[ok]
    inv.setflags(write=False)
    return inv


def istft(X: np.ndarray, *, n_fft: int, hop_length: int, length: int) -> np.ndarray:
    """Inverse of :func:`stft` (time-major input), as ``librosa.istft(X.T, length=length)``.

    Parameters
    ----------
    X : np.ndarray [shape=(n_frames, 1 + n_fft // 2)], complex64
        Any strides (the transposed view of a frequency-major STFT is not copied).
    n_fft, hop_length : int
    length : int
        Samples of the output.

    Returns
    -------
    np.ndarray [shape=(length,)], float32
    """
    return _istft_frequency_major(np.asarray(X).T, None, n_fft, hop_length, length)


def masked_istft(X: np.ndarray, mask: np.ndarray, *, n_fft: int, hop_length: int, length: int) -> np.ndarray:
    """``istft((X * mask).T)`` of a frequency-major STFT and mask, the same numbers bit for bit.

    The product is taken block by block of frames, right before its inverse
    FFT and overlap-add, instead of as one full-size array.

    Parameters
    ----------
    X : np.ndarray [shape=(1 + n_fft // 2, n_frames)], complex64
        Frequency-major STFT (:attr:`Spectra.stft_fm`).
    mask : np.ndarray [shape=(1 + n_fft // 2, n_frames)], float32
    n_fft, hop_length, length : int
        As :func:`istft`.

    Returns
    -------
    np.ndarray [shape=(length,)], float32
    """
    return _istft_frequency_major(X, mask, n_fft, hop_length, length)


def _istft_frequency_major(X: np.ndarray, mask: np.ndarray | None, n_fft: int, hop_length: int,
                           length: int) -> np.ndarray:
    # X [F, T] (any strides) and mask [F, T] or None. Per output sample the
    # frames are added in order of time, from zero, as in one overlap-add of
    # all frames; the inverse FFT reads each block's frames through the
    # transposed view (pocketfft copies every frame into its own buffer).
    n_frames = X.shape[1]
    window = hann_window(n_fft)
    out = np.zeros(n_fft + hop_length * (n_frames - 1), np.float32)
    for t0 in range(0, n_frames, _ISTFT_BLOCK_FRAMES):
        t1 = min(t0 + _ISTFT_BLOCK_FRAMES, n_frames)
        block = X[:, t0:t1] if mask is None else np.multiply(X[:, t0:t1], mask[:, t0:t1])
        frames = scipy.fft.irfft(block.T, n=n_fft, axis=-1).astype(np.float32, copy=False)
        overlap_add(frames, window, hop_length, out[t0 * hop_length: t1 * hop_length - hop_length + n_fft], False)
    out *= _inverse_window_sumsquare(n_fft, hop_length, n_frames)
    y = out[n_fft // 2: n_fft // 2 + length]
    if len(y) < length:
        y = np.pad(y, (0, length - len(y)))
    return np.ascontiguousarray(y)


def power_to_db(S: np.ndarray, *, top_db: float | None) -> np.ndarray:
    """``librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=top_db)`` in float32."""
    log_spec = np.log10(np.maximum(S, np.float32(_AMIN)))
    log_spec *= np.float32(10.0)
    if top_db:
        np.maximum(log_spec, log_spec.max() - np.float32(top_db), out=log_spec)
    return log_spec


def _check_samples(samples: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    y = np.asarray(samples)
    if y.ndim != 1:
        raise FeatureError(
            f"extract_features needs a mono 1-D signal, got shape {y.shape}; downmix to mono first"
        )
    if not np.issubdtype(y.dtype, np.floating):
        raise FeatureError(
            f"extract_features needs floating-point samples in [-1, 1], got dtype {y.dtype}; "
            "decode with pipeline.dsp.audio.load_clip"
        )
    if len(y) < cfg.n_fft:
        raise FeatureError(
            f"signal of {len(y)} samples is shorter than features.n_fft={cfg.n_fft}; "
            "pass a longer clip or lower n_fft"
        )
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.isfinite(y).all():
        raise FeatureError("signal holds NaN or Inf samples; the decoder should have rejected it")
    return y


#: The power spectra a :class:`Spectra` holds, by the name :meth:`Spectra.log_mel` takes.
PARTS: dict[str, str] = {"signal": "power", "harmonic": "harmonic_power", "percussive": "percussive_power"}


class Spectra:
    """The spectra that the features of one signal share, each computed once.

    Built by :func:`spectra_of`; every registered feature function reads what
    it needs from it. Frequency-major arrays are ``[F, T]`` float32 with
    ``F = 1 + n_fft // 2`` and ``T = 1 + n // hop_length``.

    Attributes
    ----------
    samples : np.ndarray [shape=(n,)], float32
        The signal.
    sr : int
        Sample rate in Hz.
    cfg : FeatureConfig
    n_frames : int
        ``T``.
    stft : np.ndarray [shape=(T, F)], complex64
        :func:`stft` of the signal (a time-major view of the frequency-major
        :attr:`stft_fm`; do not modify it).
    stft_fm : np.ndarray [shape=(F, T)], complex64
        The same STFT, C-contiguous frequency-major.
    power : np.ndarray [shape=(F, T)]
        ``|X|**2``. It and the HPSS attributes below are computed on first use.
    harmonic_mask : np.ndarray [shape=(F, T)]
        HPSS soft mask of the harmonic part (``H = mask * X``).
    harmonic_power, percussive_power : np.ndarray [shape=(F, T)]
        ``|H|**2`` and ``|P|**2``.
    """

    def __init__(self, samples: np.ndarray, *, sr: int, cfg: FeatureConfig) -> None:
        self.samples, self.sr, self.cfg = samples, sr, cfg
        self._fmax = float(cfg.fmax or sr / 2.0)
        self._top_db = cfg.top_db or None
        self._mel_powers: dict[tuple[str, int], np.ndarray] = {}
        # The FFT yields frames x bins; everything after it runs frequency-major
        # [F, T], the layout of the outputs, so the sparse mel banks produce
        # [bands, T] without a transpose.
        self.stft_fm = stft_frequency_major(samples, n_fft=cfg.n_fft, hop_length=cfg.hop_length)  # [F, T]
        self.n_frames = self.stft_fm.shape[1]
        self._magnitude = magnitude(self.stft_fm)                               # [F, T]

    # The power and the HPSS parts are computed on first use: a feature that reads only the
    # power (the tempogram, which an update may add alone) costs no medians.
    # The magnitude is let go (squared in place into the power where that comes last) once both have read it.
    @functools.cached_property
    def power(self) -> np.ndarray:
        S = self._magnitude
        if "_hpss" not in self.__dict__:
            return np.square(S)
        self._magnitude = None
        return np.square(S, out=S)

    @functools.cached_property
    def _hpss(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        S = self._magnitude
        harm, perc = hpss_medians(S, self.cfg)
        parts = hpss_parts(S, harm, perc, self.cfg)
        if "power" in self.__dict__:
            self._magnitude = None
        return parts

    @property
    def harmonic_mask(self) -> np.ndarray:
        return self._hpss[0]

    @property
    def harmonic_power(self) -> np.ndarray:
        return self._hpss[1]

    @property
    def percussive_power(self) -> np.ndarray:
        return self._hpss[2]

    @property
    def stft(self) -> np.ndarray:
        return self.stft_fm.T

    def mel_db(self, power: np.ndarray, n_mels: int) -> np.ndarray:
        """Log-mel (dB, ``cfg.top_db`` floor) of a power spectrum [F, T]: [n_mels, T] float32."""
        return power_to_db(self._mel_basis(n_mels) @ power, top_db=self._top_db)

    def _mel_basis(self, n_mels: int):
        return mel_basis_sparse(self.sr, self.cfg.n_fft, n_mels, float(self.cfg.fmin), self._fmax)

    def mel_power(self, part: str, n_mels: int) -> np.ndarray:
        """Mel power spectrum [n_mels, T] of one of :data:`PARTS` ("signal", "harmonic", "percussive"), cached."""
        key = (part, n_mels)
        if key not in self._mel_powers:
            self._mel_powers[key] = self._mel_basis(n_mels) @ getattr(self, PARTS[part])
        return self._mel_powers[key]

    def log_mel(self, part: str, n_mels: int) -> np.ndarray:
        """Log-mel (dB, ``cfg.top_db`` floor) [n_mels, T] of one of :data:`PARTS`; equal to
        ``mel_db(<its power>, n_mels)``, with the mel product shared between calls."""
        return power_to_db(self.mel_power(part, n_mels), top_db=self._top_db)

    @functools.cached_property
    def harmonic_signal(self) -> np.ndarray:
        """The harmonic part as a waveform, ``istft(H)`` [shape=(n,)] float32."""
        return masked_istft(self.stft_fm, self.harmonic_mask, n_fft=self.cfg.n_fft, hop_length=self.cfg.hop_length,
                            length=len(self.samples))

    @functools.cached_property
    def _harmonic_cens(self) -> tuple[np.ndarray, float]:
        cfg = self.cfg
        cens, min_norm = chroma_cens_parts(
            self.harmonic_signal, sr=self.sr, hop_length=cfg.hop_length, fmin=cfg.cens_fmin,
            bins_per_octave=cfg.cens_bins_per_octave, n_octaves=cfg.cens_n_octaves, tuning=cfg.cens_tuning,
            win_len_smooth=cfg.cens_win_len_smooth)
        return cens[:, : self.n_frames], min_norm

    def harmonic_cens(self) -> np.ndarray:
        """CENS [12, T] of :attr:`harmonic_signal` (``librosa.feature.chroma_cens``), computed once (a copy)."""
        return self._harmonic_cens[0].copy()

    def scaled(self, factor: float, samples: np.ndarray) -> "Spectra | None":
        """The spectra of ``factor * self.samples`` (``samples``, the scaled signal itself), derived.

        Every quantity follows from this one by an exact identity: the STFT,
        the HPSS medians and the harmonic waveform scale by ``factor``, the
        powers and mel powers by ``factor**2``, the soft masks and CENS
        (normalised) do not change. Features computed from the result
        therefore differ from those of ``samples`` computed afresh only by
        float32 rounding, the dB floors (``amin``, ``top_db``) included,
        since the log-mels are taken of the scaled mel powers.

        Returns ``None`` where an identity would not hold in float32: a
        non-zero STFT entry that the scaling (or this signal already) brings
        near underflow, where squares and products stop being exact enough
        and the soft mask treats values below ``tiny`` as zero; also for a
        factor that is not positive and finite or ``samples`` of another
        length. The caller then computes the spectra of ``samples`` afresh.
        (A CENS chroma norm that the scaling would move across ``tiny`` makes
        the derived spectra recompute CENS from the scaled waveform.)
        """
        factor = float(factor)
        if not (np.isfinite(factor) and factor > 0) or len(samples) != len(self.samples):
            return None
        # Every non-zero STFT entry must stay far from float32's underflow on
        # both sides of the scaling, so that its squared magnitude, the
        # medians and the mask's products are normal numbers (>= 1e-36, far
        # above tiny, the mask's threshold for zero). Audio is far above it:
        # even one 16-bit step under a window's edge gives ~1e-11.
        if _smallest_entry(self.stft_fm) * min(1.0, factor) < _MIN_SCALED_ENTRY:
            return None
        return ScaledSpectra(self, factor, samples)


class ScaledSpectra(Spectra):
    """The :class:`Spectra` of ``factor * parent.samples``, derived from the parent's (see :meth:`Spectra.scaled`).

    The log-mels come from the parent's mel powers times ``factor**2`` (a
    few hundred thousand multiplications and logarithms instead of an STFT,
    two medians, four mel products and a CQT), CENS is the parent's; the
    other attributes, which only a feature registered at run time reads,
    are scaled on first use.
    """

    def __init__(self, parent: Spectra, factor: float, samples: np.ndarray) -> None:  # noqa: D107 (no super: nothing is computed)
        self.samples, self.sr, self.cfg = samples, parent.sr, parent.cfg
        self._fmax, self._top_db = parent._fmax, parent._top_db
        self._mel_powers = {}
        self.n_frames = parent.n_frames
        self._parent, self._factor = parent, factor
        self._power_factor = np.float32(factor * factor)

    @property
    def harmonic_mask(self) -> np.ndarray:
        return self._parent.harmonic_mask

    def mel_power(self, part: str, n_mels: int) -> np.ndarray:
        key = (part, n_mels)
        if key not in self._mel_powers:
            self._mel_powers[key] = self._parent.mel_power(part, n_mels) * self._power_factor
        return self._mel_powers[key]

    @functools.cached_property
    def stft_fm(self) -> np.ndarray:  # type: ignore[override]
        return self._parent.stft_fm * np.complex64(self._factor)

    @functools.cached_property
    def power(self) -> np.ndarray:  # type: ignore[override]
        return self._parent.power * self._power_factor

    @functools.cached_property
    def harmonic_power(self) -> np.ndarray:  # type: ignore[override]
        return self._parent.harmonic_power * self._power_factor

    @functools.cached_property
    def percussive_power(self) -> np.ndarray:  # type: ignore[override]
        return self._parent.percussive_power * self._power_factor

    @functools.cached_property
    def harmonic_signal(self) -> np.ndarray:
        return self._parent.harmonic_signal * np.float32(self._factor)

    @functools.cached_property
    def _harmonic_cens(self) -> tuple[np.ndarray, float]:
        cens, min_norm = self._parent._harmonic_cens
        # Chroma frames are L1-normalised unless their norm is below tiny (all
        # zero in practice): the parent's CENS holds if the scaling moves no
        # positive norm (min_norm: the smallest, inf if none) across it.
        if min(min_norm, min_norm * self._factor) >= 2.0 * _TINY32:
            return cens, min_norm * self._factor
        return Spectra._harmonic_cens.func(self)  # recompute from the scaled harmonic waveform


# --------------------------------------------------------------------------
# The built-in features (registered in pipeline.config.FEATURES)
# --------------------------------------------------------------------------
def log_mel(spectra: Spectra, cfg: FeatureConfig) -> np.ndarray:
    """``mel``: log-mel (dB) of the signal, [n_mels, T]."""
    return spectra.log_mel("signal", cfg.n_mels)


def harmonic_log_mel(spectra: Spectra, cfg: FeatureConfig) -> np.ndarray:
    """``harmonic_mel``: log-mel (dB) of the HPSS harmonic part, [hp_n_mels, T]."""
    return spectra.log_mel("harmonic", cfg.hp_n_mels)


def percussive_log_mel(spectra: Spectra, cfg: FeatureConfig) -> np.ndarray:
    """``percussive_mel``: log-mel (dB) of the HPSS percussive part, [hp_n_mels, T]."""
    return spectra.log_mel("percussive", cfg.hp_n_mels)


def harmonic_mfcc(spectra: Spectra, cfg: FeatureConfig) -> np.ndarray:
    """``mfcc``: MFCCs (DCT-II, ortho) of the harmonic part's ``n_mels``-band log-mel, [n_mfcc, T]."""
    return dct_ortho(cfg.n_mfcc, cfg.n_mels) @ spectra.log_mel("harmonic", cfg.n_mels)


def harmonic_cens(spectra: Spectra, cfg: FeatureConfig) -> np.ndarray:
    """``cens``: 12-d CENS of the harmonic waveform, as ``librosa.feature.chroma_cens``, [12, T]."""
    return spectra.harmonic_cens()


def onset_tempogram(spectra: Spectra, cfg: FeatureConfig) -> np.ndarray:
    """``tempogram`` (optional): autocorrelation tempogram of the onset strength, [tempogram_win_length, T].

    As ``librosa.feature.tempogram(onset_envelope=librosa.onset.onset_strength(S=mel))``
    with ``mel`` the ``mel`` feature (so the onsets are librosa's own spectral
    flux of its default log-mel), ``win_length = cfg.tempogram_win_length``
    and the frame centring of ``cfg.n_fft``: band ``k`` is lag ``k`` frames,
    each frame normalised to a maximum of 1.
    """
    return tempogram(onset_strength(spectra.log_mel("signal", cfg.n_mels), n_fft=cfg.n_fft,
                                    hop_length=cfg.hop_length), win_length=cfg.tempogram_win_length)


def onset_strength(log_mel_db: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """Spectral-flux onset strength of a log-mel [bands, T], as ``librosa.onset.onset_strength(S=...)``.

    The band mean of the positive first differences along time, delayed by one
    frame plus ``n_fft // (2 * hop_length)`` (the centring of the frames), T values.
    """
    flux = np.maximum(0.0, log_mel_db[:, 1:] - log_mel_db[:, :-1]).mean(axis=0)
    delay = 1 + n_fft // (2 * hop_length)
    return np.concatenate([np.zeros(delay, flux.dtype), flux])[:log_mel_db.shape[1]]


def tempogram(onsets: np.ndarray, *, win_length: int) -> np.ndarray:
    """Autocorrelation tempogram of an onset envelope [T], as ``librosa.feature.tempogram(onset_envelope=...)``.

    Centred windows of ``win_length`` frames (the envelope ramped linearly to
    zero over half a window at each end), Hann-weighted, autocorrelated by FFT
    and normalised to a maximum of 1 (frames that are all zero stay zero).

    Returns
    -------
    np.ndarray [shape=(win_length, T)], float32
    """
    n = len(onsets)
    half = win_length // 2
    padded = np.pad(onsets, (half, half), mode="linear_ramp", end_values=(0, 0))
    frames = np.lib.stride_tricks.sliding_window_view(padded, win_length)[:n]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)  # periodic Hann, float64
    n_fft = scipy.fft.next_fast_len(2 * win_length - 1, real=True)
    power = np.abs(scipy.fft.rfft(frames * window, n=n_fft, axis=1)) ** 2
    autocorr = scipy.fft.irfft(power, n=n_fft, axis=1)[:, :win_length]
    peak = np.max(np.abs(autocorr), axis=1, keepdims=True)
    peak[peak < np.finfo(autocorr.dtype).tiny] = 1.0
    return np.ascontiguousarray((autocorr / peak).T, dtype=np.float32)


def extract_features(samples: np.ndarray, *, sr: int, cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """All per-frame features of one mono signal.

    Parameters
    ----------
    samples : np.ndarray [shape=(n,)], float
        Mono signal (converted to float32), ``n >= cfg.n_fft``.
    sr : int
        Sample rate in Hz.
    cfg : FeatureConfig
        STFT, mel, HPSS and CENS parameters.

    Returns
    -------
    dict of str -> np.ndarray [shape=(bands, T)], float32, C-contiguous
        Keys: the registered features (:data:`pipeline.config.FEATURES`), in
        store order; bands ``cfg.feature_bands()``; ``T = 1 + n // cfg.hop_length``
        for every key.

    Raises
    ------
    pipeline.errors.FeatureError
        The signal is not 1-D floating point, is shorter than ``n_fft`` or
        holds NaN/Inf; or the CENS CQT does not fit ``sr``; or a registered
        feature function returns another shape than its bands x T.
    """
    return features_of_spectra(spectra_of(samples, sr=sr, cfg=cfg))


def spectra_of(samples: np.ndarray, *, sr: int, cfg: FeatureConfig) -> Spectra:
    """The checked signal's :class:`Spectra` (the arguments and errors of :func:`extract_features`)."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise FeatureError(f"sample rate sr={sr!r} must be a positive integer (Hz)")
    y = _check_samples(samples, cfg)
    sr = int(sr)
    fmax = cfg.fmax or sr / 2.0
    if fmax > sr / 2.0:
        raise FeatureError(f"features.fmax={cfg.fmax} exceeds Nyquist ({sr / 2.0} Hz at sr={sr}); lower fmax")
    return Spectra(y, sr=sr, cfg=cfg)


def features_of_spectra(spectra: Spectra, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The features ``names`` of ``spectra`` (default: the config's, the result of
    :func:`extract_features`); only the spectra those features need are computed."""
    cfg = spectra.cfg
    out = {}
    for feature in (FEATURES[name] for name in (cfg.feature_names() if names is None else names)):
        compute = resolve(feature.compute, what=f"feature {feature.name!r}")
        value = np.ascontiguousarray(compute(spectra, cfg), dtype=np.float32)
        expected = (feature.n_bands(cfg), spectra.n_frames)
        if value.shape != expected:
            raise FeatureError(f"feature {feature.name!r} ({feature.compute!r}) returned shape {value.shape}, "
                               f"not (bands, frames) = {expected}; fix its function or its registered bands")
        out[feature.name] = value
    return out
