"""Robustness to noise: test clips with white Gaussian noise added to their audio.

For each clip of the evaluated split the source file is decoded with the
store's own pipeline config (:func:`pipeline.extract.decode`), white
Gaussian noise is added at each signal-to-noise ratio with the pipeline's
``noise`` augmentation (:func:`pipeline.dsp.augment.apply_augmentation`:
noise power = signal power / 10**(SNR/10), measured over the clip's real
audio), the features are recomputed with
:func:`pipeline.extract.features_of_signal`, and every trained model
classifies the clip (:class:`model.predict.Predictor`, the mean
log-probability over the clip's windows, as clip-level evaluation does).

The "clean" condition goes through the same path without noise, so the
numbers differ only by the noise. Each (clip, SNR) has its own noise seed,
derived from (``seed``, clip id, SNR) by SHA-256, so reruns repeat it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from model.checkpoint import check_store
from model.evaluate import classification_metrics
from model.predict import Predictor
from pipeline.config import PipelineConfig
from pipeline.dsp.augment import apply_augmentation, variant_rng
from pipeline.errors import AudioError, PipelineError
from pipeline.extract import decode, features_of_signal
from stores import open_store

logger = logging.getLogger(__name__)


def noise_params(snr_db: float, *, seed: int, clip_id: str) -> dict[str, float]:
    """The ``noise`` augmentation's parameters for one clip at one SNR (seeded, reproducible)."""
    rng = variant_rng(seed, clip_id, f"test-noise-{float(snr_db):g}dB")
    return {"snr_db": float(snr_db), "noise_seed": int(rng.integers(2**31))}


def noisy_features(samples: np.ndarray, cfg: Any, snr_db: float | None, *, seed: int,
                   clip_id: str) -> dict[str, np.ndarray]:
    """Features of ``samples`` (float32 [shape=(n,)], at ``cfg.audio.sample_rate``) with
    noise at ``snr_db`` dB added first (``None``: no noise)."""
    y = samples
    if snr_db is not None:
        y = apply_augmentation("noise", samples, sr=cfg.audio.sample_rate,
                               params=noise_params(snr_db, seed=seed, clip_id=clip_id))
    return features_of_signal(y, cfg)


def noisy_accuracy(checkpoints: Mapping[str, str | Path], store_uri: str, root: str | Path, *,
                   split: str = "test", snr_db: Sequence[float] = (30.0, 20.0, 10.0, 5.0), seed: int = 0,
                   max_clips: int = 0, echo: Callable[[str], None] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Clip accuracy and macro-F1 of each checkpoint on ``split`` at each SNR and clean.

    Parameters
    ----------
    checkpoints : model name -> checkpoint folder (all trained on ``store_uri``'s features).
    store_uri : the store whose ``split`` clips (and their ``source`` paths) are used.
    root : the dataset root the ``source`` paths are relative to.
    snr_db : signal-to-noise ratios in dB.
    max_clips : use the first N clips of the split (0: all).

    Returns
    -------
    model -> list of ``{"snr_db": float | None, "clip_accuracy", "clip_macro_f1", "clips"}``,
    the clean condition (``snr_db`` None) first.
    """
    say = echo or logger.info
    store = open_store(store_uri)
    cfg = PipelineConfig.from_dict(store.config)
    predictors = {name: Predictor(path) for name, path in checkpoints.items()}
    for name, p in predictors.items():
        check_store(p.state, store, what=f"checkpoint of {name} ({checkpoints[name]})")
    clips = store.select(split=split)
    if max_clips:
        clips = clips[:max_clips]
    if not len(clips):
        raise PipelineError(f"store {store.uri} has no ok clips in split {split!r} to add noise to")
    table = store.clips
    conditions: list[float | None] = [None, *[float(s) for s in snr_db]]
    truth: list[int] = []
    preds: dict[str, dict[float | None, list[int]]] = {n: {c: [] for c in conditions} for n in predictors}
    root = Path(root)
    skipped = 0
    for i, clip in enumerate(clips):
        row = table.iloc[int(clip)]
        path = root / str(row["source"])
        try:
            decoded = decode(path, cfg)
        except AudioError as exc:
            # The store decoded it once; a file that changed since is reported, not scored.
            logger.warning("skipping %s in the noise test: %s", path, exc)
            skipped += 1
            continue
        signal = decoded.samples[: decoded.valid_samples]
        truth.append(int(row["label_index"]))
        for cond in conditions:
            feats = noisy_features(signal, cfg, cond, seed=seed, clip_id=str(row["clip_id"]))
            for name, p in predictors.items():
                preds[name][cond].append(int(np.argmax(p.log_probs(feats))))
        if (i + 1) % 10 == 0 or i + 1 == len(clips):
            say(f"      noise test: {i + 1}/{len(clips)} clips x {len(conditions)} conditions")
    if not truth:
        raise PipelineError(f"no {split} clip of {store.uri} could be decoded under {root}; "
                            "check the dataset root (--root)")
    y = np.asarray(truth)
    labels = list(store.labels)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in predictors:
        rows = []
        for cond in conditions:
            m = classification_metrics(y, np.asarray(preds[name][cond]), labels)
            rows.append({"snr_db": cond, "clip_accuracy": m["accuracy"], "clip_macro_f1": m["macro_f1"],
                         "clips": int(len(y)), "skipped": skipped})
        out[name] = rows
    return out
