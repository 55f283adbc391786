"""ReadableStore: the reader is one, and so is anything else with its members."""

from __future__ import annotations

import inspect

from stores import FeatureStore, ReadableStore, open_store
from stores.protocol import StoreSource
from tests.stores.test_store import build, small_config


def _members(cls: type) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("_")}


def test_feature_store_is_a_readable_store(tmp_path):
    uri = tmp_path / "s.zarr"
    build(uri, small_config(), n=4, cps=2)
    store = open_store(uri)
    assert isinstance(store, ReadableStore)
    assert not isinstance(object(), ReadableStore)
    for name in _members(ReadableStore):
        assert hasattr(store, name), name


def test_protocol_methods_have_the_readers_signatures():
    for name in _members(ReadableStore):
        member = inspect.getattr_static(ReadableStore, name)
        if inspect.isfunction(member):
            assert inspect.signature(member) == inspect.signature(getattr(FeatureStore, name)), name


def test_store_source_names_uris_and_stores():
    assert set(StoreSource.__args__) >= {str, ReadableStore}
