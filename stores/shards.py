"""Decoding whole feature shards in one object read, without zarr-python's per-chunk machinery.

A shard of a feature array is one object holding ``clips_per_shard x
n_variants`` Blosc-compressed chunks and, at its end, an index of their
offsets and sizes (Zarr v3's ``sharding_indexed`` codec, index checked by
CRC32C). zarr-python reads such a shard correctly but spends ~100 us of
Python per inner chunk (a shard of 16 clips x 5 variants x 5 features is 400
chunks): measured on a 100-clip store of 30 s clips, 138 us per training
window, of which Blosc itself is ~20 us. The trainer reads every shard once
per epoch, so that overhead was most of its loader's time.

A store extended with augmentation variants (:func:`stores.updates.extend_store`)
keeps its shard shape ``(clips_per_shard, variants_per_shard, ...)`` with
``variants_per_shard`` the variant count it was built with: the new variants
of a shard's clips go into further objects along the variant axis (keys
``.../c/<shard>/<part>/0/0``), the last one partly outside the array (its
chunks there are never written). One shard of clips is then
``ceil(n_variants / variants_per_shard)`` objects, its *parts*.

:class:`ShardDecoder` fetches the objects of a shard through the same Zarr
store (so every URI scheme works; a reader fetches all features' objects of
a shard, and every part of each, concurrently), only the parts that hold the
variants a caller asks for, checks each object whole (index CRC32C, the
chunks tiling its body, per-chunk CRC32C, whole Blosc frames), and
decompresses each wanted chunk straight into the caller's array with
numcodecs' Blosc (the codec zarr-python itself calls). It accepts only
arrays whose metadata is exactly the layout :mod:`stores.writer` writes, with
``variants_per_shard`` any value up to the array's variant count; for any
other layout :func:`shard_decoder` returns None and readers use zarr-python.
The results are bit-identical to zarr-python's (tested, on built and on
extended stores).
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Sequence

import google_crc32c
import numcodecs.blosc
import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype

from stores.errors import StoreDamageError, StoreError
from stores import schema
from stores.backend_errors import REPAIR_FIX

#: Offset and size of an inner chunk that was never written (fill value).
_ABSENT = np.uint64(2**64 - 1)
_CRC_BYTES = 4
_BLOSC_HEADER = 16


def _is_little_endian_bytes(codec: dict) -> bool:
    return codec.get("name") == "bytes" and (codec.get("configuration") or {}).get("endian", "little") == "little"


def our_shard_shape(array: zarr.Array) -> tuple[int, int] | None:
    """``(clips_per_shard, variants_per_shard)`` of ``array`` when its layout is exactly the one
    :mod:`stores.writer` creates for feature arrays, else None.

    ``variants_per_shard`` is the array's variant count as built, or fewer
    after :func:`stores.updates.extend_store` appended variants (more objects
    per shard along the variant axis); every other field (dtype, codecs, the
    inner chunk shape, the index at the end, the fill value) must be ours.
    """
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
            or not 1 <= shard_shape[1] <= array.shape[1] or cfg.get("index_location", "end") != "end"
            or len(inner) not in (2, 3) or not _is_little_endian_bytes(inner[0]) or inner[1].get("name") != "blosc"
            or (len(inner) == 3 and inner[2].get("name") != "crc32c")
            or len(index) != 2 or not _is_little_endian_bytes(index[0]) or index[1].get("name") != "crc32c"
            or meta.get("fill_value") not in (0, 0.0)):
        return None
    return int(shard_shape[0]), int(shard_shape[1])


def our_clips_per_shard(array: zarr.Array) -> int | None:
    """Clips per shard of ``array`` when :func:`our_shard_shape` accepts its layout, else None."""
    shape = our_shard_shape(array)
    return None if shape is None else shape[0]


def _u32(data: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Little-endian uint32 values of ``data`` (uint8) at each of ``positions`` (clamped into the data)."""
    at = np.minimum(positions, len(data) - 4)
    return (data[at].astype(np.uint32) | data[at + 1].astype(np.uint32) << 8
            | data[at + 2].astype(np.uint32) << 16 | data[at + 3].astype(np.uint32) << 24)


def has_chunk_checksums(array: zarr.Array) -> bool:
    """True when every chunk of ``array`` ends with its CRC32C (Zarr's ``crc32c`` codec, in the
    shard's inner codecs or in the array's own): stores built since the read checks."""
    def named(codecs: Any) -> bool:
        return any(c.get("name") == "crc32c" for c in codecs or ())

    codecs = array.metadata.to_dict().get("codecs") or ()
    return named(codecs) or any(named((c.get("configuration") or {}).get("codecs")) for c in codecs
                                if c.get("name") == "sharding_indexed")


def shard_decoder(array: zarr.Array, shown_uri: str) -> "ShardDecoder | None":
    """A decoder for ``array``'s shards, or None when its layout is not the one we write.

    Parameters
    ----------
    array : a feature array of a store (``(clip, variant, bands, frames)``).
    shown_uri : the store's URI without credentials, for error messages.
    """
    shape = our_shard_shape(array)
    return None if shape is None else ShardDecoder(array, shown_uri, *shape)


def shard_encoder(array: zarr.Array) -> "ShardEncoder | None":
    """An encoder of whole shards of ``array``, or None when its layout is not the one we write."""
    shape = our_shard_shape(array)
    return None if shape is None else ShardEncoder(array, *shape)


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
    """The shard objects of one feature array in its store: shape facts and object keys.

    A shard of clips is ``n_parts`` objects along the variant axis (one unless
    the store was extended with variants, see the module docstring); part
    ``p`` holds the variants ``p * variants_per_shard`` up to the next part's.
    """

    def __init__(self, array: zarr.Array, clips_per_shard: int, variants_per_shard: int) -> None:
        self.clips_per_shard = clips_per_shard
        self.variants_per_shard = variants_per_shard
        self.n_variants, self.bands, self.frames = array.shape[1:]
        self.n_clips = array.shape[0]
        self.n_parts = -(-self.n_variants // variants_per_shard)
        self._store = array.store_path.store
        self._path = array.store_path.path
        self._metadata = array.metadata
        #: every inner chunk ends with the CRC32C of its Blosc frame (stores built since the read checks)
        self.chunk_crc = has_chunk_checksums(array)

    def key(self, shard_index: int, part: int = 0) -> str:
        """The store key of the object of shard ``shard_index`` holding variant part ``part``."""
        key = self._metadata.encode_chunk_key((shard_index, part, 0, 0))
        return f"{self._path}/{key}" if self._path else key

    def part_variants(self, part: int) -> range:
        """The variant columns (indices into the array's variant axis) that object part ``part`` holds."""
        first = part * self.variants_per_shard
        return range(first, min(first + self.variants_per_shard, self.n_variants))

    def parts(self, variants: Sequence[int] | None = None) -> list[int]:
        """The object parts holding ``variants`` (default: every variant), ascending."""
        if variants is None:
            return list(range(self.n_parts))
        return sorted({int(v) // self.variants_per_shard for v in variants})


class ShardEncoder(_ShardObjects):
    """Writes whole shards of one feature array as single objects (one per variant part),
    byte for byte what zarr-python's sharding codec writes for the same data (tested),
    without its per-chunk asyncio machinery (~5 ms of CPU per array per shard, which made
    store writes 10-15% of a build).

    Inner chunks are Blosc-compressed with numcodecs (the codec zarr-python
    calls, with the array's own settings) in Morton order; all-zero chunks
    (the fill value) are left out, as ``write_empty_chunks=False`` does; the
    index of ``(offset, nbytes)`` pairs and its CRC32C go at the end.
    """

    def __init__(self, array: zarr.Array, clips_per_shard: int, variants_per_shard: int) -> None:
        super().__init__(array, clips_per_shard, variants_per_shard)
        blosc = array.metadata.to_dict()["codecs"][0]["configuration"]["codecs"][1]["configuration"]
        self._cname = str(blosc["cname"]).encode()
        self._clevel = int(blosc["clevel"])
        self._shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[str(blosc["shuffle"])]
        self._blocksize = int(blosc.get("blocksize", 0))
        self._typesize = int(blosc.get("typesize", np.dtype(schema.FEATURE_DTYPE).itemsize))
        self._order = morton_order((clips_per_shard, variants_per_shard))

    def encode(self, block: np.ndarray, part: int = 0) -> bytes | None:
        """The object of variant part ``part`` of ``block`` (float16 ``(clips_in_shard, n_variants,
        bands, frames)``, the whole shard); None when every chunk of it is the fill value (no object)."""
        clips = block.shape[0]
        if block.shape[1:] != (self.n_variants, self.bands, self.frames) or block.dtype != np.float16 \
                or clips > self.clips_per_shard:
            raise StoreError(f"a shard of this array is float16 (<= {self.clips_per_shard}, {self.n_variants}, "
                             f"{self.bands}, {self.frames}); got {block.dtype} {block.shape}")
        first = part * self.variants_per_shard
        index = np.full((self.clips_per_shard, self.variants_per_shard, 2), _ABSENT, dtype="<u8")
        parts: list[bytes] = []
        offset = 0
        previous = numcodecs.blosc.use_threads
        numcodecs.blosc.use_threads = False  # one core per worker: Blosc threads would take the other's
        try:
            for c, v in self._order:
                # past the last clip or, in the last part of an extended store, past the last variant: never written
                if c >= clips or first + v >= self.n_variants:
                    continue
                chunk = block[c, first + v]
                # All bits zero is the fill value 0.0: no chunk (zarr-python keeps a chunk of -0.0 too).
                if not chunk.view(np.uint16).any():
                    continue
                data = numcodecs.blosc.compress(np.ascontiguousarray(chunk), self._cname, self._clevel,
                                                self._shuffle, self._blocksize, typesize=self._typesize)
                if self.chunk_crc:  # as Zarr's crc32c codec appends it: little-endian uint32
                    data += np.uint32(google_crc32c.value(data)).astype("<u4").tobytes()
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

    async def write(self, shard_index: int, block: np.ndarray, parts: Sequence[int] | None = None) -> None:
        """Encode and store the objects ``parts`` (default: every one) of shard ``shard_index``
        concurrently, deleting those whose chunks are all fill value."""
        async def write_part(part: int) -> None:
            key = self.key(shard_index, part)
            data = self.encode(block, part)
            if data is None:
                await self._store.delete(key)
            else:
                await self._store.set(key, default_buffer_prototype().buffer.from_bytes(data))

        await asyncio.gather(*(write_part(part) for part in (range(self.n_parts) if parts is None else parts)))


#: The problem of an object that is missing where its variants hold computed frames.
MISSING_OBJECT = "the object is missing (its shard holds computed frames)"


class ShardDecoder(_ShardObjects):
    """Reads and decodes whole shards of one feature array (see the module docstring)."""

    def __init__(self, array: zarr.Array, shown_uri: str, clips_per_shard: int, variants_per_shard: int) -> None:
        super().__init__(array, clips_per_shard, variants_per_shard)
        self.shown_uri = shown_uri
        #: False skips the per-chunk CRC32C (only ``pipeline bench loader`` does, to measure what it costs)
        self.verify_chunks = True
        self._chunk_bytes = self.bands * self.frames * np.dtype(schema.FEATURE_DTYPE).itemsize

    async def fetch(self, shard_index: int, variants: Sequence[int] | None = None) -> dict[int, np.ndarray | None]:
        """The bytes (uint8) of shard ``shard_index``'s objects that hold ``variants`` (default: all),
        fetched concurrently: part -> bytes, None for an object never written."""
        async def get(part: int) -> np.ndarray | None:
            buffer = await self._store.get(self.key(shard_index, part), prototype=default_buffer_prototype())
            return None if buffer is None else buffer.as_numpy_array().view(np.uint8)

        parts = self.parts(variants)
        return dict(zip(parts, await asyncio.gather(*(get(part) for part in parts))))

    def _where(self, shard_index: int, part: int) -> str:
        return f"shard object {self.key(shard_index, part)!r} of {self.shown_uri}"

    def damage(self, shard_index: int, problem: str, part: int = 0) -> StoreDamageError:
        """The error for the object of shard ``shard_index``, variant part ``part``, that shows
        ``problem`` (what was found); it carries the object's key."""
        return StoreDamageError(f"{self._where(shard_index, part)} is damaged: {problem}; "
                                + REPAIR_FIX.format(uri=self.shown_uri),
                                array=self._path, shard=shard_index, problem=problem,
                                key=self.key(shard_index, part))

    def check_present(self, shard_index: int, fetched: Mapping[int, np.ndarray | None],
                      valid: np.ndarray | None) -> None:
        """Refuse an object of ``fetched`` (from :meth:`fetch`) that was never written although
        its variants hold computed frames (a build writes every chunk it computed: the object is gone).

        Parameters
        ----------
        valid : int [shape=(clips_in_shard, n_variants)], the shard's ``valid_frames`` rows;
            None (unreadable) counts every missing object as damage.

        Raises
        ------
        StoreDamageError
            Naming the first such object.
        """
        for part, data in fetched.items():
            columns = self.part_variants(part)
            if data is None and (valid is None or (np.asarray(valid)[:, columns.start:columns.stop] > 0).any()):
                raise self.damage(shard_index, MISSING_OBJECT, part)

    def check(self, shard_index: int, data: np.ndarray, part: int = 0) -> np.ndarray:
        """Check the bytes of shard ``shard_index``'s object ``part`` against the checksums stored with them.

        The chunk index must pass its CRC32C and the chunks it lists must
        tile the bytes before it exactly (nothing cut off, nothing extra);
        each chunk must be one whole Blosc frame of the array's chunk size
        and, where the store has per-chunk checksums (:attr:`chunk_crc`),
        match its CRC32C. Every chunk of the object is checked, not only
        those a caller decodes: a reader of the original variant also stops
        on a damaged augmented one stored with it (the objects of an
        extension's variants are fetched only for those variants). CRC32C
        runs at several GB/s, a few percent of the decoding (README, "Read checks").

        Returns
        -------
        np.ndarray [shape=(clips_per_shard * variants_per_shard, 2)], uint64
            ``(offset, nbytes)`` per inner chunk, ``_ABSENT`` where never written.

        Raises
        ------
        StoreDamageError
            Naming the object, what is wrong (the clip and the variant of a
            damaged chunk, as indices into the array) and the fix.
        """
        n = self.clips_per_shard * self.variants_per_shard
        size = 16 * n + _CRC_BYTES
        if len(data) < size:
            raise self.damage(shard_index, f"the object is {len(data)} bytes, shorter than its chunk index "
                                           f"({size} bytes): cut short", part)
        raw = data[len(data) - size:len(data) - _CRC_BYTES]
        stored_crc = int(data[len(data) - _CRC_BYTES:].view("<u4")[0])
        if google_crc32c.value(raw) != stored_crc:
            raise self.damage(shard_index, "its chunk index fails its CRC32C checksum (the object was cut short "
                                           "or a byte of its index changed)", part)
        index = raw.view("<u8").reshape(n, 2)
        present = np.flatnonzero(index[:, 0] != _ABSENT)
        offsets = index[present, 0].astype(np.int64)
        sizes = index[present, 1].astype(np.int64)
        ends = offsets + sizes
        body = len(data) - size
        start = shard_index * self.clips_per_shard
        first = part * self.variants_per_shard

        def chunk(j: int) -> str:
            k = int(present[j])
            return f"chunk (clip {start + k // self.variants_per_shard}, variant {first + k % self.variants_per_shard})"

        past = np.flatnonzero(ends > body)
        if len(past):
            raise self.damage(shard_index, f"{chunk(past[0])} ends at byte {ends[past[0]]}, past the chunk data "
                                           f"({body} bytes)", part)
        if int(sizes.sum()) != body:
            raise self.damage(shard_index, f"its chunks hold {int(sizes.sum())} bytes but the object has {body} "
                                           "before its index (bytes added or lost)", part)
        trailer = _CRC_BYTES if self.chunk_crc else 0
        frames = sizes - trailer
        if self.chunk_crc and self.verify_chunks:
            # one C call per chunk; the stored values gathered at once (Python per chunk is the cost here)
            computed = np.fromiter((google_crc32c.value(data[o:e]) for o, e in
                                    zip(offsets.tolist(), (ends - trailer).tolist())), np.uint32, len(offsets))
            wrong = np.flatnonzero(computed != _u32(data, ends - trailer))
            if len(wrong):
                raise self.damage(shard_index, f"{chunk(wrong[0])} fails its CRC32C checksum (a byte of it changed)",
                                  part)
        # Blosc 1 header: uint32 uncompressed size at byte 4 and compressed size (the frame) at byte 12
        wrong = np.flatnonzero((frames < _BLOSC_HEADER) | (_u32(data, offsets + 4) != self._chunk_bytes)
                               | (_u32(data, offsets + 12) != frames))
        if len(wrong):
            raise self.damage(shard_index, f"{chunk(wrong[0])} is not a whole Blosc frame of the array's chunk size",
                              part)
        return index

    def decode(self, shard_index: int, fetched: Mapping[int, np.ndarray | None], out: np.ndarray,
               variants: Sequence[int] | None = None) -> np.ndarray:
        """Decode shard ``shard_index`` into ``out``, after :meth:`check` of each object holding ``variants``.

        Parameters
        ----------
        fetched : part -> the object's bytes, from :meth:`fetch` with the same
            ``variants`` (None: never written; see :meth:`check_present` for
            when that is damage).
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
            raise StoreError(f"decoding {self._where(shard_index, 0)} needs a C-contiguous float16 array of shape "
                             f"{expected}, got {out.dtype} {out.shape}")
        columns = range(self.n_variants) if variants is None else [int(v) for v in variants]
        unfetched = [part for part in self.parts(columns) if part not in fetched]
        if unfetched:
            raise StoreError(f"decoding variants {list(columns)} of {self._where(shard_index, unfetched[0])} needs "
                             f"that object's bytes: fetch the shard with the same variants")
        trailer = _CRC_BYTES if self.chunk_crc else 0
        chunks = out.reshape(clips * self.n_variants, -1).view(np.uint8)
        for part in self.parts(columns):
            first = part * self.variants_per_shard
            wanted = [v for v in columns if v // self.variants_per_shard == part]
            data = fetched[part]
            if data is None:  # nothing of this part written: every chunk is the fill value
                out[:, wanted] = 0
                continue
            index = self.check(shard_index, data, part)
            for c in range(clips):
                for v in wanted:
                    offset, nbytes = index[c * self.variants_per_shard + v - first]
                    k = c * self.n_variants + v
                    if offset == _ABSENT:
                        chunks[k] = 0
                        continue
                    numcodecs.blosc.decompress(data[int(offset):int(offset) + int(nbytes) - trailer], chunks[k])
        return out
