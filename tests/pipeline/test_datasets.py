"""Dataset adapters on fixture trees in the real layouts, the registry and the split helpers."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pipeline.datasets import DATASETS, list_datasets, load_manifest
from pipeline.datasets.fma import COLUMNS, load_fma, read_tracks
from pipeline.datasets.gtzan import GENRES, fault_filtered_lists
from pipeline.datasets.splits import grouped_split, stratified_folds, stratified_split
from pipeline.errors import ConfigError, DatasetError, PipelineError
from tests.datasets_fixtures import (default_fma_rows, fma_row, make_fma_tree, make_folder_tree,
                                     make_gtzan_tree, write_tracks_csv)


def _check_paths(manifest) -> None:
    """Every clip path is relative, POSIX, exists under the root; ids unique; order sorted."""
    ids = [c.clip_id for c in manifest.clips]
    assert len(set(ids)) == len(ids)
    for clip in manifest.clips:
        assert not Path(clip.path).is_absolute() and "\\" not in clip.path
        assert manifest.absolute_path(clip).is_file(), clip.path
        assert clip.label in manifest.labels
    assert [c.path for c in manifest.clips] == sorted(c.path for c in manifest.clips)


# -- registry ---------------------------------------------------------------

def test_registry_names():
    assert list_datasets() == ["demo", "gtzan", "fma-small", "fma-medium", "fma-large", "folder"]
    assert DATASETS["gtzan"].default_split == "fault-filtered"
    assert DATASETS["fma-medium"].default_split == "official"
    assert "subset" not in DATASETS["fma-medium"].options


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        load_manifest("gtzann", "/nowhere")
    for name in list_datasets():
        assert name in str(err.value)


def test_unknown_split_and_option(tmp_path):
    make_gtzan_tree(tmp_path, genres=("blues",), n_per_genre=2)
    with pytest.raises(ConfigError, match="fault-filtered, random, folds"):
        load_manifest("gtzan", tmp_path, split="official")
    with pytest.raises(ConfigError, match="valid options: .*n_folds"):
        load_manifest("gtzan", tmp_path, split="random", clip_seconds=3)


# -- GTZAN ------------------------------------------------------------------

def test_fault_filtered_lists_are_the_published_split():
    lists = fault_filtered_lists()
    assert {k: len(v) for k, v in lists.items()} == {"train": 443, "val": 197, "test": 290}
    everything = [cid for ids in lists.values() for cid in ids]
    assert len(set(everything)) == 930
    assert {cid.split(".")[0] for cid in everything} == set(GENRES)
    # Spot checks against torchaudio's filtered_* lists.
    assert "blues.00029" in lists["train"] and "blues.00000" in lists["val"]
    assert "blues.00012" in lists["test"] and "jazz.00054" in lists["train"]


@pytest.mark.parametrize("where", ["parent", "genres"])
def test_gtzan_original_au_layout(tmp_path, where):
    genres_dir = make_gtzan_tree(tmp_path, n_per_genre=3, macos_junk=True)
    # The fixture writes GTZAN's own format: Sun AU, 16-bit big-endian.
    first = genres_dir / "blues" / "blues.00000.au"
    assert first.read_bytes()[:4] == b".snd" and first.read_bytes()[12:16] == b"\x00\x00\x00\x03"
    root = tmp_path if where == "parent" else genres_dir
    m = load_manifest("gtzan", root, split="random", seed=3)
    assert len(m) == 30 and m.labels == GENRES and m.split_scheme == "random" and m.n_folds == 0
    _check_paths(m)
    assert m.clips[0].clip_id == "blues.00000"
    assert m.clips[0].path == ("genres/blues/blues.00000.au" if where == "parent" else "blues/blues.00000.au")
    assert all(not Path(c.path).name.startswith(".") for c in m.clips)
    assert {c.split for c in m.clips} <= {"train", "val", "test"}
    assert all(c.group == "" and c.fold == -1 for c in m.clips)


@pytest.mark.parametrize("where", ["parent", "Data"])
def test_gtzan_kaggle_wav_layout(tmp_path, where):
    make_gtzan_tree(tmp_path, genres=("jazz", "rock"), n_per_genre=10, ext="wav", layout="kaggle",
                    macos_junk=True)
    root = tmp_path if where == "parent" else tmp_path / "Data"
    m = load_manifest("gtzan", root, split="folds", seed=0)
    assert m.labels == ("jazz", "rock") and len(m) == 20
    assert m.split_scheme == "folds" and m.n_folds == 10
    assert sorted(c.fold for c in m.clips) == sorted(list(range(10)) * 2)
    assert all(c.split == "" for c in m.clips)
    _check_paths(m)
    assert m.clips[0].path.endswith("Data/genres_original/jazz/jazz.00000.wav"[-len(m.clips[0].path):])


def test_gtzan_fault_filtered_full_tree(tmp_path, caplog):
    make_gtzan_tree(tmp_path, n_per_genre=100, seconds=0.01, distinct=False)
    with caplog.at_level(logging.INFO, logger="pipeline.datasets.gtzan"):
        m = load_manifest("gtzan", tmp_path)
    assert m.split_scheme == "fault-filtered"
    assert Counter(c.split for c in m.clips) == {"train": 443, "val": 197, "test": 290}
    assert len(m) == 930 and "70 outside the lists excluded" in caplog.text
    lists = fault_filtered_lists()
    assert {c.clip_id for c in m.clips if c.split == "test"} == set(lists["test"])
    _check_paths(m)


def test_gtzan_fault_filtered_partial_copy_warns(tmp_path, caplog):
    make_gtzan_tree(tmp_path, genres=("blues",), numbers=range(0, 50))
    with caplog.at_level(logging.WARNING):
        m = load_manifest("gtzan", tmp_path)
    # blues 00000-00011 and 00050-00060 are val, 00012-00028 test, 00029-00049 train.
    assert Counter(c.split for c in m.clips) == {"val": 12, "test": 17, "train": 21}
    assert "missing" in caplog.text and "lacks genre folder" in caplog.text


def test_gtzan_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_manifest("gtzan", tmp_path / "nope")
    with pytest.raises(DatasetError, match="needs a root folder"):
        load_manifest("gtzan", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no GTZAN genre folders.*genres_original"):
        load_manifest("gtzan", tmp_path / "empty")
    make_gtzan_tree(tmp_path / "g", genres=("blues",), n_per_genre=2)
    (tmp_path / "g" / "genres" / "rock").mkdir()
    (tmp_path / "g" / "genres" / "rock" / "._rock.00000.au").write_bytes(b"junk")
    with pytest.raises(DatasetError, match=r"genres/rock holds no clips.*rock\.000NN\.au"):
        load_manifest("gtzan", tmp_path / "g", split="random")
    # DatasetError is also a FileNotFoundError and a PipelineError.
    with pytest.raises(FileNotFoundError):
        load_manifest("gtzan", tmp_path / "nope")


# -- FMA --------------------------------------------------------------------

def test_read_tracks_matches_full_pandas_read(tmp_path):
    path = write_tracks_csv(tmp_path / "tracks.csv", default_fma_rows())
    full = pd.read_csv(path, index_col=0, header=[0, 1])
    assert full.shape == (18, 52) and full.index.name == "track_id"
    ours = read_tracks(path)
    assert list(ours.index) == list(full.index)
    for col in COLUMNS:
        expected = full[col].fillna("").astype(str).tolist()
        assert ours[col].tolist() == expected, col


def test_fma_medium_nests_small_and_uses_official_split(tmp_path):
    make_fma_tree(tmp_path, "medium")
    m = load_manifest("fma-medium", tmp_path)
    rows = default_fma_rows()
    expected_ids = [t for t, r in rows.items() if r[("set", "subset")] in ("small", "medium")]
    assert [int(c.clip_id) for c in m.clips] == expected_ids
    assert m.labels == ("Hip-Hop", "Jazz", "Rock") and m.split_scheme == "official"
    mapping = {"training": "train", "validation": "val", "test": "test"}
    for clip in m.clips:
        row = rows[int(clip.clip_id)]
        assert clip.split == mapping[row[("set", "split")]]
        assert clip.group == str(row[("artist", "id")])
        assert clip.label == row[("track", "genre_top")]
        tid = f"{int(clip.clip_id):06d}"
        assert clip.clip_id == tid and clip.path == f"fma_medium/{tid[:3]}/{tid}.mp3"
    _check_paths(m)


def test_fma_small_and_large(tmp_path):
    make_fma_tree(tmp_path, "small")
    small = load_manifest("fma-small", tmp_path)
    assert len(small) == 8 and small.labels == ("Hip-Hop", "Rock")
    assert all(c.path.startswith("fma_small/") for c in small.clips)
    make_fma_tree(tmp_path, "large")
    large = load_manifest("fma-large", tmp_path)
    # 18 tracks, 2 of them without a top genre.
    assert len(large) == 16 and "" not in large.labels
    assert all(c.path.startswith("fma_large/") for c in large.clips)


def test_fma_missing_audio_policies(tmp_path, caplog):
    make_fma_tree(tmp_path, "small", missing_audio=[5, 3002])
    with caplog.at_level(logging.WARNING):
        kept = load_manifest("fma-small", tmp_path)
    assert len(kept) == 8 and "2 of 8 listed fma-small tracks have no mp3" in caplog.text
    assert not kept.absolute_path(kept.clips[1]).exists()
    skipped = load_manifest("fma-small", tmp_path, missing="skip")
    assert [c.clip_id for c in skipped.clips if c.clip_id in ("000005", "003002")] == []
    assert len(skipped) == 6
    with pytest.raises(DatasetError, match="2 of 8 .*missing='skip'"):
        load_manifest("fma-small", tmp_path, missing="error")
    with pytest.raises(ConfigError, match="include, skip, error"):
        load_manifest("fma-small", tmp_path, missing="ignore")


def test_fma_folds_keep_artists_together(tmp_path):
    make_fma_tree(tmp_path, "medium")
    m = load_manifest("fma-medium", tmp_path, split="folds", n_folds=3, seed=1)
    assert m.n_folds == 3 and all(c.split == "" for c in m.clips)
    assert {c.fold for c in m.clips} == {0, 1, 2}
    folds_of_artist: dict[str, set[int]] = {}
    for clip in m.clips:
        folds_of_artist.setdefault(clip.group, set()).add(clip.fold)
    assert all(len(f) == 1 for f in folds_of_artist.values())
    again = load_manifest("fma-medium", tmp_path, split="folds", n_folds=3, seed=1)
    assert again.clips == m.clips


def test_fma_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist; expected fma_metadata/tracks.csv"):
        load_manifest("fma-medium", tmp_path / "nope")
    (tmp_path / "fma_medium").mkdir()
    with pytest.raises(DatasetError, match=r"fma_metadata/tracks.csv not found; unpack fma_metadata.zip"):
        load_manifest("fma-medium", tmp_path)
    make_fma_tree(tmp_path / "meta_only", audio=False)
    with pytest.raises(DatasetError, match=r"fma_small not found; unpack fma_small.zip"):
        load_manifest("fma-small", tmp_path / "meta_only")
    (tmp_path / "meta_only" / "fma_small").mkdir()
    with pytest.raises(DatasetError, match=r"none of the 8 listed fma-small mp3 files exists"):
        load_manifest("fma-small", tmp_path / "meta_only", missing="include")
    bad = tmp_path / "bad"
    (bad / "fma_metadata").mkdir(parents=True)
    (bad / "fma_small").mkdir()
    (bad / "fma_metadata" / "tracks.csv").write_text("track_id,title\n2,Food\n")
    with pytest.raises(DatasetError, match=r"has no column \('set', 'subset'\)"):
        load_manifest("fma-small", bad)
    odd = tmp_path / "odd"
    write_tracks_csv(odd / "fma_metadata" / "tracks.csv", {2: fma_row(2, genre_top="Rock", subset="tiny")})
    (odd / "fma_small").mkdir()
    with pytest.raises(DatasetError, match=r"unknown \('set','subset'\) values \['tiny'\]"):
        load_manifest("fma-small", odd)


def test_fma_option_and_metadata_errors(tmp_path, caplog):
    make_fma_tree(tmp_path, "large")
    with pytest.raises(ConfigError, match=r"^FMA subset 'tiny' is not one of small, medium, large$"):
        load_fma(tmp_path, subset="tiny")
    with pytest.raises(ConfigError, match=r"^unknown split scheme 'random' for fma-large; valid: official, folds$"):
        load_fma(tmp_path, subset="large", split="random")
    with caplog.at_level(logging.INFO, logger="pipeline.datasets.fma"):
        m = load_fma(tmp_path, subset="large")
    assert "fma-large: 2 of 18 tracks have no ('track','genre_top') and are dropped" in caplog.text
    assert "fma-large: 16 clips, 3 genres, split official" in caplog.text
    assert m.source == "FMA (Defferrard et al. 2017) tracks.csv: ('track','genre_top'), official ('set','split')"
    folds = load_fma(tmp_path, subset="large", split="folds", n_folds=2, seed=3)
    assert folds.source == ("FMA (Defferrard et al. 2017) tracks.csv: ('track','genre_top'); 2 "
                            "artist-grouped stratified folds (seed 3)")
    untagged = tmp_path / "untagged"
    make_fma_tree(untagged, "small", rows={2: fma_row(2, genre_top=""), 3: fma_row(3, genre_top="")})
    with pytest.raises(DatasetError, match=r"no track of subset 'small' with a top genre in .*tracks\.csv"):
        load_fma(untagged, subset="small")
    odd_split = tmp_path / "odd_split"
    make_fma_tree(odd_split, "small", rows={2: fma_row(2, genre_top="Rock", split="holdout")})
    with pytest.raises(DatasetError, match=r"unknown \('set','split'\) values \['holdout'\]; "
                                           r"expected training, validation, test"):
        load_fma(odd_split, subset="small")


def test_fma_metadata_option(tmp_path):
    make_fma_tree(tmp_path / "data", "small")
    moved = tmp_path / "elsewhere.csv"
    (tmp_path / "data" / "fma_metadata" / "tracks.csv").rename(moved)
    m = load_manifest("fma-small", tmp_path / "data", metadata=moved)
    assert len(m) == 8


# -- folder -----------------------------------------------------------------

def test_folder_layout(tmp_path):
    make_folder_tree(tmp_path, {
        "rock": ["a.wav", "B.FLAC", "live/c.mp3", "notes.txt", "._a.wav", "dup.wav", "dup.flac"],
        "jazz": ["x.au", "y.ogg", "z.aiff", ".hidden.wav"],
    })
    (tmp_path / ".git").mkdir()
    (tmp_path / "loose.wav").write_bytes(b"RIFF")
    m = load_manifest("folder", tmp_path, seed=1)
    assert m.labels == ("jazz", "rock") and m.split_scheme == "random"
    assert [c.clip_id for c in m.clips] == [
        "jazz/x", "jazz/y", "jazz/z", "rock/B", "rock/a", "rock/dup.flac", "rock/dup.wav", "rock/live/c"]
    assert m.clips[-1].path == "rock/live/c.mp3"
    _check_paths(m)


def test_folder_splits(tmp_path):
    make_folder_tree(tmp_path, {"a": [f"{i:02d}.wav" for i in range(10)], "b": [f"{i:02d}.wav" for i in range(5)]})
    m = load_manifest("folder", tmp_path)
    counts = Counter((c.label, c.split) for c in m.clips)
    assert counts == {("a", "train"): 6, ("a", "val"): 2, ("a", "test"): 2,
                      ("b", "train"): 3, ("b", "val"): 1, ("b", "test"): 1}
    assert load_manifest("folder", tmp_path).clips == m.clips
    folds = load_manifest("folder", tmp_path, split="folds", n_folds=5)
    assert Counter(c.fold for c in folds.clips) == {f: 3 for f in range(5)}


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"does not exist; expected one sub-folder per label"):
        load_manifest("folder", tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetError, match="no label folders"):
        load_manifest("folder", tmp_path / "x")
    make_folder_tree(tmp_path / "y", {"a": ["1.wav"], "b": ["readme.txt"]})
    with pytest.raises(DatasetError, match=r"label folder .*/b holds no audio files"):
        load_manifest("folder", tmp_path / "y")
    f = tmp_path / "file.wav"
    f.write_bytes(b"")
    with pytest.raises(DatasetError, match="is not a folder"):
        load_manifest("folder", f)


# -- split helpers ----------------------------------------------------------

def test_stratified_split_is_seeded_and_stratified():
    labels = ["a"] * 50 + ["b"] * 20 + ["c"] * 2
    s0 = stratified_split(labels, seed=0)
    assert s0 == stratified_split(labels, seed=0) and s0 != stratified_split(labels, seed=1)
    counts = Counter(zip(labels, s0))
    assert (counts[("a", "test")], counts[("a", "val")], counts[("a", "train")]) == (10, 10, 30)
    assert (counts[("b", "test")], counts[("b", "val")], counts[("b", "train")]) == (4, 4, 12)
    assert counts[("c", "train")] >= 1
    with pytest.raises(ConfigError, match="must be < 1"):
        stratified_split(labels, val_fraction=0.5, test_fraction=0.5)


def test_stratified_folds_balanced():
    labels = ["a"] * 23 + ["b"] * 7
    folds = stratified_folds(labels, n_folds=10, seed=4)
    assert Counter(folds) == {f: 3 for f in range(10)}
    per_class = Counter(f for f, lab in zip(folds, labels) if lab == "a")
    assert set(per_class.values()) <= {2, 3}
    with pytest.raises(ConfigError):
        stratified_folds(labels, n_folds=1)


def test_grouped_split_keeps_groups_on_one_side():
    labels = [g for g in "abcd" for _ in range(20)]
    groups = [f"{lab}{i % 5}" for i, lab in enumerate(labels)]
    splits = grouped_split(labels, groups, seed=2)
    side: dict[str, set[str]] = {}
    for g, s in zip(groups, splits):
        side.setdefault(g, set()).add(s)
    assert all(len(s) == 1 for s in side.values())
    assert set(splits) == {"train", "val", "test"}
    assert Counter(splits)["train"] > Counter(splits)["test"]


def test_errors_share_the_root_class(tmp_path):
    with pytest.raises(PipelineError):
        load_manifest("folder", tmp_path / "nope")


def test_balanced_head_keeps_every_label(tmp_path):
    make_folder_tree(tmp_path, {"a": [f"{i}.wav" for i in range(6)], "b": ["0.wav", "1.wav"], "c": ["0.wav"]})
    m = load_manifest("folder", tmp_path)
    assert [c.label for c in m.head(3).clips] == ["a", "a", "a"]
    assert [c.clip_id for c in m.balanced_head(5).clips] == ["a/0", "a/1", "b/0", "b/1", "c/0"]
    assert len(m.balanced_head(100)) == 9 and len(m.balanced_head(0)) == 0


# -- what is not a clip is accounted for ------------------------------------------------------

def _skipped(manifest) -> dict[str, tuple[str, ...]]:
    return {group.why: group.paths for group in manifest.skipped}


def test_folder_takes_every_listed_extension_and_records_every_other_file(tmp_path):
    make_folder_tree(tmp_path, {"rock": ["a.wav", "b.wma", "c.AIFC", "cover.jpg", "._a.wav", "sub/d.dsf"],
                                "jazz": ["e.opus", "notes.txt", "f.ape"]})
    (tmp_path / "loose.mp3").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    m = load_manifest("folder", tmp_path)
    assert sorted(c.path for c in m.clips) == ["jazz/e.opus", "rock/a.wav", "rock/b.wma", "rock/c.AIFC",
                                               "rock/sub/d.dsf"]
    assert _skipped(m) == {"that are hidden (dot files and folders, e.g. macOS ._* files)": (".git/", "rock/._a.wav"),
                           "that are not audio": ("jazz/f.ape", "jazz/notes.txt", "rock/cover.jpg"),
                           "that lie directly in the root, not in a label folder": ("loose.mp3",)}
    # extensions= extends the list (the .ape becomes a clip) or replaces it
    extended = load_manifest("folder", tmp_path, extensions="+.ape")
    assert "jazz/f.ape" in [c.path for c in extended.clips]
    only = load_manifest("folder", tmp_path, extensions=".wav,.opus")
    assert sorted(c.path for c in only.clips) == ["jazz/e.opus", "rock/a.wav"]
    assert "rock/b.wma" in _skipped(only)["that are not audio"]
    with pytest.raises(DatasetError, match="holds no audio files"):
        load_manifest("folder", tmp_path, extensions=".wav")  # jazz/ has none of them


def test_gtzan_takes_any_listed_extension_and_counts_junk_and_macos_files(tmp_path):
    make_gtzan_tree(tmp_path, genres=("jazz", "rock"), n_per_genre=2, ext="wav", layout="kaggle", macos_junk=True)
    data = tmp_path / "Data"
    (data / "features_30_sec.csv").write_text("a,b\n")
    (data / "images_original" / "jazz").mkdir(parents=True)
    (data / "images_original" / "jazz" / "jazz00000.png").write_bytes(b"\x89PNG")
    flac = data / "genres_original" / "rock" / "rock.00005.flac"
    flac.write_bytes((data / "genres_original" / "rock" / "rock.00000.wav").read_bytes())
    (data / "genres_original" / "rock" / "rock.00000.au").write_bytes(b".snd")  # a second copy of rock.00000
    (data / "genres_original" / "rock" / "extra_song.mp3").write_bytes(b"x")
    m = load_manifest("gtzan", tmp_path, split="random")
    assert "rock.00005" in [c.clip_id for c in m.clips] and len(m) == 5
    skipped = _skipped(m)
    assert skipped["that are not audio"] == ("Data/features_30_sec.csv", "Data/images_original/jazz/jazz00000.png")
    hidden = skipped["that are hidden (dot files and folders, e.g. macOS ._* files)"]
    assert len(hidden) == 2 * 2 + 2 and "Data/genres_original/jazz/._jazz.00000.wav" in hidden  # ._* and .DS_Store
    assert any(p.endswith("rock/extra_song.mp3") for paths in skipped.values() for p in paths)
    assert any(p.endswith("rock/rock.00000.wav") or p.endswith("rock/rock.00000.au")
               for why, paths in skipped.items() if "second copy" in why for p in paths)


def test_fma_reports_audio_not_in_its_track_list(tmp_path):
    rows = default_fma_rows()
    root = make_fma_tree(tmp_path, "small", rows=rows)
    (root / "fma_small" / "999").mkdir()
    (root / "fma_small" / "999" / "999999.mp3").write_bytes(b"x")  # in no track list
    (root / "fma_small" / "checksums").write_text("sha1\n")
    m = load_fma(root, subset="small")
    skipped = _skipped(m)
    assert skipped["with an audio extension that are not tracks of fma-small in tracks.csv"] == (
        "fma_small/999/999999.mp3",)
    assert skipped["that are not audio"] == ("fma_small/checksums",)
    assert all(c.path != "fma_small/999/999999.mp3" for c in m.clips)


def test_describe_skipped_counts_by_extension_most_first():
    from pipeline.errors import describe_skipped

    paths = ["rock/cover.jpg", "jazz/a.txt", "rock/b.jpg", "pop/list.m3u", "pop/c.jpg", "README"]
    assert describe_skipped("that are not audio", paths) == (
        "skipped 6 files that are not audio: 3 .jpg, 1 (no extension), 1 .m3u, 1 .txt (e.g. rock/cover.jpg)")
    assert describe_skipped("that are not audio", ["a/b.txt"]) == (
        "skipped 1 file that is not audio: 1 .txt (e.g. a/b.txt)")
