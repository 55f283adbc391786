"""One clip can only ever fail itself: real process deaths, hangs, memory
exhaustion and bugs of ours, on the serial path and on a LocalCluster.

The faults are real: the test-only hook of :mod:`pipeline.isolation`
(``HFS_TEST_FAULT``) makes the process decoding a named file die by a signal,
hang or allocate without end. The build must complete, quarantine exactly
those clips with the right category, and store every other clip exactly as a
build without any fault does.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.build import build_store
from stores.failures import count_failures
from pipeline.errors import failure_category
from pipeline.isolation import FAULT_HOOK_ENV, ClipLimits, Job, run_isolated
from stores import open_store
from tests.integration.helpers import synthetic_manifest, tiny_config

CFG = tiny_config(variants=("gain",))
#: File name (in the synthetic manifest) -> fault it triggers, and the category expected.
FAULTS = {
    "clip001": ("SIGSEGV", "decoder crash"),
    "clip004": ("SIGABRT", "decoder crash"),
    "clip006": ("hang", "time-out"),
    "clip007": ("oom", "out of memory"),
    "clip009": ("raise", "internal error"),
}
HOOK = ",".join(f"{name}:{fault}" for name, (fault, _) in FAULTS.items())
LIMITS = ClipLimits(seconds=8.0, memory_bytes=512 << 20)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return synthetic_manifest(tmp_path_factory.mktemp("audio"), 11)


@pytest.fixture(scope="module")
def clean(manifest, tmp_path_factory):
    uri = tmp_path_factory.mktemp("clean") / "clean.zarr"
    build_store(manifest, uri, config=CFG, workers=0, clips_per_shard=4, progress=False, clip_limits=LIMITS)
    return uri


def _faulty_build(manifest, uri, monkeypatch, **kwargs):
    monkeypatch.setenv(FAULT_HOOK_ENV, HOOK)
    return build_store(manifest, uri, config=CFG, clips_per_shard=4, progress=False, max_failures=len(FAULTS),
                       clip_limits=LIMITS, **kwargs)


def _assert_quarantined_and_rest_identical(uri, clean_uri):
    faulty, reference = open_store(uri), open_store(clean_uri)
    clips = faulty.clips.set_index("clip_id")
    for clip_id, row in clips.iterrows():
        name = clip_id.split("/")[-1]
        if name in FAULTS:
            assert row["status"] == "failed", clip_id
            assert failure_category(row["reason"]) == FAULTS[name][1], row["reason"]
            assert str(faulty.uri) not in row["reason"]
        else:
            assert row["status"] == "ok", (clip_id, row["reason"])
    assert (reference.clips["status"] == "ok").all()
    ok = (faulty.clips["status"] == "ok").to_numpy()
    np.testing.assert_array_equal(faulty.valid_frames[ok], reference.valid_frames[ok])
    for i in range(len(faulty.shards)):
        start, stop = faulty.layout.shard_range(i)
        a, b = faulty.read_shard(i), reference.read_shard(i)
        keep = ok[start:stop]
        for feature in a:
            assert a[feature][keep].tobytes() == b[feature][keep].tobytes(), (feature, i)


@pytest.mark.slow
def test_serial_build_survives_crashes_hangs_oom_and_bugs(manifest, clean, tmp_path, monkeypatch):
    summary = _faulty_build(manifest, tmp_path / "faulty.zarr", monkeypatch, workers=0)
    assert summary.n_failed == len(FAULTS) and summary.n_ok == len(manifest) - len(FAULTS)
    assert summary.failure_counts == {"decoder crash": 2, "time-out": 1, "out of memory": 1, "internal error": 1}
    report = summary.report()
    assert "internal error" in report and "decoder crash" in report
    assert "signal 11 (SIGSEGV)" in report and "timed out after 8 s" in report
    _assert_quarantined_and_rest_identical(tmp_path / "faulty.zarr", clean)
    # pipeline info counts the same categories, bad audio apart from crashes and bugs.
    from stores.checks import format_info, store_info

    info = store_info(tmp_path / "faulty.zarr")
    assert info["failures"] == summary.failure_counts
    line = next(x for x in format_info(info).splitlines() if x.startswith("failures"))
    assert all(f"{n} {k}" in line for k, n in summary.failure_counts.items()), line


@pytest.mark.slow
def test_local_cluster_build_with_faults_equals_the_serial_one(manifest, clean, tmp_path, monkeypatch):
    serial = _faulty_build(manifest, tmp_path / "serial.zarr", monkeypatch, workers=0)
    cluster = _faulty_build(manifest, tmp_path / "cluster.zarr", monkeypatch, workers=2)
    assert cluster.fingerprint == serial.fingerprint
    _assert_quarantined_and_rest_identical(tmp_path / "cluster.zarr", clean)


def test_count_failures_by_category():
    reasons = ["truncated: a", "truncated: b", "internal error: KeyError", "ffmpeg said no"]
    assert count_failures(reasons) == {"truncated": 2, "internal error": 1, "other": 1}


def _work(name):
    if name == "bad":
        raise ValueError("boom")
    return name.upper()


@pytest.mark.parametrize("isolate", [True, False])
def test_run_isolated_contains_exceptions(isolate):
    jobs = [Job(n, (n,)) for n in ("a", "bad", "b")]
    out = run_isolated(jobs, _work, limits=ClipLimits(isolate=isolate))
    assert [o.ok for o in out] == [True, False, True]
    assert [o.value for o in out] == ["A", None, "B"]
    assert out[1].category == "internal error" and "ValueError: boom" in out[1].reason


def test_run_isolated_continues_after_a_crash_in_the_first_and_last_job(monkeypatch):
    monkeypatch.setenv(FAULT_HOOK_ENV, "first:SIGKILL,last:SIGSEGV")
    jobs = [Job(n, (n,)) for n in ("first", "middle", "last")]
    out = run_isolated(jobs, _work, limits=ClipLimits(seconds=20))
    assert [o.ok for o in out] == [False, True, False]
    assert out[1].value == "MIDDLE"
    assert "SIGKILL" in out[0].reason and "SIGSEGV" in out[2].reason


def test_clip_limits_are_validated():
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="positive"):
        ClipLimits(seconds=0)
    with pytest.raises(ConfigError, match="64 MiB"):
        ClipLimits(memory_bytes=1000)
