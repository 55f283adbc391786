"""The trainer on a real store built by ``pipeline build`` from the demo set."""

from __future__ import annotations

import json

import numpy as np
from torch.utils.data import DataLoader

from model.data import WindowStream, window_index
from model.evaluate import evaluate
from model.predict import predict_files
from model.train import train
from stores import open_store

TINY_DFN = {"cnn_channels": [8, 16, 16], "gru_hidden": 16, "fusion_dim": 16, "heads": 2, "fc_hidden": 32,
            "dropout": 0.0, "gru_dropout": 0.0, "attention_dropout": 0.0}


def test_loader_on_a_real_store_two_workers(demo_store):
    uri, _ = demo_store
    store = open_store(uri)
    ds = WindowStream(uri, split="train", features=("mel", "cens"), batch_size=4, buffer_shards=2, with_keys=True)
    seen = [tuple(k) for _, _, kk in DataLoader(ds, batch_size=None, num_workers=2) for k in kk.tolist()]
    rows = window_index(store.valid_frames, store.select(split="train"), range(len(store.variants)),
                        store.window_frames, store.window_hop_frames)
    assert len(seen) == len(rows) == len(set(seen)) and set(seen) == {tuple(r) for r in rows.tolist()}
    assert {k[1] for k in seen} == {0, 1}
    held_out = set(store.select(split="test")) | set(store.select(split="val"))
    assert not {k[0] for k in seen} & held_out


def test_dfn_overfits_the_demo_store_then_evaluates_and_predicts(demo_store, tmp_path):
    uri, root = demo_store
    store = open_store(uri)
    out = tmp_path / "dfn"
    train(uri, "dfn", out, model_kwargs=TINY_DFN, epochs=15, lr=3e-3, batch_size=8, patience=100,
          loader_workers=0, progress=False)
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = log[0]["train_loss"], min(m["train_loss"] for m in log[-3:])
    assert first > 1.5  # ~ln(10) = 2.3 for 10 genres
    assert last < 0.4 * first, (first, last)

    metrics = evaluate(out, uri, tmp_path / "eval", split="train", device="cpu")
    assert metrics["clip"]["n"] == len(store.select(split="train"))
    assert metrics["clip"]["accuracy"] > 0.5  # memorised (chance: 0.1)

    clip = int(store.select(split="train")[0])
    row = store.clips.iloc[clip]
    # predict computes the features exactly as the build stored them (float16 storage aside)
    from model.predict import Predictor

    feats = Predictor(out).features(root / row["source"])
    stored = store.read_clip(clip, features=("mel", "cens"))
    for name in ("mel", "cens"):
        np.testing.assert_allclose(feats[name], stored[name], rtol=2e-3, atol=2e-2 if name == "mel" else 2e-3)
    result = predict_files(out, [root / row["source"]], top=10)[0]
    assert len(result["top"]) == 10 and abs(sum(t["probability"] for t in result["top"]) - 1) < 1e-4
    assert np.isfinite([t["probability"] for t in result["top"]]).all()
