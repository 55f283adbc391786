"""Evaluation of a checkpoint on a split of a store: window- and clip-level metrics.

A clip's prediction aggregates its windows by the mean log-probability
(the product of the windows' probabilities, i.e. treating the windows as
independent evidence), which is less swayed than a majority vote by a few
confident mistakes and breaks no ties arbitrarily.

Every output names the split (or folds), the store URI and fingerprint and
the checkpoint: ``metrics.json``, ``confusion_clip.csv`` /
``confusion_window.csv``, ``confusion_clip.png`` and ``predictions.csv``.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from model.checkpoint import check_store, checkpoint_file, load_checkpoint, store_version
from model.data import iter_clip_windows, open_source, split_clips
from model.plots import plot_confusion
from model.predict import Predictor, predict_windows
from model.svm import svm_scores
from pipeline.errors import ModelError
from stores.protocol import StoreSource

logger = logging.getLogger(__name__)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, per-class report and confusion matrix (rows true, columns predicted)."""
    # scikit-learn (~0.5 s to import): loaded when metrics are computed
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    k = np.arange(len(labels))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=k, zero_division=0)
    present = support > 0  # macro averages over the classes the split contains
    return {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        "macro_precision": float(precision[present].mean()) if present.any() else float("nan"),
        "macro_recall": float(recall[present].mean()) if present.any() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                              "support": int(support[i])} for i, label in enumerate(labels)},
        "confusion": confusion_matrix(y_true, y_pred, labels=k).tolist(),
    }


def evaluate(checkpoint: str | Path, store: StoreSource, out_dir: str | Path | None = None, *, split: str = "test",
             folds: Sequence[int] | None = None, storage_options: Mapping[str, Any] | None = None,
             device: str = "auto", batch_size: int = 256) -> dict[str, Any]:
    """Evaluate the checkpoint's best model on ``split`` (or ``folds``) of ``store``.

    Parameters
    ----------
    checkpoint : checkpoint folder (``best.pt`` is used) or file.
    store : store URI or open store; its feature config and labels must match the checkpoint's.
    out_dir : where to write the outputs (none written when ``None``).
    split, folds : the clips to evaluate (folds override the split).

    Returns
    -------
    dict : the content of ``metrics.json`` (``window`` and ``clip`` levels,
        each with accuracy, macro_precision, macro_recall, macro_f1,
        per_class and confusion; ``labels``, ``split``, ``store``, ...).

    Raises
    ------
    ConfigMismatchError
        The store's features or labels differ from the checkpoint's.
    ModelError
        No ok clips in the chosen split.
    """
    state = load_checkpoint(checkpoint)
    store_obj = open_source(store, storage_options)
    check_store(state, store_obj, what=f"checkpoint {checkpoint}")
    labels = list(state["labels"])
    clips = split_clips(store_obj, split, folds=folds)
    where = f"folds {list(folds)}" if folds else f"split {split!r}"
    if not len(clips):
        raise ModelError(f"store {store_obj.uri} has no ok clips in {where}; choose another --split")
    truth = np.asarray(store_obj.clips["label_index"], dtype=np.int64)
    clip_ids = list(store_obj.clips["clip_id"])

    predictor = Predictor(state, device=device)
    if predictor.svm is not None:
        clip_ids_eval, clip_log_probs = svm_scores(predictor.svm, store_obj, clips)
        window = None
    else:
        model = predictor.model
        window_true, window_pred, clip_log_probs, clip_ids_eval = [], [], [], []
        for clip, windows in iter_clip_windows(store_obj, clips, model.features):
            log_probs = predict_windows(model, windows, predictor.device, batch_size)
            window_true.append(np.full(len(log_probs), truth[clip]))
            window_pred.append(log_probs.argmax(1))
            clip_log_probs.append(log_probs.mean(0))
            clip_ids_eval.append(clip)
        clip_log_probs = np.stack(clip_log_probs)
        window = classification_metrics(np.concatenate(window_true), np.concatenate(window_pred), labels)
    clip_ids_eval = np.asarray(clip_ids_eval)
    clip_pred = clip_log_probs.argmax(1)
    clip_level = classification_metrics(truth[clip_ids_eval], clip_pred, labels)
    metrics = {
        "split": None if folds else split, "folds": list(folds) if folds else None,
        "store": {"uri": str(store_obj.uri), "fingerprint": str(store_obj.fingerprint), **store_version(store_obj)},
        "checkpoint": str(checkpoint_file(checkpoint)), "model": state["model_name"],
        "trained_on": dict(state["store"]), "epoch": int(state.get("epoch", 0)) + 1, "labels": labels,
        "window": window, "clip": clip_level,
        "aggregation": "mean log-probability over a clip's windows (original variant)",
    }
    trained_version, scored_version = state["store"].get("version", ""), metrics["store"].get("version", "")
    if trained_version and scored_version and trained_version != scored_version:
        metrics["version_note"] = (f"scored on version {scored_version} of the store; the model was trained on version "
                                   f"{trained_version} ({state['store'].get('pinned_uri', '')})")
        logger.warning("%s", metrics["version_note"])
    logger.info("%s on %s of %s: clip accuracy %.3f, macro F1 %.3f", state["model_name"], where, store_obj.uri,
                clip_level["accuracy"], clip_level["macro_f1"])
    if out_dir is not None:
        _write_outputs(Path(out_dir), metrics, labels, [clip_ids[i] for i in clip_ids_eval], truth[clip_ids_eval],
                       clip_log_probs, where)
    return metrics


def _write_outputs(out: Path, metrics: Mapping[str, Any], labels: list[str], ids: list[str], truth: np.ndarray,
                   log_probs: np.ndarray, where: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    header = f"# {metrics['model']} on {where} of {metrics['store']['uri']} (fingerprint {metrics['store']['fingerprint']}" \
             + (f", version {metrics['store']['version']})" if metrics["store"].get("version") else ")")
    for level in ("clip", "window"):
        if metrics[level] is None:
            continue
        with open(out / f"confusion_{level}.csv", "w", newline="") as fh:
            fh.write(header + f"; {level} level; rows true, columns predicted\n")
            w = csv.writer(fh)
            w.writerow(["true\\predicted", *labels])
            for label, row in zip(labels, metrics[level]["confusion"]):
                w.writerow([label, *row])
    with open(out / "predictions.csv", "w", newline="") as fh:
        fh.write(header + "\n")
        w = csv.writer(fh)
        w.writerow(["clip_id", "label", "predicted", *[f"p_{label}" for label in labels]])
        probs = np.exp(log_probs - log_probs.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        for cid, t, p in zip(ids, truth, probs):
            w.writerow([cid, labels[t], labels[int(p.argmax())], *[f"{v:.4f}" for v in p]])
    plot_confusion(metrics["clip"]["confusion"], labels,
                   f"{metrics['model']}: {where}, clip level, acc {metrics['clip']['accuracy']:.3f}\n"
                   f"{metrics['store']['uri']}", out / "confusion_clip.png")
