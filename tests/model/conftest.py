"""Shared fixtures of the trainer tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The test machines are small and shared: intra-op threads that spin-wait
    # for a busy core made tiny training steps up to 20x slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """A real store built by ``pipeline.build`` from the synthetic demo set.

    10 genres x 3 clips of 4 s (one window per clip-variant), the original
    and a gain variant, 4 clips per shard; built serially (about 10 s).
    Returns ``(store_uri, dataset_root)``.
    """
    from pipeline.build import build_store
    from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig
    from pipeline.datasets import load_manifest

    base = tmp_path_factory.mktemp("demo")
    manifest = load_manifest("demo", base / "audio", clips_per_genre=3, clip_seconds=4.0)
    cfg = PipelineConfig(audio=AudioConfig(clip_seconds=4.0), augment=AugmentConfig(variants=("gain",)))
    uri = str(base / "store.zarr")
    build_store(manifest, uri, config=cfg, workers=0, clips_per_shard=4, progress=False)
    return uri, manifest.root
