"""Training: the DFN learns, resume continues exactly, mismatched stores are refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from model.checkpoint import load_checkpoint
from model.config import TrainConfig
from model.train import train
from pipeline.config import FeatureConfig
from pipeline.errors import ConfigError, ConfigMismatchError, ModelError
from tests.model.fakes import FakeStore, tiny_config

TINY_DFN = dict(cnn_channels=(4, 8, 8), gru_hidden=8, fusion_dim=8, heads=2, fc_hidden=16)


def cfg(**kw):
    base = dict(model="dfn", model_kwargs=TINY_DFN, epochs=3, batch_size=8, lr=3e-3, loader_workers=0,
                progress=False, seed=1)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def store():
    return FakeStore()


def metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_dfn_overfits_a_small_subset(store, tmp_path):
    c = cfg(epochs=12, model_kwargs={**TINY_DFN, "dropout": 0.0, "gru_dropout": 0.0}, patience=50)
    train(store, c, tmp_path)
    log = metrics(tmp_path)
    assert len(log) == 12
    assert log[0]["train_loss"] > 0.8  # about ln(3) at the start
    assert log[-1]["train_loss"] < 0.35 * log[0]["train_loss"]
    assert log[-1]["train_acc"] > 0.9
    assert {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time_s"} <= set(log[0])
    state = load_checkpoint(tmp_path)
    assert state["labels"] == list(store.labels) and state["store"]["fingerprint"] == store.fingerprint
    assert set(state["model"]) >= {"mean_mel", "std_mel"}


def test_resume_continues_exactly(store, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(store, cfg(), full, epochs=4)
    train(store, cfg(), part, epochs=2)
    with pytest.raises(ModelError, match="--resume"):
        train(store, cfg(), part, epochs=4)
    train(store, cfg(), part, epochs=4, resume=True)
    a = load_checkpoint(full, which="latest")
    b = load_checkpoint(part, which="latest")
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    assert [m["train_loss"] for m in metrics(full)] == [m["train_loss"] for m in metrics(part)]


def test_thread_and_process_loaders_train_identically(store, tmp_path):
    # the same batches in the same order: 2 loader threads = 2 DataLoader worker processes (no dropout:
    # a DataLoader draws its workers' base seed from torch's global generator, which dropout also uses)
    no_dropout = {**TINY_DFN, "dropout": 0.0, "gru_dropout": 0.0, "attention_dropout": 0.0}
    train(store, cfg(loader="threads", loader_workers=2, model_kwargs=no_dropout), tmp_path / "threads", epochs=2)
    train(store, cfg(loader="processes", loader_workers=2, model_kwargs=no_dropout), tmp_path / "processes",
          epochs=2)
    a, b = load_checkpoint(tmp_path / "threads", which="latest"), load_checkpoint(tmp_path / "processes", which="latest")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    assert metrics(tmp_path / "threads")[-1]["train_loss"] == metrics(tmp_path / "processes")[-1]["train_loss"]


def test_early_stopping(store, tmp_path):
    # lr tiny -> validation loss barely moves; patience 1 stops after the first non-improving epoch
    result = train(store, cfg(), tmp_path, epochs=30, lr=1e-9, patience=1, schedule="none")
    assert result["stopped_early"] and result["epochs"] < 30


def test_resume_on_other_features_is_refused(store, tmp_path):
    train(store, cfg(), tmp_path, epochs=1)
    other = FakeStore(config=dataclasses.replace(tiny_config(), features=FeatureConfig(hop_length=256)))
    with pytest.raises(ConfigMismatchError, match="hop_length"):
        train(other, cfg(), tmp_path, epochs=2, resume=True)


def test_cross_validation_folds(tmp_path):
    store = FakeStore(per_label={"train": 3}, failed=0)
    store.clips["fold"] = [i % 3 for i in range(len(store.clips))]
    store.valid_frames[:, 1:] = store.valid_frames[:, :1]  # a fold build augments every clip
    result = train(store, "cnn-mel", tmp_path, model_kwargs={"cnn_channels": [4, 8, 8], "fc_hidden": 16},
                   epochs=1, loader_workers=0, progress=False, train_folds=[0, 1], val_folds=[2])
    log = metrics(tmp_path)
    fold2 = int((store.clips.fold == 2).sum())
    per_clip = 2  # windows of a 6 s clip-variant
    assert result["epochs"] == 1 and log[0]["windows"] == (len(store.clips) - fold2) * 2 * per_clip
    with pytest.raises(ConfigError, match="overlap"):
        TrainConfig(train_folds=(0, 1), val_folds=(1,))
