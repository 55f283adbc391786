"""FMA, the Free Music Archive dataset (Defferrard et al., ISMIR 2017).

Layout under ``root``::

    fma_metadata/tracks.csv            two header rows (column group, column
                                       name) and a ``track_id`` index-name row
    fma_<subset>/<tid[:3]>/<tid>.mp3   tid zero-padded to 6 digits

Subsets are nested: small (8,000 tracks) ⊂ medium (25,000) ⊂ large
(106,574). A track belongs to the subset asked for when its
``('set', 'subset')`` is that subset or a smaller one. The comparison is by
rank (small < medium < large), not by string order, where "large" would
sort first. The audio is read from the folder of the subset asked for
(``fma_medium`` for fma-medium), which holds the smaller subsets' tracks too.

Labels are ``('track', 'genre_top')``. Rows without a top genre are dropped
and counted. For small and medium every track has one; for **fma-large
about half of the tracks have none** (their genres are only in the
multi-label ``('track', 'genres')``), so the fma-large manifest holds only
the single-label tracks. The group is the artist, ``('artist', 'id')``.

Split schemes
-------------
``official`` (default)
    ``('set', 'split')``: training / validation / test -> train / val / test;
    artist-disjoint by construction (medium: 19,922 / 2,505 / 2,573).
``folds``
    10 stratified folds grouped by artist
    (:class:`sklearn.model_selection.StratifiedGroupKFold`, seeded), split "".

Audio not in the track list
---------------------------
Every file under ``fma_<subset>/`` that is not a clip is reported (build,
``pipeline scan``, ``pipeline info``) by why: audio of a track that
tracks.csv does not list for the subset, a track listed without a top
genre, or a file that is not audio.

Missing audio
-------------
``missing="include"`` (default) keeps a listed track whose mp3 is not on
disk: the clip axis is then defined by the metadata alone and is the same on
every machine, and the builder marks the clip failed ("file missing") so the
gap is visible in the store. The count is logged. ``missing="skip"`` drops
such tracks (logged with a count); ``missing="error"`` refuses the dataset.
A subset's audio folder that does not exist, or holds none of the listed
files, is always an error (a wrong root or an archive not unpacked).

The metadata is read column-selectively (the real tracks.csv is ~100k rows
of 52 columns, many of them long free text): the two header rows are parsed
to find the five columns used, then only those are read.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.datasets.base import ClipRecord, Manifest, manifest_root
from pipeline.datasets.walk import HIDDEN, NOT_AUDIO, SkipLog, is_hidden, require_dir, walk_tree
from pipeline.dsp.formats import AUDIO_EXTENSIONS, audio_extension
from pipeline.datasets.splits import DEFAULT_N_FOLDS, grouped_folds
from pipeline.errors import ConfigError, DatasetError
from pipeline.sources import RemotePath, is_remote, source_path

logger = logging.getLogger(__name__)

SUBSETS: tuple[str, ...] = ("small", "medium", "large")
SPLIT_SCHEMES: tuple[str, ...] = ("official", "folds")
MISSING_POLICIES: tuple[str, ...] = ("include", "skip", "error")
#: ``('set', 'split')`` values -> manifest split names.
OFFICIAL_SPLITS: dict[str, str] = {"training": "train", "validation": "val", "test": "test"}
#: Columns of tracks.csv the adapter reads.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("set", "subset"), ("set", "split"), ("track", "genre_top"), ("artist", "id"), ("artist", "name"),
)
#: A local folder or file, or one in object storage.
_AnyPath = Path | RemotePath


def audio_relpath(track_id: int, subset: str) -> str:
    """``fma_<subset>/<tid[:3]>/<tid>.mp3`` for a track id (6-digit zero padding)."""
    tid = f"{int(track_id):06d}"
    return f"fma_{subset}/{tid[:3]}/{tid}.mp3"


@contextlib.contextmanager
def _open_text(path: Path | RemotePath):
    """``path`` as a text file (UTF-8, universal newlines off, as csv wants)."""
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh:
        yield fh


def read_tracks(path: Path | RemotePath) -> pd.DataFrame:
    """The columns of :data:`COLUMNS` of an FMA ``tracks.csv``, indexed by track id.

    Equivalent to ``pd.read_csv(path, index_col=0, header=[0, 1])[list(COLUMNS)]``
    but reads only those columns. ``path`` may be in object storage
    (a :class:`~pipeline.sources.RemotePath`): it is streamed, twice (the
    header rows, then the columns).

    Returns
    -------
    pandas.DataFrame [shape=(n_tracks, 5)]
        MultiIndex columns as in :data:`COLUMNS`, int index ``track_id``;
        text columns as str ("" where empty), ``('artist', 'id')`` as str.
    """
    try:
        with _open_text(path) as fh:
            head = list(itertools.islice(csv.reader(fh), 3))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the header of FMA metadata {path}: {exc}") from exc
    groups, names, index_row = (head + [[], [], []])[:3]
    header = list(zip(groups, names))
    positions = []
    for col in COLUMNS:
        if col not in header:
            raise DatasetError(
                f"FMA metadata {path} has no column {col}; expected the fma_metadata/tracks.csv of "
                "fma_metadata.zip (two header rows such as 'set,set' / 'split,subset' and a track_id row)"
            )
        positions.append(header.index(col))
    # The third row names the index ("track_id,,,..."); older re-saves may lack it.
    skip = 3 if index_row and index_row[0] == "track_id" else 2
    # Everything is read as text so that an artist id never turns into a float "123.0"
    # and an empty genre stays "" rather than NaN.
    try:
        with contextlib.ExitStack() as stack:
            source = path if isinstance(path, Path) else stack.enter_context(path.open("rb"))
            raw = pd.read_csv(source, header=None, skiprows=skip, usecols=[0, *positions],
                              index_col=0, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        raise DatasetError(f"cannot parse FMA metadata {path}: {exc}") from exc
    raw = raw[positions]
    raw.columns = pd.MultiIndex.from_tuples(COLUMNS)
    try:
        raw.index = pd.Index([int(t) for t in raw.index], name="track_id")
    except ValueError as exc:
        raise DatasetError(f"FMA metadata {path} has a non-integer track id: {exc}") from exc
    return raw


def load_fma(root: str | Path | None, *, subset: str, split: str = "official", seed: int = 0,
             n_folds: int = DEFAULT_N_FOLDS, missing: str = "include",
             metadata: str | Path | None = None,
             storage_options: Mapping[str, Any] | None = None) -> Manifest:
    """Manifest of one FMA subset.

    Parameters
    ----------
    root : path or URI
        Folder holding ``fma_metadata/`` and ``fma_<subset>/``: local, or
        s3://, gs://, http(s):// (see :mod:`pipeline.sources`; tracks.csv is
        then read from there and the audio folder listed in one go).
    subset : {"small", "medium", "large"}
    split : {"official", "folds"}
    seed, n_folds
        Fold assignment under "folds".
    missing : {"include", "skip", "error"}
        What to do with a listed track whose mp3 is absent (module docstring).
    metadata : path or URI, optional
        tracks.csv elsewhere than ``root/fma_metadata/tracks.csv``.
    storage_options : mapping, optional
        fsspec options of a remote root or metadata URI (endpoint, credentials).
    """
    if subset not in SUBSETS:
        raise ConfigError(f"FMA subset {subset!r} is not one of {', '.join(SUBSETS)}")
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"missing={missing!r} is not one of {', '.join(MISSING_POLICIES)}")
    path, tracks_csv, audio_dir = _locate(root, subset, metadata, storage_options)
    listed = read_tracks(tracks_csv)
    tracks = _labelled_tracks(listed, subset, tracks_csv)
    tracks, relpaths = _with_audio(tracks, subset, missing, path, audio_dir)
    skipped = _audio_not_listed(audio_dir, subset, listed, relpaths)
    skipped.log(audio_dir)
    ids = [int(t) for t in tracks.index]
    labels = list(tracks[("track", "genre_top")])
    groups = list(tracks[("artist", "id")])
    splits, folds, k, source = _splits(tracks, subset, split, labels, groups, n_folds=n_folds, seed=seed,
                                       tracks_csv=tracks_csv)
    clips = tuple(ClipRecord(clip_id=f"{t:06d}", path=rel, label=lab, split=s, fold=f, group=g)
                  for t, rel, lab, s, f, g in zip(ids, relpaths, labels, splits, folds, groups))
    logger.info("fma-%s: %d clips, %d genres, split %s", subset, len(clips), len(set(labels)), split)
    return Manifest(dataset=f"fma-{subset}", root=manifest_root(path), labels=tuple(sorted(set(labels))), clips=clips,
                    split_scheme=split, n_folds=k, source=source, skipped=skipped.record())


def _audio_not_listed(audio_dir: _AnyPath, subset: str, listed: pd.DataFrame, relpaths: list[str]) -> SkipLog:
    """The files under ``fma_<subset>/`` that are not clips of the manifest, by why.

    The track list decides what is a clip; this only says what it leaves
    out: audio whose track is not in tracks.csv for the subset, tracks listed
    without a top genre, and files that are not audio.
    """
    skipped = SkipLog()
    clips = set(relpaths)
    rank = {name: i for i, name in enumerate(SUBSETS)}
    in_subset = listed[listed[("set", "subset")].isin(SUBSETS[:rank[subset] + 1])]
    no_genre = {int(t) for t in in_subset.index[in_subset[("track", "genre_top")] == ""]}
    files, hidden_dirs = walk_tree(audio_dir)
    for rel in hidden_dirs:
        skipped.add(HIDDEN, f"fma_{subset}/{rel}")
    for rel in files:
        full = f"fma_{subset}/{rel}"
        if full in clips:
            continue
        name = rel.rsplit("/", 1)[-1]
        if any(is_hidden(part) for part in rel.split("/")):
            skipped.add(HIDDEN, full)
        elif audio_extension(name) not in AUDIO_EXTENSIONS:
            skipped.add(NOT_AUDIO, full)
        elif name.split(".", 1)[0].isdigit() and int(name.split(".", 1)[0]) in no_genre:
            skipped.add("listed in tracks.csv without a top genre ('track','genre_top')", full)
        else:
            skipped.add(f"with an audio extension that are not tracks of fma-{subset} in tracks.csv", full)
    return skipped


def _locate(root: str | Path | None, subset: str, metadata: str | Path | None,
            storage_options: Mapping[str, Any] | None) -> tuple[_AnyPath, _AnyPath, _AnyPath]:
    """``(root, tracks.csv, fma_<subset>/)``, each checked to exist."""
    expected = f"fma_metadata/tracks.csv and fma_{subset}/<000>/<000002>.mp3 under it"
    path = require_dir(root, f"fma-{subset}", expected, storage_options)
    if metadata is None:
        tracks_csv = path / "fma_metadata" / "tracks.csv"
    elif is_remote(metadata):
        folder, _, name = str(metadata).rstrip("/").rpartition("/")
        tracks_csv = source_path(folder, storage_options) / name
    else:
        tracks_csv = Path(metadata).expanduser()
    if not tracks_csv.is_file():
        raise DatasetError(f"FMA metadata {tracks_csv} not found; unpack fma_metadata.zip into {path} "
                           "(or pass metadata=/path/to/tracks.csv)")
    audio_dir = path / f"fma_{subset}"
    if not audio_dir.is_dir():
        raise DatasetError(f"FMA audio folder {audio_dir} not found; unpack fma_{subset}.zip into {path}")
    if isinstance(audio_dir, RemotePath):
        audio_dir.walk_all()  # one listing of the subset's folders, then is_file() from the cache
    return path, tracks_csv, audio_dir


def _labelled_tracks(tracks: pd.DataFrame, subset: str, tracks_csv: _AnyPath) -> pd.DataFrame:
    """The tracks of ``subset`` (and the smaller subsets) that have a top genre, by track id."""
    rank = {name: i for i, name in enumerate(SUBSETS)}
    subset_col = tracks[("set", "subset")]
    unknown = sorted(set(subset_col) - set(SUBSETS) - {""})
    if unknown:
        raise DatasetError(f"FMA metadata {tracks_csv} has unknown ('set','subset') values {unknown}; "
                           f"expected {', '.join(SUBSETS)}")
    # A track with no subset belongs to none of them (not expected in the
    # official file, but a hand-edited one should not stop the whole dataset).
    tracks = tracks[subset_col.isin(SUBSETS[:rank[subset] + 1])]
    n_listed = len(tracks)
    genre = tracks[("track", "genre_top")]
    no_genre = int((genre == "").sum())
    tracks = tracks[genre != ""]
    if no_genre:
        logger.info("fma-%s: %d of %d tracks have no ('track','genre_top') and are dropped",
                    subset, no_genre, n_listed)
    if tracks.empty:
        raise DatasetError(f"no track of subset {subset!r} with a top genre in {tracks_csv}")
    return tracks.sort_index()


def _with_audio(tracks: pd.DataFrame, subset: str, missing: str, path: _AnyPath,
                audio_dir: _AnyPath) -> tuple[pd.DataFrame, list[str]]:
    """The tracks kept under the ``missing`` policy, and their mp3 paths relative to ``path``."""
    relpaths = [audio_relpath(int(t), subset) for t in tracks.index]
    present = [(path / rel).is_file() for rel in relpaths]
    n_missing, n_listed = present.count(False), len(relpaths)
    if not n_missing:
        return tracks, relpaths
    example = relpaths[present.index(False)]
    if n_missing == n_listed:
        # Nothing matches: a wrong root or an archive not unpacked, not a few bad files.
        raise DatasetError(f"none of the {n_listed} listed fma-{subset} mp3 files exists under {audio_dir} "
                           f"(e.g. {example}); unpack fma_{subset}.zip into {path}")
    if missing == "error":
        raise DatasetError(f"{n_missing} of {n_listed} listed fma-{subset} tracks have no mp3 under "
                           f"{path} (e.g. {example}); complete the download or pass missing='skip'")
    logger.warning("%d of %d listed fma-%s tracks have no mp3 under %s (e.g. %s); %s",
                   n_missing, n_listed, subset, path, example,
                   "they are skipped" if missing == "skip" else "kept; the build marks them failed")
    if missing == "skip":
        # at least one is present (none present raised above)
        return tracks[present], [r for r, ok in zip(relpaths, present) if ok]
    return tracks, relpaths


def _splits(tracks: pd.DataFrame, subset: str, split: str, labels: list[str], groups: list[str], *,
            n_folds: int, seed: int, tracks_csv: _AnyPath) -> tuple[list[str], list[int], int, str]:
    """``(split per track, fold per track, number of folds, source citation)`` under scheme ``split``."""
    if split == "official":
        raw_splits = list(tracks[("set", "split")])
        bad = sorted(set(raw_splits) - set(OFFICIAL_SPLITS))
        if bad:
            raise DatasetError(f"FMA metadata {tracks_csv} has unknown ('set','split') values {bad}; "
                               f"expected {', '.join(OFFICIAL_SPLITS)}")
        return ([OFFICIAL_SPLITS[s] for s in raw_splits], [-1] * len(tracks), 0,
                "FMA (Defferrard et al. 2017) tracks.csv: ('track','genre_top'), official ('set','split')")
    if split == "folds":
        return ([""] * len(tracks), grouped_folds(labels, groups, n_folds=n_folds, seed=seed), n_folds,
                f"FMA (Defferrard et al. 2017) tracks.csv: ('track','genre_top'); {n_folds} "
                f"artist-grouped stratified folds (seed {seed})")
    raise ConfigError(f"unknown split scheme {split!r} for fma-{subset}; valid: {', '.join(SPLIT_SCHEMES)}")
