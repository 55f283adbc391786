"""A small in-memory store with the reader API of ``stores.open_store`` (for tests of model/).

Features are synthetic but learnable: each genre raises a different block of
mel bands and a different chroma bin, plus noise, so a network can separate
them from one window.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from pipeline.config import AudioConfig, AugmentConfig, FeatureConfig, PipelineConfig


def tiny_config(clip_seconds: float = 6.0, variants: tuple[str, ...] = ("gain",)) -> PipelineConfig:
    return PipelineConfig(audio=AudioConfig(clip_seconds=clip_seconds),
                          features=FeatureConfig(),
                          augment=AugmentConfig(variants=variants))


@dataclasses.dataclass
class FakeStore:
    """In-memory feature store; ``shard_clips`` clips per shard; pickles (for DataLoader workers)."""

    labels: tuple[str, ...] = ("blues", "jazz", "rock")
    per_label: dict = dataclasses.field(default_factory=lambda: {"train": 4, "val": 1, "test": 1})
    shard_clips: int = 3
    seed: int = 0
    config: PipelineConfig = dataclasses.field(default_factory=tiny_config)  # recorded as its dict (__post_init__)
    uri: str = "memory://fake-store"
    failed: int = 1

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        cfg = self.config
        self.variants = cfg.augment.variant_names
        self.feature_bands = cfg.features.feature_bands()
        self.window_frames = cfg.window_frames
        self.window_hop_frames = cfg.window_hop_frames
        self.config_hash = cfg.config_hash()
        self.fingerprint = f"fake-{self.seed}"
        self.attrs = {"config": cfg.to_dict(), "labels": list(self.labels)}
        self.config = cfg.to_dict()  # what ReadableStore.config gives: the config as the store records it
        rows = []
        for split, n in self.per_label.items():
            for li, label in enumerate(self.labels):
                for k in range(n):
                    rows.append(dict(clip_id=f"{label}.{split}.{k}", label=label, label_index=li, split=split,
                                     fold=-1, group="", source=f"{label}/{split}{k}.wav",
                                     duration_s=cfg.audio.clip_seconds, status="ok", reason=""))
        for k in range(self.failed):
            rows.append(dict(clip_id=f"broken.{k}", label=self.labels[0], label_index=0, split="train", fold=-1,
                             group="", source=f"broken{k}.wav", duration_s=0.0, status="failed",
                             reason="not decodable"))
        order = rng.permutation(len(rows))  # splits interleave across shards, as in a real store
        self.clips = pd.DataFrame([rows[i] for i in order]).reset_index(drop=True)
        n_clips, n_var = len(self.clips), len(self.variants)
        full = cfg.features.n_frames(cfg.audio.clip_samples)
        self.max_frames = cfg.max_frames
        valid = np.zeros((n_clips, n_var), np.int32)
        for i, row in self.clips.iterrows():
            if row.status != "ok":
                continue
            valid[i, 0] = full - int(rng.integers(0, 20))
            if row.split in cfg.augment.augment_splits:
                valid[i, 1:] = full - int(rng.integers(0, 40))
        self.valid_frames = valid
        self._data = {}
        for name, bands in self.feature_bands.items():
            arr = np.zeros((n_clips, n_var, bands, self.max_frames), np.float16)
            for i in range(n_clips):
                li = int(self.clips.label_index[i])
                for v in range(n_var):
                    n = valid[i, v]
                    if not n:
                        continue
                    x = rng.normal(0.0, 1.0, (bands, n))
                    lo, hi = li * bands // len(self.labels), (li + 1) * bands // len(self.labels)
                    x[lo:hi] += 2.0
                    arr[i, v, :, :n] = (x * 5 - 40 if name.endswith("mel") else x)
            self._data[name] = arr
        self.shards = [(s, min(s + self.shard_clips, n_clips)) for s in range(0, n_clips, self.shard_clips)]
        self.reads = 0

    def select(self, split=None, fold=None, label=None, status="ok"):
        m = np.ones(len(self.clips), bool)
        for column, wanted in (("split", split), ("fold", fold), ("label", label), ("status", status)):
            if wanted is None:
                continue
            values = {wanted} if isinstance(wanted, (str, int)) else set(wanted)
            m &= self.clips[column].isin(values).to_numpy()
        return np.flatnonzero(m)

    def read_clip(self, index, variant="original", features=None):
        v = self.variants.index(variant)
        return {n: self._data[n][index, v].astype(np.float32) for n in (features or self.feature_bands)}

    def read_shard(self, shard_index, features=None, *, variants=None, out=None, engine="auto"):
        self.reads += 1
        start, stop = self.shards[shard_index]
        columns = list(range(len(self.variants))) if variants is None else list(variants)
        result = {}
        for n in (features or self.feature_bands):
            target = out[n] if out is not None and n in out else np.zeros_like(self._data[n][start:stop])
            target[:, columns] = self._data[n][start:stop, columns]
            result[n] = target
        return result
