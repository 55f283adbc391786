"""Seeded augmentations. PLACEHOLDER (librosa effects); the real version replaces it."""

from __future__ import annotations

import hashlib

import numpy as np

from pipeline.config import AugmentConfig


def variant_rng(seed: int, clip_id: str, variant: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\x00{clip_id}\x00{variant}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def draw_params(variant: str, *, clip_id: str, cfg: AugmentConfig) -> dict[str, float]:
    rng = variant_rng(cfg.seed, clip_id, variant)
    if variant == "time_stretch":
        return {"rate": float(rng.uniform(*cfg.stretch_rate))}
    if variant == "pitch_shift":
        return {"semitones": float(rng.uniform(*cfg.pitch_semitones))}
    if variant == "noise":
        return {"snr_db": float(rng.uniform(*cfg.noise_snr_db)), "noise_seed": int(rng.integers(2**31))}
    if variant == "gain":
        return {"gain_db": float(rng.uniform(*cfg.gain_db))}
    raise ValueError(variant)


def apply_augmentation(variant: str, samples: np.ndarray, *, sr: int, params: dict[str, float]) -> np.ndarray:
    import librosa

    if variant == "time_stretch":
        return librosa.effects.time_stretch(samples, rate=params["rate"]).astype(np.float32)
    if variant == "pitch_shift":
        return librosa.effects.pitch_shift(samples, sr=sr, n_steps=params["semitones"]).astype(np.float32)
    if variant == "noise":
        power = float(np.mean(samples.astype(np.float64) ** 2))
        noise = np.random.default_rng(int(params["noise_seed"])).standard_normal(len(samples))
        return (samples + noise * np.sqrt(power / 10 ** (params["snr_db"] / 10))).astype(np.float32)
    if variant == "gain":
        return (samples * 10 ** (params["gain_db"] / 20)).astype(np.float32)
    raise ValueError(variant)
