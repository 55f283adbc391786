"""pipeline.validate: the shared checks and their wording."""

from __future__ import annotations

import math

import pytest

from pipeline import validate
from pipeline.errors import ConfigError


@pytest.mark.parametrize("value", [True, 1.5, "3", 0, -1])
def test_integer_at_least_one_refuses(value):
    with pytest.raises(ConfigError, match=r"^train\.epochs=.* must be a positive integer$"):
        validate.integer("train.epochs", value, minimum=1)


def test_integer_returns_the_value():
    assert validate.integer("x", 0, minimum=0) == 0 and validate.integer("x", -5) == -5


@pytest.mark.parametrize("value", [math.nan, math.inf, True, "1"])
def test_number_refuses_non_finite_and_non_numbers(value):
    with pytest.raises(ConfigError, match="must be a finite number"):
        validate.number("train.lr", value)


def test_number_positive_and_minimum():
    with pytest.raises(ConfigError, match="must be a positive finite number"):
        validate.number("train.lr", 0, positive=True)
    with pytest.raises(ConfigError, match=">= 0"):
        validate.number("build.max_failures", -0.1, minimum=0)
    assert validate.number("x", 2) == 2.0


def test_one_of_lists_the_choices():
    with pytest.raises(ConfigError, match="'plateau', 'cosine'"):
        validate.one_of("train.schedule", "weekly", ("plateau", "cosine"))


def test_lists_and_keys():
    assert validate.text_list("train.models", "dfn, cnn") == ("dfn", "cnn")
    with pytest.raises(ConfigError, match="list of strings"):
        validate.text_list("train.models", [1])
    assert validate.integer_list("train.folds", [0, 1]) == (0, 1)
    with pytest.raises(ConfigError, match="list of integers"):
        validate.integer_list("train.folds", [0, True])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epoch'\] in \[train\]; valid keys: epochs, lr"):
        validate.keys("[train]", {"epoch": 1}, {"epochs", "lr"})


def test_number_range():
    assert validate.number_range("augment.gain_db", [-6, 6], -60, 60) == (-6.0, 6.0)
    with pytest.raises(ConfigError, match=r"must satisfy 0.5 <= low <= high <= 2"):
        validate.number_range("augment.stretch_rate", [1.2, 0.8], 0.5, 2)
    with pytest.raises(ConfigError, match=r"must be a pair \[low, high\]"):
        validate.number_range("augment.stretch_rate", 1.0, 0.5, 2)
