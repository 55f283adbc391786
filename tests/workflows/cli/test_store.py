"""``pipeline info``, ``verify`` and ``export`` on small synthetic stores."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from workflows.cli import main
from stores import open_store
from stores.checks import store_info, verify_store
from tests.stores.test_store import LABELS, build, small_config


@pytest.fixture
def store_uri(tmp_path) -> Path:
    uri = tmp_path / "s.zarr"
    build(uri, small_config())
    return uri


def test_info_json(store_uri, capsys):
    assert main(["info", str(store_uri), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["complete"] and info["n_clips"] == 7
    assert info["status"] == {"ok": 6, "failed": 1}
    assert info["ok_per_split_and_label"] == {"train": {"jazz": 2, "rock": 2}, "test": {"jazz": 2}}
    assert info["clips_per_variant"] == {"original": 6, "gain": 4, "time_stretch": 4}
    assert info["features"]["mel"]["dims"] == ["clip", "variant", "mel_band", "frame"]
    assert info["features"]["mel"]["shards"][0] == 3
    assert info["nbytes_stored"] > 0 and 0 < info["fraction_of_float32"] < 1
    assert info["provenance"]["libraries"]["zarr"]


def test_info_text(store_uri, capsys):
    assert main(["info", str(store_uri)]) == 0
    text = capsys.readouterr().out
    assert "complete" in text and "time_stretch (4 clips)" in text
    assert all(label in text for label in LABELS)


def test_verify_passes_then_detects_damage(store_uri, capsys):
    assert main(["verify", str(store_uri), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and {c["name"] for c in report["checks"]} >= {"schema", "complete", "shapes", "finite",
                                                                       "digests", "fingerprint"}
    # overwrite one shard object of mel with another shard's bytes: digests catch it
    shard0 = store_uri / "mel" / "c" / "0" / "0" / "0" / "0"
    shard1 = store_uri / "mel" / "c" / "1" / "0" / "0" / "0"
    shard0.write_bytes(shard1.read_bytes())
    assert main(["verify", str(store_uri)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] digests" in out and "FAILED" in out


def test_verify_finds_nan_and_incomplete(tmp_path):
    uri = tmp_path / "nan.zarr"
    build(uri, small_config(), nan_clip=1)
    checks = {c["name"]: c for c in verify_store(uri)["checks"]}
    assert not checks["finite"]["ok"] and "cens in shard 0" in checks["finite"]["detail"]
    part = tmp_path / "part.zarr"
    build(part, small_config(), stop_after=1)
    report = verify_store(part)
    assert not report["ok"] and "2 of 3 shards not built" in report["checks"][1]["detail"]
    assert store_info(part)["complete"] is False


def test_verify_missing_store(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "none.zarr")]) == 1
    assert "no feature store" in capsys.readouterr().out


def test_export_zip_reads_identically(store_uri, tmp_path, capsys):
    out = tmp_path / "shipped" / "s.zip"
    assert main(["export", str(store_uri), str(out)]) == 0
    z = open_store(out)
    src = open_store(store_uri)
    assert z.fingerprint == src.fingerprint
    np.testing.assert_array_equal(z.read_clip(1, "gain")["mel"], src.read_clip(1, "gain")["mel"])
    assert z.clips.equals(src.clips) and z.nbytes_stored == os.path.getsize(out)
    assert verify_store(out)["ok"]
    # refusing to clobber, and to export an unfinished store
    assert main(["export", str(store_uri), str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    part = tmp_path / "part.zarr"
    build(part, small_config(), stop_after=1)
    assert main(["export", str(part), str(tmp_path / "p.zip")]) == 2
    assert "has not finished" in capsys.readouterr().err
