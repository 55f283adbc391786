"""The composed pipeline config: derived quantities, serialisation, validation."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.config import (AUGMENTATIONS, DEFAULT_AUGMENTATIONS, FEATURES, AudioConfig, AugmentConfig, AugmentParam,
                             Augmentation, Feature, FeatureConfig, PipelineConfig, WindowConfig, load_config,
                             register_augmentation, register_feature)
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


# -- the feature and augmentation registries ---------------------------------

def test_registries_hold_the_built_ins_in_store_order():
    assert FEATURES.names() == ("mel", "harmonic_mel", "percussive_mel", "mfcc", "cens", "tempogram")
    assert FeatureConfig().feature_names() == ("mel", "harmonic_mel", "percussive_mel", "mfcc", "cens")
    assert FeatureConfig(extra=("tempogram",), tempogram_win_length=48).feature_bands()["tempogram"] == 48
    assert AUGMENTATIONS.names() == DEFAULT_AUGMENTATIONS == AugmentConfig().variants
    assert AUGMENTATIONS["noise"].param_names == ("snr_db", "noise_seed")
    assert FeatureConfig(n_mels=96, hp_n_mels=32, n_mfcc=20).feature_bands() == {
        "mel": 96, "harmonic_mel": 32, "percussive_mel": 32, "mfcc": 20, "cens": 12}


@pytest.mark.parametrize("registry, valid", [(FEATURES, "mel, harmonic_mel"), (AUGMENTATIONS, "time_stretch, pitch")])
def test_unknown_name_lists_the_valid_ones(registry, valid):
    with pytest.raises(ConfigError, match=rf"unknown {registry.kind} 'nope'; valid {registry.kind}s: {valid}"):
        registry["nope"]
    assert "nope" not in registry


@pytest.mark.parametrize("name, match", [
    ("mel", "already registered"), ("original", "reserved"), ("Mel2", "lower-case"), ("a__b", "without '__'"),
    ("two words", "identifier"),
])
def test_registry_refuses_bad_and_duplicate_names(name, match):
    with pytest.raises(ConfigError, match=match):
        register_feature(Feature(name, 1, "x:y"))
    assert FEATURES.names()[0] == "mel" and len(FEATURES) == 6


@pytest.mark.parametrize("make, match", [
    (lambda: Feature("x", "n_melz", "m:f"), "n_melz.*not a FeatureConfig field"),
    (lambda: Feature("x", 0, "m:f"), "positive integer"),
    (lambda: AugmentParam("p", "gain_range"), "gain_range.*not an AugmentConfig field"),
    (lambda: AugmentParam("p", (2.0, 1.0)), "low <= high"),
    (lambda: Augmentation("x", "m:f", (AugmentParam("p"), AugmentParam("p"))), "twice"),
    (lambda: Augmentation("x", "m:f", (AugmentParam("p"),), rate_param="rate"), "rate_param='rate'"),
    (lambda: Augmentation("x", "m:f", (AugmentParam("p"),), gain_db_param="db"), "gain_db_param='db'"),
    (lambda: FeatureConfig(derive_scaled_variants=1), "derive_scaled_variants=1 must be true or false"),
])
def test_specs_are_validated(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


@pytest.fixture
def reverse():
    """A registered augmentation for the duration of one test."""
    spec = register_augmentation(Augmentation("reverse", "tests.pipeline.test_augment:reverse_and_scale",
                                              (AugmentParam("level", (0.5, 1.0)),)))
    try:
        yield spec
    finally:
        AUGMENTATIONS.unregister("reverse")


def test_a_registered_augmentation_is_a_valid_variant_until_unregistered(reverse):
    cfg = PipelineConfig(augment=AugmentConfig(variants=("gain", "reverse")))
    assert cfg.augment.variant_names == ("original", "gain", "reverse")
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg
    # a length-keeping augmentation does not lengthen the store's frames
    assert cfg.max_frames == cfg.features.n_frames(cfg.audio.clip_samples)
    AUGMENTATIONS.unregister("reverse")
    try:
        with pytest.raises(ConfigError, match=r"augment.variants='reverse' is not one of 'time_stretch'"):
            AugmentConfig(variants=("reverse",))
    finally:
        AUGMENTATIONS.register("reverse", reverse)


def test_max_frames_follows_the_rate_parameter_of_a_stretching_augmentation():
    cfg = PipelineConfig(augment=AugmentConfig(variants=("gain",), stretch_rate=(0.8, 1.0)))
    assert cfg.max_frames == cfg.features.n_frames(cfg.audio.clip_samples)
    stretched = cfg.replace(augment=AugmentConfig(variants=("time_stretch",), stretch_rate=(0.8, 1.0)))
    assert stretched.max_frames == cfg.features.n_frames(int(math.ceil(cfg.audio.clip_samples / 0.8)))


def test_deriving_the_gain_variant_is_part_of_the_config_hash():
    """Derived gain features differ from computed ones by float32 rounding: another store."""
    derived = PipelineConfig()
    computed = PipelineConfig(features=FeatureConfig(derive_scaled_variants=False))
    assert derived.features.derive_scaled_variants is True
    assert derived.config_hash() != computed.config_hash()
    assert PipelineConfig.from_dict(computed.to_dict()) == computed
    assert AUGMENTATIONS["gain"].gain_db_param == "gain_db"
    assert all(AUGMENTATIONS[v].gain_db_param is None for v in ("time_stretch", "pitch_shift", "noise"))
