"""The store format on its own: write shards of synthetic features, read them back.

What every backend must do alike (open, read, verify, info, not-found, read-only,
resume, export) is in test_conformance.py, which uses :func:`build` here.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig
from pipeline.errors import ConfigMismatchError, SchemaVersionError, StoreError
from stores import ClipResult, create_store, open_store, open_writer, schema
from stores.metadata import FeatureInfo
from stores.uri import redact_uri

LABELS = ("jazz", "rock")


def small_config() -> PipelineConfig:
    return PipelineConfig(audio=AudioConfig(clip_seconds=4.0),
                          augment=AugmentConfig(variants=("gain", "time_stretch")))


@pytest.fixture
def cfg() -> PipelineConfig:
    return small_config()


def columns(n: int) -> dict[str, list]:
    return {
        "clip_id": [f"c{i:02d}" for i in range(n)],
        "label": [LABELS[i % 2] for i in range(n)],
        "label_index": [i % 2 for i in range(n)],
        "split": ["train" if i % 3 else "test" for i in range(n)],
        "fold": [-1] * n,
        "group": [f"artist{i // 2}" for i in range(n)],
        "source": [f"{LABELS[i % 2]}/c{i:02d}.wav" for i in range(n)],
    }


def fake_result(cfg: PipelineConfig, i: int, split: str, rng: np.random.Generator,
                nan_clip: int = -1) -> ClipResult:
    if i == 3:
        return ClipResult("failed", reason="not decodable: empty file", duration_s=0.0)
    variants = cfg.augment.variant_names if split == "train" else ("original",)
    feats, params = {}, {}
    for v in variants:
        frames = cfg.max_frames - (5 if v == "original" else rng.integers(1, 20))
        feats[v] = {name: (rng.standard_normal((bands, frames)) * 20).astype(np.float32)
                    for name, bands in cfg.features.feature_bands().items()}
        if i == nan_clip:
            feats[v]["cens"][2, 7] = np.nan
        params[v] = {"gain": {"gain_db": float(rng.uniform(-6, 6))},
                     "time_stretch": {"rate": float(rng.uniform(0.9, 1.1))}}.get(v, {})
    return ClipResult("ok", duration_s=4.0 + i, features=feats, params=params)


def build(uri, cfg, n=7, cps=3, overwrite=False, stop_after=None, storage_options=None, nan_clip=-1, recorded=None):
    cols = columns(n)
    writer = create_store(uri, config=recorded or cfg, clips=cols, labels=LABELS,
                          aug_params={"gain": ["gain_db"], "time_stretch": ["rate"]},
                          dataset={"name": "test", "split_scheme": "random", "source": "made up"},
                          clips_per_shard=cps, overwrite=overwrite, storage_options=storage_options)
    rng = np.random.default_rng(0)
    results = [fake_result(cfg, i, cols["split"][i], rng, nan_clip) for i in range(n)]
    for k, i in enumerate(writer.pending_shards()):
        if stop_after is not None and k >= stop_after:
            return writer, results
        start, stop = writer.layout.shard_range(i)
        open_writer(uri, storage_options=storage_options).write_shard(i, results[start:stop])
    writer.finalize()
    return writer, results


def test_feature_arrays_carry_the_recorded_units_and_descriptions(tmp_path, cfg):
    # The writer takes units and descriptions from the recorded config, whatever the feature's name.
    recorded = cfg.recorded()
    assert recorded.features["mel"] == FeatureInfo(cfg.features.n_mels, "dB", "log-mel spectrogram of the signal (power dB)")
    renamed = {name: FeatureInfo(info.bands, f"u-{name}", f"what {name} is") for name, info in recorded.features.items()}
    uri = tmp_path / "s.zarr"
    build(uri, cfg, recorded=dataclasses.replace(recorded, features=renamed))
    store = open_store(uri)
    for name in recorded.features:
        assert dict(store.group[name].attrs) == {"units": f"u-{name}", "description": f"what {name} is"}
    assert store.config_hash == cfg.config_hash() and store.config == cfg.to_dict()


def test_round_trip(tmp_path, cfg):
    uri = tmp_path / "s.zarr"
    _, results = build(uri, cfg)
    store = open_store(uri)
    assert store.complete and store.n_clips == 7
    assert store.variants == ("original", "gain", "time_stretch")
    assert store.labels == LABELS
    assert store.config == cfg.to_dict() and store.config_hash == cfg.config_hash()
    assert store.window_frames == cfg.window_frames and store.window_hop_frames == cfg.window_hop_frames
    assert store.feature_bands == cfg.features.feature_bands()
    assert list(store.clips.columns) == list(schema.CLIP_COLUMNS)
    assert store.clips["status"].tolist().count("failed") == 1
    assert store.clips.loc[3, "reason"] == "not decodable: empty file"
    assert store.clips.loc[2, "duration_s"] == 6.0
    assert store.shards == [(0, 3), (3, 6), (6, 7)]
    ok = store.select()
    assert 3 not in ok and len(ok) == 6
    assert set(store.select(split="train", status=None)) == {1, 2, 4, 5}
    assert list(store.select(label="rock", split=["train", "test"])) == [1, 5]
    for i in ok:
        r = results[i]
        for v, feats in r.features.items():
            got = store.read_clip(i, variant=v)
            for name, x in feats.items():
                assert got[name].dtype == np.float32 and got[name].shape == x.shape
                # float16 with MANTISSA_BITS mantissa bits: relative error <= 2**-(bits + 1)
                np.testing.assert_allclose(got[name], x, rtol=2.0 ** -(schema.MANTISSA_BITS + 1), atol=1e-4)
            assert store.valid_frames[i, store.variants.index(v)] == x.shape[1]
    # test clips have no augmented variants; their chunks are absent
    assert store.valid_frames[0, 1] == 0
    with pytest.raises(StoreError, match="augmented variants exist only"):
        store.read_clip(0, variant="gain")
    with pytest.raises(StoreError, match="status is 'failed'"):
        store.read_clip(3)
    with pytest.raises(StoreError, match="unknown variant"):
        store.read_clip(0, variant="reverb")
    shard = store.read_shard(1, features=["mfcc"])
    assert shard["mfcc"].shape == (3, 3, 13, cfg.max_frames) and shard["mfcc"].dtype == np.float16
    params = store.aug_params
    assert params.loc[1, "gain.gain_db"] == pytest.approx(results[1].params["gain"]["gain_db"])
    assert math.isnan(params.loc[0, "gain.gain_db"])
    assert store.nbytes_stored > 0
    attrs = json.dumps(store.attrs)
    assert str(tmp_path) not in attrs  # no absolute paths of the building machine


def test_absent_variant_chunks_cost_nothing(tmp_path, cfg):
    uri = tmp_path / "s.zarr"
    build(uri, cfg)
    store = open_store(uri)
    # Every shard read back equals what was written: absent chunks read as the fill value
    assert not store.read_shard(0)["mel"][0, 1:].any()


def test_rounding_is_bounded_and_finite():
    x = np.array([0.0, 1e-3, -47.97, 384.7, 39.205166, np.inf, -np.inf, np.nan], np.float32)
    y = schema.round_mantissa(x, 9).astype(np.float32)
    np.testing.assert_allclose(y[:5], x[:5], rtol=2.0 ** -10)
    assert np.isinf(y[5]) and np.isinf(y[6]) and np.isnan(y[7])
    assert (schema.round_mantissa(x[:5], 9).view(np.uint16) & 1).sum() == 0


def test_identical_content_identical_fingerprint(tmp_path, cfg):
    build(tmp_path / "a.zarr", cfg)
    build(tmp_path / "b.zarr", cfg)
    a, b = open_store(tmp_path / "a.zarr"), open_store(tmp_path / "b.zarr")
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 64
    # a different config is a different fingerprint
    other = cfg.replace(augment=AugmentConfig(variants=("gain", "time_stretch"), seed=1))
    build(tmp_path / "c.zarr", other)
    assert open_store(tmp_path / "c.zarr").fingerprint != a.fingerprint


def test_mismatched_config_refused_unless_overwrite(tmp_path, cfg):
    uri = tmp_path / "s.zarr"
    build(uri, cfg)
    other = cfg.replace(audio=AudioConfig(clip_seconds=5.0))
    with pytest.raises(ConfigMismatchError, match=r"audio\.clip_seconds.*--overwrite"):
        build(uri, other)
    with pytest.raises(ConfigMismatchError, match="clip list differs"):
        build(uri, cfg, n=6)
    build(uri, other, overwrite=True)
    assert open_store(uri).config == other.to_dict()


def test_newer_schema_refused(tmp_path, cfg):
    uri = tmp_path / "s.zarr"
    writer, _ = build(uri, cfg)
    writer.group.attrs["schema_version"] = schema.SCHEMA_VERSION + 1
    import zarr

    from stores.uri import quiet_consolidated_warning
    with quiet_consolidated_warning():
        zarr.consolidate_metadata(writer.group.store)
    with pytest.raises(SchemaVersionError, match="Upgrade"):
        open_store(uri)


def test_xarray_named_dims(tmp_path, cfg):
    xr = pytest.importorskip("xarray")
    uri = tmp_path / "s.zarr"
    build(uri, cfg)
    ds = xr.open_zarr(uri)
    assert ds["mel"].dims == ("clip", "variant", "mel_band", "frame")
    assert ds["mfcc"].dims == ("clip", "variant", "mfcc_band", "frame")
    assert ds.sizes["clip"] == 7 and ds.sizes["frame"] == cfg.max_frames
    assert list(ds["variant"].values) == ["original", "gain", "time_stretch"]
    assert ds.attrs["format"] == schema.FORMAT_NAME


def test_redact_uri():
    assert redact_uri("s3://key:secret@bucket/x.zarr") == "s3://bucket/x.zarr"
    assert redact_uri("/data/x.zarr") == "/data/x.zarr"
