"""Prediction on audio files with a trained checkpoint.

Features are computed by the same functions the store build used
(:func:`pipeline.extract.decode` and :func:`pipeline.extract.features_of_signal`)
with the pipeline config saved in the checkpoint, so a file is seen exactly
as the training clips' original variant was. The file's 3 s windows (50%
overlap, the checkpoint's window parameters) are classified and their
log-probabilities averaged, as clip-level evaluation does.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from model.checkpoint import load_checkpoint, load_model
from model.data import gather_windows, window_index
from model.networks import NON_NEURAL
from model.runtime import autocast, resolve_device
from model.svm import load_svm, svm_log_probs
from pipeline.config import PipelineConfig
from pipeline.errors import ModelError
from pipeline.extract import decode, features_of_signal
from pipeline.isolation import outcome_of_exception

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_windows(model: torch.nn.Module, windows: Mapping[str, np.ndarray], device: torch.device,
                    batch_size: int = 256) -> np.ndarray:
    """Log-probabilities of each window, float32 [shape=(n_windows, n_classes)]."""
    n = len(next(iter(windows.values())))
    out = []
    for s in range(0, n, batch_size):
        x = {k: torch.from_numpy(np.ascontiguousarray(v[s:s + batch_size])).to(device) for k, v in windows.items()
             if k in model.features}
        with autocast(device):
            logits = model(x)
        out.append(torch.log_softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class Predictor:
    """A loaded checkpoint ready to classify files (keeps the model between calls).

    Parameters
    ----------
    checkpoint : folder (``best.pt``) or file.
    device : "cpu", "cuda", "auto".
    """

    def __init__(self, checkpoint: str | Path | Mapping[str, Any], device: str = "cpu") -> None:
        self.state = checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint(checkpoint)
        self.config = PipelineConfig.from_dict(self.state["pipeline_config"])
        self.labels = list(self.state["labels"])
        self.device = resolve_device(device)
        if self.state["model_name"] in NON_NEURAL:
            self.svm = load_svm(self.state)
            self.model = None
        else:
            self.svm = None
            self.model = load_model(self.state).to(self.device)

    def features(self, path: str | Path) -> dict[str, np.ndarray]:
        """Decode and extract the original variant's features: name -> float32 ``(bands, frames)``."""
        clip = decode(path, self.config)
        return features_of_signal(clip.samples[: clip.valid_samples], self.config)

    @torch.no_grad()
    def log_probs(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Clip log-probabilities ``(n_classes,)``: the mean over the clip's windows."""
        if self.svm is not None:
            return svm_log_probs(self.svm, features["mfcc"])
        frames = next(iter(features.values())).shape[-1]
        cfg = self.config
        rows = window_index(np.array([[frames]]), np.array([0]), [0], cfg.window_frames, cfg.window_hop_frames)
        arrays = {}
        for name in self.model.features:
            x = features[name]
            if x.shape[-1] < cfg.window_frames:  # a clip of under one window: pad as the store does (zeros)
                x = np.pad(x, ((0, 0), (0, cfg.window_frames - x.shape[-1])))
            arrays[name] = x[None, None]
        windows = gather_windows(arrays, rows, cfg.window_frames)
        return predict_windows(self.model, windows, self.device).mean(0)

    def predict(self, path: str | Path, top: int = 3) -> dict[str, Any]:
        """``{"file", "top": [{"label", "probability"}...], "seconds"}`` for one file."""
        start = time.perf_counter()
        lp = self.log_probs(self.features(path))
        probs = np.exp(lp - lp.max())
        probs /= probs.sum()
        order = np.argsort(-probs)[:top]
        return {"file": str(path), "top": [{"label": self.labels[i], "probability": float(probs[i])} for i in order],
                "seconds": time.perf_counter() - start}


def predict_files(checkpoint: str | Path, files: Sequence[str | Path], *, top: int = 3, device: str = "cpu",
                  errors: str = "report") -> list[dict[str, Any]]:
    """Top-``top`` genres of each file.

    ``errors="report"`` turns a file that cannot be classified into
    ``{"file", "error", "category"}`` and goes on with the others: bad audio
    with its :class:`AudioError` category, anything else as an "internal
    error" (our bug). ``"raise"`` raises the first error.
    """
    if errors not in ("report", "raise"):
        raise ModelError(f"errors={errors!r} must be 'report' or 'raise'")
    predictor = Predictor(checkpoint, device=device)
    results = []
    for path in files:
        try:
            results.append(predictor.predict(path, top=top))
        except Exception as exc:  # noqa: BLE001 - one file's failure must not lose the others' answers
            if errors == "raise":
                raise
            outcome = outcome_of_exception(exc, str(path))
            logger.debug("prediction of %s failed: %s", path, outcome.failure_text)
            results.append({"file": str(path), "error": outcome.failure_text, "category": outcome.category})
    return results
