"""Synthetic audio files for tests: tones of any length, rate, channel count and format.

Everything is written with soundfile (libsndfile), which also encodes MP3
(LAME), OGG/Vorbis and Opus here, so no test needs real recordings, ffmpeg
or the network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

#: (format, subtype) for each file extension the tests use.
FORMATS: dict[str, tuple[str, str | None]] = {
    "wav": ("WAV", "PCM_16"),
    "au": ("AU", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "aiff": ("AIFF", "PCM_16"),
    "aif": ("AIFF", "PCM_16"),
}


def tone(seconds: float, sr: int, *, freq: float = 440.0, amplitude: float = 0.5,
         channels: int = 1) -> np.ndarray:
    """A sine tone, float32 [shape=(n,) if channels == 1 else (n, channels)].

    Channel ``c`` has amplitude ``amplitude / (c + 1)`` so that a downmix is
    distinguishable from taking one channel.
    """
    t = np.arange(int(round(seconds * sr))) / sr
    y = amplitude * np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return y.astype(np.float32)
    return np.stack([y / (c + 1) for c in range(channels)], axis=1).astype(np.float32)


def write_signal(path: str | Path, samples: np.ndarray, sr: int, *, format: str | None = None,
                 subtype: str | None = None) -> Path:
    """Write ``samples`` [shape=(n,) or (n, channels)] to ``path``.

    ``format``/``subtype`` default from the extension (see :data:`FORMATS`).
    """
    path = Path(path)
    ext = path.suffix.lstrip(".").lower()
    default_format, default_subtype = FORMATS.get(ext, (None, None))
    format, subtype = format or default_format, subtype or default_subtype
    try:
        soundfile.write(str(path), samples, sr, format=format, subtype=subtype)
    except (soundfile.LibsndfileError, ValueError, TypeError):
        # Older libsndfile builds cannot encode MP3 or Opus; ffmpeg (PyAV) can.
        codec = {"MPEG_LAYER_III": "libmp3lame", "OPUS": "libopus"}.get(subtype or "")
        if codec is None:
            raise
        _write_with_pyav(path, samples, sr, codec)
    return path


def _write_with_pyav(path: Path, samples: np.ndarray, sr: int, codec: str) -> None:
    import av

    data = np.asarray(samples, dtype=np.float32)
    data = data[:, None] if data.ndim == 1 else data
    layout = {1: "mono", 2: "stereo"}[data.shape[1]]
    with av.open(str(path), "w", format="mp3" if codec == "libmp3lame" else "ogg") as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T), format="fltp", layout=layout)
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_tone(path: str | Path, seconds: float = 5.0, sr: int = 22050, *, channels: int = 1,
               format: str | None = None, subtype: str | None = None, freq: float = 440.0,
               amplitude: float = 0.5) -> Path:
    """Write a ``freq`` Hz tone of ``seconds`` at ``sr`` Hz; returns ``path``."""
    return write_signal(path, tone(seconds, sr, freq=freq, amplitude=amplitude, channels=channels),
                        sr, format=format, subtype=subtype)


def dominant_frequency(y: np.ndarray, sr: int) -> float:
    """Frequency in Hz of the strongest spectral peak of ``y`` [shape=(n,)].

    Hann-windowed FFT zero-padded 4x with parabolic interpolation of the log
    magnitude around the peak (error well under 0.1% for a steady tone of a
    few seconds).
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(n), 4 * n))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-30)
    shift = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + shift) * sr / (4 * n)
