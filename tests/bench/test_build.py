"""``pipeline bench build`` end to end on a tiny demo (short clips, one cheap variant)."""

from __future__ import annotations

import json

import pytest

from bench import build as build_bench
from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig


@pytest.mark.slow
def test_bench_build_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(build_bench, "DEMO_CLIP_SECONDS", 4.0)
    cfg = PipelineConfig(audio=AudioConfig(clip_seconds=4.0), augment=AugmentConfig(variants=("gain",)))
    figures = build_bench.run_bench(8, out=tmp_path, config=cfg)
    for key in ("clips_per_s_1", "clips_per_s_2", "scaling", "bytes_per_clip_variant", "fraction_of_float32",
                "serial_clips_per_s", "efficiency_1", "efficiency_2", "startup_s_1", "warmup_s_2",
                "peak_rss_mib_1", "peak_rss_mib_2", "serial_peak_rss_mib", "serial_before_clips_per_s", "serial_after_clips_per_s"):
        assert figures[key] > 0, key
    assert figures["scaling"] == pytest.approx(figures["clips_per_s_2"] / figures["clips_per_s_1"])
    # Efficiency is measured against the serial rate of the same clips in this process.
    assert figures["efficiency_2"] == pytest.approx(figures["clips_per_s_2"] / (2 * figures["serial_clips_per_s"]))
    assert figures["efficiency_1"] == pytest.approx(figures["clips_per_s_1"] / figures["serial_clips_per_s"])
    assert figures["failed_clips"] == 0 and figures["clips"] == 8
    assert figures["extract_s_per_clip"] > 0 and figures["write_s_per_clip"] > 0
    assert 0 < figures["worker_utilisation_2"] <= 1.0
    assert figures["fraction_of_float32"] < 0.5  # float16 + compression; the 0.35 target is for real clips
    text = build_bench.format_figures(figures)
    assert "scaling" in text and "of raw float32" in text and "efficiency" in text and "plain process" in text
    json.dumps(figures, default=str)
    assert (tmp_path / "bench-2.zarr").is_dir()
