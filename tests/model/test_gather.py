"""The float16 window gather kernel (model/gather.py)."""

from __future__ import annotations

import numpy as np
import pytest

from model.gather import gather_into


def test_every_half_value_converts_like_numpy():
    every = np.arange(65536, dtype=np.uint16).view(np.float16).reshape(1, 1, 1, 65536)
    out = np.empty((1, 1, 65536), np.float32)
    gather_into({"x": every}, np.zeros((1, 3), np.int64), 65536, {"x": out})
    expected = every.astype(np.float32).ravel()
    got = out.ravel()
    nan = np.isnan(expected)
    assert nan.sum() == 2046  # every NaN bit pattern
    np.testing.assert_array_equal(got[~nan].view(np.uint32), expected[~nan].view(np.uint32))  # zeros' signs too
    assert np.isnan(got[nan]).all()


def test_float16_batches_copy_the_bits():
    rng = np.random.default_rng(1)
    source = rng.standard_normal((3, 2, 5, 40)).astype(np.float16)
    out = np.empty((2, 5, 10), np.float16)
    gather_into({"x": source}, np.array([[2, 1, 30], [0, 0, 0]]), 10, {"x": out})
    np.testing.assert_array_equal(out[0], source[2, 1, :, 30:40])
    np.testing.assert_array_equal(out[1], source[0, 0, :, :10])


def test_rows_land_at_their_positions_for_every_feature():
    rng = np.random.default_rng(2)
    arrays = {"a": rng.standard_normal((4, 3, 7, 100)).astype(np.float16),
              "b": rng.standard_normal((4, 3, 2, 100)).astype(np.float16)}
    rows = np.stack([rng.integers(0, 4, 50), rng.integers(0, 3, 50), rng.integers(0, 71, 50)], axis=1)
    positions = rng.permutation(60)[:50]
    out = {name: np.full((60, a.shape[2], 30), -1.0, np.float32) for name, a in arrays.items()}
    gather_into(arrays, rows, 30, out, positions=positions)
    for name, a in arrays.items():
        for (c, v, s), p in zip(rows, positions):
            np.testing.assert_array_equal(out[name][p], a[c, v, :, s:s + 30].astype(np.float32))
        untouched = np.setdiff1d(np.arange(60), positions)
        assert (out[name][untouched] == -1.0).all()


@pytest.mark.parametrize("rows, positions, match", [
    ([[0, 0, 71]], None, "start <= 70"),       # window runs past the frames
    ([[4, 0, 0]], None, "within"),             # clip out of range
    ([[0, 3, 0]], None, "within"),             # variant out of range
    ([[0, -1, 0]], None, ">= 0"),
    ([[0, 0, 0]], [5], "batch array"),         # position past the batch
    ([[0, 0]], None, r"\(n, 3\)"),
])
def test_bad_indices_are_refused_before_the_unchecked_kernel(rows, positions, match):
    source = np.zeros((4, 3, 2, 100), np.float16)
    out = {"x": np.zeros((5, 2, 30), np.float32)}
    with pytest.raises(ValueError, match=match):
        gather_into({"x": source}, np.array(rows), 30, out, positions=None if positions is None else np.array(positions))


def test_bad_arrays_are_refused():
    rows = np.zeros((1, 3), np.int64)
    with pytest.raises(ValueError, match="float16"):
        gather_into({"x": np.zeros((1, 1, 2, 40), np.float32)}, rows, 10, {"x": np.zeros((1, 2, 10), np.float32)})
    with pytest.raises(ValueError, match="C-contiguous float32/float16"):
        gather_into({"x": np.zeros((1, 1, 2, 40), np.float16)}, rows, 10, {"x": np.zeros((1, 2, 10), np.float64)})
    with pytest.raises(ValueError, match="C-contiguous 4-d"):
        gather_into({"x": np.zeros((1, 1, 40, 2), np.float16).transpose(0, 1, 3, 2)}, rows, 10,
                    {"x": np.zeros((1, 2, 10), np.float32)})
