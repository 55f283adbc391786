"""The store format: names, schema version, and the storage layout of features.

Layout of a store (one Zarr v3 group)::

    zarr.json                      root attributes (:mod:`stores.metadata`) + consolidated metadata
    mel, harmonic_mel, ...         feature arrays, float16 [clip, variant, <feature>_band, frame]
    valid_frames                   int32 [clip, variant]; 0 = variant not computed
    variant                        str [variant]; "original" first (an xarray coordinate)
    clip_id, label, label_index,   per-clip columns [clip], written once at creation
    split, fold, group, source
    duration_s, status, reason     per-clip build outcome [clip], written by the shard's task
    aug__<variant>__<param>        float64 [clip], the augmentation parameters drawn; NaN = absent
    shard_digest                   str [shard]; SHA-256 of the shard's content, "" = not built yet

Every array has ``dimension_names``, so ``xarray.open_zarr`` shows named
dimensions. Strings use Zarr v3's variable-length UTF-8 string dtype; no
object dtype and nothing pickled anywhere.

Chunking and sharding
---------------------
A chunk of a feature array is one clip-variant's frames
``(1, 1, bands, max_frames)``; a shard groups ``clips_per_shard`` clips and all
their variants ``(clips_per_shard, n_variants, bands, max_frames)``. Per-clip
outcome columns, ``valid_frames`` and the augmentation parameters are chunked
by ``clips_per_shard`` clips too, so exactly one build task writes each
object of those arrays: zarr-python loses data when two writers touch one
shard (zarr-python issues 3514 and 3682). Chunks that hold only the fill
value are not written (Zarr's ``write_empty_chunks=False``): augmented
variants of clips outside the augmented splits cost nothing on disk.

dtype and compression (measured, not assumed)
---------------------------------------------
dtype, measured on the features of a 30 s test signal (chords, noise bursts
and background noise), 5 variants, one 4-clip shard, default
:class:`~pipeline.config.FeatureConfig`; stored size relative to the valid
frames in raw float32 (the zero padding up to ``max_frames`` is included in
the stored size)::

    float32, Zstd level 3                      0.842
    float16, Zstd level 3                      0.378
    float16, Blosc zstd-5 + byte shuffle       0.330
    float16 rounded to 9 mantissa bits, same   0.295
    float16 rounded to 8 mantissa bits, same   0.270

Codec, on the same signal rounded to 9 bits, per clip of 5 variants (one
core of a busy shared 2-core machine, so the times are upper bounds)::

    Blosc zstd-5 + shuffle   0.300   encode 193 ms   decode 11 ms
    Blosc zstd-3 + shuffle   0.309   encode  73 ms   decode 11 ms
    Blosc zstd-1 + shuffle   0.325   encode  28 ms   decode 13 ms
    Blosc lz4hc-5 + shuffle  0.353   encode 153 ms   decode  3 ms
    Blosc lz4 + shuffle      0.393   encode   8 ms   decode  3 ms
    Zstd-3, no shuffle       0.348   encode  59 ms   decode 11 ms

The trainer decodes every chunk once per epoch, so decode speed matters as
much as size. Measured on shard 0 of a demo store of 30 s clips (16 clips,
48 clip-variants present), one core, size relative to raw float32 of the
valid frames, encode and decode of the whole shard::

    mantissa bits  codec                         size   encode  decode
    9              Blosc zstd-3 + byte shuffle   0.294  304 ms  53 ms
    9              Blosc lz4-5 + bitshuffle      0.354   35 ms  19 ms
    9              Blosc lz4hc-5 + bitshuffle    0.329  438 ms  18 ms
    8              Blosc zstd-3 + byte shuffle   0.261  339 ms  57 ms
    8              Blosc lz4-5 + bitshuffle      0.323   35 ms  21 ms
    8              Blosc lz4-9 + bitshuffle      0.315   46 ms  18 ms

We store float16 rounded to nearest with :data:`MANTISSA_BITS` = 8 of its 10
mantissa bits, compressed with Blosc(lz4, level 9, bit shuffle): 0.32 of raw
float32 (target 0.35), decoded three times faster and encoded six times
faster than zstd-3 with byte shuffle, at 0.02-0.03 more of the raw size.
Bit shuffle turns the zeroed low mantissa bits into runs of zero bytes that
even lz4 removes; byte shuffle with lz4 does not reach the target (0.38).
The relative error is at most 2**-9 (0.2 %): at most 0.1 dB on log-mel
values up to 48 dB, 0.75 on MFCCs up to 385, 2e-3 on CENS in [0, 1], far
below the 80 dB dynamic range and the estimation noise of any mel-band
energy. The values are plain IEEE float16 on disk, so any Zarr v3 reader
decodes them without a custom codec.

Read checks
-----------
No reader may compute on bytes that differ from what the build wrote. Two
ways were measured (``pipeline bench loader``, README "Read checks"):

- the per-shard SHA-256 digests the store already records: they cover the
  decoded content of every feature, variant and column of a shard at once,
  so a reader would have to decode all of them (evaluation decodes only the
  original variant, a fifth) and hash them: on 4-clip shards of 30 s clips,
  16.4 ms of CPU per shard on top of 13.5 ms to read and decode it;
- Zarr v3's ``crc32c`` codec after Blosc: 4 bytes per chunk, checked over
  the compressed bytes (about a third of the raw size) at several GB/s, and
  by every Zarr v3 reader (zarr-python checks it on decode).

New stores use the ``crc32c`` codec on every array (:data:`CHUNK_CHECKSUMS`);
the shard index already had its own. Checking it costs 0.4 ms of CPU per
4-clip shard (3% of its read and decode). It changes the stored bytes (4 bytes
per chunk) but not the fingerprint, which is derived from the decoded content
(:func:`stores.writer.shard_digest`), so stores of the same inputs built
before and after have equal fingerprints. Stores built before keep opening:
their reads check the chunk index CRC32C, that the chunks tile the object
and that each is a whole Blosc frame of the chunk size; ``pipeline verify``
recomputes their digests, which catches the rest.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stores.errors import StoreError

#: The un-augmented variant, first in every store's variant list.
ORIGINAL = "original"
#: Written into every store's root attributes; readers check it first.
FORMAT_NAME = "harmonic-feature-store"
#: Bumped when the layout changes incompatibly; readers refuse newer stores.
SCHEMA_VERSION = 1

#: Stored dtype of feature arrays.
FEATURE_DTYPE = "float16"
#: Mantissa bits kept when rounding features to float16 (float16 has 10).
MANTISSA_BITS = 8
#: Blosc compressor settings of feature arrays (see the module docstring).
BLOSC_CNAME = "lz4"
BLOSC_CLEVEL = 9
BLOSC_SHUFFLE = "bitshuffle"
#: Every chunk of a new store ends with its CRC32C (Zarr v3's ``crc32c`` codec; see "Read checks" above).
#: Stores built before have none and keep opening (their layout is read from each array's metadata).
CHUNK_CHECKSUMS = True
#: Default clips per shard: 16 clips x 5 variants of 30 s is ~7 MB stored,
#: a good object size for both local disks and object stores.
DEFAULT_CLIPS_PER_SHARD = 16

#: A collection smaller than this many default shards gets smaller shards, so
#: that up to 8 workers get 4 shards each and none sits idle while another
#: has a queue (17 clips were a shard of 16 and a shard of 1: one worker did
#: nearly all the work).
MIN_SHARDS = 32


def auto_clips_per_shard(n_clips: int) -> int:
    """Clips per shard for a new store of ``n_clips`` clips: :data:`DEFAULT_CLIPS_PER_SHARD`,
    or fewer so that there are at least :data:`MIN_SHARDS` shards (at least 1 clip).

    Depends on the clip count only, so a serial build, a cluster build and a
    resumed build of the same manifest choose the same layout.
    """
    return max(1, min(DEFAULT_CLIPS_PER_SHARD, -(-int(n_clips) // MIN_SHARDS)))


#: Per-clip columns written once, when the store is created, and their dtypes.
STATIC_COLUMNS: dict[str, str] = {
    "clip_id": "str",
    "label": "str",
    "label_index": "int32",
    "split": "str",
    "fold": "int32",
    "group": "str",
    "source": "str",
}
#: Per-clip columns written by the task that builds the clip's shard.
OUTCOME_COLUMNS: dict[str, str] = {
    "duration_s": "float64",
    "status": "str",
    "reason": "str",
}
#: Every per-clip column in the order of :attr:`FeatureStore.clips`.
CLIP_COLUMNS: tuple[str, ...] = (*STATIC_COLUMNS, *OUTCOME_COLUMNS)

#: Values of the ``status`` column.
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_PENDING = "pending"

VALID_FRAMES = "valid_frames"
VARIANT = "variant"
SHARD_DIGEST = "shard_digest"


def feature_dim(name: str) -> str:
    """Name of the band dimension of feature ``name`` ("mel" -> "mel_band")."""
    return f"{name}_band"


def aug_array_name(variant: str, param: str) -> str:
    """Array holding augmentation parameter ``param`` of ``variant``."""
    return f"aug__{variant}__{param}"


def round_mantissa(x: np.ndarray, bits: int = MANTISSA_BITS) -> np.ndarray:
    """Round to nearest (ties to even) keeping ``bits`` mantissa bits, as float16.

    Parameters
    ----------
    x : np.ndarray [any shape], float
    bits : int, 1..10

    Returns
    -------
    np.ndarray [same shape], float16
        Zeroed low mantissa bits make the byte-shuffled stream far more
        compressible; the relative error is at most ``2 ** -(bits + 1)`` in
        float16's normal range (|x| >= 6.1e-5; below, float16's absolute step
        of 6e-8 applies).
    """
    single = np.asarray(x, dtype=np.float32)
    drop = 23 - min(int(bits), 10)
    # Round once, from float32: rounding to float16 first and then to fewer
    # bits would round twice and could double the error at ties.
    u = np.ascontiguousarray(single).view(np.uint32)
    # No uint32 overflow: finite magnitudes are < 0x7F800000 and we add < 2**13.
    rounded = u + np.uint32((1 << (drop - 1)) - 1)
    rounded += (u >> np.uint32(drop)) & np.uint32(1)
    rounded &= np.uint32(0xFFFFFFFF ^ ((1 << drop) - 1))
    out = rounded.view(np.float32)
    # Non-finite inputs keep their value; a carry never turns a finite value into NaN.
    out = np.where(np.isfinite(single), out, single)
    with np.errstate(over="ignore"):
        return out.astype(np.float16)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How clips map to shards.

    n_clips : clips in the store (the clip axis).
    clips_per_shard : clips in one shard of every per-clip array.
    """

    n_clips: int
    clips_per_shard: int

    def __post_init__(self) -> None:
        if self.n_clips <= 0:
            raise StoreError(f"a store needs at least one clip, got n_clips={self.n_clips}")
        if isinstance(self.clips_per_shard, bool) or not isinstance(self.clips_per_shard, int) \
                or self.clips_per_shard <= 0:
            raise StoreError(f"clips_per_shard={self.clips_per_shard!r} must be a positive integer")

    @property
    def n_shards(self) -> int:
        return -(-self.n_clips // self.clips_per_shard)

    def shard_range(self, shard_index: int) -> tuple[int, int]:
        """``(start, stop)`` clip indices of shard ``shard_index``."""
        if not 0 <= shard_index < self.n_shards:
            raise StoreError(f"shard index {shard_index} out of range 0..{self.n_shards - 1}")
        start = shard_index * self.clips_per_shard
        return start, min(start + self.clips_per_shard, self.n_clips)

#: The clip id of a padding row: an update (stores.updates) closes the last shard of a store before it grew
#: with such rows, so that no existing shard object is rewritten; they are never built.
PADDING_CLIP_ID = ""
