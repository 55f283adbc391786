"""Stages run once per set of inputs and are skipped when nothing changed."""

from __future__ import annotations

import json

import pytest

from workflows.stages import RECORD, finished, inputs_hash, run_stage


def test_inputs_hash_ignores_key_order_and_sees_values():
    assert inputs_hash({"a": 1, "b": [1, 2]}) == inputs_hash({"b": [1, 2], "a": 1})
    assert inputs_hash({"a": 1}) != inputs_hash({"a": 2})


def test_stage_skips_when_inputs_match_and_reruns_when_they_change(tmp_path):
    calls = []

    def work(folder):
        calls.append(folder)
        (folder / "out.txt").write_text("x")
        return {"value": len(calls)}

    first = run_stage("s", tmp_path / "s", {"k": 1}, work, outputs=("out.txt",))
    again = run_stage("s", tmp_path / "s", {"k": 1}, work, outputs=("out.txt",))
    assert not first.skipped and again.skipped
    assert again.result == {"value": 1} and len(calls) == 1
    changed = run_stage("s", tmp_path / "s", {"k": 2}, work, outputs=("out.txt",))
    assert not changed.skipped and changed.result == {"value": 2}


def test_missing_output_reruns_the_stage(tmp_path):
    n = []

    def work(folder):
        n.append(1)
        (folder / "out.txt").write_text("x")
        return {}

    run_stage("s", tmp_path, {"k": 1}, work, outputs=("out.txt",))
    (tmp_path / "out.txt").unlink()
    assert not run_stage("s", tmp_path, {"k": 1}, work, outputs=("out.txt",)).skipped
    assert len(n) == 2


def test_failed_stage_leaves_no_record_and_runs_again(tmp_path):
    def boom(folder):
        raise RuntimeError("worker lost")

    run_stage("s", tmp_path, {"k": 1}, lambda f: {"ok": 1})
    with pytest.raises(RuntimeError):
        run_stage("s", tmp_path, {"k": 2}, boom)
    # The old record (other inputs) is gone, and nothing claims k=2 finished.
    assert not (tmp_path / RECORD).exists()
    assert finished(tmp_path, {"k": 2}) is None
    assert not run_stage("s", tmp_path, {"k": 2}, lambda f: {"ok": 2}).skipped


def test_torn_record_is_ignored(tmp_path):
    (tmp_path / RECORD).write_text("{not json")
    assert finished(tmp_path, {"k": 1}) is None


def test_record_holds_inputs_and_result(tmp_path):
    run_stage("build", tmp_path, {"store": "x.zarr"}, lambda f: {"fingerprint": "abc"})
    record = json.loads((tmp_path / RECORD).read_text())
    assert record["stage"] == "build"
    assert record["inputs"] == {"store": "x.zarr"}
    assert record["result"] == {"fingerprint": "abc"}
