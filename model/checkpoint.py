"""Checkpoints: plain dicts of tensors and JSON-like values, loaded with ``weights_only=True``.

A checkpoint folder holds ``checkpoint.pt`` (the latest epoch: everything
needed to resume) and ``best.pt`` (the epoch with the lowest validation loss,
used by evaluate and predict), plus ``metrics.jsonl`` and ``config.json`` for
people. No custom class is pickled, so loading a checkpoint cannot run code.

The features a model was trained on are pinned by :func:`feature_hash`: the
hash of the store config's ``audio``, ``features`` and ``window`` sections
(augmentation settings do not change what a window of the original variant
contains, so stores that differ only there are compatible).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from pipeline.config import PipelineConfig, canonical_hash
from pipeline.errors import ConfigMismatchError, ModelError
from model.networks import GenreClassifier, build_model
from stores.protocol import ReadableStore

logger = logging.getLogger(__name__)

FORMAT = "genre-model-checkpoint"
VERSION = 1
#: Config sections that determine what a window's features are.
FEATURE_SECTIONS = ("audio", "features", "window")


def feature_hash(config: PipelineConfig | Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the ``audio``, ``features`` and ``window`` sections."""
    data = config.to_dict() if isinstance(config, PipelineConfig) else dict(config)
    part = {k: data[k] for k in FEATURE_SECTIONS}
    return canonical_hash(part)


def run_metadata(store: ReadableStore, cfg: Any, features: Any, model_kwargs: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """What every checkpoint (and its ``config.json``) records about the run besides the weights.

    ``cfg`` is the run's :class:`model.train.TrainConfig`; ``model_kwargs``
    defaults to its ``model_kwargs``.
    """
    return {"model_name": cfg.model, "model_kwargs": dict(cfg.model_kwargs if model_kwargs is None else model_kwargs),
            "train_config": cfg.to_dict(), "pipeline_config": store.config,
            "feature_hash": feature_hash(store.config), "labels": list(store.labels), "features": list(features),
            "store": {"uri": str(store.uri), "fingerprint": str(store.fingerprint),
                      "config_hash": str(store.config_hash), **store_version(store)}}


def store_version(store: ReadableStore) -> dict[str, str]:
    """The version of ``store`` and the URI that opens exactly it (``STORE@VERSION``), for checkpoints
    and reports; empty for stores without versions (an in-memory fake)."""
    version = str(getattr(store, "version", "") or "")
    return {"version": version, "pinned_uri": str(getattr(store, "pinned_uri", store.uri))} if version else {}


def checkpoint_file(path: str | Path, which: str = "best") -> Path:
    """The file of a checkpoint folder (``best.pt``, falling back to ``checkpoint.pt``) or a file itself."""
    path = Path(path)
    if path.is_file():
        return path
    for name in ((f"{which}.pt", "checkpoint.pt") if which == "best" else ("checkpoint.pt",)):
        if (path / name).is_file():
            return path / name
    raise ModelError(f"no checkpoint at {path}: expected {path}/best.pt or {path}/checkpoint.pt "
                     f"(written by `pipeline train --out {path}`)")


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> None:
    """Write atomically (temporary file + rename), so an interrupted save never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, which: str = "best") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True`` (tensors and plain containers only)."""
    file = checkpoint_file(path, which)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read checkpoint {file}: {exc}; it is damaged or not a checkpoint "
                         f"of this project (retrain, or resume from another copy)") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ModelError(f"{file} is not a {FORMAT} file")
    if int(state.get("version", 0)) > VERSION:
        raise ModelError(f"{file} has checkpoint version {state['version']}; this code reads up to {VERSION} "
                         f"(upgrade the package)")
    return state


def check_store(state: Mapping[str, Any], store: ReadableStore, *, what: str = "checkpoint") -> None:
    """Refuse a store whose features or labels differ from those a checkpoint was trained on.

    Raises
    ------
    ConfigMismatchError
        Naming the store URI, the checkpoint's training store and the
        differing config keys or labels.
    """
    trained = state["pipeline_config"]
    current = store.config
    if feature_hash(current) != state["feature_hash"]:
        diffs = []
        for section in FEATURE_SECTIONS:
            for key in sorted(set(trained.get(section, {})) | set(current.get(section, {}))):
                a, b = trained.get(section, {}).get(key), current.get(section, {}).get(key)
                if a != b:
                    diffs.append(f"{section}.{key}: trained {a!r}, store {b!r}")
        raise ConfigMismatchError(
            f"store {store.uri} was built with other feature settings than the {what} "
            f"(trained on {state['store']['uri']}): {'; '.join(diffs) or 'hash differs'}. "
            f"Rebuild the store with the checkpoint's config (saved in its config.json) or train a new model")
    if list(store.labels) != list(state["labels"]):
        raise ConfigMismatchError(
            f"store {store.uri} has labels {list(store.labels)} but the {what} was trained on "
            f"{list(state['labels'])}; use a store of the same dataset/genres")


def load_model(state: Mapping[str, Any]) -> GenreClassifier:
    """Rebuild the network of a checkpoint dict and load its weights (eval mode, CPU)."""
    bands = PipelineConfig.from_dict(state["pipeline_config"]).features.feature_bands()
    model = build_model(state["model_name"], n_classes=len(state["labels"]), feature_bands=bands,
                        **dict(state["model_kwargs"]))
    model.load_state_dict(state["model"])
    return model.eval()
