"""The streaming loader: every train window once per epoch, no leakage, normalisation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from model.data import (ThreadedLoader, WindowStream, gather_windows, iter_clip_windows, normalisation_stats, window_counts,
                        window_index)
from pipeline.errors import StoreError
from tests.model.fakes import FakeStore

FEATURES = ("mel", "cens")


@pytest.fixture(scope="module")
def store():
    return FakeStore()


def expected_train_windows(store):
    clips = store.select(split="train")
    rows = window_index(store.valid_frames, clips, range(len(store.variants)), store.window_frames,
                        store.window_hop_frames)
    return {tuple(r) for r in rows.tolist()}, len(rows)


def test_window_counts():
    assert window_counts(np.array([0, 50, 130, 194, 195, 259]), 130, 65).tolist() == [0, 1, 1, 1, 2, 2]


def test_window_index_rows():
    valid = np.array([[259, 0], [200, 300]])
    rows = window_index(valid, np.array([0, 1]), [0, 1], 130, 65)
    assert rows.tolist() == [[0, 0, 0], [0, 0, 65], [1, 0, 0], [1, 0, 65], [1, 1, 0], [1, 1, 65], [1, 1, 130]]


def test_gather_matches_slicing(store):
    arrays = store.read_shard(0, features=FEATURES)
    rows = np.array([[0, 0, 65], [1, 1, 0], [2, 0, 3]])
    got = gather_windows(arrays, rows, 130)
    for name in FEATURES:
        assert got[name].dtype == np.float32 and got[name].shape == (3, store.feature_bands[name], 130)
        for k, (c, v, s) in enumerate(rows):
            np.testing.assert_array_equal(got[name][k], arrays[name][c, v, :, s:s + 130].astype(np.float32))


@pytest.mark.parametrize("workers, dtype", [(0, "float32"), (2, "float32"), (0, "float16")])
def test_every_train_window_exactly_once(store, workers, dtype):
    # batches of 5 from groups of 2 shards: many batches take windows from two groups
    ds = WindowStream(store, split="train", features=FEATURES, batch_size=5, buffer_shards=2, seed=3,
                      with_keys=True, dtype=dtype)
    ds.set_epoch(1)
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    seen, labels = [], []
    for x, y, keys in loader:
        assert x["mel"].shape[1:] == (128, store.window_frames) and x["mel"].dtype == getattr(torch, dtype)
        assert x["mel"].shape[0] == len(y) <= 5
        seen += [tuple(k) for k in keys.tolist()]
        labels += y.tolist()
        # every window's content is the stored slice of its clip-variant
        for k, (c, v, s) in enumerate(keys.tolist()):
            for name in FEATURES:
                np.testing.assert_array_equal(x[name][k].numpy(),
                                              store._data[name][c, v, :, s:s + store.window_frames].astype(dtype))
    expected, n = expected_train_windows(store)
    assert len(seen) == n and set(seen) == expected
    variants = {k[1] for k in seen}
    assert variants == set(range(len(store.variants)))  # augmented variants are used for training
    assert labels == [int(store.clips.label_index[k[0]]) for k in seen]


def test_no_test_or_val_window_reaches_training(store):
    ds = WindowStream(store, split="train", features=FEATURES, batch_size=8, with_keys=True)
    held_out = set(store.select(split="test")) | set(store.select(split="val"))
    failed = set(np.flatnonzero(store.clips.status != "ok"))
    for _, _, keys in ds:
        clips = set(keys[:, 0].tolist())
        assert not clips & held_out and not clips & failed


def test_eval_split_uses_original_only_and_ranks_partition(store):
    keys = []
    for rank in range(2):
        ds = WindowStream(store, split="test", features=FEATURES, batch_size=4, shuffle=False, with_keys=True,
                          rank=rank, world_size=2)
        keys.append({tuple(k) for _, _, kk in ds for k in kk.tolist()})
    assert not keys[0] & keys[1]
    everything = keys[0] | keys[1]
    assert {k[1] for k in everything} == {0}
    assert {k[0] for k in everything} == set(store.select(split="test"))


def test_shuffle_is_seeded_per_epoch(store):
    def order(epoch, seed=0):
        ds = WindowStream(store, split="train", features=("cens",), batch_size=7, seed=seed, with_keys=True)
        ds.set_epoch(epoch)
        return [tuple(k) for _, _, kk in ds for k in kk.tolist()]

    assert order(0) == order(0)
    assert order(0) != order(1)


def test_clip_iterator_and_stats(store):
    test = store.select(split="test")
    got = dict(iter_clip_windows(store, test, FEATURES))
    assert set(got) == set(test)
    for clip, feats in got.items():
        n = window_counts(store.valid_frames[clip, :1], store.window_frames, store.window_hop_frames)[0]
        assert feats["mel"].shape == (n, 128, store.window_frames)
    train = store.select(split="train")
    stats = normalisation_stats(store, train, FEATURES)
    frames = np.concatenate([store._data["mel"][c, 0, :, :store.valid_frames[c, 0]].astype(np.float64)
                             for c in train], axis=1)
    np.testing.assert_allclose(stats["mel"][0], frames.mean(axis=1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(stats["mel"][1], frames.std(axis=1), rtol=1e-4)


def test_persistent_workers_follow_the_epochs(store):
    def epoch_orders(persistent):
        ds = WindowStream(store, split="train", features=("cens",), batch_size=4, seed=5, with_keys=True)
        ds.set_epoch(2)
        loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=persistent)
        orders = []
        for epoch in (2, 3):
            ds.set_epoch(epoch)  # unseen by persistent workers; they count epochs themselves
            orders.append([tuple(k) for _, _, kk in loader for k in kk.tolist()])
        return orders

    fresh, persistent = epoch_orders(False), epoch_orders(True)
    assert fresh[0] != fresh[1]
    assert persistent == fresh


def keys_of(batches):
    return [tuple(k) for _, _, kk in batches for k in kk.tolist()]


def test_threaded_loader_matches_dataloader_workers(store):
    def stream():
        ds = WindowStream(store, split="train", features=FEATURES, batch_size=4, buffer_shards=1, seed=7,
                          with_keys=True)
        ds.set_epoch(3)
        return ds

    threaded = ThreadedLoader(stream(), threads=2)
    got = list(threaded)
    assert keys_of(got) == keys_of(DataLoader(stream(), batch_size=None, num_workers=2))
    expected, n = expected_train_windows(store)
    assert len(keys_of(got)) == n and set(keys_of(got)) == expected
    for x, _, keys in got:  # contents, not only keys
        c, v, s = keys[-1].tolist()
        np.testing.assert_array_equal(x["mel"][-1].numpy(),
                                      store._data["mel"][c, v, :, s:s + store.window_frames].astype(np.float32))
    assert keys_of(ThreadedLoader(stream(), threads=0)) == keys_of(stream())
    # a second pass without set_epoch is the next epoch, as with the stream itself
    ds = stream()
    loader = ThreadedLoader(ds, threads=2)
    first, second = keys_of(loader), keys_of(loader)
    assert first != second and sorted(first) == sorted(second)
    ds.set_epoch(3)
    assert keys_of(loader) == first


def test_threaded_loader_stops_its_threads_when_the_consumer_stops(store):
    before = threading.active_count()
    loader = ThreadedLoader(WindowStream(store, split="train", features=FEATURES, batch_size=2), threads=2, prefetch=1)
    iterator = iter(loader)
    next(iterator)
    iterator.close()  # e.g. a `break` out of the training loop
    assert threading.active_count() == before


def test_threaded_loader_raises_a_threads_error(store):
    class Broken(FakeStore):
        def read_shard(self, shard_index, *args, **kwargs):
            if shard_index == 1:
                raise StoreError("shard object 'mel/c/1/0/0/0' is damaged")
            return super().read_shard(shard_index, *args, **kwargs)

    loader = ThreadedLoader(WindowStream(Broken(), split="train", features=FEATURES, batch_size=2), threads=2)
    before = threading.active_count()
    with pytest.raises(StoreError, match="damaged"):
        list(loader)
    assert threading.active_count() == before
