"""The CLI's option helpers: flags generated from a config dataclass, one KEY=VALUE syntax."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from model.config import LOADERS, SCHEDULES, TrainConfig
from workflows.cli import main
from workflows.cli.options import add_config_options, field_docs, parse_key_values
from workflows.recipe import parse_value


def _train_parser() -> tuple[argparse.ArgumentParser, list[str]]:
    parser = argparse.ArgumentParser()
    added = add_config_options(parser, TrainConfig, skip={"model", "model_kwargs"},
                               choices={"schedule": SCHEDULES, "loader": LOADERS})
    return parser, added


def test_every_train_config_field_gets_a_flag_and_only_given_flags_are_set():
    parser, added = _train_parser()
    assert set(added) == {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "model_kwargs"}
    args = parser.parse_args(["--epochs", "3", "--loader-workers", "0", "--no-amp", "--train-folds", "0,1",
                              "--val-folds", "2", "--schedule", "cosine"])
    given = {k: v for k, v in vars(args).items() if v is not None}
    assert given == {"epochs": 3, "loader_workers": 0, "amp": False, "train_folds": [0, 1], "val_folds": [2],
                     "schedule": "cosine"}
    config = TrainConfig(**given)  # what the trainer receives: its own defaults for the rest
    assert config.batch_size == TrainConfig().batch_size and config.train_folds == (0, 1)
    with pytest.raises(SystemExit):
        parser.parse_args(["--schedule", "sometimes"])


def test_the_help_of_a_flag_is_the_fields_docstring_entry_and_default():
    docs = field_docs(TrainConfig)
    assert docs["lr"] == "Adam's learning rate." and "L2" in docs["weight_decay"]
    parser, _ = _train_parser()
    text = parser.format_help()
    assert "Adam's learning rate (default 0.0001)" in " ".join(text.split())


def test_train_workers_names_the_flag_that_replaced_it(capsys, tmp_path):
    code = main(["train", "--store", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "o"), "--workers", "2"])
    assert code == 2
    assert "--loader-workers" in capsys.readouterr().err


@pytest.mark.parametrize("raw", ["64", "1e-3", "true", "[16, 32, 64]", '"quoted"', "http://127.0.0.1:7480",
                                 "skip", "[a, b]", "2026-12-01"])
def test_key_value_options_read_values_as_recipe_overrides_do(raw):
    assert parse_key_values([f"knob={raw}"], flag="--model-arg") == {"knob": parse_value(raw)}
    assert parse_key_values([f"client_kwargs.endpoint_url={raw}"], flag="--storage-option") == {
        "client_kwargs": {"endpoint_url": parse_value(raw)}}


def test_a_date_like_value_stays_text():
    assert parse_value("2026-12-01") == "2026-12-01"
