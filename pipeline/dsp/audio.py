"""Audio front end: decode any file to a fixed-length mono float32 signal.

PLACEHOLDER implementation (librosa.load); the robust decoder replaces it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class DecodedClip:
    """A decoded, resampled, fixed-length clip.

    samples : float32 [shape=(clip_samples,)] mono at the target rate, zero-padded.
    valid_samples : samples of real audio at the start of ``samples``.
    source_seconds : duration of the whole source file.
    source_sample_rate, source_channels : of the source file.
    decoder : which decoder produced the signal (e.g. "soundfile", "pyav").
    """

    samples: np.ndarray
    valid_samples: int
    source_seconds: float
    source_sample_rate: int
    source_channels: int
    decoder: str


def load_clip(path: str | Path, *, sample_rate: int = 22050, clip_seconds: float = 30.0,
              min_seconds: float = 3.0, excerpt: str = "centre", resample_quality: str = "HQ") -> DecodedClip:
    import librosa

    from pipeline.errors import TooShortError

    duration = librosa.get_duration(path=str(path))
    clip_samples = int(round(clip_seconds * sample_rate))
    offset = max(0.0, (duration - clip_seconds) / 2) if excerpt == "centre" else 0.0
    y, _ = librosa.load(str(path), sr=sample_rate, mono=True, offset=offset, duration=clip_seconds)
    y = y[:clip_samples].astype(np.float32)
    if len(y) < int(round(min_seconds * sample_rate)):
        raise TooShortError(path, f"too short: {len(y) / sample_rate:.2f} s < {min_seconds} s")
    out = np.zeros(clip_samples, np.float32)
    out[: len(y)] = y
    return DecodedClip(out, len(y), duration, sample_rate, 1, "librosa")
