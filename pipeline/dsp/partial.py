"""Objects fetched in part: the header and the excerpt's bytes of a long PCM file.

A remote audio object is fetched whole unless it is long and uncompressed,
where the excerpt's bytes sit at a computable offset (:func:`pcm_layout`):
then only its header and the excerpt travel (:class:`PartialObject`). The
decoders read it as a file (:meth:`PartialObject.open`) whose unfetched bytes
read as zeros and mark the file; :func:`pipeline.dsp.audio.load_clip` then
raises :class:`~pipeline.errors.PartialReadError` instead of returning
anything, and the caller fetches the object whole and decodes again. So a
partial fetch can make a decode faster, never different.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from typing import Sequence

#: Sample widths of Sun .au encodings that are plain PCM (bytes per sample).
_AU_PCM_BYTES = {2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8}


@dataclasses.dataclass(frozen=True)
class PcmLayout:
    """Where an uncompressed file's samples are: ``frames`` of ``frame_bytes`` from ``data_start``."""

    data_start: int
    frame_bytes: int
    frames: int
    rate: int


def pcm_layout(head: bytes, size: int) -> PcmLayout | None:
    """The sample layout of a WAV (PCM or float) or Sun .au file from its first bytes; None otherwise.

    ``size`` is the whole object's size: the frames are those the declared
    data size and the object both hold, as libsndfile counts them.
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wav_layout(head, size)
    if head[:4] == b".snd" and len(head) >= 24:
        offset, data_size, encoding, rate, channels = struct.unpack(">IIIII", head[4:24])
        width = _AU_PCM_BYTES.get(encoding)
        if not (width and channels and rate) or offset >= size:
            return None
        present = size - offset
        if data_size not in (0, 0xFFFFFFFF):
            present = min(present, data_size)
        return PcmLayout(offset, width * channels, present // (width * channels), rate)
    return None


def _wav_layout(head: bytes, size: int) -> PcmLayout | None:
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        chunk, chunk_size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk == b"fmt " and pos + 8 + 16 <= len(head):
            tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", head[pos + 8:pos + 24])
            if tag == 0xFFFE and pos + 8 + 26 <= len(head):
                tag = struct.unpack("<H", head[pos + 32:pos + 34])[0]
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk == b"data":
            if fmt is None or fmt[0] not in (1, 3) or fmt[3] <= 0 or fmt[2] <= 0:
                return None
            start = pos + 8
            present = max(0, size - start)
            if chunk_size not in (0, 0xFFFFFFFF):
                present = min(present, chunk_size)
            return PcmLayout(start, fmt[3], present // fmt[3], fmt[2])
        pos += 8 + chunk_size + (chunk_size & 1)
    return None


@dataclasses.dataclass(frozen=True)
class PartialObject:
    """Some byte ranges of an object of ``size`` bytes, as ``(offset, bytes)`` pieces; picklable."""

    name: str
    size: int
    pieces: tuple[tuple[int, bytes], ...]

    @property
    def fetched_bytes(self) -> int:
        return sum(len(data) for _, data in self.pieces)

    def open(self) -> "SparseFile":
        return SparseFile(self)


class SparseFile(io.RawIOBase):
    """A read-only, seekable file over a :class:`PartialObject`; reading an unfetched byte sets :attr:`holes_read`."""

    def __init__(self, partial: PartialObject) -> None:
        super().__init__()
        self.name = partial.name  # PyAV passes it to ffmpeg as a format hint
        self._size = partial.size
        self._pieces: Sequence[tuple[int, bytes]] = sorted(partial.pieces)
        self._pos = 0
        self.holes_read = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:  # noqa: ANN001 - any writable buffer
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        start, end = self._pos, self._pos + n
        view[:n] = bytes(n)
        covered = 0
        for offset, data in self._pieces:
            lo, hi = max(start, offset), min(end, offset + len(data))
            if lo < hi:
                view[lo - start:hi - start] = data[lo - offset:hi - offset]
                covered += hi - lo
        if covered < n:
            self.holes_read = True
        self._pos = end
        return n
