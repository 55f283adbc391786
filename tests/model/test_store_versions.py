"""A checkpoint pins the store version it was trained on: its URI reopens exactly that
version after the store grew, and evaluation says when it scores on another (issue 21)."""

from __future__ import annotations

import shutil

import pytest

from model.checkpoint import load_checkpoint
from model.evaluate import evaluate
from model.train import train
from stores import open_store

TINY = {"cnn_channels": [4, 8, 8], "gru_hidden": 8, "fusion_dim": 8, "heads": 2, "fc_hidden": 16}


@pytest.fixture(scope="module")
def grown_after_training(demo_store, tmp_path_factory):
    """A copy of the demo store, a model trained on it, then the store grown by one clip per genre."""
    from pipeline.build import build_store
    from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig
    from pipeline.datasets import load_manifest

    base = tmp_path_factory.mktemp("pinned")
    uri = str(base / "store.zarr")
    shutil.copytree(demo_store[0], uri)
    out = base / "ckpt"
    train(uri, "dfn", out, model_kwargs=TINY, epochs=1, lr=3e-3, batch_size=8, loader_workers=0, progress=False)
    manifest = load_manifest("demo", base / "audio", clips_per_genre=4, clip_seconds=4.0)
    cfg = PipelineConfig(audio=AudioConfig(clip_seconds=4.0), augment=AugmentConfig(variants=("gain",)))
    build_store(manifest, uri, config=cfg, workers=0, progress=False, update=True)
    return uri, out


def test_the_checkpoint_records_and_reopens_its_version(grown_after_training):
    uri, out = grown_after_training
    trained_on = load_checkpoint(out)["store"]
    assert trained_on["pinned_uri"] == f"{uri}@{trained_on['version']}"
    pinned, newest = open_store(trained_on["pinned_uri"]), open_store(uri)
    assert pinned.fingerprint == trained_on["fingerprint"] != newest.fingerprint
    assert pinned.n_clips == 30 and newest.n_clips > 30


def test_evaluate_says_when_it_scores_another_version(grown_after_training):
    uri, out = grown_after_training
    trained_on = load_checkpoint(out)["store"]
    on_newest = evaluate(out, uri, split="test", device="cpu")
    assert trained_on["version"] in on_newest["version_note"] and on_newest["store"]["version"] in on_newest["version_note"]
    on_pinned = evaluate(out, trained_on["pinned_uri"], split="test", device="cpu")
    assert "version_note" not in on_pinned and on_pinned["store"]["version"] == trained_on["version"]
