"""Small datasets, tiny configs and a store comparison for the integration tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf
import zarr

from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig
from pipeline.datasets.base import ClipRecord, Manifest
from stores.uri import make_store, quiet_consolidated_warning

LABELS = ("blues", "rock")
#: Root attributes that record when a store was made, not what it holds.
TIMESTAMP_ATTRS = ("finished",)
TIMESTAMP_PROVENANCE = ("created",)


def tiny_config(clip_seconds: float = 4.0, variants: tuple[str, ...] = ("gain", "time_stretch")) -> PipelineConfig:
    """Short clips and few variants: a build costs ~0.3 s per clip on one core."""
    return PipelineConfig(audio=AudioConfig(clip_seconds=clip_seconds),
                          augment=AugmentConfig(variants=variants))


def synthetic_manifest(root: Path, n_clips: int, *, seconds: float = 4.5, seed: int = 0) -> Manifest:
    """``n_clips`` WAV files of chords over noise under ``root/<label>/``, two labels.

    Every third clip is in the test split (no augmented variants), the rest
    in train, so stores hold both present and absent variant chunks.
    """
    rng = np.random.default_rng(seed)
    sr = 22050
    t = np.arange(int(seconds * sr)) / sr
    clips = []
    for i in range(n_clips):
        label = LABELS[i % 2]
        (root / label).mkdir(parents=True, exist_ok=True)
        base = 110.0 * 2 ** (rng.integers(0, 12) / 12)
        ratios = (1.0, 1.25, 1.5) if label == "rock" else (1.0, 1.2, 1.5, 1.8)
        x = sum(np.sin(2 * np.pi * base * r * t) for r in ratios) / len(ratios)
        x = 0.5 * x * (1 + np.sign(np.sin(2 * np.pi * 2 * t))) / 2 + 0.02 * rng.standard_normal(t.size)
        rel = f"{label}/clip{i:03d}.wav"
        sf.write(root / rel, x.astype(np.float32), sr, subtype="PCM_16")
        clips.append(ClipRecord(f"{label}/clip{i:03d}", rel, label, "test" if i % 3 == 0 else "train",
                                group=f"artist{i // 2}"))
    return Manifest("synthetic", root, LABELS, tuple(clips), "fixed", source="made by the test")


def comparable_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Root attributes without the build's timestamps."""
    out = json.loads(json.dumps(dict(attrs)))
    for key in TIMESTAMP_ATTRS:
        out.pop(key, None)
    for key in TIMESTAMP_PROVENANCE:
        out.get("provenance", {}).pop(key, None)
    return out


def open_raw(uri: str | Path, storage_options: Mapping[str, Any] | None = None) -> zarr.Group:
    store = make_store(uri, storage_options=storage_options, read_only=True)
    with quiet_consolidated_warning():
        return zarr.open_group(store, mode="r")


def assert_same_store(a: str | Path, b: str | Path, *, options_a: Mapping[str, Any] | None = None,
                      options_b: Mapping[str, Any] | None = None) -> None:
    """Equal attributes (timestamps aside) and bit-identical arrays (dtype, shape, values)."""
    ga, gb = open_raw(a, options_a), open_raw(b, options_b)
    assert comparable_attrs(ga.attrs) == comparable_attrs(gb.attrs)
    names = sorted(ga.array_keys())
    assert names == sorted(gb.array_keys())
    for name in names:
        xa, xb = ga[name], gb[name]
        assert xa.dtype == xb.dtype and xa.shape == xb.shape, name
        assert xa.metadata.dimension_names == xb.metadata.dimension_names, name
        va, vb = xa[...], xb[...]
        if va.dtype.kind in "fc":
            # bit-identical: compare the raw bytes (NaN == NaN, -0.0 != 0.0)
            assert va.tobytes() == vb.tobytes(), f"array {name} differs"
        else:
            assert np.array_equal(va, vb), f"array {name} differs"
