"""Direct shard decoding (stores/shards.py) against zarr-python, the reference reader."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from pipeline.errors import StoreError
from stores import open_store
from stores.shards import shard_decoder
from tests.stores.test_store import build, small_config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    uri = tmp_path_factory.mktemp("shards") / "s.zarr"
    build(uri, small_config(), n=8, cps=3)  # shards of 3, 3 and 2 clips; clip 3 failed; test clips lack variants
    return uri


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype == np.float16 and a[name].shape == b[name].shape
        assert a[name].tobytes() == b[name].tobytes(), name


def test_every_shard_matches_zarr(built):
    store = open_store(built)
    assert all(store._decoder(name) is not None for name in store.feature_bands)  # the fast path is taken
    for shard in range(len(store.shards)):
        assert_same(store.read_shard(shard), store.read_shard(shard, engine="zarr"))
        subset = store.read_shard(shard, features=["cens"], variants=[2, 0])
        assert_same(subset, store.read_shard(shard, features=["cens"], variants=[0, 2], engine="zarr"))
        assert not subset["cens"][:, 1].any()  # a variant not asked for stays zero in a new array


def test_decodes_into_given_buffers_and_zero_fills_absent_chunks(built):
    store = open_store(built)
    expected = store.read_shard(0, engine="zarr")
    shape = expected["mel"].shape
    dirty = {"mel": np.full(shape, 7.0, np.float16)}
    got = store.read_shard(0, features=["mel"], variants=[0, 1], out=dirty)
    assert got["mel"] is dirty["mel"]
    np.testing.assert_array_equal(got["mel"][:, :2], expected["mel"][:, :2])
    assert not got["mel"][0, 1].any()  # clip 0 (test split) has no "gain" chunk: zero, not the stale 7s
    assert (got["mel"][:, 2] == 7.0).all()  # the variant not asked for is left alone
    with pytest.raises(StoreError, match="C-contiguous float16 array of shape"):
        store.read_shard(0, features=["mel"], out={"mel": np.zeros(shape, np.float32)})


def test_missing_shard_object_reads_as_fill_value(tmp_path):
    uri = tmp_path / "s.zarr"
    build(uri, small_config(), n=8, cps=3, stop_after=1)
    store = open_store(uri, allow_incomplete=True)
    unbuilt = store.read_shard(2)
    assert_same(unbuilt, store.read_shard(2, engine="zarr"))
    assert not any(a.any() for a in unbuilt.values())


def damaged_copy(built, tmp_path):
    copy = tmp_path / "copy.zarr"
    shutil.copytree(built, copy)
    return copy, copy / "mel" / "c" / "1" / "0" / "0" / "0"


def test_damaged_index_is_reported_with_the_object(built, tmp_path):
    copy, shard = damaged_copy(built, tmp_path)
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # inside the index, before its CRC32C
    shard.write_bytes(bytes(data))
    store = open_store(copy)
    with pytest.raises(StoreError, match=r"shard 1 of array 'mel' \(object 'mel/c/1/0/0/0', clips 3-5 "
                       r"\(c03, c04, c05\)\) is damaged: its chunk index fails its CRC32C.*pipeline verify"):
        store.read_shard(1, features=["mel"])
    assert store.read_shard(0, features=["mel"])["mel"].any()  # other shards still read


def test_damaged_chunk_is_reported(built, tmp_path):
    copy, shard = damaged_copy(built, tmp_path)
    data = bytearray(shard.read_bytes())
    data[4:8] = (123).to_bytes(4, "little")  # first chunk (clip 3 failed: clip 4) Blosc header: wrong size
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"chunk \(clip 4, variant 0\) fails its CRC32C checksum"):
        open_store(copy).read_shard(1, features=["mel"])


def test_truncated_object_is_reported(built, tmp_path):
    copy, shard = damaged_copy(built, tmp_path)
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(StoreError, match="shorter than its chunk index"):
        open_store(copy).read_shard(1, features=["mel"])


@pytest.mark.parametrize("layout", ["unsharded", "zstd", "index-first", "float32", "clip-chunks"])
def test_other_layouts_fall_back_to_zarr(tmp_path, layout):
    shape, dtype = (4, 2, 8, 50), "float16"
    kwargs = dict(chunks=(1, 1, 8, 50), shards=(2, 2, 8, 50), compressors=[BloscCodec(cname="lz4")])
    if layout == "unsharded":
        kwargs = dict(chunks=(1, 1, 8, 50), compressors=[BloscCodec(cname="lz4")])
    elif layout == "zstd":
        kwargs["compressors"] = [ZstdCodec()]
    elif layout == "float32":
        dtype = "float32"
    elif layout == "clip-chunks":
        kwargs["chunks"] = (1, 2, 8, 50)
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=shape, dtype=dtype, fill_value=0, **kwargs)
    if layout == "index-first":
        from zarr.codecs import BytesCodec, ShardingCodec

        array = zarr.create_array(str(tmp_path / "b.zarr"), shape=shape, dtype=dtype, fill_value=0,
                                  chunks=(2, 2, 8, 50), serializer=ShardingCodec(
                                      chunk_shape=(1, 1, 8, 50), codecs=[BytesCodec(), BloscCodec(cname="lz4")],
                                      index_location="start"), compressors=None)
    assert shard_decoder(array, "test") is None
    # and the layout we write is accepted
    ours = zarr.create_array(str(tmp_path / "c.zarr"), shape=shape, dtype="float16", fill_value=0,
                             chunks=(1, 1, 8, 50), shards=(2, 2, 8, 50), compressors=[BloscCodec(cname="lz4")])
    assert shard_decoder(ours, "test") is not None


def test_engine_and_variants_checked(built):
    store = open_store(built)
    with pytest.raises(StoreError, match="engine="):
        store.read_shard(0, engine="fast")
    with pytest.raises(StoreError, match="variant columns"):
        store.read_shard(0, variants=[5])


@pytest.mark.parametrize("clips_per_shard, n_clips", [(16, 37), (7, 7), (1, 3), (5, 12)])
def test_shard_encoder_writes_exactly_what_zarr_python_writes(tmp_path, clips_per_shard, n_clips):
    """Byte for byte, including absent (all-zero) chunks, a -0.0 chunk and a partial last shard."""
    from zarr.codecs import BloscCodec
    from zarr.core.sync import sync

    from stores import schema as store_schema
    from stores.shards import shard_encoder

    group = zarr.open_group(tmp_path / "g", mode="w", zarr_format=3)
    spec = dict(shape=(n_clips, 5, 13, 100), chunks=(1, 1, 13, 100), shards=(clips_per_shard, 5, 13, 100),
                dtype="float16", fill_value=0.0, config={"write_empty_chunks": False},
                compressors=[BloscCodec(cname="lz4", clevel=9, shuffle="bitshuffle")])
    by_zarr, by_us = group.create_array("z", **spec), group.create_array("u", **spec)
    x = store_schema.round_mantissa(np.random.default_rng(clips_per_shard).standard_normal(spec["shape"]) * 10)
    x[:, 3] = 0.0
    x[min(1, n_clips - 1), 1] = -0.0
    by_zarr[:] = x
    encoder = shard_encoder(by_us)
    assert encoder is not None
    n_shards = -(-n_clips // clips_per_shard)
    for i in range(n_shards):
        sync(encoder.write(i, x[i * clips_per_shard:(i + 1) * clips_per_shard]))
    for i in range(n_shards):
        ours = (tmp_path / "g" / "u" / "c" / str(i) / "0" / "0" / "0").read_bytes()
        theirs = (tmp_path / "g" / "z" / "c" / str(i) / "0" / "0" / "0").read_bytes()
        assert ours == theirs, i
    np.testing.assert_array_equal(by_us[:].view(np.uint16), x.view(np.uint16))
