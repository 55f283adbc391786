"""The composed pipeline config: derived quantities, serialisation, validation."""

from __future__ import annotations

import json

import pytest

from pipeline.config import AudioConfig, AugmentConfig, FeatureConfig, PipelineConfig, WindowConfig, load_config
from pipeline.errors import ConfigError


def test_defaults_give_the_papers_windows():
    cfg = PipelineConfig()
    assert cfg.window_frames == 130 and cfg.window_hop_frames == 65  # 3 s, 50% overlap at hop 512
    assert cfg.min_samples == 3 * 22050
    # the slowest time-stretch (rate 0.9) makes the longest variant
    assert cfg.max_frames == 1 + int(-(-30 * 22050 // 0.9)) // 512
    assert cfg.augment.variant_names == ("original", "time_stretch", "pitch_shift", "noise", "gain")


def test_round_trip_and_hash():
    cfg = PipelineConfig(
        features=FeatureConfig(n_mels=64, hop_length=1024),
        augment=AugmentConfig(seed=7, variants=("gain",), gain_db=(-3, 3)),
    )
    data = cfg.to_dict()
    json.dumps(data)  # plain JSON types only
    back = PipelineConfig.from_dict(data)
    assert back == cfg and back.config_hash() == cfg.config_hash()
    assert PipelineConfig().config_hash() != cfg.config_hash()
    assert back.augment.gain_db == (-3.0, 3.0)


@pytest.mark.parametrize("data, match", [
    ({"featurez": {}}, r"unknown config section.*valid sections: \['audio', 'augment', 'features', 'window'\]"),
    ({"features": {"n_melz": 64}}, r"unknown key\(s\) \['n_melz'\] in \[features\]; valid keys: .*'n_mels'"),
    ({"audio": {"sample_rate": 0}}, r"audio.sample_rate=0 must be a positive integer"),
    ({"augment": {"variants": ["reverb"]}}, r"augment.variants='reverb' is not one of"),
    ({"augment": {"stretch_rate": [1.2, 0.8]}}, r"augment.stretch_rate=\[1.2, 0.8\] must satisfy"),
    ({"window": {"overlap": 1.0}}, r"window.overlap=1.0 must be in \[0, 1\)"),
    ({"features": {"fmax": 16000.0}}, r"features.fmax=16000.0 exceeds the Nyquist frequency 11025 Hz"),
    ({"audio": {"clip_seconds": 2.0}}, r"window.window_seconds=3.0 exceeds audio.clip_seconds=2.0"),
])
def test_invalid_configs_name_the_field_and_the_fix(data, match):
    with pytest.raises(ConfigError, match=match):
        PipelineConfig.from_dict(data)


def test_load_config_reads_toml_and_json(tmp_path):
    toml = tmp_path / "cfg.toml"
    toml.write_text('[features]\nn_mels = 96\n\n[augment]\nvariants = ["noise", "gain"]\n')
    cfg = load_config(toml)
    assert cfg.features.n_mels == 96 and cfg.augment.variants == ("noise", "gain")
    as_json = tmp_path / "cfg.json"
    as_json.write_text(json.dumps(cfg.to_dict()))
    assert load_config(as_json) == cfg
    assert load_config(None) == PipelineConfig()


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.toml does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[features\n")
    with pytest.raises(ConfigError, match=r"bad.toml is not valid TOML"):
        load_config(bad)


def test_sections_are_frozen():
    cfg = PipelineConfig(audio=AudioConfig(), window=WindowConfig())
    with pytest.raises(AttributeError):
        cfg.audio.sample_rate = 44100  # type: ignore[misc]
