"""GTZAN (Tzanetakis & Cook 2002): 1,000 30 s clips, 10 genres, 100 each.

Layouts found in the wild, all accepted:

- the original archive: ``genres/<genre>/<genre>.000NN.au`` (Sun AU,
  22,050 Hz, mono, 16-bit big-endian);
- re-distributions as ``.wav`` in the same layout;
- the Kaggle copy: ``Data/genres_original/<genre>/<genre>.000NN.wav``, which
  also ships macOS ``._*`` files (skipped and counted) and one truncated, undecodable
  clip (``jazz.00054.wav``: listed here; the builder marks it failed).

``root`` may be the folder that contains ``genres`` (or ``Data``), the
``genres`` / ``genres_original`` folder itself, or ``Data``. A clip is a
file ``<genre>/<genre>.000NN.<ext>`` with any extension of the audio list
(:data:`pipeline.dsp.formats.AUDIO_EXTENSIONS`, or the ``extensions``
option); every other file under the root (the Kaggle copy's images and CSV
files, ``._*`` files, misnamed audio) is skipped and reported by why.

Split schemes
-------------
``fault-filtered`` (default)
    The artist-aware split of Kereliuk, Sturm & Larsen (2015), "Deep
    Learning and Music Adversaries", IEEE Trans. Multimedia 17(11): 443 train
    / 197 val / 290 test clips, 930 in all. It leaves out replicated,
    mislabelled and distorted excerpts and keeps every artist on one side.
    The lists are embedded in ``data/gtzan_fault_filtered.json``, taken from
    torchaudio's ``datasets/gtzan.py`` (``filtered_train/valid/test``).
    The 70 clips not in the lists are **excluded** from the manifest under
    this scheme (their count is logged).
``random``
    Stratified random train/val/test (60/20/20 by default, seeded). Beware:
    GTZAN repeats artists (and some excerpts), so random splits leak and
    score far higher than the artist-aware split.
``folds``
    10 stratified folds (fold 0..9, split "").

GTZAN has no artist column, so ``group`` is "" (under fault-filtered the
lists are artist-disjoint by construction). Clip ids are ``<genre>.000NN``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.datasets.base import ClipRecord, Manifest, manifest_root
from pipeline.datasets.walk import SkipLog, relative_posix, require_dir, visible_audio, visible_dirs
from pipeline.dsp.formats import AUDIO_EXTENSIONS, parse_extensions
from pipeline.datasets.splits import (DEFAULT_N_FOLDS, DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION,
                                      assign_scheme)
from pipeline.errors import DatasetError
from pipeline.sources import RemotePath

logger = logging.getLogger(__name__)

GENRES: tuple[str, ...] = ("blues", "classical", "country", "disco", "hiphop",
                           "jazz", "metal", "pop", "reggae", "rock")
SPLIT_SCHEMES: tuple[str, ...] = ("fault-filtered", "random", "folds")
EXPECTED = ("GTZAN genre folders: <root>/genres/<genre>/<genre>.000NN.au (or .wav), "
            "<root>/Data/genres_original/<genre>/<genre>.000NN.wav, or <root> being the genres folder")
#: A clip's file name: ``<genre>.000NN.<ext>``, any extension of the audio list (checked apart).
_CLIP_NAME = re.compile(r"^(?P<genre>[a-z]+)\.(?P<num>\d{5})\.(?P<ext>[^./]+)$", re.IGNORECASE)
#: Sub-paths of ``root`` that may hold the genre folders, in the order tried.
_CANDIDATES: tuple[str, ...] = ("genres", "genres_original", "Data/genres_original", ".")


@functools.lru_cache(maxsize=1)
def fault_filtered_lists() -> dict[str, tuple[str, ...]]:
    """The embedded fault-filtered split: ``{"train": ids, "val": ids, "test": ids}``.

    Ids look like ``"blues.00029"``; 443 / 197 / 290 of them.
    """
    text = resources.files("pipeline.datasets").joinpath("data/gtzan_fault_filtered.json").read_text()
    data = json.loads(text)
    return {split: tuple(data[split]) for split in ("train", "val", "test")}


def genre_of(clip_id: str) -> str:
    """Genre of a GTZAN clip id (``"blues.00029"`` -> ``"blues"``)."""
    return clip_id.split(".", 1)[0]


def find_genres_dir(root: Path | RemotePath) -> Path | RemotePath:
    """The folder under ``root`` whose sub-folders are the GTZAN genres."""
    for candidate in _CANDIDATES:
        path = (root / candidate) if candidate != "." else root
        if path.is_dir() and any((path / g).is_dir() for g in GENRES):
            return path
    tried = ", ".join(str(root / c) if c != "." else str(root) for c in _CANDIDATES)
    raise DatasetError(f"no GTZAN genre folders (blues, classical, ...) found; looked in {tried}; "
                       f"expected {EXPECTED}")


#: Why an audio file under a GTZAN root is not a clip.
NOT_A_CLIP = "with an audio extension that are not GTZAN clips (not <genre>/<genre>.000NN.<ext> in a genre folder)"
#: Why the second file of one clip id (both .au and .wav) is skipped.
SECOND_COPY = "that are a second copy of a clip (e.g. both .au and .wav; the first by name is used)"


def scan_gtzan(root: Path | RemotePath, genres_dir: Path | RemotePath, *,
               extensions: frozenset[str] = AUDIO_EXTENSIONS, skipped: SkipLog | None = None) -> dict[str, str]:
    """clip id -> root-relative audio path of every GTZAN clip under ``genres_dir``, sorted by id.

    Every other file under ``root`` goes into ``skipped`` with why (not
    audio, hidden such as macOS ``._*`` files, not named as a GTZAN clip, a
    second copy of a clip).
    """
    skipped = SkipLog() if skipped is None else skipped
    present = [g for g in GENRES if (genres_dir / g).is_dir()]
    missing = [g for g in GENRES if g not in present]
    if missing:
        logger.warning("GTZAN at %s lacks genre folder(s) %s; continuing with %d genres",
                       genres_dir, ", ".join(missing), len(present))
    extra = [p.name for p in visible_dirs(genres_dir) if p.name not in GENRES]
    if extra:
        logger.warning("ignoring non-GTZAN folder(s) in %s: %s", genres_dir, ", ".join(extra))
    prefix = relative_posix(genres_dir, root)
    prefix = "" if prefix == "." else prefix + "/"
    found: dict[str, str] = {}
    for rel in visible_audio(root, skipped, extensions):
        inside = rel[len(prefix):].split("/") if rel.startswith(prefix) else []
        match = _CLIP_NAME.match(inside[1]) if len(inside) == 2 else None
        if match is None or match["genre"] != inside[0] or inside[0] not in present:
            skipped.add(NOT_A_CLIP, rel)
            continue
        clip_id = f"{inside[0]}.{match['num']}"
        if clip_id in found:
            # Both .au and .wav of one clip (an in-place conversion): keep the first by name.
            logger.warning("GTZAN clip %s exists twice (%s, %s); using %s", clip_id, found[clip_id], rel,
                           found[clip_id])
            skipped.add(SECOND_COPY, rel)
            continue
        found[clip_id] = rel
    for genre in present:
        if not any(cid.startswith(genre + ".") for cid in found):
            raise DatasetError(f"GTZAN genre folder {genres_dir / genre} holds no clips; expected files named "
                               f"{genre}.000NN.au or {genre}.000NN.wav there")
    return dict(sorted(found.items()))


def load_gtzan(root: str | Path | None, *, split: str = "fault-filtered", seed: int = 0,
               val_fraction: float = DEFAULT_VAL_FRACTION, test_fraction: float = DEFAULT_TEST_FRACTION,
               n_folds: int = DEFAULT_N_FOLDS, extensions: str | None = None,
               storage_options: Mapping[str, Any] | None = None) -> Manifest:
    """Manifest of a GTZAN copy.

    Parameters
    ----------
    root : path or URI
        A folder holding (or being) the genre folders; see the module
        docstring. Local, or s3://, gs://, http(s):// (:mod:`pipeline.sources`).
    split : {"fault-filtered", "random", "folds"}
    seed, val_fraction, test_fraction, n_folds
        Used by "random" and "folds" only.
    extensions : str, optional
        File extensions taken as audio (:func:`pipeline.dsp.formats.parse_extensions`;
        ``"+.ape"`` adds one to the default list).
    storage_options : mapping, optional
        fsspec options of a remote root (endpoint, credentials).

    Returns
    -------
    Manifest
        ``root`` of the manifest is the given root; clip paths are relative
        to it (e.g. ``genres/blues/blues.00000.au``).
    """
    path = require_dir(root, "gtzan", EXPECTED, storage_options)
    genres_dir = find_genres_dir(path)
    skipped = SkipLog()
    files = scan_gtzan(path, genres_dir, extensions=parse_extensions(extensions), skipped=skipped)
    skipped.log(path)
    ids = list(files)
    labels_of = {cid: genre_of(cid) for cid in ids}
    if split == "fault-filtered":
        lists = fault_filtered_lists()
        split_of = {cid: name for name, members in lists.items() for cid in members}
        kept = [cid for cid in ids if cid in split_of]
        listed_missing = sorted(set(split_of) - set(files))
        # Only genres that are present can be expected on disk.
        listed_missing = [cid for cid in listed_missing if (genres_dir / genre_of(cid)).is_dir()]
        if listed_missing:
            logger.warning("%d clip(s) of the fault-filtered lists are missing under %s, e.g. %s",
                           len(listed_missing), genres_dir, ", ".join(listed_missing[:5]))
        logger.info("GTZAN fault-filtered split: %d of %d clips kept, %d outside the lists excluded",
                    len(kept), len(ids), len(ids) - len(kept))
        if not kept:
            raise DatasetError(f"none of the {len(ids)} GTZAN clips under {genres_dir} is in the "
                               "fault-filtered lists; check the file names (<genre>.000NN) or use --split random")
        splits, folds, k = [split_of[c] for c in kept], [-1] * len(kept), 0
        ids = kept
        source = ("fault-filtered split of Kereliuk, Sturm & Larsen (2015), lists from "
                  "torchaudio datasets/gtzan.py")
    else:
        splits, folds, k = assign_scheme(split, [labels_of[c] for c in ids], seed=seed,
                                         val_fraction=val_fraction, test_fraction=test_fraction,
                                         n_folds=n_folds)
        source = f"GTZAN (Tzanetakis & Cook 2002); {split} split (seed {seed})"
    clips = tuple(ClipRecord(clip_id=cid, path=files[cid], label=labels_of[cid],
                             split=s, fold=f)
                  for cid, s, f in zip(ids, splits, folds))
    labels = tuple(sorted({c.label for c in clips}))
    return Manifest(dataset="gtzan", root=manifest_root(path), labels=labels, clips=clips, split_scheme=split,
                    n_folds=k, source=source, skipped=skipped.record())

