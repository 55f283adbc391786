"""Direct shard decoding (stores/shards.py) against zarr-python, the reference reader."""

from __future__ import annotations

import dataclasses
import pickle
import re
import shutil

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.core.sync import sync

from pipeline.config import AugmentConfig, PipelineConfig
from pipeline.errors import StoreDamageError, StoreError
from stores import open_store, open_writer
from stores.shards import shard_decoder
from tests.stores.damage import cut_short, flip_byte, remove
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


@pytest.mark.parametrize("clips_per_shard, n_clips, variants_per_shard",
                         [(16, 37, 5), (7, 7, 5), (1, 3, 5), (5, 12, 5), (5, 12, 3), (3, 7, 2), (4, 4, 4)])
def test_shard_encoder_writes_exactly_what_zarr_python_writes(tmp_path, clips_per_shard, n_clips, variants_per_shard):
    """Byte for byte, including absent (all-zero) chunks, a -0.0 chunk, a partial last shard and,
    with fewer variants per shard than variants (an extended store), every object along the variant
    axis, the last one partly outside the array."""
    from zarr.codecs import BloscCodec

    from stores import schema as store_schema
    from stores.shards import shard_encoder

    group = zarr.open_group(tmp_path / "g", mode="w", zarr_format=3)
    spec = dict(shape=(n_clips, 5, 13, 100), chunks=(1, 1, 13, 100),
                shards=(clips_per_shard, variants_per_shard, 13, 100),
                dtype="float16", fill_value=0.0, config={"write_empty_chunks": False},
                compressors=[BloscCodec(cname="lz4", clevel=9, shuffle="bitshuffle")])
    by_zarr, by_us = group.create_array("z", **spec), group.create_array("u", **spec)
    x = store_schema.round_mantissa(np.random.default_rng(clips_per_shard).standard_normal(spec["shape"]) * 10)
    x[:, 3] = 0.0
    x[:clips_per_shard, 4] = 0.0  # with 3 or 4 variants per shard: shard 0's second object is all fill value
    x[min(1, n_clips - 1), 1] = -0.0
    by_zarr[:] = x
    encoder = shard_encoder(by_us)
    assert encoder is not None and encoder.n_parts == -(-5 // variants_per_shard)
    n_shards = -(-n_clips // clips_per_shard)
    for i in range(n_shards):
        sync(encoder.write(i, x[i * clips_per_shard:(i + 1) * clips_per_shard]))
    for i in range(n_shards):
        for part in range(encoder.n_parts):
            ours = tmp_path / "g" / "u" / "c" / str(i) / str(part) / "0" / "0"
            theirs = tmp_path / "g" / "z" / "c" / str(i) / str(part) / "0" / "0"
            assert ours.exists() == theirs.exists(), (i, part)
            assert not ours.exists() or ours.read_bytes() == theirs.read_bytes(), (i, part)
    if variants_per_shard in (3, 4):
        assert not (tmp_path / "g" / "u" / "c" / "0" / "1" / "0" / "0").exists()
    np.testing.assert_array_equal(by_us[:].view(np.uint16), x.view(np.uint16))
    decoder = shard_decoder(by_us, "test")
    for i in range(n_shards):
        got = np.full(x[i * clips_per_shard:(i + 1) * clips_per_shard].shape, 7.0, np.float16)
        decoder.decode(i, sync(decoder.fetch(i)), got)
        np.testing.assert_array_equal(got.view(np.uint16), x[i * clips_per_shard:(i + 1) * clips_per_shard]
                                      .view(np.uint16))


# -- stores extended with variants: a shard is several objects along the variant axis ---------------------------

def extend(uri, variants: tuple[str, ...], seed: int, only: set[int] | None = None) -> None:
    """Append variants to the store at ``uri`` as ``build --update`` does (:func:`stores.updates.extend_store`),
    with synthetic features (shorter than max_frames: zero tails) for the ok train clips (or the clip
    indices ``only``), none for the others."""
    from pipeline.config import AUGMENTATIONS
    from stores import ClipResult
    from stores.updates import appended_variants, extend_store, write_extension

    cfg = dataclasses.replace(small_config(), augment=AugmentConfig(variants=variants))
    store = open_store(uri)
    added = appended_variants(store.metadata, cfg)
    assert added, variants
    clips = store.clips
    n_augmented = int(((clips["status"] == "ok") & (clips["split"] == "train")).sum())
    writer = extend_store(uri, config=cfg, aug_params={v: sorted(AUGMENTATIONS[v].param_names) for v in added},
                          n_augmented=n_augmented)
    rng = np.random.default_rng(seed)
    for shard in writer.pending_shards():
        start, stop = writer.layout.shard_range(shard)
        results = []
        for c in range(start, stop):
            gets = clips["status"].iat[c] == "ok" and clips["split"].iat[c] == "train" and (only is None or c in only)
            feats = {v: {name: (rng.standard_normal((bands, cfg.max_frames - int(rng.integers(1, 20)))) * 20)
                         .astype(np.float32) for name, bands in cfg.features.feature_bands().items()}
                     for v in added} if gets else {}
            params = {v: {p: float(rng.uniform(0, 1)) for p in AUGMENTATIONS[v].param_names} for v in added} \
                if gets else {}
            results.append(ClipResult("ok", features=feats, params=params))
        write_extension(writer, shard, results, added)
    writer.finalize()


def grow(uri, n_new: int, seed: int) -> None:
    """Append ``n_new`` clips to the store at ``uri`` (:func:`stores.updates.grow_store`), its own config."""
    from stores import ClipResult
    from stores.updates import grow_store
    from tests.stores.test_store import columns, fake_result

    store = open_store(uri)
    cfg = PipelineConfig.from_dict(store.config)
    stored = int((store.clips["clip_id"] != "").sum())
    new = {name: values[stored:] for name, values in columns(stored + n_new).items()}
    writer = grow_store(uri, config=cfg, clips=new)
    first = writer.layout.n_clips - n_new  # after the padding rows that close the old last shard
    rng = np.random.default_rng(seed)
    for shard in writer.pending_shards():
        start, stop = writer.layout.shard_range(shard)
        results = [fake_result(cfg, stored + c - first, new["split"][c - first], rng) for c in range(start, stop)]
        open_writer(writer.target_uri).write_shard(shard, results)
    writer.finalize()


def object_path(uri, key: str):
    """The file holding logical key ``key`` in the newest version of the folder store ``uri`` (an update
    writes its objects under ``data/<transaction>/``, see :mod:`stores.versions`)."""
    from stores.versions import location_repository

    repo = location_repository(uri, None, writable=False)
    return uri / repo.manifest(repo.resolve(None))[key]


#: name -> how the store was made from :func:`build` (8 clips, shards of 3, variants original, gain, time_stretch)
EXTENDED = {
    "extended once": lambda uri: extend(uri, ("gain", "time_stretch", "noise"), 1),
    "extended twice": lambda uri: (extend(uri, ("gain", "time_stretch", "noise"), 1),
                                   extend(uri, ("gain", "time_stretch", "noise", "pitch_shift"), 2)),
    "grown, then extended": lambda uri: (grow(uri, 5, 3), extend(uri, ("gain", "time_stretch", "noise"), 1)),
    "extended, then grown": lambda uri: (extend(uri, ("gain", "time_stretch", "noise"), 1), grow(uri, 5, 3)),
}


@pytest.fixture(scope="module", params=list(EXTENDED))
def extended(request, built, tmp_path_factory):
    uri = tmp_path_factory.mktemp("extended") / "s.zarr"
    shutil.copytree(built, uri)
    EXTENDED[request.param](uri)
    return uri


def test_extended_stores_are_read_by_the_fast_decoder_as_by_zarr(extended):
    store = open_store(extended)
    n_variants = len(store.variants)
    assert n_variants in (4, 5)
    for name in store.feature_bands:
        decoder = store._decoder(name)
        assert decoder is not None and decoder.variants_per_shard == 3 and decoder.n_parts == 2
        assert store.array(name).shards[1] == 3  # the layout the update leaves: variants in a second object
    for shard in range(len(store.shards)):
        whole = store.read_shard(shard)
        assert_same(whole, store.read_shard(shard, engine="zarr"))
        for variants in ([0], [n_variants - 1], [2, 3], [1, n_variants - 1]):
            subset = store.read_shard(shard, variants=variants)
            assert_same(subset, store.read_shard(shard, variants=variants, engine="zarr"))
            for v in range(n_variants):
                expected = whole["mel"][:, v] if v in variants else 0
                np.testing.assert_array_equal(subset["mel"][:, v], expected)
    train = store.select(split="train")
    assert store.read_shard(int(train[0]) // store.clips_per_shard)["mel"][:, 3].any()  # the new variant is there


def test_extended_stores_verify(extended):
    from stores.checks import verify_store
    from stores.integrity import find_damage

    assert find_damage(open_store(extended), engine="auto") == []
    assert verify_store(extended)["ok"]


def test_reading_the_original_variant_fetches_only_the_first_objects(built, tmp_path):
    uri = tmp_path / "s.zarr"
    shutil.copytree(built, uri)
    extend(uri, ("gain", "time_stretch", "noise"), 1)
    store = open_store(uri)
    fetched = sync(store._decoder("mel").fetch(1, [0, 2]))
    assert list(fetched) == [0]
    object_path(uri, "mel/c/1/1/0/0").unlink()  # the extension object of shard 1: not read for variant 0
    assert_same(store.read_shard(1, variants=[0]), store.read_shard(1, variants=[0], engine="zarr"))
    with pytest.raises(StoreDamageError, match=r"'mel/c/1/1/0/0'.* the object is missing"):
        store.read_shard(1, variants=[0, 3])


def test_a_missing_extension_object_without_frames_reads_as_fill_value(built, tmp_path):
    uri = tmp_path / "s.zarr"
    shutil.copytree(built, uri)
    extend(uri, ("gain", "time_stretch", "noise"), 1, only={1, 2})  # only shard 0 gets the new variant
    store = open_store(uri)
    with pytest.raises(KeyError):  # the update wrote no object there
        object_path(uri, "mel/c/1/1/0/0")
    assert_same(store.read_shard(1), store.read_shard(1, engine="zarr"))
    assert store.read_shard(0)["mel"][1:3, 3].any()


#: name -> (damage to the object at a store key, what the reader and verify name)
EXTENSION_DAMAGE = {
    "flipped byte in chunk data": (lambda objects, key: flip_byte(objects, key, 200),
                                   r"chunk \(clip 4, variant 3\) fails its CRC32C checksum"),
    "flipped byte in the index": (lambda objects, key: flip_byte(objects, key, -12),
                                  "its chunk index fails its CRC32C checksum"),
    "cut short": (cut_short, "its chunk index fails its CRC32C checksum"),
    "cut shorter than the index": (lambda objects, key: cut_short(objects, key, keep=0.001),
                                   r"the object is \d+ bytes, shorter than its chunk index \(148 bytes\)"),
    "missing": (remove, r"the object is missing \(its shard holds computed frames\)"),
}


@pytest.mark.parametrize("case", list(EXTENSION_DAMAGE))
def test_damage_to_an_extension_object_is_named_like_damage_to_a_first_object(built, tmp_path, case):
    from stores.checks import verify_store
    from stores.integrity import find_damage
    from tests.stores.damage import folder_objects

    damage, named = EXTENSION_DAMAGE[case]
    uri = tmp_path / "s.zarr"
    shutil.copytree(built, uri)
    extend(uri, ("gain", "time_stretch", "noise"), 1)
    damage(folder_objects(uri), str(object_path(uri, "mel/c/1/1/0/0").relative_to(uri)))
    store = open_store(uri)
    with pytest.raises(StoreDamageError, match=rf"shard 1 of array 'mel' \(object 'mel/c/1/1/0/0', clips 3-5 "
                       rf"\(c03, c04, c05\)\) is damaged: {named}.*pipeline verify") as caught:
        store.read_shard(1, features=["mel"])
    # the key travels with the error, also from a DataLoader worker (pickled)
    assert caught.value.key == pickle.loads(pickle.dumps(caught.value)).key == "mel/c/1/1/0/0"
    with pytest.raises(StoreDamageError, match="'mel/c/1/1/0/0'"):
        store.read_shard(1, variants=[3])
    # what does not need the damaged object still reads: the stored variants, the other shards
    assert_same(store.read_shard(1, variants=[0, 1, 2]), store.read_shard(1, variants=[0, 1, 2], engine="zarr"))
    assert_same(store.read_shard(0), store.read_shard(0, engine="zarr"))
    found = find_damage(store, engine="auto")
    assert [(d.array, d.shard, d.key) for d in found] == [("mel", 1, "mel/c/1/1/0/0")]
    assert re.search(named, found[0].problem)
    report = verify_store(uri)
    assert not report["ok"] and "'mel/c/1/1/0/0'" in str(report)
