"""Per-clip spectral features at one hop. PLACEHOLDER (plain librosa); the fast version replaces it."""

from __future__ import annotations

import numpy as np

from pipeline.config import FeatureConfig


def extract_features(samples: np.ndarray, *, sr: int, cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """mel, harmonic_mel, percussive_mel, mfcc, cens: each float32 [shape=(bands, frames)]."""
    import librosa

    fmax = cfg.fmax or sr / 2
    S = librosa.stft(samples, n_fft=cfg.n_fft, hop_length=cfg.hop_length)
    H, P = librosa.decompose.hpss(S, kernel_size=(cfg.hpss_kernel_harmonic, cfg.hpss_kernel_percussive),
                                  power=cfg.hpss_power, margin=cfg.hpss_margin)

    def logmel(X, n):
        m = librosa.feature.melspectrogram(S=np.abs(X) ** 2, sr=sr, n_mels=n, fmin=cfg.fmin, fmax=fmax)
        return librosa.power_to_db(m, ref=1.0, top_db=cfg.top_db or None)

    h_mel128 = logmel(H, cfg.n_mels)
    y_h = librosa.istft(H, hop_length=cfg.hop_length, length=len(samples))
    out = {
        "mel": logmel(S, cfg.n_mels),
        "harmonic_mel": logmel(H, cfg.hp_n_mels),
        "percussive_mel": logmel(P, cfg.hp_n_mels),
        "mfcc": librosa.feature.mfcc(S=h_mel128, n_mfcc=cfg.n_mfcc),
        "cens": librosa.feature.chroma_cens(y=y_h, sr=sr, hop_length=cfg.hop_length, fmin=cfg.cens_fmin,
                                            tuning=cfg.cens_tuning, n_octaves=cfg.cens_n_octaves,
                                            bins_per_octave=cfg.cens_bins_per_octave,
                                            win_len_smooth=cfg.cens_win_len_smooth),
    }
    T = S.shape[-1]
    return {k: np.ascontiguousarray(v[:, :T], dtype=np.float32) for k, v in out.items()}
