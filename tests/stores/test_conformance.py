"""What every storage backend must do alike: folder, memory, zip, HTTP and S3.

Each backend gets the same small store (:func:`tests.stores.test_store.build`,
synthetic features: 7 clips in shards of 3, clip 3 failed, test clips without
augmented variants), once per module, and must read it back bit for bit like
a local build of the same inputs, verify it, summarise it, export it and
refuse what it cannot do. Backend-specific behaviours (S3 credentials, a
dropped connection, a missing bucket) are tested in their own modules:
tests/integration/test_s3.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.build import build_store
from pipeline.datasets.base import ClipRecord, Manifest
from pipeline.errors import StoreError, StoreIncompleteError, StoreNotFoundError
from stores import create_store, open_store, schema
from stores.checks import export_store, format_info, format_verify, store_info, verify_store
from stores.uri import local_path
from tests.integration.helpers import assert_same_store, comparable_attrs
from tests.stores.backends import BACKENDS, WRITABLE, Backend, backend_params, open_backend
from tests.stores.test_store import LABELS, build, columns, small_config

READ_ONLY = tuple(name for name in BACKENDS if name not in WRITABLE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The standard store built in a local folder: what every backend must equal."""
    uri = tmp_path_factory.mktemp("reference") / "s.zarr"
    _, results = build(uri, small_config())
    return open_store(uri), results


@pytest.fixture(scope="module", params=backend_params(BACKENDS))
def backend(request, tmp_path_factory):
    with open_backend(request.param, request, tmp_path_factory.mktemp(request.param)) as b:
        yield b


@pytest.fixture(scope="module", params=backend_params(WRITABLE))
def writable(request, tmp_path_factory):
    with open_backend(request.param, request, tmp_path_factory.mktemp(f"{request.param}-rw")) as b:
        yield b


@pytest.fixture(scope="module", params=backend_params(READ_ONLY))
def read_only(request, tmp_path_factory):
    with open_backend(request.param, request, tmp_path_factory.mktemp(f"{request.param}-ro")) as b:
        yield b


@pytest.fixture(scope="module")
def stored(backend: Backend) -> str:
    """The URI of the standard store on ``backend`` (made once per backend)."""
    return backend.put("conformance")


def test_reads_like_the_local_build(backend, stored, reference):
    ref, results = reference
    store = open_store(stored, **backend.options)
    assert store.complete and store.n_clips == 7
    assert store.clips.equals(ref.clips)
    assert store.clips.loc[3, "status"] == "failed"
    np.testing.assert_array_equal(store.valid_frames, ref.valid_frames)
    assert store.aug_params.equals(ref.aug_params)
    assert store.shards == ref.shards == [(0, 3), (3, 6), (6, 7)]
    # select
    ok = store.select()
    assert list(ok) == list(ref.select()) and 3 not in ok and len(ok) == 6
    assert set(store.select(split="train", status=None)) == {1, 2, 4, 5}
    assert list(store.select(label="rock", split=["train", "test"])) == [1, 5]
    # read_clip: every computed clip-variant, equal to the local build and to what was written
    for i in ok:
        for variant, written in results[i].features.items():
            got, want = store.read_clip(i, variant=variant), ref.read_clip(i, variant=variant)
            assert got.keys() == want.keys() == written.keys()
            for name in got:
                assert got[name].dtype == np.float32 and got[name].shape == written[name].shape
                assert got[name].tobytes() == want[name].tobytes(), (i, variant, name)
    with pytest.raises(StoreError, match="status is 'failed'"):
        store.read_clip(3)
    # read_shard, whole and in part (zarr's own reader, engine="zarr", is what verify uses: test_verify_passes)
    for shard in range(len(store.shards)):
        got, want = store.read_shard(shard), ref.read_shard(shard)
        assert got.keys() == want.keys()
        for name in got:
            assert got[name].dtype == np.float16 and got[name].tobytes() == want[name].tobytes(), (shard, name)
    part = store.read_shard(1, features=["cens"], variants=[2, 0])
    assert part.keys() == {"cens"}
    assert part["cens"].tobytes() == ref.read_shard(1, features=["cens"], variants=[2, 0])["cens"].tobytes()


def test_fingerprint_and_metadata_equal_the_local_build(backend, stored, reference):
    ref, _ = reference
    store = open_store(stored, **backend.options)
    assert store.fingerprint == ref.fingerprint and len(store.fingerprint) == 64
    assert store.config == ref.config == small_config().to_dict() and store.config_hash == ref.config_hash
    assert store.labels == LABELS and store.variants == ("original", "gain", "time_stretch")
    assert store.feature_bands == ref.feature_bands
    assert comparable_attrs(store.attrs) == comparable_attrs(ref.attrs)
    # every array bit-identical, dimension names included
    assert_same_store(ref.uri, stored, options_b=backend.storage_options)


def test_size_is_known_where_the_backend_can_list(backend, stored):
    size = open_store(stored, **backend.options).nbytes_stored
    if backend.name == "http":
        assert size == -1  # HTTP cannot list; info says "unknown"
    elif backend.name == "zip":
        assert size == local_path(stored).stat().st_size
    else:
        assert size > 0


def test_verify_passes(backend, stored):
    report = verify_store(stored, **backend.options)
    assert report["ok"], format_verify(report)
    assert report["uri"] == stored
    assert {c["name"] for c in report["checks"]} == {"schema", "complete", "shapes", "columns", "finite",
                                                     "digests", "fingerprint"}


def test_info_works(backend, stored, reference):
    ref, _ = reference
    info = store_info(stored, **backend.options)
    assert info["uri"] == stored and info["complete"] and info["n_clips"] == 7
    assert info["fingerprint"] == ref.fingerprint
    assert info["status"] == {"ok": 6, "failed": 1}
    assert info["ok_per_split_and_label"] == {"train": {"jazz": 2, "rock": 2}, "test": {"jazz": 2}}
    assert info["clips_per_variant"] == {"original": 6, "gain": 4, "time_stretch": 4}
    assert info["features"]["mel"]["dims"] == ["clip", "variant", "mel_band", "frame"]
    if backend.name == "http":
        assert info["nbytes_stored"] == -1 and info["fraction_of_float32"] is None
    else:
        assert info["nbytes_stored"] > 0 and 0 < info["fraction_of_float32"] < 1
    text = format_info(info)
    assert stored in text and ref.fingerprint in text and "time_stretch (4 clips)" in text
    assert ("size " in text) is (backend.name != "http")


def test_a_missing_store_is_not_found_naming_the_uri(backend):
    missing = backend.location("no-such-store")
    with pytest.raises(StoreNotFoundError, match=re.escape(missing)):
        open_store(missing, **backend.options)
    report = verify_store(missing, **backend.options)
    assert not report["ok"] and report["checks"][0]["name"] == "open" and missing in report["checks"][0]["detail"]


def test_export_to_zip(backend, stored, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "published" / "store.zip"
    # HTTP cannot list a folder, but a versioned store's manifest names every object (stores.versions)
    assert export_store(stored, out, **backend.options) == out
    zipped = open_store(out)
    assert zipped.fingerprint == ref.fingerprint and zipped.clips.equals(ref.clips)
    assert zipped.nbytes_stored == out.stat().st_size
    # the backend's store equals the reference (test_fingerprint_and_metadata_...), so the zip must too
    assert_same_store(ref.uri, out)
    assert verify_store(out)["ok"]
    with pytest.raises(StoreError, match="exists"):
        export_store(stored, out, **backend.options)


# -- read-only backends ----------------------------------------------------------


def test_read_only_backends_refuse_writing(read_only, tmp_path):
    target = read_only.location("new")
    with pytest.raises(StoreError, match=rf"{re.escape(target)} is an? .*read-only"):
        create_store(target, config=small_config(), clips=columns(3), labels=LABELS, aug_params={}, dataset={})
    clip = ClipRecord("jazz/a", "jazz/a.wav", "jazz", "train")
    manifest = Manifest("made-up", tmp_path, LABELS, (clip,), "fixed")
    with pytest.raises(StoreError, match="read-only"):
        build_store(manifest, target, config=small_config(), workers=0, progress=False)


# -- writable backends -----------------------------------------------------------


def test_a_partial_build_is_refused_then_resumes(writable, reference):
    ref, _ = reference
    uri = writable.location("partial")
    writer, _ = build(uri, small_config(), stop_after=1, storage_options=writable.storage_options)
    with pytest.raises(StoreIncompleteError, match=rf"{re.escape(uri)} has not finished.*resume"):
        open_store(uri, **writable.options)
    partial = open_store(uri, allow_incomplete=True, **writable.options)
    assert not partial.complete and partial.fingerprint.startswith("incomplete-")
    assert partial.clips["status"].tolist()[3:] == [schema.STATUS_PENDING] * 4
    assert writer.pending_shards() == [1, 2]
    with pytest.raises(StoreError, match="2 shard"):
        writer.finalize()
    report = verify_store(uri, **writable.options)
    assert not report["ok"] and "2 of 3 shards not built" in report["checks"][1]["detail"]
    assert store_info(uri, **writable.options)["complete"] is False
    with pytest.raises(StoreError, match="has not finished"):
        export_store(uri, writable.scratch / "partial.zip", **writable.options)

    build(uri, small_config(), storage_options=writable.storage_options)  # same inputs: resumes
    resumed = open_store(uri, **writable.options)
    # the fingerprint hashes every shard's digest: equal fingerprints, equal stores
    assert resumed.complete and resumed.fingerprint == ref.fingerprint
