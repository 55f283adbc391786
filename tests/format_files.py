"""One small audio file per extension of :data:`pipeline.dsp.formats.AUDIO_EXTENSIONS`, made here.

Each is written with libsndfile (``soundfile``), one of the encoders and
muxers of the ffmpeg that PyAV bundles, or, where nothing bundled writes the
format (DSD: ``.dsf``, ``.dff``), by hand from its specification with a
first-order sigma-delta modulator. No network, no external binaries.

:func:`make_format_files` is shared by the format test
(``tests/pipeline/test_formats.py``), the end-to-end build of a mixed tree
(``tests/pipeline/build/test_build_formats.py``) and anyone measuring a build over
every format.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile

from tests.odd_audio import _encode_av, _tone

#: Seconds of every generated file.
SECONDS = 4.0


def _sf(fmt: str, subtype: str, rate: int = 22050, channels: int = 1) -> Callable[[Path, float], None]:
    def write(path: Path, seconds: float) -> None:
        soundfile.write(str(path), _tone(seconds, rate, channels), rate, format=fmt, subtype=subtype)
    return write


def _av(codec: str, fmt: str, rate: int = 44100, channels: int = 1, bit_rate: int | None = None
        ) -> Callable[[Path, float], None]:
    def write(path: Path, seconds: float) -> None:
        _encode_av(path, _tone(seconds, rate, channels), rate, codec, fmt, bit_rate=bit_rate)
    return write


#: DSD64: 64 x 44.1 kHz, one bit per sample.
DSD_RATE = 2_822_400


def _dsd_bits(seconds: float, channels: int) -> np.ndarray:
    """1-bit first-order sigma-delta of a 440 Hz tone at half scale, uint8 [shape=(channels, n)] of 0/1.

    A first-order modulator emits a 1 whenever the running sum of the
    input's pulse density crosses an integer: ``floor(S[n]) - floor(S[n-1])``.
    """
    n = int(round(seconds * DSD_RATE)) // 8 * 8
    t = np.arange(n) / DSD_RATE
    out = []
    for c in range(channels):
        density = 0.5 + 0.25 * np.sin(2 * np.pi * 440.0 * t) / (c + 1)
        levels = np.floor(np.cumsum(density))
        out.append(np.diff(levels, prepend=0.0).astype(np.uint8))
    return np.stack(out)


def write_dsf(path: Path, seconds: float, channels: int = 2) -> None:
    """A Sony DSF file (DSD Stream File spec 1.01): DSD, fmt and data chunks, LSB-first bits,
    each channel in blocks of 4096 bytes."""
    bits = _dsd_bits(seconds, channels)
    block = 4096
    packed = np.packbits(bits, axis=1, bitorder="little")  # [channels, n/8]
    per_channel = -(-packed.shape[1] // block) * block
    padded = np.zeros((channels, per_channel), np.uint8)
    padded[:, :packed.shape[1]] = packed
    data = padded.reshape(channels, -1, block).transpose(1, 0, 2).tobytes()
    fmt = struct.pack("<4sQIIIIIIQII", b"fmt ", 52, 1, 0, 2 if channels == 2 else 1, channels, DSD_RATE, 1,
                      bits.shape[1], block, 0)
    body = fmt + struct.pack("<4sQ", b"data", 12 + len(data)) + data
    header = struct.pack("<4sQQQ", b"DSD ", 28, 28 + len(body), 0)
    path.write_bytes(header + body)


def write_dff(path: Path, seconds: float, channels: int = 2) -> None:
    """A DSDIFF file (Philips DSDIFF 1.5): FRM8 form of FVER, PROP/SND (FS, CHNL, CMPR) and DSD
    chunks, big-endian 64-bit sizes, bytes interleaved per channel, MSB-first bits."""
    bits = _dsd_bits(seconds, channels)
    packed = np.packbits(bits, axis=1, bitorder="big")
    data = packed.T.tobytes()  # byte-interleaved channels

    def chunk(cid: bytes, body: bytes) -> bytes:
        return cid + struct.pack(">Q", len(body)) + body + (b"\0" if len(body) & 1 else b"")

    ids = [b"SLFT", b"SRGT"] if channels == 2 else [b"C   "]
    name = b"not compressed"
    prop = b"SND " + chunk(b"FS  ", struct.pack(">I", DSD_RATE)) \
        + chunk(b"CHNL", struct.pack(">H", channels) + b"".join(ids)) \
        + chunk(b"CMPR", b"DSD " + bytes([len(name)]) + name)
    form = b"DSD " + chunk(b"FVER", struct.pack(">I", 0x01050000)) + chunk(b"PROP", prop) + chunk(b"DSD ", data)
    path.write_bytes(b"FRM8" + struct.pack(">Q", len(form)) + form)


#: extension -> (what it holds, writer(path, seconds)). Every extension of the audio list is here
#: (tests/pipeline/test_formats.py checks that).
FORMAT_WRITERS: dict[str, tuple[str, Callable[[Path, float], None]]] = {
    ".wav": ("WAV 16-bit (libsndfile)", _sf("WAV", "PCM_16")),
    ".mp3": ("MP3 (LAME via ffmpeg)", _av("libmp3lame", "mp3")),
    ".mp2": ("MPEG Layer II (ffmpeg)", _av("mp2", "mp2", rate=44100, bit_rate=128000)),
    ".flac": ("FLAC (libsndfile)", _sf("FLAC", "PCM_16")),
    ".ogg": ("Ogg Vorbis (libsndfile)", _sf("OGG", "VORBIS", rate=44100)),
    ".oga": ("Ogg FLAC (ffmpeg)", _av("flac", "oga")),
    ".opus": ("Ogg Opus (libsndfile)", _sf("OGG", "OPUS", rate=48000)),
    ".au": ("Sun .au 16-bit (libsndfile)", _sf("AU", "PCM_16")),
    ".aiff": ("AIFF 16-bit (libsndfile)", _sf("AIFF", "PCM_16")),
    ".aif": ("AIFF 24-bit (libsndfile)", _sf("AIFF", "PCM_24")),
    ".aifc": ("AIFF-C float (libsndfile)", _sf("AIFF", "FLOAT")),
    ".m4a": ("AAC in MP4 (ffmpeg)", _av("aac", "ipod")),
    ".m4b": ("ALAC in MP4 (ffmpeg)", _av("alac", "ipod")),
    ".aac": ("AAC in ADTS (ffmpeg)", _av("aac", "adts")),
    ".wma": ("WMA v2 in ASF (ffmpeg)", _av("wmav2", "asf", bit_rate=128000)),
    ".wv": ("WavPack (ffmpeg)", _av("wavpack", "wv")),
    ".caf": ("ALAC in CAF (libsndfile)", _sf("CAF", "ALAC_16")),
    ".webm": ("Opus in WebM (ffmpeg)", _av("libopus", "webm", rate=48000)),
    ".weba": ("Opus stereo in WebM (ffmpeg)", _av("libopus", "webm", rate=48000, channels=2)),
    ".mka": ("MP3 in Matroska (ffmpeg)", _av("libmp3lame", "matroska")),
    ".ac3": ("AC-3 (ffmpeg)", _av("ac3", "ac3", rate=48000, channels=2)),
    ".eac3": ("E-AC-3 (ffmpeg)", _av("eac3", "eac3", rate=48000, channels=2)),
    ".amr": ("AMR-NB (opencore via ffmpeg)", _av("libopencore_amrnb", "amr", rate=8000, bit_rate=12200)),
    ".voc": ("Creative Voice 16-bit (libsndfile)", _sf("VOC", "PCM_16")),
    ".w64": ("Wave64 24-bit (libsndfile)", _sf("W64", "PCM_24")),
    ".rf64": ("RF64 16-bit (libsndfile)", _sf("RF64", "PCM_16")),
    ".8svx": ("Amiga IFF 8SVX (libsndfile)", _sf("SVX", "PCM_S8")),
    ".dsf": ("DSD64 stereo, DSF (hand-written)", write_dsf),
    ".dff": ("DSD64 stereo, DSDIFF (hand-written)", write_dff),
}


def make_format_files(directory: Path, seconds: float = SECONDS, *, stem: str = "tone") -> dict[str, Path]:
    """Write ``<stem><ext>`` of every format into ``directory``; extension -> path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    made = {}
    for ext, (_, write) in FORMAT_WRITERS.items():
        path = directory / f"{stem}{ext}"
        write(path, seconds)
        made[ext] = path
    return made
