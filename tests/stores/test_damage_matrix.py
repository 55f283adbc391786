"""The damage matrix: every kind of damage, on a folder, a zip and S3, through info, verify, train and a rerun build.

A tiny real demo store (10 genres x 2 clips of 4 s, original + gain, shards
of 4 clips) is built once per module; each case damages a copy and runs the
commands a user would. No case may print a traceback: each command gives
one line naming the store and the fix and a non-zero exit, or succeeds
where the damage does not concern it (``info`` reads no shard object).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from pipeline.build import build_store
from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig
from pipeline.datasets import load_manifest
from pipeline.errors import ConfigMismatchError, StoreDamageError
from stores import open_store
from stores.checks import export_store, verify_store
from tests.stores.damage import (Objects, add_stray, cut_short, flip_byte, folder_objects, overwrite, remove,
                                 s3_objects, zip_objects)
from workflows.cli import main

MEL_1 = "mel/c/1/0/0/0"  # the mel object of shard 1 (clips 4-7)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``(manifest, config, pristine folder store, its fingerprint)``."""
    base = tmp_path_factory.mktemp("damage")
    manifest = load_manifest("demo", base / "audio", clips_per_genre=2, clip_seconds=4.0)
    cfg = PipelineConfig(audio=AudioConfig(clip_seconds=4.0), augment=AugmentConfig(variants=("gain",)))
    uri = base / "pristine.zarr"
    build_store(manifest, str(uri), config=cfg, workers=0, clips_per_shard=4, progress=False)
    return manifest, cfg, uri, open_store(uri).fingerprint


def rebuild(demo, uri, **options):
    manifest, cfg, _, _ = demo
    return build_store(manifest, uri, config=cfg, workers=0, clips_per_shard=4, progress=False,
                       storage_options=options or None)


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    return code, text


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, text
    return lines[0]


def read_every_window(uri: str, **options) -> None:
    """What training reads: the loader over the train split, every variant."""
    from model.data import WindowStream  # torch: only where a case trains

    for _ in WindowStream(uri, split="train", features=("mel", "mfcc", "harmonic_mel", "percussive_mel", "cens"),
                          batch_size=16, storage_options=options or None):
        pass


# name -> (damage, damaged shard or None, what verify names)
SHARD_CASES: dict[str, tuple[Callable[[Objects], None], int, str]] = {
    "flipped byte in chunk data": (lambda o: flip_byte(o, MEL_1, 200), 1, "fails its CRC32C checksum"),
    "flipped byte in the shard index": (lambda o: flip_byte(o, MEL_1, -12), 1, "chunk index fails its CRC32C"),
    "object cut short": (lambda o: cut_short(o, "cens/c/2/0/0/0"), 2, "chunk index fails its CRC32C"),
    "object missing": (lambda o: remove(o, "mfcc/c/0/0/0/0"), 0, "the object is missing"),
    "flipped byte in valid_frames": (lambda o: flip_byte(o, "valid_frames/c/3/0", 10), 3, "fails its CRC32C"),
    "per-clip column object missing": (lambda o: remove(o, "status/c/1"), 1, "'status/c/1': the object is missing"),
    "valid_frames object missing": (lambda o: remove(o, "valid_frames/c/2/0"), 2,
                                    "'valid_frames/c/2/0': the object is missing"),
}
OTHER_CASES: dict[str, tuple[Callable[[Objects], None], str]] = {
    "stray object": (lambda o: add_stray(o, "cens/c/99/0/0/0"), "stray object"),
    "array metadata not JSON": (lambda o: overwrite(o, "mel/zarr.json", b"{not json"), "is not JSON"),
    "array metadata missing": (lambda o: remove(o, "reason/zarr.json"), "zarr.json is missing"),
    "static column damaged": (lambda o: flip_byte(o, "clip_id/c/0", 20), "fails its CRC32C"),
}


def folder_copy(demo, tmp_path) -> tuple[str, Objects]:
    uri = tmp_path / "copy.zarr"
    shutil.copytree(demo[2], uri)
    return str(uri), folder_objects(uri)


#: Damage that `pipeline info` meets (it reads the per-clip columns, never a feature object).
INFO_READS = {"flipped byte in valid_frames", "per-clip column object missing", "valid_frames object missing"}


@pytest.mark.parametrize("case", list(SHARD_CASES))
def test_shard_damage_on_a_folder(demo, tmp_path, capsys, case):
    damage, shard, named = SHARD_CASES[case]
    uri, objects = folder_copy(demo, tmp_path)
    damage(objects)
    code, text = run(capsys, "info", uri)
    if case in INFO_READS:
        line = one_error_line(text)
        assert code == 2 and f"shard {shard} of array" in line and "rerun the `pipeline build`" in line
    else:
        assert code == 0
    code, text = run(capsys, "verify", uri)
    assert code == 1 and f"shard {shard}" in text and named in text and "rerun the `pipeline build`" in text
    with pytest.raises(StoreDamageError, match=rf"{uri}: shard {shard} of array .* is damaged: .*rerun the"):
        read_every_window(uri)
    summary = rebuild(demo, uri)
    assert summary.fingerprint == demo[3] and summary.shards_built == 1
    assert verify_store(uri)["ok"]


@pytest.mark.parametrize("case", list(OTHER_CASES))
def test_other_damage_on_a_folder(demo, tmp_path, capsys, case):
    damage, named = OTHER_CASES[case]
    uri, objects = folder_copy(demo, tmp_path)
    damage(objects)
    code, text = run(capsys, "verify", uri)
    assert code == 1 and named in text
    code, text = run(capsys, "info", uri)
    if case == "static column damaged":  # info reads the columns: one line naming the array and the fix
        assert code == 2 and "array 'clip_id'" in one_error_line(text) and "rerun the `pipeline build`" in text
    else:  # readers use the root's consolidated copy of the array metadata; a stray is no array's
        assert code == 0
    damaged_version = open_store(uri, allow_incomplete=True).version
    summary = rebuild(demo, uri)
    assert summary.fingerprint == demo[3] and summary.shards_built == 0
    assert verify_store(uri)["ok"]
    # the repair is a new version written copy-on-write: the damaged version's objects are untouched (a stray
    # lies outside every version, so deleting it changes none)
    assert open_store(uri).version != damaged_version
    assert verify_store(f"{uri}@{damaged_version}")["ok"] == (case == "stray object")


def test_all_damage_is_reported_in_one_run_and_repaired_together(demo, tmp_path, capsys):
    uri, objects = folder_copy(demo, tmp_path)
    for damage, _, _ in SHARD_CASES.values():
        damage(objects)
    add_stray(objects, "notes/c/0")
    code, text = run(capsys, "verify", uri, "--json")
    assert code == 1
    for shard in (0, 1, 2, 3):
        assert f"shard {shard}" in text
    assert "notes/c/0" in text
    summary = rebuild(demo, uri)
    assert summary.fingerprint == demo[3] and summary.shards_built == 4


def test_train_and_evaluate_stop_naming_the_shard(demo, tmp_path, capsys):
    uri, objects = folder_copy(demo, tmp_path)
    flip_byte(objects, MEL_1, 300)
    out = tmp_path / "run"
    code, text = run(capsys, "train", "--store", uri, "--model", "cnn-mel", "--out", str(out), "--epochs", "1",
                     "--device", "cpu", "--no-progress")
    assert code == 2
    line = one_error_line(text)
    assert f"shard 1 of array 'mel' (object '{MEL_1}', clips 4-7" in line and "rerun the `pipeline build`" in line


@pytest.mark.parametrize("how", ["root zarr.json missing", "root zarr.json not JSON"])
def test_root_metadata(demo, tmp_path, capsys, how):
    uri, objects = folder_copy(demo, tmp_path)
    if how == "root zarr.json missing":
        remove(objects, "zarr.json")
    else:
        overwrite(objects, "zarr.json", b"{not json")
    for command in ("info", "verify"):
        code, text = run(capsys, command, uri)
        assert code in (1, 2) and "restore its zarr.json from a copy" in text
    code, text = run(capsys, "train", "--store", uri, "--out", str(tmp_path / "run"), "--epochs", "1")
    assert code == 2 and uri in one_error_line(text)
    # the root alone records what made the shards: a rerun refuses rather than wipe or trust them
    with pytest.raises(ConfigMismatchError, match="refusing to write into the existing store .*restore its zarr.json"):
        rebuild(demo, uri)
    assert (Path(uri) / MEL_1).is_file()


def test_zip(demo, tmp_path, capsys):
    zipped = tmp_path / "s.zip"
    export_store(demo[2], zipped)
    damaged = tmp_path / "damaged.zip"
    shutil.copyfile(zipped, damaged)
    objects = zip_objects(damaged)
    for damage, _, _ in SHARD_CASES.values():
        damage(objects)
    code, text = run(capsys, "verify", str(damaged))
    assert code == 1
    for _, shard, named in SHARD_CASES.values():
        assert f"shard {shard}" in text and named in text
    with pytest.raises(StoreDamageError, match=f"{damaged}: .*is damaged: .*rerun the `pipeline build`"):
        read_every_window(str(damaged))
    code, text = run(capsys, "export", str(damaged), str(tmp_path / "again.zip"))
    assert code == 2 and "cannot export" in one_error_line(text) and "damaged object(s)" in text
    # a zip is read-only: the repair is in the folder it came from, exported again
    not_a_zip = tmp_path / "not.zip"
    not_a_zip.write_bytes(b"hello")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(zipped.read_bytes()[: zipped.stat().st_size // 2])
    for path in (not_a_zip, cut):
        for command in ("info", "verify"):
            code, text = run(capsys, command, str(path))
            assert code in (1, 2) and "is not a readable zip file" in text and "export it again" in text
    with zipfile.ZipFile(zipped) as zf:
        assert MEL_1 in zf.namelist()


@pytest.mark.s3
def test_s3(demo, s3_server, capsys):
    fs = s3_server.filesystem()
    bucket = "hfs-damage"
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    prefix = f"{bucket}/copy.zarr"
    fs.put(str(demo[2]), prefix, recursive=True)
    uri = f"s3://{prefix}"
    options = s3_server.storage_options()
    flags = [f"--storage-option=key={s3_server.key}", f"--storage-option=secret={s3_server.secret}",
             f"--storage-option=client_kwargs.endpoint_url={s3_server.endpoint_url}",
             f"--storage-option=client_kwargs.region_name={s3_server.region}"]
    objects = s3_objects(fs, prefix)
    for damage, _, _ in SHARD_CASES.values():  # every kind at once: one upload, one repair
        damage(objects)
    for damage, _ in OTHER_CASES.values():
        damage(objects)
    code, text = run(capsys, "verify", uri, *flags)
    assert code == 1
    for _, shard, named in SHARD_CASES.values():
        assert f"shard {shard}" in text and named in text
    for _, named in OTHER_CASES.values():
        assert named in text
    with pytest.raises(StoreDamageError, match=f"{uri}: .*is damaged: .*rerun the `pipeline build`"):
        read_every_window(uri, **options)
    summary = rebuild(demo, uri, **options)
    assert summary.fingerprint == demo[3] and summary.shards_built == 4
    assert verify_store(uri, storage_options=options)["ok"]
    code, text = run(capsys, "info", "s3://hfs-no-such-bucket/x.zarr", *flags)
    assert code == 2 and "no feature store at s3://hfs-no-such-bucket/x.zarr" in one_error_line(text)
    wrong = [f for f in flags if "secret=" not in f] + ["--storage-option=secret=wrong"]
    code, text = run(capsys, "info", uri, *wrong)
    assert code == 2 and "denied" in one_error_line(text) and "credentials" in text
    fs.rm(bucket, recursive=True)


def test_unreachable_endpoints(capsys, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, text = run(capsys, "info", "s3://bucket/x.zarr", "--storage-option=client_kwargs.endpoint_url=http://127.0.0.1:9")
    assert code == 2 and "no credentials for s3://bucket/x.zarr" in one_error_line(text)
    code, text = run(capsys, "info", "http://127.0.0.1:9/x.zarr")
    assert code == 2 and "cannot reach the server of http://127.0.0.1:9/x.zarr" in one_error_line(text)


def test_debug_still_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"hello")
    with pytest.raises(Exception) as caught:
        main(["--debug", "info", str(bad)])
    assert isinstance(caught.value.__cause__, zipfile.BadZipFile)



def test_a_store_built_before_the_checksums(demo, tmp_path, monkeypatch, capsys):
    """A store without per-chunk checksums (built before them) opens, trains and verifies; its fingerprint is
    that of a store with them (the fingerprint hashes decoded content); its reads check the chunk index and the
    chunk frames, verify recomputes its digests, and a rerun repairs it in its own layout."""
    from stores import schema

    monkeypatch.setattr(schema, "CHUNK_CHECKSUMS", False)
    uri = str(tmp_path / "before.zarr")
    rebuild(demo, uri)
    store = open_store(uri)
    assert store.fingerprint == demo[3]
    assert "crc32c" not in str(store.array("mel").metadata.to_dict()["codecs"][0]["configuration"]["codecs"])
    read_every_window(uri)
    objects = folder_objects(Path(uri))
    flip_byte(objects, MEL_1, -12)  # its index still has a CRC32C
    with pytest.raises(StoreDamageError, match="shard 1 of array 'mel'.*chunk index fails its CRC32C"):
        read_every_window(uri)
    code, text = run(capsys, "verify", uri)
    assert code == 1 and "shard 1 array 'mel'" in text
    monkeypatch.setattr(schema, "CHUNK_CHECKSUMS", True)  # the code of now: a repair keeps the store's layout
    summary = rebuild(demo, uri)
    assert summary.fingerprint == demo[3] and summary.shards_built == 1 and verify_store(uri)["ok"]
    assert "crc32c" not in str(open_store(uri).array("mel").metadata.to_dict()["codecs"][0]["configuration"]["codecs"])


def test_evaluate_stops_naming_the_shard(demo, tmp_path):
    """Evaluation's reads (the original variant, clip by clip) stop at a flipped byte, naming the shard."""
    from model.data import iter_clip_windows  # torch: only here

    uri, objects = folder_copy(demo, tmp_path)
    store = open_store(uri)
    test_clips = store.select(split=[s for s in ("test", "val", "train") if len(store.select(split=s))][0])
    shard = int(test_clips[0]) // store.clips_per_shard
    key = f"mel/c/{shard}/0/0/0"
    flip_byte(objects, key, 200)
    with pytest.raises(StoreDamageError, match=rf"shard {shard} of array 'mel' \(object '{key}'"):
        list(iter_clip_windows(open_store(uri), test_clips, ("mel",)))


# -- a store extended with a variant (`build --update`): a shard's new variants are a second object ---------------

MEL_1_EXTENSION = "mel/c/1/1/0/0"  # the mel object of shard 1 holding the appended variant


@pytest.fixture(scope="module")
def extended_demo(demo, tmp_path_factory):
    """``(config, folder store extended with "noise", its fingerprint)``."""
    manifest, cfg, pristine, _ = demo
    uri = tmp_path_factory.mktemp("extended") / "extended.zarr"
    shutil.copytree(pristine, uri)
    more = PipelineConfig(audio=cfg.audio, augment=AugmentConfig(variants=("gain", "noise")))
    build_store(manifest, str(uri), config=more, workers=0, progress=False, update=True)
    return more, uri, open_store(uri).fingerprint


def physical_key(uri: str, key: str) -> str:
    """Where logical ``key`` is in the newest version of the folder store ``uri`` (an update writes its
    objects under ``data/<transaction>/``)."""
    from stores.versions import location_repository

    repo = location_repository(uri, None, writable=False)
    return repo.manifest(repo.resolve(None))[key]


EXTENSION_CASES: dict[str, tuple[Callable[[Objects, str], None], str]] = {
    "flipped byte in chunk data": (lambda o, k: flip_byte(o, k, 200), "fails its CRC32C checksum"),
    "object cut short": (cut_short, "chunk index fails its CRC32C"),
    "object missing": (remove, "the object is missing"),
}


@pytest.mark.parametrize("case", list(EXTENSION_CASES))
def test_damage_to_an_extension_object(demo, extended_demo, tmp_path, capsys, case):
    damage, named = EXTENSION_CASES[case]
    manifest = demo[0]
    cfg, pristine, fingerprint = extended_demo
    uri = str(tmp_path / "copy.zarr")
    shutil.copytree(pristine, uri)
    damage(folder_objects(Path(uri)), physical_key(uri, MEL_1_EXTENSION))
    code, text = run(capsys, "verify", uri)
    assert code == 1 and f"shard 1 array 'mel' object '{MEL_1_EXTENSION}': " in text and named in text
    with pytest.raises(StoreDamageError, match=rf"{uri}: shard 1 of array 'mel' \(object '{MEL_1_EXTENSION}', "
                                               rf"clips 4-7 .*\) is damaged: .*{named}.*rerun the"):
        read_every_window(uri)
    summary = build_store(manifest, uri, config=cfg, workers=0, progress=False)
    assert summary.fingerprint == fingerprint and summary.shards_built == 1
    assert verify_store(uri)["ok"]
