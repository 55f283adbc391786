"""The direct reader of per-clip columns (stores.columns) gives zarr-python's values, and
leaves every layout or object it cannot vouch for to zarr-python."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from stores.columns import read_column

COLUMN_CODECS = {"compressors": [ZstdCodec(level=0, checksum=False), Crc32cCodec()]}


@pytest.fixture
def group(tmp_path):
    return zarr.open_group(tmp_path / "g.zarr", mode="w", zarr_format=3)


def _as_plain(values: np.ndarray) -> np.ndarray:
    return values.astype(object).astype(str) if values.dtype.kind in "OUT" else values


@pytest.mark.parametrize("n, step", [(25, 4), (16, 16), (3, 8), (40, 1)])
def test_values_equal_zarr_pythons_with_unwritten_chunks(group, n, step):
    rng = np.random.default_rng(n)
    status = group.create_array("status", shape=(n,), chunks=(step,), dtype=str, fill_value="pending",
                                **COLUMN_CODECS)
    duration = group.create_array("duration_s", shape=(n,), chunks=(step,), dtype="float64", fill_value=np.nan,
                                  **COLUMN_CODECS)
    written = slice(0, max(1, n - step))  # the last chunk(s) never written: the fill value
    status[written] = np.array([rng.choice(["ok", "failed", "ünïcode ✓", ""]) for _ in range(written.stop)])
    duration[written] = rng.standard_normal(written.stop)
    for array in (status, duration):
        direct = read_column(array)
        assert direct is not None and direct.shape == (n,)
        np.testing.assert_array_equal(_as_plain(direct), _as_plain(array[:]))


def test_other_layouts_and_damaged_objects_go_to_zarr_python(group, tmp_path):
    plain = group.create_array("plain", shape=(8,), chunks=(4,), dtype="float64")  # zarr's default codecs
    plain[:] = 1.0
    two_d = group.create_array("valid", shape=(4, 2), chunks=(2, 2), dtype="int32", **COLUMN_CODECS)
    two_d[:] = 3
    assert read_column(plain) is None and read_column(two_d) is None
    column = group.create_array("status", shape=(8,), chunks=(4,), dtype=str, fill_value="", **COLUMN_CODECS)
    column[:] = np.array(["ok"] * 8)
    chunk = tmp_path / "g.zarr" / "status" / "c" / "1"
    data = bytearray(chunk.read_bytes())
    data[2] ^= 0x40
    chunk.write_bytes(bytes(data))
    assert read_column(column) is None  # its CRC32C fails: zarr-python raises and the reader names the chunk
