"""model.config.TrainConfig: the trainer's one config and its checks."""

from __future__ import annotations

import pytest

from model.config import RESUMABLE_OVERRIDES, TrainConfig
from pipeline.errors import ConfigError


def test_bad_options():
    with pytest.raises(ConfigError, match="dfn"):
        TrainConfig(model="nope")
    with pytest.raises(ConfigError, match="'threads', 'processes'"):
        TrainConfig(loader="fibers")
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ConfigError, match=r"train\.batch_size=0 must be a positive integer"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="overlap"):
        TrainConfig(train_folds=(0, 1), val_folds=(1,))
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_dict({"epochz": 3})


def test_round_trip_and_resumable_names():
    cfg = TrainConfig(epochs=3, train_folds=[0, 1], val_folds=[2])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg and cfg.train_folds == (0, 1)
    assert set(RESUMABLE_OVERRIDES) <= set(cfg.to_dict())
