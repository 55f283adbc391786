"""Recipes: every shipped one validates; overrides and bad names are handled."""

from __future__ import annotations

import pytest

from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError
from workflows.recipe import KINDS, Recipe, apply_overrides, known_models, load_recipe, parse_value, recipe_names

SHIPPED = ("paper-comparison", "paper-ablation", "cross-validation", "noise-robustness", "latency", "demo")


def test_the_required_recipes_are_shipped():
    assert set(SHIPPED) <= set(recipe_names())


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_loads_and_validates(name):
    recipe = load_recipe(name)
    assert recipe.name == name
    assert recipe.kind in KINDS
    assert recipe.dataset.name == "demo"  # defaults run on the demo set
    assert set(recipe.train.models) <= set(known_models())
    assert isinstance(recipe.pipeline_config(), PipelineConfig)
    # The round trip keeps every value.
    assert Recipe.from_dict(recipe.to_dict()) == recipe


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_opens_with_how_to_run_it(name):
    from workflows.recipe import recipe_text

    _, text = recipe_text(name)
    assert text.startswith("#")
    assert "pipeline run" in text.split("\n\n")[0] or "pipeline demo" in text.split("\n\n")[0]


def test_paper_tables_have_their_models():
    assert load_recipe("paper-comparison").train.models == ("svm-mfcc", "cnn", "crnn", "attention-cnn", "dfn")
    assert load_recipe("paper-ablation").train.models == (
        "cnn-mel", "cnn-bigru-mel", "cnn-bigru-hpss-concat", "dfn")
    assert load_recipe("noise-robustness").noise.snr_db == (30.0, 20.0, 10.0, 5.0)
    assert load_recipe("cross-validation").cv.folds == 10


def test_overrides_change_typed_values():
    recipe = load_recipe("paper-comparison", ["train.epochs=5", "train.lr=3e-4", "train.models=dfn,cnn",
                                              "dataset.demo.clips_per_genre=4", "pipeline.audio.clip_seconds=6"])
    assert recipe.train.settings.epochs == 5 and recipe.train.settings.lr == pytest.approx(3e-4)
    assert recipe.train.models == ("dfn", "cnn")
    assert recipe.dataset.demo.clips_per_genre == 4
    assert recipe.pipeline_config().audio.clip_seconds == 6


def test_demo_clip_length_sets_the_store_clip_length():
    recipe = load_recipe("demo", ["dataset.demo.clip_seconds=7.5"])
    assert recipe.pipeline_config().audio.clip_seconds == 7.5


def test_dataset_switch_uses_the_artist_aware_default_splits(tmp_path):
    assert load_recipe("paper-comparison", ["dataset.name=gtzan", f"dataset.root='{tmp_path}'"]
                       ).dataset.split_scheme == "fault-filtered"
    assert load_recipe("paper-comparison", ["dataset.name=fma-medium", f"dataset.root='{tmp_path}'"]
                       ).dataset.split_scheme == "official"


def test_real_dataset_without_root_is_rejected_with_the_fix():
    with pytest.raises(ConfigError, match="--root"):
        load_recipe("paper-comparison", ["dataset.name=gtzan"])


@pytest.mark.parametrize("pair, expected", [
    ("train.epoch=3", "valid keys: amp, batch_size, buffer_shards, device, epochs"),
    ("bogus=1", "valid keys: build, cv, dataset"),
    ("dataset.demo.clips=3", "valid keys: clip_seconds, clips_per_genre, seed"),
    ("pipeline.audio.rate=8000", "valid keys: clip_seconds, excerpt, resample_quality, sample_rate"),
    ("pipeline.colour.x=1", "valid keys: audio, augment, features, window"),
])
def test_unknown_key_is_rejected_with_the_valid_choices(pair, expected):
    with pytest.raises(ConfigError, match=expected):
        load_recipe("paper-comparison", [pair])


def test_unknown_model_is_rejected_with_the_valid_models():
    with pytest.raises(ConfigError) as info:
        load_recipe("paper-comparison", ['train.models=["dfn", "resnet-9000"]'])
    message = str(info.value)
    assert "resnet-9000" in message
    for name in ("dfn", "svm-mfcc", "cnn-bigru-hpss-concat", "attention-cnn"):
        assert name in message


@pytest.mark.parametrize("pair, match", [
    ("train.epochs=0", "train.epochs=0"),
    ("train.epochs=many", "train.epochs='many'"),
    ("evaluate.split=holdout", "evaluate.split"),
    ("dataset.name=imagenet", "valid: demo, gtzan"),
    ("kind=table", "comparison, ablation"),
    ("dataset.split=by-moon", "valid: random, artist, folds"),
    ("pipeline.audio.sample_rate=-1", "sample_rate"),
    ("noise.snr_db=[]", "noise.snr_db"),
    ("latency.devices=[\"tpu\"]", "valid devices"),
    ("train.epochs", "key=value"),
])
def test_bad_values_are_rejected(pair, match):
    with pytest.raises(ConfigError, match=match):
        load_recipe("paper-comparison", [pair])


def test_unknown_recipe_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="paper-comparison"):
        load_recipe("no-such-recipe")


def test_recipe_file_path_works(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('# pipeline run mine.toml\nname = "mine"\nkind = "ablation"\n[train]\nmodels = ["dfn"]\n')
    recipe = load_recipe(path, ["train.epochs=2"])
    assert (recipe.name, recipe.kind, recipe.train.settings.epochs) == ("mine", "ablation", 2)


def test_parse_value_reads_toml_types_and_falls_back_to_text():
    assert parse_value("5") == 5
    assert parse_value("true") is True
    assert parse_value('["a", "b"]') == ["a", "b"]
    assert parse_value("/data/gtzan") == "/data/gtzan"
    assert parse_value("[pitch_shift, noise]") == ["pitch_shift", "noise"]
    assert parse_value("[1, x]") == [1, "x"]


def test_apply_overrides_does_not_mutate_its_input():
    data = {"train": {"epochs": 3}}
    out = apply_overrides(data, ["train.epochs=4"])
    assert data["train"]["epochs"] == 3 and out["train"]["epochs"] == 4


def test_the_train_table_holds_any_trainer_option_with_the_trainers_default():
    from model.config import TrainConfig

    recipe = load_recipe("paper-comparison", ["train.weight_decay=1e-4", "train.grad_clip=1.0"])
    settings = recipe.train.settings
    assert isinstance(settings, TrainConfig)
    assert settings.weight_decay == pytest.approx(1e-4) and settings.grad_clip == 1.0
    assert settings.buffer_shards == TrainConfig().buffer_shards  # not set: the trainer's own default
    assert recipe.train.settings.loader_workers == 0  # the shipped recipe says so itself
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_a_trainer_option_is_checked_by_the_trainer_config():
    with pytest.raises(ConfigError, match=r"train\.schedule='weekly' is not one of"):
        load_recipe("paper-comparison", ["train.schedule=weekly"])


def test_build_workers_means_what_pipeline_build_workers_means():
    assert load_recipe("paper-comparison").build.workers is None  # left out: one per CPU core
    assert load_recipe("paper-comparison", ["build.workers=0"]).build.workers == 0  # serial
    with pytest.raises(ConfigError, match=r"build\.serial is gone: build\.workers = 0"):
        Recipe.from_dict({**load_recipe("demo").to_dict(), "build": {"serial": True}})
