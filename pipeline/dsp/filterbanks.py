"""Filterbanks and windows, computed once per (parameters, sample rate) and cached.

Every matrix here is a constant of the configuration: building it per clip
(as a plain librosa script does inside ``melspectrogram`` / ``cqt``) costs
more than applying it. The functions are memoised with ``functools.lru_cache``
on hashable arguments and return read-only arrays, so a cached matrix cannot
be modified by a caller by accident.

The numbers are librosa's: the mel bank is ``librosa.filters.mel`` (Slaney
scale and normalisation), the CQT kernels follow ``librosa.vqt`` (Hann
wavelets, L1 norm, 1% sparsity, per-octave FFT bases) and the chroma fold is
``librosa.filters.cq_to_chroma``, so features computed with them match
librosa's within float32 rounding.

Beside them, the framing both directions share: centred frames
(:func:`centred_frames`) and the windowed overlap-add (:func:`overlap_add`)
of the inverse STFT and of the phase vocoder.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np
import scipy.fft
from numba import njit

from pipeline.errors import FeatureError

logger = logging.getLogger(__name__)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=32)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window, float32 [shape=(n_fft,)], as ``scipy.signal.get_window('hann', n_fft)``."""
    n = np.arange(n_fft, dtype=np.float64)
    return _frozen((0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)).astype(np.float32))


@functools.lru_cache(maxsize=32)
def mel_basis_sparse(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
    """The Slaney mel bank (``librosa.filters.mel``) as a CSR matrix [shape=(n_mels, 1 + n_fft // 2)], float32.

    Each band is a triangle over a few bins (about 2 non-zeros per bin in
    all), so ``basis @ power[bins, frames]`` costs ~2% of the dense product
    and yields the frequency-major ``[n_mels, frames]`` layout directly.
    """
    import librosa  # librosa (~1 s to import): builds a filterbank once per process, then cached
    import scipy.sparse  # scipy: with librosa, only while a filterbank is built

    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float32)
    return scipy.sparse.csr_matrix(basis)


@functools.lru_cache(maxsize=32)
def dct_ortho(n_out: int, n_in: int) -> np.ndarray:
    """First ``n_out`` rows of the orthonormal DCT-II of size ``n_in``, float32 [shape=(n_out, n_in)].

    ``dct_ortho(m, n) @ x`` equals ``scipy.fft.dct(x, type=2, norm='ortho', axis=0)[:m]``,
    which is what ``librosa.feature.mfcc`` computes.
    """
    basis = scipy.fft.dct(np.eye(n_in), type=2, norm="ortho", axis=0)[:n_out]
    return _frozen(np.ascontiguousarray(basis, dtype=np.float32))


@functools.lru_cache(maxsize=32)
def smoothing_window(win_len_smooth: int) -> np.ndarray:
    """CENS temporal smoothing: symmetric Hann of ``win_len_smooth + 2`` taps, summing to 1 (float64)."""
    import scipy.signal  # scipy: only while a filterbank is built

    win = scipy.signal.get_window("hann", win_len_smooth + 2, fftbins=False)
    return _frozen(win / np.sum(win))


@dataclasses.dataclass(frozen=True)
class CQTOctave:
    """The kernels of one octave of the multirate CQT.

    Attributes
    ----------
    n_fft : int
        FFT size of this octave's frames (boxcar window, centred, zero padding).
    hop : int
        Hop in samples at this octave's rate.
    lo, hi : int
        The FFT bins ``[lo, hi)`` where any kernel of the octave is non-zero
        (after librosa's 1% sparsification only ~20% of the bins are: an
        octave's filters sit in the upper half of its decimated band).
    basis_t : np.ndarray [shape=(hi - lo, n_filters)], complex64
        Frequency-domain kernels on those bins, transposed, with every scale
        factor of ``librosa.cqt(scale=True)`` folded in (downsampling
        compensation ``sqrt(sr / sr_octave)`` and ``1 / sqrt(filter length)``).
    halve_after : bool
        Whether the signal is decimated by 2 before the next octave. As in
        librosa, only while the hop is even; an odd hop keeps the rate.
    indptr, indices, values : np.ndarray
        The non-zeros of ``basis_t`` filter by filter (compressed sparse
        columns: filter ``j``'s bins ``lo + indices[indptr[j]:indptr[j + 1]]``
        with weights ``values[...]``, complex64): ~15% of the dense entries.
    """

    n_fft: int
    hop: int
    lo: int
    hi: int
    basis_t: np.ndarray
    halve_after: bool
    indptr: np.ndarray = dataclasses.field(init=False, repr=False)
    indices: np.ndarray = dataclasses.field(init=False, repr=False)
    values: np.ndarray = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        nonzero = [np.nonzero(self.basis_t[:, j])[0] for j in range(self.basis_t.shape[1])]
        indptr = np.concatenate([[0], np.cumsum([len(nz) for nz in nonzero])]).astype(np.int64)
        indices = np.concatenate(nonzero).astype(np.int64)
        values = np.concatenate([self.basis_t[nz, j] for j, nz in enumerate(nonzero)]).astype(np.complex64)
        for name, value in (("indptr", indptr), ("indices", indices), ("values", values)):
            object.__setattr__(self, name, _frozen(value))


@dataclasses.dataclass(frozen=True)
class CQTPlan:
    """A cached multirate constant-Q transform, as ``librosa.cqt`` builds it.

    Attributes
    ----------
    octaves : tuple of CQTOctave
        From the top octave (full rate) down; the signal is halved (soxr HQ,
        scaled by sqrt 2) between octaves while the hop allows.
    n_bins : int
        Total bins (``n_octaves * bins_per_octave``).
    early_downsample : int
        Power of two by which the signal is decimated before the top octave
        (librosa's "early downsampling"; 0 for the defaults at 22,050 Hz).
    chroma : np.ndarray [shape=(12, n_bins)], float32
        ``librosa.filters.cq_to_chroma`` for these bins.
    """

    octaves: tuple[CQTOctave, ...]
    n_bins: int
    early_downsample: int
    chroma: np.ndarray


def _num_two_factors(x: int) -> int:
    count = 0
    while x > 0 and x % 2 == 0:
        count += 1
        x //= 2
    return count


@functools.lru_cache(maxsize=16)
def cqt_plan(sr: int, hop_length: int, fmin: float, bins_per_octave: int, n_octaves: int,
             tuning: float) -> CQTPlan:
    """Kernels of the CQT behind ``librosa.feature.chroma_cens`` (full CQT, Hann, norm 1, sparsity 0.01).

    Follows ``librosa.vqt`` with ``gamma=0``: centre frequencies
    ``fmin * 2 ** (tuning / bpo) * 2 ** (i / bpo)``, relative bandwidths from
    neighbouring bins, filter lengths ``Q * sr / f``, one FFT basis per octave
    sized to the octave's longest filter, and early downsampling when the top
    filter lies far below Nyquist.

    Raises
    ------
    pipeline.errors.FeatureError
        The top filter would exceed the Nyquist frequency.
    """
    import librosa  # librosa (~1 s to import): builds a filterbank once per process, then cached

    n_bins = n_octaves * bins_per_octave
    fmin_t = fmin * 2.0 ** (tuning / bins_per_octave)
    freqs = librosa.interval_frequencies(n_bins=n_bins, fmin=fmin_t, intervals="equal",
                                         bins_per_octave=bins_per_octave, sort=True)
    # Relative bandwidth from the local bin spacing (librosa's
    # filters._relative_bandwidth): one-sided at the ends, centred inside.
    logf = np.log2(freqs)
    bpo = np.empty_like(freqs)
    bpo[0] = 1 / (logf[1] - logf[0])
    bpo[-1] = 1 / (logf[-1] - logf[-2])
    bpo[1:-1] = 2 / (logf[2:] - logf[:-2])
    alpha = (2.0 ** (2 / bpo) - 1) / (2.0 ** (2 / bpo) + 1)
    lengths, cutoff = librosa.filters.wavelet_lengths(freqs=freqs, sr=sr, window="hann",
                                                      filter_scale=1, gamma=0, alpha=alpha)
    nyquist = sr / 2.0
    if cutoff > nyquist:
        raise FeatureError(
            f"CENS CQT: the top filter reaches {cutoff:.1f} Hz, above Nyquist {nyquist:.1f} Hz at sr={sr}; "
            f"lower features.cens_n_octaves or features.cens_fmin"
        )
    down1 = max(0, int(np.ceil(np.log2(nyquist / cutoff)) - 1) - 1)
    down2 = max(0, _num_two_factors(hop_length) - n_octaves + 1)
    early = min(down1, down2)
    my_sr = sr / 2.0 ** early
    my_hop = hop_length // 2 ** early
    octaves = []
    for i in range(n_octaves):
        sl = slice(n_bins - bins_per_octave * (i + 1), n_bins - bins_per_octave * i)
        basis, oct_lengths = librosa.filters.wavelet(freqs=freqs[sl], sr=my_sr, filter_scale=1, norm=1,
                                                     pad_fft=True, window="hann", gamma=0,
                                                     alpha=alpha[sl])
        n_fft = basis.shape[1]
        basis = basis * (oct_lengths[:, None] / float(n_fft))
        fft_basis = np.fft.fft(basis, n=n_fft, axis=1)[:, : n_fft // 2 + 1]
        fft_basis = librosa.util.sparsify_rows(fft_basis, quantile=0.01, dtype=np.complex64)
        dense = np.asarray(fft_basis.todense()) if hasattr(fft_basis, "todense") else fft_basis
        # Fold librosa's two later scalings into the kernels: compensation for
        # the decimated rate, and cqt(scale=True)'s 1/sqrt(length at sr).
        dense = dense * np.sqrt(sr / my_sr) / np.sqrt(lengths[sl])[:, None]
        # Products with the zero bins outside [lo, hi) add exact zeros, so
        # dropping them changes no value.
        used = np.nonzero(np.any(dense != 0, axis=0))[0]
        lo, hi = int(used[0]), int(used[-1]) + 1
        halve = my_hop % 2 == 0
        octaves.append(CQTOctave(n_fft=int(n_fft), hop=int(my_hop), lo=lo, hi=hi,
                                 basis_t=_frozen(np.ascontiguousarray(dense[:, lo:hi].T, dtype=np.complex64)),
                                 halve_after=halve))
        if halve:
            my_hop //= 2
            my_sr /= 2.0
    chroma = librosa.filters.cq_to_chroma(n_bins, bins_per_octave=bins_per_octave, n_chroma=12, fmin=fmin,
                                          window=None)
    logger.debug("built CQT plan sr=%s hop=%s bins=%s early=%s", sr, hop_length, n_bins, early)
    return CQTPlan(octaves=tuple(octaves), n_bins=n_bins, early_downsample=early,
                   chroma=_frozen(np.ascontiguousarray(chroma, dtype=np.float32)))


def centred_frames(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred, zero-padded frames as a strided view [shape=(1 + len(y) // hop, n_fft)] (librosa's ``center=True``)."""
    padded = np.pad(y, n_fft // 2)
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]


@njit(cache=True, nogil=True)
def overlap_add(frames, window, hop, out, latest_first):
    """``out[t * hop:][:n_fft] += frames[t] * window`` for every frame of [T, n_fft], in order of
    ``t`` or (``latest_first``) the last frame first.

    The order is the one each caller's reference adds its frames in, so
    every output sample is the same sum bit for bit.
    """
    n_frames, n_fft = frames.shape
    for k in range(n_frames):
        t = n_frames - 1 - k if latest_first else k
        seg = out[t * hop:t * hop + n_fft]
        row = frames[t]
        for j in range(n_fft):
            seg[j] += row[j] * window[j]
