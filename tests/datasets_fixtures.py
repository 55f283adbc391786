"""Fixture trees in the real layouts of GTZAN, FMA and folder collections.

Any test may build one; the files hold short real audio (a tone with a
little noise) so a builder can decode them too. Sizes are kept tiny by
default because the adapters never decode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tests.audio_fixtures import write_signal

GTZAN_GENRES: tuple[str, ...] = ("blues", "classical", "country", "disco", "hiphop",
                                 "jazz", "metal", "pop", "reggae", "rock")

#: The columns of the real fma_metadata/tracks.csv, in file order (52 of them).
FMA_COLUMNS: tuple[tuple[str, str], ...] = (
    *(("album", c) for c in ("comments", "date_created", "date_released", "engineer", "favorites", "id",
                             "information", "listens", "producer", "tags", "title", "tracks", "type")),
    *(("artist", c) for c in ("active_year_begin", "active_year_end", "associated_labels", "bio",
                              "comments", "date_created", "favorites", "id", "latitude", "location",
                              "longitude", "members", "name", "related_projects", "tags", "website",
                              "wikipedia_page")),
    ("set", "split"), ("set", "subset"),
    *(("track", c) for c in ("bit_rate", "comments", "composer", "date_created", "date_recorded",
                             "duration", "favorites", "genre_top", "genres", "genres_all", "information",
                             "interest", "language_code", "license", "listens", "lyricist", "number",
                             "publisher", "tags", "title")),
)


def _signal(seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    y = 0.3 * np.sin(2 * np.pi * rng.uniform(110, 880) * t) + 0.01 * rng.standard_normal(len(t))
    return y.astype(np.float32)


def write_audio(path: Path, *, seconds: float = 0.05, sr: int = 22050, seed: int = 0) -> Path:
    """A short tone in the format of ``path``'s extension (see :data:`tests.audio_fixtures.FORMATS`;
    ``.au`` as GTZAN ships them: mono, 16-bit PCM, big-endian, libsndfile's default for AU)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_signal(path, _signal(seconds, sr, seed), sr)


def make_gtzan_tree(root: str | Path, genres: Sequence[str] = GTZAN_GENRES, n_per_genre: int = 3, *,
                    ext: str = "au", layout: str = "original", numbers: Iterable[int] | None = None,
                    macos_junk: bool = False, seconds: float = 0.05, distinct: bool = True) -> Path:
    """A GTZAN copy under ``root``; returns the folder holding the genre folders.

    layout : "original" -> ``root/genres/<genre>/<genre>.000NN.<ext>``;
             "kaggle" -> ``root/Data/genres_original/<genre>/...`` (use ext="wav").
    numbers : clip numbers per genre (default ``range(n_per_genre)``).
    macos_junk : also write ``._<name>`` AppleDouble files and a ``.DS_Store``.
    distinct : a different tone per clip; False copies one encoded file (fast for big trees).
    """
    root = Path(root)
    genres_dir = root / "genres" if layout == "original" else root / "Data" / "genres_original"
    nums = list(numbers) if numbers is not None else list(range(n_per_genre))
    encoded: bytes | None = None
    for g, genre in enumerate(genres):
        for n in nums:
            path = genres_dir / genre / f"{genre}.{n:05d}.{ext}"
            if distinct or encoded is None:
                write_audio(path, seconds=seconds, seed=1000 * g + n)
                encoded = path.read_bytes()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(encoded)
            if macos_junk:
                (path.parent / f"._{path.name}").write_bytes(b"\x00\x05\x16\x07junk")
        if macos_junk:
            (genres_dir / genre / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return genres_dir


def fma_row(track_id: int, *, genre_top: str, split: str = "training", subset: str = "small",
            artist_id: int = 1, artist_name: str = "AWOL") -> dict[tuple[str, str], object]:
    """One realistic tracks.csv row; free-text fields hold commas, quotes and newlines as the real file."""
    row: dict[tuple[str, str], object] = {col: "" for col in FMA_COLUMNS}
    row.update({
        ("album", "comments"): 0, ("album", "date_created"): "2008-11-26 01:44:45",
        ("album", "date_released"): "2009-01-05 00:00:00", ("album", "favorites"): 4,
        ("album", "id"): 100 + artist_id, ("album", "information"): "<p></p>", ("album", "listens"): 6073,
        ("album", "tags"): "[]", ("album", "title"): f"Album, \"{artist_name}\"", ("album", "tracks"): 7,
        ("album", "type"): "Album",
        ("artist", "active_year_begin"): "2006-01-01 00:00:00",
        ("artist", "bio"): f"<p>{artist_name} is a band,\nfrom \"somewhere\".</p>",
        ("artist", "comments"): 0, ("artist", "date_created"): "2008-11-26 01:42:32",
        ("artist", "favorites"): 9, ("artist", "id"): artist_id, ("artist", "latitude"): 40.058324,
        ("artist", "location"): "New Jersey", ("artist", "longitude"): -74.405661,
        ("artist", "members"): "Sajje Morocco,Brownbum,ZawidaGod,Custodian of Records,",
        ("artist", "name"): artist_name, ("artist", "tags"): "['awol']",
        ("artist", "website"): "http://www.AzillionRecords.blogspot.com",
        ("set", "split"): split, ("set", "subset"): subset,
        ("track", "bit_rate"): 256000, ("track", "comments"): 0,
        ("track", "date_created"): "2008-11-26 01:48:12", ("track", "duration"): 168,
        ("track", "favorites"): 2, ("track", "genre_top"): genre_top, ("track", "genres"): "[21]",
        ("track", "genres_all"): "[21]", ("track", "interest"): 4656, ("track", "language_code"): "en",
        ("track", "license"): "Attribution-NonCommercial-ShareAlike 3.0 International",
        ("track", "listens"): 1293, ("track", "number"): 3, ("track", "tags"): "[]",
        ("track", "title"): f"Food {track_id}",
    })
    return row


def write_tracks_csv(path: str | Path, rows: Mapping[int, Mapping[tuple[str, str], object]]) -> Path:
    """Write ``fma_metadata/tracks.csv`` in the real format.

    pandas writes a frame with two-level columns and a named index exactly
    as the FMA file is laid out: a row of column groups, a row of column
    names, then a ``track_id,,,...`` row naming the index.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([[rows[t][c] for c in FMA_COLUMNS] for t in rows],
                         index=pd.Index(list(rows), name="track_id"),
                         columns=pd.MultiIndex.from_tuples(FMA_COLUMNS))
    frame.to_csv(path)
    return path


def default_fma_rows() -> dict[int, dict[tuple[str, str], object]]:
    """A small catalogue across the three subsets, several artists, every split, one untagged track.

    small: 8 tracks (2 genres x 2 artists x 2), medium adds 6 (one new genre),
    large adds 4 of which 2 have no genre_top.
    """
    rows: dict[int, dict[tuple[str, str], object]] = {}
    tid = 2
    splits = ("training", "training", "validation", "test")
    for subset, genres, n_artists in (("small", ("Hip-Hop", "Rock"), 2),
                                      ("medium", ("Hip-Hop", "Rock", "Jazz"), 1),
                                      ("large", ("Rock", "", "Jazz", ""), 1)):
        k = 0
        for g, genre in enumerate(genres):
            for a in range(n_artists):
                for _ in range(2 if subset != "large" else 1):
                    artist = 10 * (1 + ["small", "medium", "large"].index(subset)) + 3 * g + a
                    rows[tid] = fma_row(tid, genre_top=genre, split=splits[k % 4], subset=subset,
                                        artist_id=artist, artist_name=f"Artist {artist}")
                    tid += 3 if tid < 10 else 997  # ids across several <tid[:3]> folders
                    k += 1
    return rows


def make_fma_tree(root: str | Path, subset: str = "small", *,
                  rows: Mapping[int, Mapping[tuple[str, str], object]] | None = None,
                  missing_audio: Iterable[int] = (), audio: bool = True, seconds: float = 0.05) -> Path:
    """An FMA root: ``fma_metadata/tracks.csv`` and ``fma_<subset>/<tid[:3]>/<tid>.mp3``.

    The audio folder holds every track of ``subset`` and the smaller subsets
    (as the real archives do), except ``missing_audio``. ``audio=False``
    writes no audio folder at all. MP3s are real (LAME via libsndfile).
    """
    root = Path(root)
    rows = default_fma_rows() if rows is None else rows
    write_tracks_csv(root / "fma_metadata" / "tracks.csv", rows)
    if not audio:
        return root
    order = ("small", "medium", "large")
    skip = set(missing_audio)
    (root / f"fma_{subset}").mkdir(parents=True, exist_ok=True)
    for tid, row in rows.items():
        if order.index(str(row[("set", "subset")])) <= order.index(subset) and tid not in skip:
            name = f"{tid:06d}"
            write_audio(root / f"fma_{subset}" / name[:3] / f"{name}.mp3", seconds=seconds, seed=tid)
    return root


def make_folder_tree(root: str | Path, files: Mapping[str, Sequence[str]], *, seconds: float = 0.05) -> Path:
    """``root/<label>/<relative file>`` for every label and file name given; returns ``root``.

    Names with a recognised audio extension get real audio; others (e.g.
    ``notes.txt``, ``._x.wav`` junk) get a few bytes of text.
    """
    root = Path(root)
    for label, names in files.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            path = root / label / name
            path.parent.mkdir(parents=True, exist_ok=True)
            base = Path(name).name
            if not base.startswith(".") and path.suffix.lower() in {".wav", ".flac", ".ogg", ".mp3", ".au",
                                                                      ".aiff", ".aif"}:
                write_audio(path, seconds=seconds, seed=i)
            else:
                path.write_bytes(b"not audio")
    return root
