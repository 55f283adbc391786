"""Decoding whole feature shards in one object read, without zarr-python's per-chunk machinery.

A shard of a feature array is one object holding ``clips_per_shard x
n_variants`` Blosc-compressed chunks and, at its end, an index of their
offsets and sizes (Zarr v3's ``sharding_indexed`` codec, index checked by
CRC32C). zarr-python reads such a shard correctly but spends ~100 us of
Python per inner chunk (a shard of 16 clips x 5 variants x 5 features is 400
chunks): measured on a 100-clip store of 30 s clips, 138 us per training
window, of which Blosc itself is ~20 us. The trainer reads every shard once
per epoch, so that overhead was most of its loader's time.

:class:`ShardDecoder` fetches the shard object once through the same Zarr store
(so every URI scheme works; a reader fetches all features' objects of a shard
concurrently), checks the index's CRC32C, and decompresses each
wanted chunk straight into the caller's array with numcodecs' Blosc (the
codec zarr-python itself calls). It accepts only arrays whose metadata is
exactly the layout :mod:`stores.writer` writes; for any other layout
:func:`shard_decoder` returns None and readers use zarr-python. The results
are bit-identical to zarr-python's (tested).
"""

from __future__ import annotations

from typing import Sequence

import google_crc32c
import numcodecs.blosc
import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype

from stores.errors import StoreError
from stores import schema

#: Offset and size of an inner chunk that was never written (fill value).
_ABSENT = np.uint64(2**64 - 1)
_CRC_BYTES = 4
_BLOSC_HEADER = 16


def _is_little_endian_bytes(codec: dict) -> bool:
    return codec.get("name") == "bytes" and (codec.get("configuration") or {}).get("endian", "little") == "little"


def our_clips_per_shard(array: zarr.Array) -> int | None:
    """Clips per shard of ``array`` when its layout is exactly the one :mod:`stores.writer`
    creates for feature arrays, else None."""
    meta = array.metadata.to_dict()
    codecs = meta.get("codecs") or ()
    if meta.get("data_type") != schema.FEATURE_DTYPE or len(codecs) != 1 or array.ndim != 4:
        return None
    sharding = codecs[0]
    if sharding.get("name") != "sharding_indexed":
        return None
    cfg = sharding["configuration"]
    inner, index = list(cfg.get("codecs", ())), list(cfg.get("index_codecs", ()))
    shard_shape = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    bands, frames = array.shape[2], array.shape[3]
    expected_chunk = (1, 1, bands, frames)
    if (tuple(cfg.get("chunk_shape", ())) != expected_chunk or shard_shape[2:] != (bands, frames)
            or shard_shape[1] != array.shape[1] or cfg.get("index_location", "end") != "end"
            or len(inner) != 2 or not _is_little_endian_bytes(inner[0]) or inner[1].get("name") != "blosc"
            or len(index) != 2 or not _is_little_endian_bytes(index[0]) or index[1].get("name") != "crc32c"
            or meta.get("fill_value") not in (0, 0.0)):
        return None
    return int(shard_shape[0])


def shard_decoder(array: zarr.Array, shown_uri: str) -> "ShardDecoder | None":
    """A decoder for ``array``'s shards, or None when its layout is not the one we write.

    Parameters
    ----------
    array : a feature array of a store (``(clip, variant, bands, frames)``).
    shown_uri : the store's URI without credentials, for error messages.
    """
    cps = our_clips_per_shard(array)
    return None if cps is None else ShardDecoder(array, shown_uri, clips_per_shard=cps)


def shard_encoder(array: zarr.Array) -> "ShardEncoder | None":
    """An encoder of whole shards of ``array``, or None when its layout is not the one we write."""
    cps = our_clips_per_shard(array)
    return None if cps is None else ShardEncoder(array, cps)


def morton_order(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Every index of a grid of ``shape`` in Morton (Z) order, as Zarr's sharding codec writes chunks.

    The code of an index interleaves the bits of its coordinates, lowest bit
    first and, within one bit, the dimensions in order; a dimension joins only
    for the bits its extent needs (``(n - 1).bit_length()``).
    """
    bits = [(int(n) - 1).bit_length() for n in shape]

    def code(index: tuple[int, ...]) -> int:
        z, out_bit = 0, 0
        for level in range(max(bits, default=0)):
            for dim, coordinate in enumerate(index):
                if level < bits[dim]:
                    z |= ((coordinate >> level) & 1) << out_bit
                    out_bit += 1
        return z

    grid = [tuple(i) for i in np.ndindex(*[int(n) for n in shape])]
    return sorted(grid, key=code)


class _ShardObjects:
    """The shard objects of one feature array in its store: shape facts and object keys."""

    def __init__(self, array: zarr.Array, clips_per_shard: int) -> None:
        self.clips_per_shard = clips_per_shard
        self.n_variants, self.bands, self.frames = array.shape[1:]
        self.n_clips = array.shape[0]
        self._store = array.store_path.store
        self._path = array.store_path.path
        self._metadata = array.metadata

    def key(self, shard_index: int) -> str:
        """The store key of shard ``shard_index``'s object."""
        key = self._metadata.encode_chunk_key((shard_index, 0, 0, 0))
        return f"{self._path}/{key}" if self._path else key


class ShardEncoder(_ShardObjects):
    """Writes whole shards of one feature array as single objects, byte for byte what
    zarr-python's sharding codec writes for the same data (tested), without its
    per-chunk asyncio machinery (~5 ms of CPU per array per shard, which made
    store writes 10-15% of a build).

    Inner chunks are Blosc-compressed with numcodecs (the codec zarr-python
    calls, with the array's own settings) in Morton order; all-zero chunks
    (the fill value) are left out, as ``write_empty_chunks=False`` does; the
    index of ``(offset, nbytes)`` pairs and its CRC32C go at the end.
    """

    def __init__(self, array: zarr.Array, clips_per_shard: int) -> None:
        super().__init__(array, clips_per_shard)
        blosc = array.metadata.to_dict()["codecs"][0]["configuration"]["codecs"][1]["configuration"]
        self._cname = str(blosc["cname"]).encode()
        self._clevel = int(blosc["clevel"])
        self._shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[str(blosc["shuffle"])]
        self._blocksize = int(blosc.get("blocksize", 0))
        self._typesize = int(blosc.get("typesize", np.dtype(schema.FEATURE_DTYPE).itemsize))
        self._order = morton_order((clips_per_shard, self.n_variants))

    def encode(self, block: np.ndarray) -> bytes | None:
        """The shard object of ``block`` (float16 ``(clips_in_shard, n_variants, bands, frames)``);
        None when every chunk is the fill value (no object at all)."""
        clips = block.shape[0]
        if block.shape[1:] != (self.n_variants, self.bands, self.frames) or block.dtype != np.float16 \
                or clips > self.clips_per_shard:
            raise StoreError(f"a shard of this array is float16 (<= {self.clips_per_shard}, {self.n_variants}, "
                             f"{self.bands}, {self.frames}); got {block.dtype} {block.shape}")
        index = np.full((self.clips_per_shard, self.n_variants, 2), _ABSENT, dtype="<u8")
        parts: list[bytes] = []
        offset = 0
        previous = numcodecs.blosc.use_threads
        numcodecs.blosc.use_threads = False  # one core per worker: Blosc threads would take the other's
        try:
            for c, v in self._order:
                if c >= clips:
                    continue
                chunk = block[c, v]
                # All bits zero is the fill value 0.0: no chunk (zarr-python keeps a chunk of -0.0 too).
                if not chunk.view(np.uint16).any():
                    continue
                data = numcodecs.blosc.compress(np.ascontiguousarray(chunk), self._cname, self._clevel,
                                                self._shuffle, self._blocksize, typesize=self._typesize)
                index[c, v] = (offset, len(data))
                offset += len(data)
                parts.append(data)
        finally:
            numcodecs.blosc.use_threads = previous
        if not parts:
            return None
        index_bytes = index.tobytes()
        parts.append(index_bytes)
        parts.append(np.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes())
        return b"".join(parts)

    async def write(self, shard_index: int, block: np.ndarray) -> None:
        """Encode and store shard ``shard_index`` (deleting its object when it is all fill value)."""
        data = self.encode(block)
        if data is None:
            await self._store.delete(self.key(shard_index))
        else:
            await self._store.set(self.key(shard_index), default_buffer_prototype().buffer.from_bytes(data))


class ShardDecoder(_ShardObjects):
    """Reads and decodes whole shards of one feature array (see the module docstring)."""

    def __init__(self, array: zarr.Array, shown_uri: str, clips_per_shard: int) -> None:
        super().__init__(array, clips_per_shard)
        self.shown_uri = shown_uri
        self._chunk_bytes = self.bands * self.frames * np.dtype(schema.FEATURE_DTYPE).itemsize

    async def fetch(self, shard_index: int) -> np.ndarray | None:
        """The shard object's bytes (uint8), None when it was never written."""
        buffer = await self._store.get(self.key(shard_index), prototype=default_buffer_prototype())
        return None if buffer is None else buffer.as_numpy_array().view(np.uint8)

    def _where(self, shard_index: int) -> str:
        return f"shard object {self.key(shard_index)!r} of {self.shown_uri}"

    def _index(self, shard_index: int, data: np.ndarray) -> np.ndarray:
        """``(offset, nbytes)`` per inner chunk, uint64 ``(clips_per_shard * n_variants, 2)``."""
        n = self.clips_per_shard * self.n_variants
        size = 16 * n + _CRC_BYTES
        if len(data) < size:
            raise StoreError(f"{self._where(shard_index)} is {len(data)} bytes, shorter than its chunk index "
                             f"({size} bytes): the object is damaged; run `pipeline verify` and rebuild the store")
        raw = data[len(data) - size:len(data) - _CRC_BYTES]
        stored_crc = int(data[len(data) - _CRC_BYTES:].view("<u4")[0])
        if google_crc32c.value(raw.tobytes()) != stored_crc:
            raise StoreError(f"{self._where(shard_index)} has a damaged chunk index (CRC32C mismatch); "
                             "run `pipeline verify` and rebuild the store with --overwrite")
        return raw.view("<u8").reshape(n, 2)

    def decode(self, shard_index: int, data: np.ndarray | None, out: np.ndarray,
               variants: Sequence[int] | None = None) -> np.ndarray:
        """Decode shard ``shard_index`` into ``out``.

        Parameters
        ----------
        data : the object's bytes from :meth:`fetch` (None: never written).
        out : float16 [shape=(clips_in_shard, n_variants, bands, frames)], C-contiguous
            Receives the chunks; chunks never written (absent variants) are
            zero-filled. Slots of variants not in ``variants`` are left as they are.
        variants : variant columns to decode (default: all).

        Returns
        -------
        ``out``
        """
        start = shard_index * self.clips_per_shard
        clips = min(self.clips_per_shard, self.n_clips - start)
        expected = (clips, self.n_variants, self.bands, self.frames)
        if out.shape != expected or out.dtype != np.float16 or not out.flags.c_contiguous:
            raise StoreError(f"decoding {self._where(shard_index)} needs a C-contiguous float16 array of shape "
                             f"{expected}, got {out.dtype} {out.shape}")
        columns = range(self.n_variants) if variants is None else [int(v) for v in variants]
        if data is None:  # nothing of this shard written: every chunk is the fill value
            for v in columns:
                out[:, v] = 0
            return out
        index = self._index(shard_index, data)
        chunks = out.reshape(clips * self.n_variants, -1).view(np.uint8)
        for c in range(clips):
            for v in columns:
                k = c * self.n_variants + v
                offset, nbytes = index[k]
                if offset == _ABSENT:
                    chunks[k] = 0
                    continue
                end = int(offset) + int(nbytes)
                if end > len(data) or self._decompressed_size(data, int(offset), end) != self._chunk_bytes:
                    raise StoreError(f"{self._where(shard_index)}: chunk (clip {start + c}, variant {v}) is damaged "
                                     "(its size does not match the array's chunk shape); run `pipeline verify` "
                                     "and rebuild the store with --overwrite")
                numcodecs.blosc.decompress(data[int(offset):end], chunks[k])
        return out

    @staticmethod
    def _decompressed_size(data: np.ndarray, start: int, end: int) -> int:
        """Uncompressed size from the chunk's Blosc header, -1 when it is not a whole Blosc frame.

        The Blosc 1 header is 16 bytes: version, codec version, flags,
        typesize, then little-endian uint32 uncompressed size, block size and
        compressed size (the frame's length).
        """
        if end - start < _BLOSC_HEADER:
            return -1
        nbytes, _, cbytes = data[start + 4:start + _BLOSC_HEADER].view("<u4")
        return int(nbytes) if int(cbytes) == end - start else -1
