"""What an audio file's own header declares, read without decoding.

:func:`probe` reads a few headers (and, for FLAC and Ogg, the last few KiB)
of a file and returns :class:`ContainerFacts`: which container and codec it
is, the length its header *declares* (WAV/AIFF/AU data size, FLAC
STREAMINFO total samples, MP3 Xing/Info/VBRI frame count, Ogg granule
position of the last page) and the length the bytes *present* can hold
(PCM bytes after the header, the end of FLAC's last frame, the last complete
Ogg page). The decoders (libsndfile, ffmpeg) are then checked against these
figures in :mod:`pipeline.dsp.audio`; the parsers never decide by themselves
that a file is unusable, except that they name what they found so that an
error message can say what the file is.

Each parser reads at most a few KiB: a header read costs microseconds,
against milliseconds for a decode. Lengths are in seconds, each converted
through its own container's rate.
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
from pathlib import Path
from typing import BinaryIO, Iterator

#: Bytes read from the end of a FLAC or Ogg file to find its last frame/page
#: (an Ogg page is at most 65,307 bytes; a FLAC frame is rarely over 32 KiB).
TAIL_BYTES = 1 << 16


@dataclasses.dataclass(frozen=True)
class ContainerFacts:
    """What the file's headers say, before any decoder runs.

    Attributes
    ----------
    container : str
        "WAV", "AIFF", "AU", "FLAC", "Ogg", "MP3" or "" (not recognised here).
    description : str
        What was found, for messages ("RIFF/WAVE PCM, 16-bit, 2 ch, 44100 Hz").
    declared_seconds : float or None
        Length the container declares, in seconds (None: it declares none).
    declared_by : str
        What declares it ("the data chunk size", "the Xing header", ...).
    present_seconds : float or None
        Length the bytes in the file can hold, in seconds, where that is
        known without decoding (None: only decoding tells).
    no_audio_bytes : bool
        The file ends where the audio would start (header only).
    length_trusted : bool
        The declared length was checked against the file (e.g. the Xing byte
        count matches the file size): no packet scan is needed to trust it.
    problem : str
        Something in the header that no decoder will get past ("" if none),
        e.g. "its PCM samples are 36 bits wide".
    end_unit_seconds : float
        Seconds of the container's unit of audio at the end of the file (one
        MP3 frame, one FLAC frame, the Ogg page the file ends in; 0 where
        samples are the unit): a file that ends less than one unit before
        its declared length was cut inside its last unit, and is kept.
    declares_whole : bool
        ``declared_seconds`` is the length of the whole stream (False: only
        a lower bound, e.g. the end of an Ogg page that is not the last one).
    impossible : str
        A header field out of any possible range ("" if none), e.g. "its
        AIFF COMM chunk gives a sample rate of 1.2e+4931 Hz": the file is not
        audio, whatever a decoder would make of it (no length or rate from
        such a header is ever computed on).
    """

    container: str = ""
    description: str = ""
    declared_seconds: float | None = None
    declared_by: str = ""
    present_seconds: float | None = None
    no_audio_bytes: bool = False
    length_trusted: bool = False
    problem: str = ""
    end_unit_seconds: float = 0.0
    declares_whole: bool = True
    impossible: str = ""


#: Sample rates a header may declare, in Hz: anything outside is a damaged field, not a rate
#: (the highest PCM rates in use are 768 kHz; DSD reaches the decoders through ffmpeg, at 1/8 of
#: its bit rate).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1, 2_000_000
#: Channels a header may declare (WAV's and AIFF's 16-bit fields allow 65,535).
MAX_CHANNELS = 255


def rate_out_of_range(rate: float, field: str) -> str:
    """"" when ``rate`` (Hz) is a possible sample rate, else what is wrong with ``field``."""
    if math.isfinite(rate) and MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        return ""
    return (f"its {field} gives a sample rate of {rate:g} Hz (possible: {MIN_SAMPLE_RATE} Hz to "
            f"{MAX_SAMPLE_RATE / 1e6:g} MHz)")


def channels_out_of_range(channels: int, field: str) -> str:
    """"" when ``channels`` is a possible channel count, else what is wrong with ``field``."""
    if 1 <= channels <= MAX_CHANNELS:
        return ""
    return f"its {field} gives {channels} channels (possible: 1 to {MAX_CHANNELS})"


def _impossible(container: str, description: str, *problems: str) -> ContainerFacts | None:
    """Facts that name the first impossible field among ``problems`` (None when all are "")."""
    for problem in problems:
        if problem:
            return ContainerFacts(container, description, impossible=problem)
    return None


def probe(source: str | Path | bytes | BinaryIO) -> ContainerFacts:
    """Facts of ``source`` from its headers (raises OSError only if it cannot be read).

    ``source`` is a file path, the whole file's bytes, or a seekable binary
    file object (read from its start, left open).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    if not isinstance(source, (str, Path)):
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
        return probe_bytes(source, source.read(4096), size)
    with Path(source).open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        head = fh.read(4096)
        return probe_bytes(fh, head, size)


def probe_bytes(fh: BinaryIO, head: bytes, size: int) -> ContainerFacts:
    """Facts of an open binary file ``fh`` of ``size`` bytes whose first bytes are ``head``."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wav(fh, size)
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return _aiff(fh, size, head[8:12] == b"AIFC")
    if head[:4] == b".snd":
        return _au(head, size)
    if head[:4] == b"OggS":
        return _ogg(fh, head, size)
    start = id3v2_size(head)
    if start:
        fh.seek(start)
        after = fh.read(4096)
        if after[:4] == b"fLaC":
            return _flac(fh, size, start)
        return _mp3(fh, after, start, size)
    if head[:4] == b"fLaC":
        return _flac(fh, size, 0)
    return _mp3(fh, head, 0, size)


def describe_bytes(head: bytes) -> str:
    """A few words on bytes that are no known audio header (for "not audio" messages)."""
    if not head:
        return "no bytes"
    sample = head[:512]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    if printable > 0.95 * len(sample):
        return f"text ({head[:24].decode('ascii', 'replace')!r}...)"
    for magic, name in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                        (b"GIF8", "a GIF image"), (b"%PDF", "a PDF document"),
                        (b"PK\x03\x04", "a ZIP archive"), (b"\x1a\x45\xdf\xa3", "a Matroska/WebM file"),
                        (b"<!DOCTYPE", "an HTML page"), (b"<html", "an HTML page"),
                        (bytes.fromhex("3026b2758e66cf11"), "an ASF file (WMA/WMV)"),
                        (b"\xff\xf1", "AAC (ADTS)"), (b"\xff\xf9", "AAC (ADTS)"),
                        (b"MThd", "a MIDI file"), (b"wvpk", "a WavPack file"),
                        (b"MAC ", "a Monkey's Audio file"), (b"RF64", "an RF64 (large WAV) file"),
                        (b"FORM", "an IFF file")):
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp":
        return "an MP4/M4A file"
    return f"no known audio header (starts with bytes {head[:8].hex(' ')})"


# --------------------------------------------------------------------------
# PCM containers: the data size is the declaration, the bytes are the truth
# --------------------------------------------------------------------------
#: WAV format tags: name, and whether the samples are plain PCM/float bytes.
_WAV_TAGS = {0x0001: "PCM", 0x0003: "IEEE float", 0x0006: "A-law", 0x0007: "mu-law",
             0x0002: "MS ADPCM", 0x0011: "IMA ADPCM", 0x0055: "MPEG Layer III",
             0x0050: "MPEG", 0x0160: "WMA v1", 0x0161: "WMA v2", 0x0162: "WMA Pro",
             0x674F: "Vorbis in WAV", 0x6750: "Vorbis in WAV", 0x6751: "Vorbis in WAV",
             0x676F: "Vorbis in WAV", 0x6770: "Vorbis in WAV", 0x6771: "Vorbis in WAV",
             0x566F: "Vorbis in WAV", 0xFFFE: "extensible"}
_PCM_BITS = (8, 16, 24, 32, 64)


def _iff_chunks(fh: BinaryIO, size: int, endian: str) -> Iterator[tuple[int, bytes, int]]:
    """``(offset, chunk id, chunk size)`` of the chunks of a RIFF (``"<"``) or IFF (``">"``)
    file after its 12-byte header; the file is positioned just past each chunk's header."""
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        header = fh.read(8)
        if len(header) < 8:
            return
        chunk_size = struct.unpack(endian + "I", header[4:])[0]
        yield pos, header[:4], chunk_size
        pos += 8 + chunk_size + (chunk_size & 1)


def _wav(fh: BinaryIO, size: int) -> ContainerFacts:
    fmt: tuple[int, int, int, int, int] | None = None
    for pos, chunk, chunk_size in _iff_chunks(fh, size, "<"):
        if chunk == b"fmt ":
            body = fh.read(min(chunk_size, 64))
            if len(body) >= 16:
                tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == 0xFFFE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]  # the SubFormat GUID's first field
                fmt = (tag, channels, rate, block_align, bits)
        elif chunk == b"data":
            return _wav_facts(fmt, pos + 8, chunk_size, size)
    return ContainerFacts("WAV", _wav_description(fmt) + " without a data chunk", no_audio_bytes=True)


def _wav_description(fmt: tuple[int, int, int, int, int] | None) -> str:
    if fmt is None:
        return "RIFF/WAVE without a fmt chunk"
    tag, channels, rate, _, bits = fmt
    name = _WAV_TAGS.get(tag)
    if name in ("PCM", "IEEE float"):
        return f"RIFF/WAVE {name}, {bits}-bit, {channels} ch, {rate} Hz"
    if name is None:
        return f"RIFF/WAVE with format tag 0x{tag:04X} (unknown codec)"
    return f"RIFF/WAVE with format tag 0x{tag:04X} ({name})"


def _wav_facts(fmt: tuple[int, int, int, int, int] | None, data_start: int, data_size: int,
               size: int) -> ContainerFacts:
    description = _wav_description(fmt)
    present_bytes = max(0, size - data_start)
    problem = ""
    declared = present = None
    if fmt is not None:
        tag, channels, rate, block_align, bits = fmt
        odd = _impossible("WAV", description, rate_out_of_range(rate, "fmt chunk"),
                          channels_out_of_range(channels, "fmt chunk"))
        if odd is not None:
            return odd
        if block_align == 0 and tag in (1, 3, 6, 7):
            # A writer that left the field empty: the decoders derive it, and so do we.
            block_align = channels * ((bits + 7) // 8)
        if tag == 1 and bits not in _PCM_BITS:
            problem = f"its PCM samples are {bits} bits wide (decoders read 8, 16, 24, 32 or 64)"
        elif tag == 3 and bits not in (32, 64):
            problem = f"its float samples are {bits} bits wide (decoders read 32 or 64)"
        elif _WAV_TAGS.get(tag, "").startswith("Vorbis") or tag not in _WAV_TAGS:
            problem = "neither libsndfile nor ffmpeg decodes that codec inside WAV"
        if tag in (1, 3, 6, 7) and block_align > 0 and rate > 0:
            present = present_bytes // block_align / rate
            if data_size not in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                declared = data_size // block_align / rate
    return ContainerFacts("WAV", description, declared, "the WAV data chunk size", present,
                          no_audio_bytes=present_bytes == 0, length_trusted=declared is not None,
                          problem=problem)


def _extended_float(raw: bytes) -> float:
    """An 80-bit IEEE 754 extended float (AIFF's sample rate); ``inf`` or ``nan`` where it
    does not fit a float64 (an exponent of 2**16383 holds no sample rate)."""
    exponent = struct.unpack(">H", raw[:2])[0]
    mantissa = struct.unpack(">Q", raw[2:10])[0]
    sign = -1.0 if exponent & 0x8000 else 1.0
    exponent &= 0x7FFF
    if exponent == 0x7FFF:  # the extended format's infinities and NaNs
        return math.nan if mantissa & ((1 << 63) - 1) else sign * math.inf
    if mantissa == 0:
        return 0.0
    try:
        return sign * math.ldexp(float(mantissa), exponent - 16383 - 63)
    except OverflowError:
        return sign * math.inf


#: AIFF-C compression types whose frames are channels * bytes-per-sample wide.
_AIFC_BYTES = {b"NONE": None, b"twos": None, b"sowt": None, b"fl32": 4, b"FL32": 4,
               b"fl64": 8, b"FL64": 8, b"in24": 3, b"in32": 4, b"ulaw": 1, b"ULAW": 1,
               b"alaw": 1, b"ALAW": 1, b"raw ": 1}


def _aiff(fh: BinaryIO, size: int, aifc: bool) -> ContainerFacts:
    comm = None
    for pos, chunk, chunk_size in _iff_chunks(fh, size, ">"):
        if chunk == b"COMM":
            body = fh.read(min(chunk_size, 64))
            if len(body) >= 18:
                channels, frames, bits = struct.unpack(">HIH", body[:8])
                rate = _extended_float(body[8:18])
                compression = body[18:22] if aifc and len(body) >= 22 else b"NONE"
                comm = (channels, frames, bits, rate, compression)
        elif chunk == b"SSND":
            fh.seek(pos + 8)
            offset = struct.unpack(">I", fh.read(8)[:4] or b"\0\0\0\0")[0]
            return _aiff_facts(comm, pos + 16 + offset, size)
    return ContainerFacts("AIFF", "AIFF without a sound data chunk", no_audio_bytes=True)


def _aiff_facts(comm: tuple | None, data_start: int, size: int) -> ContainerFacts:
    present_bytes = max(0, size - data_start)
    if comm is None:
        return ContainerFacts("AIFF", "AIFF without a COMM chunk", no_audio_bytes=present_bytes == 0)
    channels, frames, bits, rate, compression = comm
    description = f"AIFF ({compression.decode('latin-1')}), {bits}-bit, {channels} ch, {rate:g} Hz"
    odd = _impossible("AIFF", description, rate_out_of_range(rate, "COMM chunk"),
                      channels_out_of_range(channels, "COMM chunk"),
                      f"its COMM chunk gives {bits}-bit samples (possible: 1 to 64)"
                      if not 1 <= bits <= 64 and compression in (b"NONE", b"twos", b"sowt") else "")
    if odd is not None:
        return odd
    width = _AIFC_BYTES.get(compression, 0)
    width = (bits + 7) // 8 if width is None else width
    if not width:
        return ContainerFacts("AIFF", description, no_audio_bytes=present_bytes == 0)
    return ContainerFacts("AIFF", description, frames / rate, "the AIFF COMM frame count",
                          present_bytes // (width * channels) / rate,
                          no_audio_bytes=present_bytes == 0, length_trusted=True)


#: Sun/NeXT .au encodings: bytes per sample.
_AU_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}


def _au(head: bytes, size: int) -> ContainerFacts:
    if len(head) < 24:
        return ContainerFacts("AU", "Sun .au header cut short", no_audio_bytes=True)
    offset, data_size, encoding, rate, channels = struct.unpack(">IIIII", head[4:24])
    description = f"Sun .au, encoding {encoding}, {channels} ch, {rate} Hz"
    odd = _impossible("AU", description, rate_out_of_range(rate, "header"), channels_out_of_range(channels, "header"))
    if odd is not None:
        return odd
    present_bytes = max(0, size - offset)
    width = _AU_BYTES.get(encoding)
    if not width:
        return ContainerFacts("AU", description, no_audio_bytes=present_bytes == 0)
    declared = None if data_size in (0, 0xFFFFFFFF) else data_size // (width * channels) / rate
    return ContainerFacts("AU", description, declared, "the .au data size",
                          present_bytes // (width * channels) / rate,
                          no_audio_bytes=present_bytes == 0, length_trusted=declared is not None)


# --------------------------------------------------------------------------
# FLAC: STREAMINFO declares the samples, the last frame header says where they end
# --------------------------------------------------------------------------
def _flac(fh: BinaryIO, size: int, start: int) -> ContainerFacts:
    pos = start + 4
    info = None
    while True:
        fh.seek(pos)
        header = fh.read(4)
        if len(header) < 4:
            return ContainerFacts("FLAC", "FLAC", problem="its metadata blocks run past the end of the file",
                                  no_audio_bytes=True)
        kind, block_size = header[0] & 0x7F, int.from_bytes(header[1:4], "big")
        if kind == 0 and block_size >= 34:
            info = fh.read(34)
        if pos + 4 + block_size > size:
            return ContainerFacts("FLAC", "FLAC", problem=f"its metadata block of type {kind} runs "
                                  "past the end of the file (damaged or overwritten metadata)")
        pos += 4 + block_size
        if header[0] & 0x80:
            break
    if info is None or len(info) < 34:
        return ContainerFacts("FLAC", "FLAC without STREAMINFO", problem="it has no STREAMINFO block")
    min_block, max_block = struct.unpack(">HH", info[:4])
    packed = int.from_bytes(info[10:18], "big")
    rate = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    bits = ((packed >> 36) & 0x1F) + 1
    total = packed & ((1 << 36) - 1)
    description = f"FLAC, {bits}-bit, {channels} ch, {rate} Hz"
    if not rate:
        return ContainerFacts("FLAC", description, problem="its STREAMINFO gives no sample rate")
    # (STREAMINFO's 20-bit rate field cannot exceed MAX_SAMPLE_RATE, and its channel and bit
    # fields are 1 + a 3- or 5-bit value: nothing else to range-check.)
    if pos >= size:
        return ContainerFacts("FLAC", description, total / rate if total else None,
                              "FLAC STREAMINFO", 0.0, no_audio_bytes=True)
    end = _flac_last_frame_end(fh, max(pos, size - TAIL_BYTES), size,
                               min_block if min_block == max_block else 0)
    return ContainerFacts("FLAC", description, total / rate if total else None, "FLAC STREAMINFO",
                          None if end is None else end / rate,
                          length_trusted=end is not None and total > 0, end_unit_seconds=max_block / rate)


def crc8(data: bytes) -> int:
    """CRC-8 (polynomial 0x07, initial 0) of a FLAC frame header."""
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def _crc8_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC8 = _crc8_table()


def flac_frame_header(buf: bytes, at: int, fixed_block: int) -> tuple[int, int] | None:
    """(first sample, samples) of the FLAC frame whose header starts at ``buf[at]``, or None
    when no valid header (sync code, reserved bits, CRC-8) starts there.

    ``fixed_block`` is STREAMINFO's block size for fixed-blocksize streams
    (their headers number frames, not samples), 0 for variable ones.
    """
    if at + 6 > len(buf) or buf[at] != 0xFF or buf[at + 1] & 0xFE != 0xF8:
        return None
    variable = buf[at + 1] & 1
    block_code, rate_code = buf[at + 2] >> 4, buf[at + 2] & 0xF
    if block_code == 0 or rate_code == 15 or buf[at + 3] & 1 or (buf[at + 3] >> 4) > 10:
        return None
    # The frame or sample number, coded like UTF-8 (1 to 7 bytes): as many leading 1 bits as
    # bytes in all; one leading 1 (a continuation byte) or eight cannot start it.
    first = buf[at + 4]
    ones = 8 - (~first & 0xFF).bit_length()
    if ones == 1 or ones == 8:
        return None
    extra = max(0, ones - 1)
    number = first & (0x7F >> ones)
    p = at + 5
    if p + extra > len(buf):
        return None
    for k in range(extra):
        byte = buf[p + k]
        if byte & 0xC0 != 0x80:
            return None
        number = (number << 6) | (byte & 0x3F)
    p += extra
    if block_code == 6:
        blocksize, p = (buf[p] + 1 if p < len(buf) else 0), p + 1
    elif block_code == 7:
        blocksize, p = (int.from_bytes(buf[p:p + 2], "big") + 1), p + 2
    elif block_code == 1:
        blocksize = 192
    elif block_code <= 5:
        blocksize = 576 << (block_code - 2)
    else:
        blocksize = 256 << (block_code - 8)
    p += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if p >= len(buf) or crc8(buf[at:p]) != buf[p]:
        return None
    if variable or not fixed_block:
        return number, blocksize
    return number * fixed_block, blocksize


def _flac_last_frame_end(fh: BinaryIO, start: int, size: int, fixed_block: int) -> int | None:
    """Sample just after the last FLAC frame whose header is in the file's last bytes."""
    fh.seek(start)
    buf = fh.read(size - start)
    at = len(buf)
    while True:
        at = buf.rfind(b"\xff", 0, at)
        if at < 0:
            return None
        frame = flac_frame_header(buf, at, fixed_block)
        if frame is not None:
            return frame[0] + frame[1]


# --------------------------------------------------------------------------
# Ogg: the granule position of the last page is the stream's length
# --------------------------------------------------------------------------
def ogg_pages(buf: bytes) -> list[tuple[int, int, int, int, bool]]:
    """Pages whose header starts in ``buf``: (offset, header type, granule, serial, complete)."""
    pages = []
    at = buf.find(b"OggS")
    while at >= 0:
        if at + 27 <= len(buf) and buf[at + 4] == 0:
            header_type = buf[at + 5]
            granule, serial = struct.unpack("<qI", buf[at + 6:at + 18])
            segments = buf[at + 26]
            table = buf[at + 27:at + 27 + segments]
            complete = len(table) == segments and at + 27 + segments + sum(table) <= len(buf)
            pages.append((at, header_type, granule, serial, complete))
        elif at + 27 > len(buf):
            pages.append((at, 0, -1, -1, False))  # a page header cut off by the end of the file
        at = buf.find(b"OggS", at + 1)
    return pages


def _ogg(fh: BinaryIO, head: bytes, size: int) -> ContainerFacts:
    first = ogg_pages(head[:4096])
    if not first:
        return ContainerFacts("Ogg", "Ogg", no_audio_bytes=True)
    serial = first[0][3]
    body = head[27 + head[26]:] if len(head) > 27 else b""
    if body.startswith(b"OpusHead") and len(body) >= 19:
        pre_skip, input_rate = struct.unpack("<HI", body[10:16])
        rate, skip = 48000, pre_skip
        description = f"Ogg Opus, {body[9]} ch, encoded from {input_rate} Hz"
    elif body.startswith(b"\x01vorbis") and len(body) >= 16:
        rate, skip = struct.unpack("<I", body[12:16])[0], 0
        description = f"Ogg Vorbis, {body[11]} ch, {rate} Hz"
    else:
        return ContainerFacts("Ogg", "Ogg (codec not Vorbis or Opus)")
    if not rate:
        return ContainerFacts("Ogg", description, problem="its header gives no sample rate")
    odd = _impossible("Ogg", description, rate_out_of_range(rate, "Vorbis identification header"))
    if odd is not None:
        return odd
    start = max(0, size - TAIL_BYTES)
    fh.seek(start)
    pages = [p for p in ogg_pages(fh.read(size - start)) if p[3] in (serial, -1)]
    complete = [p for p in pages if p[4] and p[2] >= 0]
    cut = [p for p in pages if not p[4]]
    if not complete:
        return ContainerFacts("Ogg", description)
    last = complete[-1]
    present = max(0, last[2] - skip) / rate
    if cut and cut[-1][0] > last[0]:
        # The file ends inside a page: that page's header declares where it
        # would have ended (if the header itself survived).
        page_granule = cut[-1][2]
        declared = max(0, page_granule - skip) / rate if page_granule >= 0 else None
        if cut[-1][1] & 0x04:
            # The end-of-stream page: the file was cut inside its last page, which declares the
            # stream's length, and at most that one page is missing.
            return ContainerFacts("Ogg", description, declared, "the granule position of the Ogg page "
                                  "the file ends in (its end-of-stream page)", present,
                                  length_trusted=declared is not None,
                                  end_unit_seconds=max(0.0, (declared or 0.0) - present))
        # Any other page only says where it would have ended: the stream was cut somewhere before
        # its end, by how much nothing says.
        return ContainerFacts("Ogg", description, declared, "the granule position of the Ogg page "
                              "the file ends in", present, length_trusted=declared is not None,
                              declares_whole=False)
    if last[1] & 0x04:  # end-of-stream page: the stream ended as its writer meant
        return ContainerFacts("Ogg", description, present, "the final Ogg granule position",
                              present, length_trusted=True)
    return ContainerFacts("Ogg", description, None, "", present)


# --------------------------------------------------------------------------
# MP3: the Xing/Info/VBRI header declares frames and bytes
# --------------------------------------------------------------------------
def id3v2_size(head: bytes) -> int:
    """Bytes of the ID3v2 tag at the start of ``head`` (0 if none)."""
    if len(head) >= 10 and head[:3] == b"ID3" and all(b < 0x80 for b in head[6:10]):
        size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        return 10 + size + (10 if head[5] & 0x10 else 0)
    return 0


_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_L3_KBPS = {3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
            2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}


@dataclasses.dataclass(frozen=True)
class MpegFrame:
    """One MPEG-1/2/2.5 Layer III frame header."""

    version: int  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    rate: int
    channels: int
    length: int  # bytes, header included
    samples: int  # per frame

    @property
    def side_info(self) -> int:
        if self.version == 3:
            return 32 if self.channels == 2 else 17
        return 17 if self.channels == 2 else 9


def mpeg_frame(buf: bytes, at: int) -> MpegFrame | None:
    """The Layer III frame header at ``buf[at]``, or None."""
    if at + 4 > len(buf) or buf[at] != 0xFF or buf[at + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (buf[at + 1] >> 3) & 3, (buf[at + 1] >> 1) & 3
    rate_index, bitrate_index = (buf[at + 2] >> 2) & 3, buf[at + 2] >> 4
    if version == 1 or layer != 1 or rate_index == 3 or bitrate_index in (0, 15):
        return None
    rate = _MPEG_RATES[version][rate_index]
    kbps = _L3_KBPS[3 if version == 3 else 2][bitrate_index]
    samples = 1152 if version == 3 else 576
    length = samples // 8 * kbps * 1000 // rate + ((buf[at + 2] >> 1) & 1)
    channels = 1 if buf[at + 3] >> 6 == 3 else 2
    return MpegFrame(version, rate, channels, length, samples)


def _first_mpeg_frame(buf: bytes) -> tuple[int, MpegFrame] | None:
    """First frame header in ``buf`` confirmed by the next frame's header (or by the buffer end)."""
    at = buf.find(b"\xff")
    while 0 <= at < len(buf) - 4:
        frame = mpeg_frame(buf, at)
        if frame is not None:
            nxt = at + frame.length
            follow = mpeg_frame(buf, nxt)
            if nxt + 4 > len(buf) or (follow is not None and follow.rate == frame.rate):
                return at, frame
        at = buf.find(b"\xff", at + 1)
    return None


def xing_header(buf: bytes, at: int, frame: MpegFrame) -> tuple[int | None, int | None, int, str] | None:
    """(frames, bytes, encoder delay + padding in samples, tag) of a Xing/Info/VBRI header
    in the frame at ``buf[at]``, or None when that frame holds none."""
    x = at + 4 + frame.side_info
    tag = buf[x:x + 4]
    if tag in (b"Xing", b"Info") and x + 8 <= len(buf):
        flags = struct.unpack(">I", buf[x + 4:x + 8])[0]
        p = x + 8
        frames = nbytes = None
        if flags & 1:
            frames, p = struct.unpack(">I", buf[p:p + 4])[0], p + 4
        if flags & 2:
            nbytes, p = struct.unpack(">I", buf[p:p + 4])[0], p + 4
        p += (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
        trim = 0
        encoder = buf[p:p + 4]
        if len(buf) >= p + 24 and encoder.isalpha():  # LAME/Lavc extension: delay and padding
            delay_padding = int.from_bytes(buf[p + 21:p + 24], "big")
            trim = (delay_padding >> 12) + (delay_padding & 0xFFF)
        return frames, nbytes, trim, tag.decode()
    v = at + 36
    if buf[v:v + 4] == b"VBRI" and v + 18 <= len(buf):
        nbytes, frames = struct.unpack(">II", buf[v + 10:v + 18])
        return frames, nbytes, 0, "VBRI"
    return None


#: A Xing byte count within this fraction (and 2 KiB) of the audio bytes present
#: describes this file; further off, it was written for other bytes.
XING_BYTES_TOLERANCE = 0.01


def _mp3(fh: BinaryIO, buf: bytes, start: int, size: int) -> ContainerFacts:
    found = _first_mpeg_frame(buf)
    if found is None:
        if start and start >= size:
            return ContainerFacts("MP3", f"an ID3v2 tag ({start} bytes) and nothing after it",
                                  no_audio_bytes=True)
        if start:
            return ContainerFacts("", f"an ID3v2 tag ({start} bytes) and no MPEG audio frames after it")
        return ContainerFacts("", describe_bytes(buf))
    at, frame = found
    description = (f"MP3 (MPEG-{ {3: '1', 2: '2', 0: '2.5'}[frame.version]} Layer III), "
                   f"{frame.channels} ch, {frame.rate} Hz")
    header = xing_header(buf, at, frame)
    if header is None or header[0] is None:
        return ContainerFacts("MP3", description)  # nothing declares a length: decode and see
    frames, nbytes, trim, tag = header
    if frames == 0:  # the header frame is the only one, and it holds no audio
        return ContainerFacts("MP3", description + f"; its {tag} header counts 0 frames",
                              0.0, declared_by=f"the {tag} header", no_audio_bytes=True)
    declared = max(0, frames * frame.samples - trim) / frame.rate
    declared_by = f"the {tag} header ({frames} frames)"
    unit = frame.samples / frame.rate
    if nbytes is None:
        return ContainerFacts("MP3", description, declared, declared_by, end_unit_seconds=unit)
    fh.seek(max(0, size - 128))
    trailer = fh.read(128)
    audio_bytes = size - start - at - (128 if trailer[:3] == b"TAG" else 0)
    slack = max(2048, XING_BYTES_TOLERANCE * nbytes)
    if audio_bytes > nbytes + slack:
        # More bytes than the header counts: it was written for a shorter
        # stream (a concatenation, a stale tag); only decoding tells.
        return ContainerFacts("MP3", description + f"; its {tag} header counts {nbytes} bytes of "
                              f"the {audio_bytes} present")
    return ContainerFacts("MP3", description, declared, declared_by,
                          present_seconds=None if audio_bytes < nbytes - slack else declared,
                          length_trusted=audio_bytes >= nbytes - slack, end_unit_seconds=unit)
