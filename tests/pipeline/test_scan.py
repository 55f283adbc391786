"""``pipeline scan``: every clip decoded as the build would, failures listed by category, no store written."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.datasets import load_manifest
from pipeline.isolation import FAULT_HOOK_ENV, ClipLimits
from pipeline.scan import scan_manifest
from tests.integration.helpers import synthetic_manifest, tiny_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    synthetic_manifest(root, 6)
    (root / "rock" / "empty.wav").write_bytes(b"")
    (root / "rock" / "text.mp3").write_text("this is not audio at all\n" * 100)
    (root / "blues" / "short.wav").write_bytes((root / "blues" / "clip000.wav").read_bytes()[:20000])
    return root


def _by_source(report):
    return {c.source: c for c in report.clips}


def test_serial_scan_lists_failures_by_category(dataset, tmp_path):
    report = scan_manifest(load_manifest("folder", dataset), config=tiny_config(), workers=0, progress=False)
    clips = _by_source(report)
    assert len(report.clips) == 9 and report.n_failed == 3
    assert clips["rock/empty.wav"].category == "empty"
    assert clips["rock/text.mp3"].category == "not audio"
    assert clips["blues/short.wav"].category in ("truncated", "too short")
    good = clips["blues/clip002.wav"]
    assert good.ok and good.seconds == pytest.approx(4.0) and good.source_seconds == pytest.approx(4.5)
    assert str(dataset) not in report.text()  # reasons name dataset-relative files
    report.write_csv(tmp_path / "failing.csv")
    rows = list(csv.DictReader(open(tmp_path / "failing.csv")))
    assert {r["source"] for r in rows} == {"rock/empty.wav", "rock/text.mp3", "blues/short.wav"}
    assert not any(p.suffix == ".zarr" for p in tmp_path.iterdir())


def test_scan_survives_a_crash_and_the_cluster_agrees(dataset, monkeypatch):
    monkeypatch.setenv(FAULT_HOOK_ENV, "clip003:SIGSEGV")
    manifest = load_manifest("folder", dataset)
    serial = scan_manifest(manifest, config=tiny_config(), workers=0, progress=False,
                           clip_limits=ClipLimits(seconds=20))
    cluster = scan_manifest(manifest, config=tiny_config(), workers=2, progress=False,
                            clip_limits=ClipLimits(seconds=20))
    assert _by_source(serial)["rock/clip003.wav"].category == "decoder crash"
    assert serial.to_dict()["failures"] == cluster.to_dict()["failures"]
    assert serial.failure_counts == {"decoder crash": 1, "empty": 1, "not audio": 1,
                                     _by_source(serial)["blues/short.wav"].category: 1}


def test_scan_command_json_and_exit_code(dataset, tmp_path):
    pipeline = str(Path(sys.executable).with_name("pipeline"))
    run = subprocess.run([pipeline, "scan", "--dataset", "folder", "--root", str(dataset), "--workers", "0",
                          "--json", "--csv", str(tmp_path / "bad.csv")],
                         capture_output=True, text=True, cwd=REPO, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != FAULT_HOOK_ENV})
    assert run.returncode == 1, run.stderr[-2000:]
    doc = json.loads(run.stdout)
    assert doc["n_clips"] == 9 and doc["n_failed"] == 3
    assert doc["failures_per_category"]["empty"] == 1
    assert (tmp_path / "bad.csv").read_text().startswith("clip_id,source,category,reason")
