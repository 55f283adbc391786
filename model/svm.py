"""The SVM baseline: an RBF support vector machine on per-clip MFCC statistics.

A clip (variant) is described by the mean and standard deviation over its
valid frames of each MFCC (2 x 13 values), standardised with the training
set's statistics. scikit-learn's ``SVC`` fits it; the fitted machine is saved
as plain arrays (support vectors, dual coefficients, intercepts, gamma) in
the same torch checkpoint format as the networks, and predictions are
computed from those arrays here (one-vs-one decision values and votes, as
libsvm does). So no pickle is ever loaded: a checkpoint from anyone cannot
run code on load.

Scores: the SVM has no probabilities; ``svm_log_probs`` returns the
log-softmax of the one-vs-one vote counts plus a bounded confidence term
(scikit-learn's ``decision_function_shape="ovr"`` transform), whose argmax is
the SVM's prediction. They rank genres but are not calibrated.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from model.checkpoint import load_checkpoint, run_metadata, save_checkpoint
from model.data import clips_by_shard, open_source, split_clips, split_variants
from pipeline.errors import ModelError
from stores.protocol import ReadableStore, StoreSource

logger = logging.getLogger(__name__)


def mfcc_statistics(mfcc: np.ndarray, valid: int | None = None) -> np.ndarray:
    """Mean and std of each coefficient over the valid frames: ``(n_mfcc, frames)`` -> ``(2 * n_mfcc,)``."""
    x = np.asarray(mfcc, dtype=np.float64)[:, : valid if valid else None]
    return np.concatenate([x.mean(axis=1), x.std(axis=1)])


def clip_statistics(store: ReadableStore, clips: np.ndarray,
                    variants: str = "original") -> tuple[np.ndarray, np.ndarray]:
    """MFCC statistics of each clip-variant present; ``(features (n, 26), clip index (n,))``."""
    cols = split_variants(store, variants)
    valid = np.asarray(store.valid_frames)
    feats, owners = [], []
    for shard, start, mine in clips_by_shard(store, clips):
        mfcc = store.read_shard(shard, features=("mfcc",), variants=cols)["mfcc"]
        for clip in mine:
            for v in cols:
                if valid[clip, v] > 0:
                    feats.append(mfcc_statistics(mfcc[clip - start, v], int(valid[clip, v])))
                    owners.append(clip)
    return np.asarray(feats).reshape(len(feats), -1), np.asarray(owners, dtype=np.int64)


def _rbf(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-gamma * np.maximum(d, 0.0))


def svm_decision(svm: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """One-vs-one decision values ``(n, k(k-1)/2)`` for standardised statistics ``x``; > 0 votes the first class."""
    sv, dual, intercept = svm["support_vectors"], svm["dual_coef"], svm["intercept"]
    n_sup = svm["n_support"].astype(np.int64)
    k = len(n_sup)
    starts = np.concatenate([[0], np.cumsum(n_sup)])
    kernel = _rbf(x, sv, float(svm["gamma"]))  # (n, n_sv)
    out = np.empty((len(x), k * (k - 1) // 2))
    p = 0
    for i in range(k):
        for j in range(i + 1, k):
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            out[:, p] = (kernel[:, si] @ dual[j - 1, si] + kernel[:, sj] @ dual[i, sj] + intercept[p])
            p += 1
    return out


def svm_scores_of(svm: Mapping[str, np.ndarray], stats: np.ndarray) -> np.ndarray:
    """Vote counts plus a confidence in (-1/3, 1/3) per class, ``(n, k)``; argmax = the SVM's prediction."""
    x = (stats - svm["mean"]) / svm["scale"]
    dec = svm_decision(svm, x)
    k = len(svm["n_support"])
    votes, conf = np.zeros((len(x), k)), np.zeros((len(x), k))
    p = 0
    for i in range(k):
        for j in range(i + 1, k):
            votes[:, i] += dec[:, p] > 0
            votes[:, j] += dec[:, p] <= 0
            conf[:, i] += dec[:, p]
            conf[:, j] -= dec[:, p]
            p += 1
    return votes + conf / (3 * (np.abs(conf) + 1))


def _log_softmax(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def svm_log_probs(svm: Mapping[str, np.ndarray], mfcc: np.ndarray) -> np.ndarray:
    """Scores of one clip from its MFCC ``(n_mfcc, frames)`` (see module docstring), ``(n_classes,)``."""
    return _log_softmax(svm_scores_of(svm, mfcc_statistics(mfcc)[None]))[0]


def svm_scores(svm: Mapping[str, np.ndarray], store: ReadableStore, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip indices and their log-softmax scores ``(n, n_classes)`` (original variant)."""
    stats, owners = clip_statistics(store, clips, "original")
    return owners, _log_softmax(svm_scores_of(svm, stats))


def load_svm(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The SVM arrays of a checkpoint dict, as float64 numpy."""
    return {k: v.numpy().astype(np.float64) for k, v in state["svm"].items()}


def train_svm(store: StoreSource, out_dir: str | Path, cfg: Any, *,
              storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fit the SVM on every stored variant of the training clips; write ``best.pt`` and ``checkpoint.pt``.

    ``cfg.model_kwargs`` may set ``C`` (default 10) and ``gamma`` (default
    "scale"). The validation split (or folds) is scored for the log.
    """
    from sklearn.preprocessing import StandardScaler  # scikit-learn (~0.5 s): only the SVM baseline needs it
    from sklearn.svm import SVC  # scikit-learn (~0.5 s): only the SVM baseline needs it

    out = Path(out_dir)
    if (out / "checkpoint.pt").exists():
        state = load_checkpoint(out, which="latest")
        if state.get("model_name") == "svm-mfcc":
            logger.info("%s already holds a fitted SVM; nothing to do", out)
            return {"epochs": 1, "out": str(out), "rank": 0, "world_size": 1}
        raise ModelError(f"{out} already holds a training run of {state.get('model_name')}; choose another --out")
    kwargs = {"C": 10.0, "gamma": "scale", **dict(cfg.model_kwargs)}
    bad = set(kwargs) - {"C", "gamma"}
    if bad:
        raise ModelError(f"svm-mfcc accepts model arguments C and gamma, not {sorted(bad)}")
    store = open_source(store, storage_options)
    t0 = time.perf_counter()
    labels = np.asarray(store.clips["label_index"], dtype=np.int64)
    train_stats, owners = clip_statistics(store, split_clips(store, "train", folds=cfg.train_folds), "all")
    if not len(train_stats):
        raise ModelError(f"store {store.uri} has no ok training clips to fit the SVM on")
    scaler = StandardScaler().fit(train_stats)
    svc = SVC(kernel="rbf", C=float(kwargs["C"]), gamma=kwargs["gamma"], random_state=cfg.seed)
    svc.fit(scaler.transform(train_stats), labels[owners])
    n_classes = len(store.labels)
    if len(svc.classes_) != n_classes:
        raise ModelError(f"the training clips of {store.uri} cover only classes {svc.classes_.tolist()} of "
                         f"{n_classes}; the SVM needs examples of every genre")
    dual, intercept = svc.dual_coef_, svc.intercept_
    if n_classes == 2:  # scikit-learn flips the binary sign convention of libsvm; undo it
        dual, intercept = -dual, -intercept
    arrays = {"support_vectors": svc.support_vectors_, "dual_coef": dual, "intercept": intercept,
              "n_support": svc.n_support_, "gamma": np.asarray(svc._gamma), "mean": scaler.mean_,
              "scale": scaler.scale_}
    svm = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in arrays.items()}
    numpy_svm = {k: v.numpy() for k, v in svm.items()}
    train_acc = float(np.mean(svm_scores_of(numpy_svm, train_stats).argmax(1) == labels[owners]))
    val_clips = split_clips(store, cfg.val_split, folds=cfg.val_folds)
    val_acc = float("nan")
    if len(val_clips):
        val_owners, val_scores = svm_scores(numpy_svm, store, val_clips)
        val_acc = float(np.mean(val_scores.argmax(1) == labels[val_owners]))
    record = {"epoch": 1, "train_loss": None, "train_acc": train_acc, "val_loss": None, "val_acc": val_acc,
              "lr": None, "windows": int(len(train_stats)), "time_s": round(time.perf_counter() - t0, 3),
              "split": cfg.val_split, "store": str(store.uri)}
    state = {**run_metadata(store, cfg, ["mfcc"], model_kwargs=kwargs), "svm": svm, "epoch": 0, "metrics": record}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(state, out / "best.pt")
    save_checkpoint(state, out / "checkpoint.pt")
    (out / "config.json").write_text(json.dumps({k: v for k, v in state.items() if k != "svm"}, indent=2))
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    logger.info("svm-mfcc: %d support vectors, train acc %.3f, val acc %.3f", len(svc.support_vectors_),
                train_acc, val_acc)
    return {"epochs": 1, "train_acc": train_acc, "val_acc": val_acc, "out": str(out), "rank": 0, "world_size": 1}

