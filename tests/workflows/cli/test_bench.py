"""``pipeline bench features``: the figures printed and written as JSON (the measurement itself is
tested in tests/pipeline/test_bench.py)."""

from __future__ import annotations

import json

from workflows.cli import main

FIGURES = {
    "clips": 2, "clip_seconds": 30.0, "variants": ["original", "gain"],
    "ours_core_s_per_clip": 0.25, "reference_core_s_per_clip": 4.0, "speedup": 16.0,
    "by_format": {"mp3": {"ours_core_s_per_clip": 0.3, "reference_core_s_per_clip": 4.5, "speedup": 15.0,
                          "floor_core_s_per_clip": 0.2, "floor_multiple": 1.5}},
    "floor_core_s_per_clip": 0.2, "floor_multiple": 1.25, "computed_variants": ["original"],
    "floor_parts_core_s": {"decode": 0.05, "augment": 0.05, "stft_and_medians": 0.1},
    "ours_stage_core_s": {"decode": 0.05, "features_original": 0.1},
    "kernel_core_s": {"stft": 0.005, "medians": 0.02},
    "parity": {"mel": {"max_abs_diff": 1e-3, "mean_abs_diff": 1e-5, "correlation": 0.99999}},
    "derived_parity": {"gain": {"mel": {"max_abs_diff": 1e-3, "mean_abs_diff": 1e-5, "correlation": 0.99999}}},
}


def test_bench_features_prints_and_writes_the_figures(monkeypatch, tmp_path, capsys):
    asked = []
    monkeypatch.setattr("pipeline.bench.bench_features", lambda clips: asked.append(clips) or FIGURES)
    out = tmp_path / "bench.json"
    assert main(["bench", "features", "--clips", "2", "--json", str(out)]) == 0
    assert asked == [2]
    assert json.loads(out.read_text()) == FIGURES
    printed = capsys.readouterr().out
    assert "speedup:   16.0x" in printed and "mp3: ours 0.300 s" in printed and f"wrote {out}" in printed
    assert "ours = 1.25x the floor" in printed and "(ours 1.50x)" in printed and "medians 0.0200" in printed
    assert "parity of the gain variant, derived" in printed
