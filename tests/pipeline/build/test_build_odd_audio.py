"""A build over a folder that mixes good files with every odd kind of tests/odd_audio.py:
it completes; every good file is stored at its full length (against an independent
full decode); every odd file is stored at its true length or quarantined with its
category; the serial path and a LocalCluster give the same store."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pipeline.build import build_store
from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig
from pipeline.datasets.base import ClipRecord, Manifest
from pipeline.errors import failure_category
from stores import open_store
from stores.checks import format_info, store_info
from tests.odd_audio import make_odd_files, reference_seconds

SR = 22050
CFG = PipelineConfig(audio=AudioConfig(clip_seconds=30.0), augment=AugmentConfig(variants=("gain",)))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    odd = make_odd_files(root / "odd")
    rng = np.random.default_rng(3)
    good = []
    for i, seconds in enumerate((4.0, 7.5, 31.0, 45.0)):
        rel = f"good/good{i}.wav"
        (root / "good").mkdir(exist_ok=True)
        t = np.arange(int(seconds * SR)) / SR
        sf.write(root / rel, (0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t)
                              + 0.02 * rng.standard_normal(t.size)).astype(np.float32), SR)
        good.append(rel)
    clips = [ClipRecord(f"good{i}", rel, "good", "train" if i % 2 else "test") for i, rel in enumerate(good)]
    clips += [ClipRecord(f"odd{i:02d}", f"odd/{f.name}", "odd", "test") for i, f in enumerate(odd)]
    manifest = Manifest("mixed", root, ("good", "odd"), tuple(clips), "fixed", source="made by the test")
    expected = {f"odd/{f.name}": f for f in odd}
    return manifest, expected


@pytest.fixture(scope="module")
def serial_store(mixed, tmp_path_factory):
    manifest, _ = mixed
    uri = tmp_path_factory.mktemp("serial") / "s.zarr"
    summary = build_store(manifest, uri, config=CFG, workers=0, progress=False, max_failures=1.0)
    return uri, summary


@pytest.mark.slow
def test_build_over_odd_files_completes_and_stores_each_correctly(mixed, serial_store):
    manifest, expected = mixed
    uri, summary = serial_store
    assert summary.n_clips == len(manifest)
    store = open_store(uri)
    hop = CFG.features.hop_length
    clips = store.clips.reset_index(drop=True)
    for i, row in clips.iterrows():
        source = row["source"]
        path = manifest.root / source
        odd = expected.get(source)
        want_status = "ok" if odd is None or odd.expect == "ok" else "failed"
        assert row["status"] == want_status, (source, odd and odd.kind, row["reason"])
        if want_status == "failed":
            assert failure_category(row["reason"]) == odd.expect, (odd.kind, row["reason"])
            assert str(manifest.root) not in row["reason"]
            continue
        # Good files against an independent full decode (every frame by PyAV); odd ones
        # against what the factory wrote (a reference decoder may itself trip on a damaged page).
        true_seconds = reference_seconds(path) if odd is None or odd.seconds is None else odd.seconds
        # A file cut inside its last page or frame is kept, and its reason column says so.
        assert row["reason"].startswith("ends early: ") == bool(odd and odd.ends_early), (source, row["reason"])
        stored_seconds = (int(store.valid_frames[i, 0]) - 1) * hop / SR
        tolerance = (0.1 if odd is not None and odd.lossy else 0.0) + hop / SR
        assert abs(stored_seconds - min(true_seconds, 30.0)) <= tolerance, (source, stored_seconds, true_seconds)
    counts = summary.failure_counts
    assert sum(counts.values()) == summary.n_failed
    assert summary.ends_early == sum(f.ends_early for f in expected.values()) > 0
    assert f"ends early  {summary.ends_early} clips" in summary.report()
    info = store_info(uri)
    assert info["ends_early"] == summary.ends_early
    assert f"ends early   {summary.ends_early} ok clips" in format_info(info)
    assert "internal error" not in counts and "decoder crash" not in counts, counts


@pytest.mark.slow
def test_the_cluster_build_of_the_odd_folder_equals_the_serial_one(mixed, serial_store, tmp_path):
    manifest, _ = mixed
    summary = build_store(manifest, tmp_path / "c.zarr", config=CFG, workers=2, progress=False, max_failures=1.0)
    assert summary.fingerprint == serial_store[1].fingerprint
    assert open_store(tmp_path / "c.zarr").clips.equals(open_store(serial_store[0]).clips)
