"""``pipeline bench features`` on one short clip per format: it runs, and its figures are sane."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig
from bench.features import bench_features, format_report, make_bench_clips, synth_music
from pipeline.errors import PipelineError


def test_bench_clips_are_real_length_files_of_both_formats(tmp_path):
    paths = make_bench_clips(tmp_path, 1, seconds=4.0)
    assert sorted(p.suffix for p in paths) == [".au", ".mp3"]
    au = next(p for p in paths if p.suffix == ".au")
    info = sf.info(str(au))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    assert info.format == "AU" and info.endian in ("BIG", "FILE")
    assert abs(info.duration - 4.0) < 0.01
    import av

    with av.open(str(next(p for p in paths if p.suffix == ".mp3"))) as container:
        stream = container.streams.audio[0]
        assert container.format.name == "mp3" and stream.codec_context.name.startswith("mp3")
        assert stream.rate == 44100 and stream.codec_context.channels == 2
        assert abs(float(container.duration / 1e6) - 4.0) < 0.2


def test_synth_music_is_deterministic_and_musical():
    a = synth_music(2.0, 22050, seed=7)
    b = synth_music(2.0, 22050, seed=7)
    c = synth_music(2.0, 22050, seed=8)
    assert a.shape == (1, 44100) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.isclose(np.max(np.abs(a)), 0.8)


@pytest.fixture(scope="module")
def short_bench():
    # 3.5 s (just above the 3 s minimum clip) and two variants keep the
    # librosa side short; `pipeline bench features` runs the real thing.
    cfg = PipelineConfig(audio=AudioConfig(clip_seconds=3.5), augment=AugmentConfig(variants=("pitch_shift",)))
    return bench_features(1, clip_seconds=3.5, cfg=cfg)


def test_bench_features_figures(short_bench):
    r = short_bench
    for key in ("ours_core_s_per_clip", "reference_core_s_per_clip", "speedup", "parity"):
        assert key in r
    assert r["clips"] == 2 and r["warmup_excluded"] is True
    assert r["variants"] == ["original", "pitch_shift"]
    assert r["ours_core_s_per_clip"] > 0 and r["reference_core_s_per_clip"] > 0
    assert r["speedup"] == pytest.approx(r["reference_core_s_per_clip"] / r["ours_core_s_per_clip"])
    # Even on a 4 s clip the fast path must beat librosa clearly.
    assert r["speedup"] > 2.0
    assert set(r["parity"]) == {"mel", "harmonic_mel", "percussive_mel", "mfcc", "cens"}
    for name, p in r["parity"].items():
        tol = 1e-4 if name == "cens" else 0.01
        assert p["max_abs_diff"] <= tol, name
        assert p["correlation"] > 0.9999, name
    stages = r["ours_stage_core_s"]
    assert "decode" in stages and all(f"features_{v}" in stages for v in r["variants"])
    # Every kernel inside the features, and the floor of the same clips.
    assert set(r["kernel_core_s"]) == {"stft", "medians", "masks", "mels", "mfcc", "inverse_stft", "cqt", "cens",
                                       "other"}
    assert r["kernel_core_s"]["medians"] > 0 and r["kernel_core_s"]["cqt"] > 0
    assert r["computed_variants"] == ["original", "pitch_shift"]
    parts = r["floor_parts_core_s"]
    assert set(parts) == {"decode", "augment", "stft_and_medians"} and all(v > 0 for v in parts.values())
    assert r["floor_core_s_per_clip"] == pytest.approx(sum(parts.values()))
    assert r["floor_multiple"] == pytest.approx(r["ours_core_s_per_clip"] / r["floor_core_s_per_clip"])
    # CENS's bare transforms, beside the floor: more than nothing, less than all of our features.
    assert 0 < r["cens_transforms_core_s_per_clip"] < r["ours_core_s_per_clip"] - r["floor_core_s_per_clip"]
    assert r["floor_with_cens_transforms_multiple"] == pytest.approx(
        r["ours_core_s_per_clip"] / (r["floor_core_s_per_clip"] + r["cens_transforms_core_s_per_clip"]))
    for figures in r["by_format"].values():
        assert figures["floor_core_s_per_clip"] > 0 and figures["floor_multiple"] > 0
    assert r["derived_parity"] == {}


def test_bench_features_reports_a_derived_variant():
    cfg = PipelineConfig(audio=AudioConfig(clip_seconds=3.5), augment=AugmentConfig(variants=("gain",)))
    r = bench_features(1, clip_seconds=3.5, cfg=cfg)
    assert r["computed_variants"] == ["original"]
    assert "features_gain" in r["ours_stage_core_s"]
    assert set(r["derived_parity"]) == {"gain"}
    for name, p in r["derived_parity"]["gain"].items():
        assert p["max_abs_diff"] <= (1e-4 if name == "cens" else 0.01), name
    text = format_report(r)
    assert "the floor" in text and "derived from the original" in text and "kernels" in text


def test_bench_rejects_bad_clip_count():
    with pytest.raises(PipelineError, match="clips=0"):
        bench_features(0)
