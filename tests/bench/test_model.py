"""The benchmarks run and report the keys the CLI and the workflows read (no timing asserted)."""

from __future__ import annotations

from bench.model import bench_loader, latency
from tests.model.fakes import FakeStore


def test_bench_loader_reports_rates():
    result = bench_loader(FakeStore(), seconds=0.2)
    for key in ("windows_per_s", "raw_windows_per_s", "ratio", "windows_per_cpu_s", "float16_windows_per_s",
                "zarr_raw_windows_per_s", "threaded_windows_per_s"):
        assert result[key] > 0, key
    assert result["windows"] > 0 and result["features"] == ["mel", "harmonic_mel", "percussive_mel", "mfcc", "cens"]


def test_latency_of_an_untrained_model():
    result = latency("cnn-mel", repeats=1, seconds=4.0, batch_size=4)
    assert result["file_latency_s"] > 0 and result["batch_latency_s"] > 0
    assert result["windows_per_file"] == 1  # 4 s: 173 frames, one 130-frame window and result["model"] == "cnn-mel"
