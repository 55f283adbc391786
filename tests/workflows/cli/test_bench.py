"""``pipeline bench features``: the figures printed and written as JSON (the measurement itself is
tested in tests/bench/), and ``pipeline bench stretch``."""

from __future__ import annotations

import json

from workflows.cli import main

FIGURES = {
    "clips": 2, "clip_seconds": 30.0, "variants": ["original", "gain"],
    "ours_core_s_per_clip": 0.25, "reference_core_s_per_clip": 4.0, "speedup": 16.0,
    "by_format": {"mp3": {"ours_core_s_per_clip": 0.3, "reference_core_s_per_clip": 4.5, "speedup": 15.0,
                          "floor_core_s_per_clip": 0.2, "floor_multiple": 1.5}},
    "floor_core_s_per_clip": 0.2, "floor_multiple": 1.25, "computed_variants": ["original"],
    "cens_transforms_core_s_per_clip": 0.02, "floor_with_cens_transforms_multiple": 1.14,
    "floor_parts_core_s": {"decode": 0.05, "augment": 0.05, "stft_and_medians": 0.1},
    "ours_stage_core_s": {"decode": 0.05, "features_original": 0.1},
    "kernel_core_s": {"stft": 0.005, "medians": 0.02},
    "parity": {"mel": {"max_abs_diff": 1e-3, "mean_abs_diff": 1e-5, "correlation": 0.99999}},
    "derived_parity": {"gain": {"mel": {"max_abs_diff": 1e-3, "mean_abs_diff": 1e-5, "correlation": 0.99999}}},
}


def test_bench_features_prints_and_writes_the_figures(monkeypatch, tmp_path, capsys):
    asked = []
    monkeypatch.setattr("bench.features.bench_features", lambda clips: asked.append(clips) or FIGURES)
    out = tmp_path / "bench.json"
    assert main(["bench", "features", "--clips", "2", "--json", str(out)]) == 0
    assert asked == [2]
    assert json.loads(out.read_text()) == FIGURES
    printed = capsys.readouterr().out
    assert "speedup:   16.0x" in printed and "mp3: ours 0.300 s" in printed and f"wrote {out}" in printed
    assert "ours = 1.25x the floor" in printed and "(ours 1.50x)" in printed and "medians 0.0200" in printed
    assert "CENS's transforms: 0.020 core-s" in printed and "ours = 1.14x that" in printed
    assert "parity of the gain variant, derived" in printed


def test_bench_stretch_runs_the_study_and_prints_one_row_per_method(monkeypatch, tmp_path, capsys):
    row = {"stretch_s": 0.5, "shift_s": 0.6, "stretch_dist_db": 1.0, "shift_dist_db": 1.5, "stretch_rms_ratio": 0.98,
           "click_smear": 0.1, "stretch_pitch_cents": 0.2, "shift_pitch_cents": 0.3}
    asked = []
    monkeypatch.setattr("bench.stretch_study.compare_stretch_methods",
                        lambda seconds, *, voices, repeats: asked.append((seconds, voices, repeats))
                        or {"librosa": row, "ours_locked": row})
    out = tmp_path / "stretch.json"
    assert main(["bench", "stretch", "--seconds", "5", "--voices", "4", "--repeats", "1", "--json", str(out)]) == 0
    assert asked == [(5.0, 4, 1)]
    assert json.loads(out.read_text()) == {"librosa": row, "ours_locked": row}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["method", "stretch_s", "shift_s"]
    assert [line.split()[0] for line in lines[1:]] == ["librosa", "ours_locked"]


def test_bench_update_runs_end_to_end_and_measures_the_loader(tmp_path, capsys):
    """The real update bench at tiny size (no stand-ins: its loader part imports the trainer's loader)."""
    out = tmp_path / "update.json"
    assert main(["bench", "update", "--base", "4", "--new", "2", "--seconds", "3", "--repeats", "1",
                 "--loader-seconds", "0.2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "update of 2 clips into a store of 4" in printed and "no-op --update (6 clips)" in printed
    assert "loader: versioned" in printed and "unversioned" in printed
    assert out.exists()


def test_bench_update_times_a_no_op_update_as_the_command_and_reuses_its_folder(tmp_path, capsys):
    """The no-op bench at tiny size: the real command in a fresh process, then a rerun on the kept folder."""
    folder, out = tmp_path / "noop", tmp_path / "noop.json"
    args = ["bench", "update", "--noop-clips", "12", "--workers", "1", "--repeats", "1", "--noop-folder", str(folder)]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no-op --update of a 12-clip store" in printed and "the command, in a fresh process" in printed
    figures = json.loads(out.read_text())
    assert figures["noop_store_clips"] == 12 and len(figures["noop_cli_runs_s"]) == 3
    assert main(args) == 0  # the kept files and store: no new version, nothing rebuilt
    assert "writing the files 0 s" in capsys.readouterr().out
