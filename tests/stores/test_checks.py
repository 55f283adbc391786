"""stores.checks.verify_store on damaged stores: every check reports, none raises.

A sound store passing verify on every backend, and an unfinished one failing
it, are in test_conformance.py; the command line's verify in
tests/workflows/cli/test_store.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from stores.checks import format_verify, verify_store
from stores.uri import quiet_consolidated_warning
from tests.stores.test_store import build, small_config


@pytest.fixture(scope="module")
def sound(tmp_path_factory) -> Path:
    uri = tmp_path_factory.mktemp("checks") / "sound.zarr"
    build(uri, small_config())
    return uri


@pytest.fixture
def damaged(sound, tmp_path):
    """A copy of the sound store and a way to change it and its consolidated metadata."""
    uri = tmp_path / "damaged.zarr"
    shutil.copytree(sound, uri)

    def damage(change) -> Path:
        with quiet_consolidated_warning():
            group = zarr.open_group(uri, mode="r+", use_consolidated=False)
            change(group)
            zarr.consolidate_metadata(uri)
        return uri

    return damage


def checks_of(uri) -> dict[str, dict]:
    report = verify_store(uri)
    assert not report["ok"], format_verify(report)
    return {c["name"]: c for c in report["checks"]}


def test_sound_store_details(sound):
    report = verify_store(sound)
    assert report == {"uri": str(sound), "ok": True, "checks": [
        {"name": "schema", "ok": True, "detail": "harmonic-feature-store v1"},
        {"name": "complete", "ok": True, "detail": "complete"},
        {"name": "shapes", "ok": True, "detail": "5 features, 7 clips"},
        {"name": "columns", "ok": True, "detail": "6 ok, 1 failed"},
        {"name": "finite", "ok": True, "detail": "no NaN/Inf in valid frames"},
        {"name": "digests", "ok": True, "detail": "3 shards match"},
        {"name": "fingerprint", "ok": True, "detail": "matches the shard digests"},
    ]}
    text = format_verify(report)
    assert text.splitlines()[0] == f"verify {sound}" and text.splitlines()[-1] == "OK"
    assert "  [ok] digests      3 shards match" in text


def test_a_store_that_does_not_open_is_one_failed_check(tmp_path):
    report = verify_store(tmp_path / "none.zarr")
    assert report["uri"] == str(tmp_path / "none.zarr") and not report["ok"]
    [check] = report["checks"]
    assert check["name"] == "open" and not check["ok"] and "no feature store at" in check["detail"]


def test_wrong_shapes_stop_the_checks_there(damaged):
    def change(group):
        group["duration_s"].resize((8,))
        group["valid_frames"].resize((7, 4))

    checks = checks_of(damaged(change))
    assert list(checks) == ["schema", "complete", "shapes"]
    assert checks["shapes"]["detail"] == ("duration_s: shape (8,), expected (7,); "
                                          "valid_frames: shape (7, 4), expected (7, 3)")


def test_inconsistent_columns_and_their_digest(damaged):
    def change(group):
        reason = group["reason"][:]
        reason[3] = ""
        group["reason"][:] = reason
        status = group["status"][:]
        status[5] = "lost"
        group["status"][:] = status

    checks = checks_of(damaged(change))
    assert not checks["columns"]["ok"]
    assert checks["columns"]["detail"] == ("unknown status values ['lost']; failed/pending clips with stored "
                                           "frames; failed clips without a reason")
    assert checks["finite"]["ok"]
    assert not checks["digests"]["ok"]
    assert checks["digests"]["detail"].startswith("1 damaged: shards [1], 0 other; rerun the `pipeline build` command")
    assert checks["digests"]["items"] == ["shard 1: its content differs from the digest its build recorded "
                                          "(an object is missing, or changed where no checksum covers it)"]


def test_valid_frames_out_of_range(damaged):
    def change(group):
        valid = group["valid_frames"][:]
        valid[0, 0] = 0
        valid[1, 1] = 10_000
        group["valid_frames"][:] = valid

    checks = checks_of(damaged(change))
    assert checks["columns"]["detail"].startswith("valid_frames outside 0..")
    assert checks["columns"]["detail"].endswith("; 1 ok clips without original frames")


def test_a_fingerprint_that_does_not_match_the_digests(damaged):
    checks = checks_of(damaged(lambda group: group.attrs.update(fingerprint="0" * 64)))
    assert [name for name, c in checks.items() if not c["ok"]] == ["fingerprint"]
    assert checks["fingerprint"]["detail"] == "the root fingerprint does not match the shard digests"


def test_non_finite_values_are_named_by_feature_and_shard(tmp_path):
    uri = tmp_path / "nan.zarr"
    build(uri, small_config(), nan_clip=4)
    checks = checks_of(uri)
    assert checks["finite"]["detail"] == "cens in shard 1"
    assert checks["digests"]["ok"]  # NaN written by the build itself: the digest agrees
    assert np.isnan(zarr.open_group(uri, mode="r")["cens"][4, 0, 2, 7])
