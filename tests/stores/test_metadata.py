"""The root attributes as a type: exact round trips, the format unchanged, clear errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import zarr

from pipeline.errors import SchemaVersionError, StoreNotFoundError
from stores import open_store, schema
from stores.checks import verify_store
from stores.metadata import ATTRIBUTE_NAMES, BuildSummary, DatasetInfo, LayoutInfo, MetadataError, StoreMetadata
from stores.uri import quiet_consolidated_warning
from tests.stores.test_store import build, small_config

#: Root attributes of a store built (``build(uri, small_config())``) by the code
#: before StoreMetadata existed: the format this module must keep.
GOLDEN = Path(__file__).parent / "data" / "store_v1_attrs.json"


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    uri = tmp_path_factory.mktemp("metadata") / "s.zarr"
    build(uri, small_config())
    return uri


def stored_attrs(uri: Path) -> dict:
    """The root attributes exactly as in the store's zarr.json (order included)."""
    return json.loads((uri / "zarr.json").read_text())["attributes"]


def rewrite_attrs(uri: Path, attrs: dict) -> None:
    group = zarr.open_group(uri, mode="r+", use_consolidated=False)
    group.attrs.put(attrs)
    with quiet_consolidated_warning():
        zarr.consolidate_metadata(group.store)


def shape(value):
    """Keys and their order, recursively; the values' JSON types."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return ["list", *(shape(v) for v in value[:1])]
    return type(value).__name__


def test_golden_attrs_round_trip_exactly(golden):
    meta = StoreMetadata.from_attrs(golden)
    assert meta.to_attrs() == golden
    assert json.dumps(meta.to_attrs()) == json.dumps(golden)  # the order too: same bytes in zarr.json
    assert meta.complete and meta.fingerprint == golden["fingerprint"]
    assert meta.variants[0] == "original" and meta.layout.shards.n_shards == 3
    assert meta.summary == BuildSummary(n_ok=6, n_failed=1)


@pytest.mark.parametrize("stop_after", [None, 1])
def test_store_built_now_round_trips_exactly(tmp_path, stop_after):
    uri = tmp_path / "s.zarr"
    build(uri, small_config(), stop_after=stop_after)
    attrs = stored_attrs(uri)
    meta = StoreMetadata.from_attrs(attrs, uri=str(uri))
    assert json.dumps(meta.to_attrs()) == json.dumps(attrs)
    assert meta.complete is (stop_after is None)
    assert (meta.summary is None) is (stop_after is not None)
    assert list(attrs) == [n for n in ATTRIBUTE_NAMES if n in attrs]


def test_format_is_the_one_written_before(built, golden):
    attrs = stored_attrs(built)
    # every name, its place and its type, recursively (the config's own contents aside)
    assert shape({**attrs, "config": None}) == shape({**golden, "config": None})
    assert list(attrs["config"]) == list(golden["config"])
    assert list(attrs["provenance"]["libraries"]) == list(golden["provenance"]["libraries"])
    for name in ("format", "schema_version", "complete", "clips_hash", "labels", "variants", "augmented_splits",
                 "aug_params", "layout", "dataset", "summary"):
        assert attrs[name] == golden[name], name
    if attrs["config_hash"] == golden["config_hash"]:
        # same config, same clips, same data: the same fingerprint as before
        assert attrs["fingerprint"] == golden["fingerprint"]
        assert attrs["window"] == golden["window"] and attrs["features"] == golden["features"]


def test_store_with_the_attributes_written_before_opens(tmp_path, golden):
    uri = tmp_path / "old.zarr"
    build(uri, small_config())
    rewrite_attrs(uri, golden)
    store = open_store(uri)
    assert store.fingerprint == golden["fingerprint"] and store.config_hash == golden["config_hash"]
    assert store.labels == ("jazz", "rock") and store.variants == ("original", "gain", "time_stretch")
    assert store.window_frames == golden["window"]["window_frames"] and store.n_clips == 7
    assert store.attrs == golden
    assert list(store.aug_params.columns) == ["gain.gain_db", "time_stretch.rate"]


def test_to_attrs_is_plain_json_and_the_object_is_read_only(golden):
    meta = StoreMetadata.from_attrs(golden)
    assert json.loads(json.dumps(meta.to_attrs())) == meta.to_attrs()
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.max_frames = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        meta.features["mel"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        meta.config["audio"]["sample_rate"] = 1  # type: ignore[index]
    changed = meta.to_attrs()
    changed["features"]["mel"] = 1
    assert meta.features["mel"] == golden["features"]["mel"]  # to_attrs hands out copies


def test_metadata_and_readers_pickle(built, golden):
    meta = StoreMetadata.from_attrs(golden)
    assert pickle.loads(pickle.dumps(meta)) == meta and copy.deepcopy(meta) == meta
    store = pickle.loads(pickle.dumps(open_store(built)))  # a reader can be sent to another process
    assert store.metadata == open_store(built).metadata and store.read_clip(0)["mel"].shape[0] == 128


def test_unknown_attributes_are_kept(golden):
    attrs = {**golden, "note": {"by": "an analyst"}}
    meta = StoreMetadata.from_attrs(attrs)
    assert meta.extra == {"note": {"by": "an analyst"}}
    assert meta.to_attrs() == attrs


def test_for_new_store_describes_the_config():
    cfg = small_config()
    meta = StoreMetadata.for_new_store(
        config=cfg.recorded(), clips_hash="c" * 64, labels=["a", "b"], layout=schema.Layout(10, 4), augmented_splits=["train"],
        aug_params={"gain": {"gain_db": "aug__gain__gain_db"}}, dataset=DatasetInfo.of_mapping({"name": "x"}))
    assert not meta.complete and meta.fingerprint is None and meta.summary is None
    assert meta.config_dict() == cfg.to_dict() and meta.config_hash == cfg.config_hash()
    assert meta.features == cfg.features.feature_bands() and meta.variants == cfg.augment.variant_names
    assert meta.window.window_frames == cfg.window_frames and meta.window.sample_rate == cfg.audio.sample_rate
    assert meta.layout == LayoutInfo.of_layout(schema.Layout(10, 4)) and meta.layout.n_shards == 3
    assert meta.dataset == DatasetInfo(name="x", split_scheme="", n_folds=0, source="")
    assert meta.provenance.schema == f"{schema.FORMAT_NAME} v{schema.SCHEMA_VERSION}"
    done = meta.finished_with("f" * 64, BuildSummary(n_ok=9, n_failed=1), finished="2026-01-01T00:00:00+00:00")
    assert done.complete and list(done.to_attrs())[-2:] == ["summary", "finished"]
    assert StoreMetadata.from_attrs(done.to_attrs()) == done


def _delete(attrs: dict, dotted: str) -> None:
    *path, last = dotted.split(".")
    for key in path:
        attrs = attrs[key]
    del attrs[last]


def _set(attrs: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for key in path:
        attrs = attrs[key]
    attrs[last] = value


@pytest.mark.parametrize("field", ["config_hash", "layout", "layout.clips_per_shard", "window.window_frames",
                                   "layout.codec.cname", "provenance.created", "dataset.n_folds"])
def test_missing_attribute_names_store_field_and_fix(golden, field):
    attrs = copy.deepcopy(golden)
    _delete(attrs, field)
    with pytest.raises(MetadataError, match=rf"memory://x/s\.zarr: root attribute '{field}' is missing; .*"
                                            r"pipeline build --overwrite") as info:
        StoreMetadata.from_attrs(attrs, uri="memory://x/s.zarr")
    assert info.value.field == field


@pytest.mark.parametrize("field, value, expected", [
    ("max_frames", "192", "an integer"),
    ("max_frames", 0, "an integer >= 1"),
    ("complete", 1, "true or false"),
    ("labels", "jazz", "a list of strings"),
    ("variants", ["gain", "original"], "'original' first"),
    ("features.mel", 0, "an integer >= 1"),
    ("features", {}, "at least one feature"),
    ("window.overlap", 1.5, r"a number in \[0, 1\)"),
    ("layout.n_shards", 4, r"3 \(7 clips in shards of 3\)"),
    ("layout.codec", "blosc", "a mapping"),
    ("aug_params", {"reverb": {"room": "aug__reverb__room"}}, "a variant of"),
    ("provenance.libraries.numpy", 2, "a string"),
    ("fingerprint", None, "the fingerprint of a complete store"),
    ("summary.n_ok", -1, "an integer >= 0"),
    ("config", [], "a mapping"),
])
def test_malformed_attribute_names_the_value_and_what_is_expected(golden, field, value, expected):
    attrs = copy.deepcopy(golden)
    _set(attrs, field, value)
    with pytest.raises(MetadataError, match=rf"s\.zarr: root attribute '{field}' is .*expected .*{expected}"):
        StoreMetadata.from_attrs(attrs, uri="/data/s.zarr")


def test_not_a_store_and_newer_schema(golden):
    with pytest.raises(StoreNotFoundError, match="not a harmonic-feature-store store"):
        StoreMetadata.from_attrs({"format": "something else"}, uri="/data/g.zarr")
    with pytest.raises(SchemaVersionError, match="Upgrade"):
        StoreMetadata.from_attrs({**golden, "schema_version": schema.SCHEMA_VERSION + 1})


def test_damaged_store_is_refused_by_the_reader_and_reported_by_verify(tmp_path, golden):
    uri = tmp_path / "damaged.zarr"
    build(uri, small_config())
    attrs = stored_attrs(uri)
    del attrs["layout"]["n_clips"]
    rewrite_attrs(uri, attrs)
    with pytest.raises(MetadataError, match=r"damaged\.zarr: root attribute 'layout\.n_clips' is missing"):
        open_store(uri)
    report = verify_store(uri)
    assert not report["ok"] and report["checks"][0]["name"] == "open"
    assert "layout.n_clips" in report["checks"][0]["detail"]


def test_the_dataset_attribute_keeps_the_skipped_files_and_old_stores_round_trip():
    old = {"name": "folder", "split_scheme": "random", "n_folds": 0, "source": "s"}
    assert DatasetInfo.from_attrs(old).to_attrs() == old  # a store from before has no "skipped"
    new = {**old, "skipped": {"that are not audio": ["rock/cover.jpg", "jazz/notes.txt"]}}
    info = DatasetInfo.from_attrs(new)
    assert info.skipped["that are not audio"] == ("rock/cover.jpg", "jazz/notes.txt")
    assert info.to_attrs() == new
    assert DatasetInfo.of_mapping({**old, "skipped": {"x": ("a.txt",)}}).to_attrs()["skipped"] == {"x": ["a.txt"]}
    with pytest.raises(MetadataError, match="relative to the dataset root"):
        DatasetInfo.from_attrs({**old, "skipped": {"that are not audio": ["/home/me/rock/cover.jpg"]}})
    with pytest.raises(MetadataError, match="a list of strings"):
        DatasetInfo.from_attrs({**old, "skipped": {"that are not audio": "rock/cover.jpg"}})
