"""A factory of odd audio files, as real corpora hold them: each with what decoding must give.

:func:`make_odd_files` writes one small file per kind into a folder and
returns an :class:`OddFile` for each: its name, what it is, and the outcome a
decoder must reach ("ok", with the true length, or the failure category of
:data:`stores.failures.FAILURE_CATEGORIES`). Everything is generated here
with soundfile (libsndfile), PyAV's encoders and muxers (ffmpeg), numpy and
hand-written headers (struct): no network, no external binaries, a few
seconds for the whole set.

:func:`reference_seconds` measures a file independently (a full PyAV decode,
every sample counted), so tests can compare the lengths they store with it.

The kinds come from real files that broke decoders: FLAC with odd metadata
(libsndfile's "Internal psf_fseek() failed"), WAV with 36/45/53-bit or
64-bit integer samples, Vorbis in a RIFF/WAVE named ``.ogg``, an Opus file
from an 8 kHz source with a damaged page, MP3s cut short with and without a
Xing header, MP3 clips cut from a longer track without re-encoding (as FMA's
are), WMA, files without an audio stream, and the usual empty, header-only,
truncated, NaN and renamed-non-audio files.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile

#: Sample rate of most generated files (Hz).
RATE = 22050


@dataclasses.dataclass(frozen=True)
class OddFile:
    """One generated file and the outcome decoding it must reach.

    Attributes
    ----------
    name : str
        File name, relative to the folder given to :func:`make_odd_files`.
    kind : str
        What the file is (short description).
    expect : str
        ``"ok"`` or a category of :data:`stores.failures.FAILURE_CATEGORIES`.
    seconds : float or None
        True length of the audio in seconds (``"ok"`` files only; None: what
        :func:`reference_seconds` measures).
    lossy : bool
        Encoded with a lossy codec (its length is exact only to a few ms of
        encoder delay and padding).
    ends_early : bool
        An "ok" file cut inside its last page or frame: decoded to its end, it
        gives the note "ends early" (:data:`pipeline.errors.ENDS_EARLY`).
    """

    name: str
    kind: str
    expect: str
    seconds: float | None = None
    lossy: bool = False
    ends_early: bool = False


# --------------------------------------------------------------------------
# Signals and encoders
# --------------------------------------------------------------------------
def _tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """Sine tone, float32 [shape=(n, channels)], channel c at amplitude 0.5 / (c + 1)."""
    t = np.arange(int(round(seconds * rate))) / rate
    y = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([y / (c + 1) for c in range(channels)], axis=1).astype(np.float32)


def _encode_av(path: Path, samples: np.ndarray, rate: int, codec: str, fmt: str, *,
               bit_rate: int | None = None, options: dict[str, str] | None = None) -> None:
    """Encode ``samples`` [shape=(n, channels)] with one of ffmpeg's encoders (PyAV)."""
    import av

    channels = samples.shape[1]
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        planar = np.ascontiguousarray(samples.T)
        step = 1152
        for start in range(0, planar.shape[1], step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, start:start + step]),
                                               format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _remux_mp3(src: Path, dst: Path, start_s: float, seconds: float) -> None:
    """Copy the MPEG frames of ``src`` from ``start_s`` for ``seconds`` into a new MP3 file
    without re-encoding: what FMA's ``ffmpeg -i full.mp3 -ss START -t 30 -acodec copy`` did."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp3") as out:
        ins = inp.streams.audio[0]
        outs = out.add_stream_from_template(ins)
        first = None
        for packet in inp.demux(ins):
            if packet.pts is None or packet.size == 0:
                continue
            t = float(packet.pts * ins.time_base)
            if t < start_s:
                continue
            if t >= start_s + seconds:
                break
            if first is None:
                first = packet.pts
            packet.pts -= first
            packet.dts = packet.pts
            packet.stream = outs
            out.mux(packet)
        if first is None:
            out.start_encoding()  # no frames in range: the header (ID3v2, Info) only


def _pcm_ints(samples: np.ndarray, bits: int) -> np.ndarray:
    """Float samples in [-1, 1] as signed integers of ``bits`` bits (int64, bits <= 64)."""
    scale = float(2 ** (bits - 1) - 2 ** max(0, bits - 53))  # stays below 2**(bits-1) in float64
    return np.round(samples.astype(np.float64) * scale).astype(np.int64)


def _pack_le(values: np.ndarray, nbytes: int, shift: int) -> bytes:
    """Little-endian ``nbytes``-byte two's-complement containers of ``values << shift``."""
    v = values.astype(np.int64).ravel() << np.int64(shift)
    if nbytes == 8:
        return v.astype("<i8").tobytes()
    full = v.astype("<i8").view(np.uint8).reshape(-1, 8)
    return np.ascontiguousarray(full[:, :nbytes]).tobytes()


def riff_wave(fmt_tag: int, channels: int, rate: int, bits: int, data: bytes, *,
              block_align: int | None = None, fmt_extra: bytes = b"",
              data_size: int | None = None, riff_size: int | None = None) -> bytes:
    """A hand-written RIFF/WAVE file: ``fmt `` chunk, then ``data`` (sizes may lie)."""
    block_align = block_align if block_align is not None else channels * ((bits + 7) // 8)
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block_align) & 0xFFFFFFFF, block_align, bits)
    if fmt_extra:
        fmt += struct.pack("<H", len(fmt_extra)) + fmt_extra
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    if len(data) & 1:
        body += b"\x00"
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def extended_float_bytes(value: float) -> bytes:
    """``value`` as AIFF's 80-bit IEEE 754 extended float (big-endian)."""
    if value == 0:
        return bytes(10)
    sign = 0x8000 if value < 0 else 0
    mantissa, exponent = np.frexp(abs(value))  # value = mantissa * 2**exponent, 0.5 <= mantissa < 1
    return struct.pack(">HQ", sign | (int(exponent) - 1 + 16383), int(mantissa * 2.0**64))


def aiff_bytes(channels: int, frames: int, bits: int, rate80: bytes, data: bytes) -> bytes:
    """A hand-written AIFF file: COMM (``rate80``: the 10 bytes of the rate as written) and SSND."""
    comm = struct.pack(">HIH", channels, frames, bits) + rate80
    body = b"AIFF" + b"COMM" + struct.pack(">I", len(comm)) + comm
    body += b"SSND" + struct.pack(">I", 8 + len(data)) + bytes(8) + data
    if len(data) & 1:
        body += b"\x00"
    return b"FORM" + struct.pack(">I", len(body)) + body


def _flac_blocks(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(metadata blocks as (type, body), audio frames) of a FLAC file."""
    pos, blocks = 4, []
    while True:
        header = data[pos]
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        blocks.append((header & 0x7F, data[pos + 4:pos + 4 + size]))
        pos += 4 + size
        if header & 0x80:
            return blocks, data[pos:]


def _flac_join(blocks: list[tuple[int, bytes]], frames: bytes) -> bytes:
    out = b"fLaC"
    for i, (kind, body) in enumerate(blocks):
        last = 0x80 if i == len(blocks) - 1 else 0
        out += bytes([kind | last]) + len(body).to_bytes(3, "big") + body
    return out + frames


def _cut_bytes(path: Path, n: int) -> None:
    """Drop the last ``n`` bytes of ``path``."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - n])


def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# --------------------------------------------------------------------------
# The factory
# --------------------------------------------------------------------------
def make_odd_files(directory: Path) -> list[OddFile]:
    """Write every odd file into ``directory`` (created if missing) and describe each.

    Returns
    -------
    list of OddFile
        One per file written, in writing order.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    made: list[OddFile] = []

    def add(name: str, kind: str, expect: str, seconds: float | None = None, *,
            lossy: bool = False, ends_early: bool = False, write: Callable[[Path], None]) -> None:
        write(directory / name)
        made.append(OddFile(name, kind, expect, seconds, lossy, ends_early))

    def sf_write(samples: np.ndarray, rate: int, **kw) -> Callable[[Path], None]:
        return lambda p: soundfile.write(str(p), samples, rate, **kw)

    tone4 = _tone(4.0, RATE)

    # ---- plain formats that must simply work ------------------------------
    for subtype, name in (("PCM_U8", "pcm_u8.wav"), ("PCM_24", "pcm_24.wav"),
                          ("DOUBLE", "float64.wav")):
        add(name, f"WAV {subtype}", "ok", 4.0, write=sf_write(tone4, RATE, subtype=subtype))
    add("six_channels.wav", "WAV float, 6 channels", "ok", 4.0,
        write=sf_write(_tone(4.0, RATE, channels=6), RATE, subtype="FLOAT"))
    add("extensible.wav", "WAVE_FORMAT_EXTENSIBLE, 24-bit stereo", "ok", 4.0,
        write=sf_write(_tone(4.0, 44100, channels=2), 44100, format="WAV", subtype="PCM_24"))
    add("aiff.aiff", "AIFF 16-bit", "ok", 4.0, write=sf_write(tone4, RATE, format="AIFF", subtype="PCM_16"))
    add("gtzan_like.au", "Sun .au, 16-bit big-endian (GTZAN)", "ok", 4.0,
        write=sf_write(tone4, RATE, format="AU", subtype="PCM_16"))
    add("flac.flac", "FLAC 16-bit", "ok", 4.0, write=sf_write(tone4, 44100 // 2, subtype="PCM_16"))
    add("vorbis.ogg", "Ogg Vorbis", "ok", 4.0, lossy=True,
        write=sf_write(_tone(4.0, 44100), 44100, format="OGG", subtype="VORBIS"))
    add("opus48k.opus", "Ogg Opus at 48 kHz", "ok", 4.0, lossy=True,
        write=sf_write(_tone(4.0, 48000), 48000, format="OGG", subtype="OPUS"))
    add("stereo_48k.mp3", "MP3 stereo at 48 kHz (LAME via ffmpeg, Info header)", "ok", 4.0, lossy=True,
        write=lambda p: _encode_av(p, _tone(4.0, 48000, channels=2), 48000, "libmp3lame", "mp3"))
    add("aac.aac", "AAC in ADTS", "ok", 4.0, lossy=True,
        write=lambda p: _encode_av(p, _tone(4.0, 44100), 44100, "aac", "adts"))
    add("wmav2.wma", "WMA (wmav2) in ASF", "ok", 4.0, lossy=True,
        write=lambda p: _encode_av(p, _tone(4.0, 44100, channels=2), 44100, "wmav2", "asf",
                                   bit_rate=128_000))

    # ---- Opus from an 8 kHz source (OpusHead input rate 8000) -------------
    tone30_8k = _tone(30.0, 8000)
    add("opus_8k_source.opus", "Opus from an 8 kHz source, 30 s", "ok", 30.0, lossy=True,
        write=sf_write(tone30_8k, 8000, format="OGG", subtype="OPUS"))

    def damaged_opus(p: Path) -> None:
        soundfile.write(str(p), tone30_8k, 8000, format="OGG", subtype="OPUS")
        data = bytearray(p.read_bytes())
        pages = [i for i in range(len(data)) if data[i:i + 4] == b"OggS"]
        data[pages[len(pages) // 3] + 40] ^= 0xFF  # one damaged page: libsndfile stops short
        p.write_bytes(bytes(data))

    add("opus_8k_damaged_page.opus", "Opus from an 8 kHz source, one damaged page (libsndfile "
        "stops early, the fallback decodes at 48 kHz)", "ok", 30.0, lossy=True, write=damaged_opus)

    # ---- FLAC metadata oddities -------------------------------------------
    flac_src = directory / "_flac_source.flac"
    soundfile.write(str(flac_src), _tone(6.0, 44100), 44100, subtype="PCM_16")
    blocks, frames = _flac_blocks(flac_src.read_bytes())
    flac_src.unlink()
    streaminfo, rest = blocks[0], blocks[1:]

    def flac_with(new_blocks: list[tuple[int, bytes]], tail: bytes = b"") -> Callable[[Path], None]:
        return lambda p: p.write_bytes(_flac_join(new_blocks, tail + frames))

    add("flac_application.flac", "FLAC with an APPLICATION metadata block", "ok", 6.0,
        write=flac_with([streaminfo, (2, b"riff" + bytes(200))] + rest))
    add("flac_padding.flac", "FLAC with a large PADDING block", "ok", 6.0,
        write=flac_with([streaminfo] + rest + [(1, bytes(16384))]))
    # A tag editor rewrote the metadata and left a SEEKTABLE that no longer
    # points at frames: libsndfile fails with "Internal psf_fseek() failed".
    stale_seektable = b"".join(struct.pack(">QQH", i * 44100, 10_000_000 + 977 * i, 4096) for i in range(6))
    add("flac_stale_seektable.flac", "FLAC whose SEEKTABLE points past the frames (overwritten "
        "metadata; libsndfile's seek fails)", "ok", 6.0,
        write=flac_with([streaminfo, (3, stale_seektable)] + rest))
    add("flac_junk_after_metadata.flac", "FLAC with junk between metadata and the first frame",
        "ok", 6.0, write=flac_with([streaminfo, (2, b"abcd" + bytes(8))] + rest, tail=b"\x00" * 3000))

    def flac_overrun(p: Path) -> None:
        raw = bytearray(_flac_join([streaminfo, (2, b"abcd" + bytes(10))] + rest, frames))
        at = 4 + 4 + len(streaminfo[1])  # the APPLICATION block header
        raw[at + 1:at + 4] = (len(raw) * 2).to_bytes(3, "big")  # its size runs past the file end
        p.write_bytes(bytes(raw))

    add("flac_block_overruns_file.flac", "FLAC whose metadata block size runs past the end of "
        "the file", "not audio", write=flac_overrun)

    def flac_header_only(p: Path) -> None:
        p.write_bytes(_flac_join(blocks, b""))

    add("flac_header_only.flac", "FLAC metadata only, no frames", "empty", write=flac_header_only)

    def flac_truncated(p: Path) -> None:
        p.write_bytes(_flac_join(blocks, frames[: len(frames) * 55 // 100]))

    add("flac_truncated.flac", "FLAC cut at 55% (STREAMINFO declares 6 s)", "truncated",
        write=flac_truncated)

    # ---- WAV oddities (hand-written headers) ------------------------------
    n = int(4.0 * RATE)
    ints = lambda bits: _pcm_ints(tone4[:, 0], bits)  # noqa: E731
    for bits in (36, 45, 53):
        nbytes = (bits + 7) // 8
        data = _pack_le(ints(bits), nbytes, 8 * nbytes - bits)
        add(f"pcm_{bits}bit.wav", f"WAV PCM with {bits}-bit samples in {nbytes}-byte containers",
            "not audio", write=lambda p, d=data, b=bits: p.write_bytes(riff_wave(1, 1, RATE, b, d)))
    s64 = _pack_le(ints(64), 8, 0)  # full-scale 64-bit integers
    add("pcm_s64.wav", "WAV with 64-bit integer PCM", "ok", 4.0,
        write=lambda p: p.write_bytes(riff_wave(1, 1, RATE, 64, s64)))
    rng = np.random.default_rng(7)
    vorbis_payload = b"\x01vorbis" + rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    add("vorbis_in_wav.ogg", "RIFF/WAVE with ACM format tag 0x674F (Vorbis in WAV) named .ogg",
        "not audio", write=lambda p: p.write_bytes(
            riff_wave(0x674F, 2, 44100, 16, vorbis_payload, block_align=1, fmt_extra=bytes(4))))

    pcm16 = _pack_le(ints(16), 2, 0)

    add("streaming_size.wav", "WAV whose RIFF and data sizes are 0xFFFFFFFF (streaming writer)",
        "ok", 4.0, write=lambda p: p.write_bytes(
            riff_wave(1, 1, RATE, 16, pcm16, data_size=0xFFFFFFFF, riff_size=0xFFFFFFFF)))
    add("header_only.wav", "WAV header, 0 samples", "empty",
        write=sf_write(np.zeros((0, 1), np.float32), RATE, subtype="PCM_16"))
    add("header_claims_data.wav", "WAV header declaring 4 s, nothing after it", "empty",
        write=lambda p: p.write_bytes(riff_wave(1, 1, RATE, 16, b"", data_size=len(pcm16))))

    def wav_truncated(p: Path) -> None:
        p.write_bytes(riff_wave(1, 1, RATE, 16, pcm16)[: 44 + len(pcm16) * 6 // 10])

    add("wav_truncated.wav", "WAV cut at 60% of its data chunk", "truncated", write=wav_truncated)

    def nan_wav(p: Path) -> None:
        y = tone4.copy()
        y[RATE, 0] = np.nan
        soundfile.write(str(p), y, RATE, subtype="FLOAT")

    add("nan.wav", "float WAV with a NaN sample", "corrupt samples", write=nan_wav)
    add("too_short.wav", "WAV of 1 s", "too short", write=sf_write(_tone(1.0, RATE), RATE))

    def au_truncated(p: Path) -> None:
        soundfile.write(str(p), tone4, RATE, format="AU", subtype="PCM_16")
        _cut(p, 0.5)

    add("au_truncated.au", "Sun .au cut at 50% (header declares the data size)", "truncated",
        write=au_truncated)

    def aiff_truncated(p: Path) -> None:
        soundfile.write(str(p), _tone(6.0, RATE), RATE, format="AIFF", subtype="PCM_16")
        _cut(p, 0.6)

    add("aiff_truncated.aiff", "AIFF cut at 60%", "truncated", write=aiff_truncated)

    # ---- header fields out of any possible range (each "not audio", never an internal error) --
    pcm16_be = np.asarray(_pcm_ints(tone4, 16), ">i2").tobytes()

    def aiff_with_rate(rate80: bytes, channels: int = 1) -> Callable[[Path], None]:
        return lambda p: p.write_bytes(aiff_bytes(channels, len(tone4), 16, rate80, pcm16_be))

    add("aiff_rate_overflow.aiff", "AIFF whose 80-bit sample rate overflows a float64 (exponent 2**16000)",
        "not audio", write=aiff_with_rate(struct.pack(">HQ", 16383 + 16000, 1 << 63)))
    add("aiff_rate_infinite.aiff", "AIFF whose 80-bit sample rate is infinity (exponent all ones)",
        "not audio", write=aiff_with_rate(struct.pack(">HQ", 0x7FFF, 1 << 63)))
    add("aiff_rate_nan.aiff", "AIFF whose 80-bit sample rate is NaN", "not audio",
        write=aiff_with_rate(struct.pack(">HQ", 0x7FFF, (1 << 63) | 1)))
    add("aiff_rate_subnormal.aiff", "AIFF whose sample rate is 2**-16445 Hz (underflows to 0)", "not audio",
        write=aiff_with_rate(struct.pack(">HQ", 1, 1)))
    add("aiff_rate_negative.aiff", "AIFF whose sample rate is -22050 Hz (sign bit set)", "not audio",
        write=aiff_with_rate(extended_float_bytes(-RATE)))
    add("aiff_zero_channels.aiff", "AIFF whose COMM chunk gives 0 channels", "not audio",
        write=aiff_with_rate(extended_float_bytes(RATE), channels=0))
    add("aiff_ok_handmade.aiff", "AIFF written by hand (the odd ones' control)", "ok", 4.0,
        write=aiff_with_rate(extended_float_bytes(RATE)))
    add("wav_rate_zero.wav", "WAV whose fmt chunk gives 0 Hz", "not audio",
        write=lambda p: p.write_bytes(riff_wave(1, 1, 0, 16, pcm16)))
    add("wav_rate_huge.wav", "WAV whose fmt chunk gives 4,294,967,295 Hz", "not audio",
        write=lambda p: p.write_bytes(riff_wave(1, 1, 0xFFFFFFFF, 16, pcm16)))
    add("wav_zero_channels.wav", "WAV whose fmt chunk gives 0 channels", "not audio",
        write=lambda p: p.write_bytes(riff_wave(1, 0, RATE, 16, pcm16, block_align=2)))
    add("wav_block_align_zero.wav", "PCM WAV whose block align is 0 (a division by zero; derived instead)",
        "ok", 4.0, write=lambda p: p.write_bytes(riff_wave(1, 1, RATE, 16, pcm16, block_align=0)))

    def au_header(offset: int, rate: int, channels: int) -> Callable[[Path], None]:
        return lambda p: p.write_bytes(struct.pack(">4sIIIII", b".snd", offset, len(pcm16_be), 3, rate, channels)
                                       + bytes(max(0, offset - 24)) + pcm16_be)

    add("au_rate_zero.au", "Sun .au whose header gives 0 Hz", "not audio", write=au_header(24, 0, 1))
    add("au_zero_channels.au", "Sun .au whose header gives 0 channels", "not audio", write=au_header(24, RATE, 0))

    def flac_bad_frame_number_at_end(p: Path) -> None:
        soundfile.write(str(p), tone4, RATE, format="FLAC", subtype="PCM_16")
        # Trailing junk that looks like a frame header whose coded number starts with 0xBF (a
        # continuation byte, which starts no number): the tail scan must pass it by, not stop on it.
        with p.open("ab") as fh:
            fh.write(b"\xff\xf8\x69\x08\xbf\x80\x80\x80\x80\x80\x00")

    add("flac_bad_frame_number_at_end.flac", "FLAC followed by a fake frame header with an impossible "
        "coded frame number", "ok", 4.0, write=flac_bad_frame_number_at_end)

    # ---- MP3: cut short, cut out of a longer track ------------------------
    def mp3_xing_truncated(p: Path) -> None:
        soundfile.write(str(p), _tone(12.0, 44100), 44100, format="MP3", subtype="MPEG_LAYER_III")
        _cut(p, 0.37)

    add("mp3_xing_truncated.mp3", "MP3 with a Xing header (12 s) cut at 37%", "truncated",
        write=mp3_xing_truncated)

    def mp3_info_truncated(p: Path) -> None:
        _encode_av(p, _tone(12.0, 44100, channels=2), 44100, "libmp3lame", "mp3", bit_rate=128_000)
        _cut(p, 0.5)

    add("mp3_info_truncated.mp3", "CBR MP3 with an ID3v2 tag and Info header (12 s) cut at 50%",
        "truncated", write=mp3_info_truncated)

    mp3_plain = directory / "_plain.mp3"
    _encode_av(mp3_plain, _tone(12.0, 44100, channels=2), 44100, "libmp3lame", "mp3",
               bit_rate=128_000, options={"write_xing": "0", "id3v2_version": "0"})
    plain = mp3_plain.read_bytes()
    mp3_plain.unlink()

    def plain_cut(p: Path) -> None:
        p.write_bytes(plain[: len(plain) // 2])

    add("mp3_no_header_cut.mp3", "CBR MP3 without Xing/Info header cut at 50%: nothing declares "
        "a length", "ok", 6.0, lossy=True, write=plain_cut)

    def plain_middle(p: Path) -> None:
        p.write_bytes(plain[len(plain) // 4 + 333: len(plain) * 3 // 4])  # starts mid-frame

    add("mp3_byte_slice.mp3", "MP3 bytes sliced out of the middle of a track (no header at "
        "the start, first frame cut)", "ok", 6.0, lossy=True, write=plain_middle)

    def fma_clip(p: Path) -> None:
        full = directory / "_fma_full.mp3"
        _encode_av(full, _tone(20.0, 44100, channels=2), 44100, "libmp3lame", "mp3", bit_rate=192_000)
        _remux_mp3(full, p, 7.0, 6.0)
        full.unlink()

    add("mp3_fma_clip.mp3", "MP3 clip cut out of a 20 s track without re-encoding (as FMA's)",
        "ok", 6.0, lossy=True, write=fma_clip)

    def fma_clip_past_the_end(p: Path) -> None:
        full = directory / "_fma_short.mp3"
        _encode_av(full, _tone(4.0, 44100, channels=2), 44100, "libmp3lame", "mp3", bit_rate=192_000)
        _remux_mp3(full, p, 285.0, 30.0)  # FMA's metadata claimed 600 s: the cut starts past the end
        full.unlink()

    add("mp3_fma_clip_past_the_end.mp3", "MP3 'clip' cut past the end of its track (FMA's "
        "1.7 KB files: ID3 tag and an Info header, no frames)", "empty", write=fma_clip_past_the_end)

    # ---- Ogg cut short ----------------------------------------------------
    def ogg_truncated(subtype: str, rate: int) -> Callable[[Path], None]:
        def write(p: Path) -> None:
            soundfile.write(str(p), _tone(8.0, rate), rate, format="OGG", subtype=subtype)
            _cut(p, 0.6)
        return write

    add("vorbis_truncated.ogg", "Ogg Vorbis cut at 60% (mid-page, no end-of-stream page)",
        "truncated", write=ogg_truncated("VORBIS", 44100))
    add("opus_truncated.opus", "Ogg Opus cut at 60% (mid-page, no end-of-stream page)",
        "truncated", write=ogg_truncated("OPUS", 48000))

    # ---- cut inside the last page or frame: kept, "ends early" --------------
    def cut_inside_last_ogg_page(subtype: str, rate: int) -> Callable[[Path], None]:
        def write(p: Path) -> None:
            soundfile.write(str(p), _tone(8.0, rate), rate, format="OGG", subtype=subtype)
            data = p.read_bytes()
            last = data.rfind(b"OggS")
            assert data[last + 5] & 0x04, "the last page is the end-of-stream page"
            p.write_bytes(data[: last + (len(data) - last) // 2])  # half of the last page
        return write

    add("vorbis_last_page_cut.ogg", "Ogg Vorbis cut inside its end-of-stream page", "ok", lossy=True,
        ends_early=True, write=cut_inside_last_ogg_page("VORBIS", 44100))
    add("opus_last_page_cut.opus", "Ogg Opus cut inside its end-of-stream page", "ok", lossy=True,
        ends_early=True, write=cut_inside_last_ogg_page("OPUS", 48000))

    def flac_last_frame_cut(p: Path) -> None:
        # 33 whole frames of 4096 samples, so that the frame lost is a whole one (0.19 s).
        soundfile.write(str(p), _tone(33 * 4096 / RATE, RATE, channels=2), RATE, format="FLAC", subtype="PCM_16")
        _cut_bytes(p, 600)  # a FLAC frame of this tone is several KiB

    add("flac_last_frame_cut.flac", "FLAC cut inside its last frame", "ok", ends_early=True,
        write=flac_last_frame_cut)

    def mp3_last_frames_cut(p: Path) -> None:
        _encode_av(p, _tone(30.0, 44100, channels=2), 44100, "libmp3lame", "mp3", bit_rate=128000)
        _cut_bytes(p, 6 * 418)  # six 128 kbit/s frames (157 ms: more than the 80 ms tolerance, under 1%)

    add("mp3_last_frames_cut.mp3", "MP3 with an Info header (30 s) cut by six frames (0.5%)", "ok",
        lossy=True, ends_early=True, write=mp3_last_frames_cut)

    def wav_cut_by(fraction: float) -> Callable[[Path], None]:
        def write(p: Path) -> None:
            soundfile.write(str(p), _tone(30.0, RATE), RATE, subtype="PCM_16")
            _cut_bytes(p, int(30.0 * RATE * 2 * fraction))
        return write

    add("wav_cut_by_0.8pct.wav", "WAV of 30 s missing its last 0.8% (under 1%)", "ok", 30.0 * 0.992,
        ends_early=True, write=wav_cut_by(0.008))
    add("wav_cut_by_2pct.wav", "WAV of 30 s missing its last 2% (over 1%)", "truncated", write=wav_cut_by(0.02))

    # ---- not audio, empty, unreadable -------------------------------------
    add("empty.wav", "0 bytes", "empty", write=lambda p: p.write_bytes(b""))
    add("empty.mp3", "0 bytes named .mp3", "empty", write=lambda p: p.write_bytes(b""))
    add("random.mp3", "random bytes named .mp3", "not audio",
        write=lambda p: p.write_bytes(np.random.default_rng(3).integers(0, 256, 50_000, dtype=np.uint8).tobytes()))
    add("text.wav", "a text file named .wav", "not audio",
        write=lambda p: p.write_text("this is not audio, just text renamed to look like it\n" * 40))
    add("id3_only.mp3", "an ID3v2 tag and nothing after it (FMA's empty tracks)", "empty",
        write=lambda p: p.write_bytes(b"ID3\x04\x00\x00\x00\x00\x02\x00" + bytes(256)))

    def video_only(p: Path) -> None:
        import av

        with av.open(str(p), "w", format="matroska") as out:
            stream = out.add_stream("mjpeg", rate=1)
            stream.width, stream.height, stream.pix_fmt = 16, 16, "yuvj420p"
            for i in range(2):
                frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * i, np.uint8), format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)

    add("video_only.mkv", "Matroska with a video stream and no audio stream", "not audio",
        write=video_only)

    def png_as_mp3(p: Path) -> None:
        import av

        with av.open(str(p), "w", format="image2", options={"update": "1"}) as out:
            stream = out.add_stream("png", rate=1)
            stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)

    add("cover_art.mp3", "a PNG image named .mp3", "not audio", write=png_as_mp3)
    add("missing.wav", "a dangling symbolic link", "unreadable",
        write=lambda p: os.symlink(directory / "does-not-exist.wav", p))
    add("folder.wav", "a directory named .wav", "unreadable", write=lambda p: p.mkdir())
    return made


def reference_seconds(path: str | Path) -> float:
    """Length of the first audio stream of ``path`` in seconds, by decoding all of it with PyAV.

    Independent of :mod:`pipeline.dsp.audio`: every frame is decoded and its
    samples counted at the frame's own rate (no header, no seeking).
    """
    import av

    total = Fraction(0)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            for frame in frames:
                total += Fraction(frame.samples, frame.sample_rate)
    return float(total)
