"""Any collection laid out as ``root/<label>/<audio files>``.

Every visible sub-folder of the root is a label; every audio file below it
(recursively, any of :data:`~pipeline.datasets.walk.AUDIO_EXTENSIONS`, in any
case; hidden and macOS ``._*`` files skipped) is a clip of that label. Loose
files directly in the root are ignored with a warning. A label folder without
audio is an error: it is almost always a copy that went wrong, and silently
dropping a class would change the label set of the store.

Clip ids are ``<label>/<path inside the label folder without extension>``
(with the extension kept where two files would otherwise collide).

Split schemes: "random" (default; stratified 60/20/20, seeded) and "folds"
(10 stratified folds, split ""). No groups are known, so group is "".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.datasets.base import ClipRecord, Manifest, manifest_root
from pipeline.datasets.walk import is_audio_name, iter_audio_files, relative_posix, require_dir, visible_dirs
from pipeline.datasets.splits import (DEFAULT_N_FOLDS, DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION,
                                      assign_scheme)
from pipeline.errors import DatasetError
from pipeline.sources import RemotePath

logger = logging.getLogger(__name__)

SPLIT_SCHEMES: tuple[str, ...] = ("random", "folds")
EXPECTED = "one sub-folder per label holding audio files: <root>/<label>/<file>.wav|.mp3|.flac|..."


def scan_labelled_folders(root: Path | RemotePath, *, expected: str = EXPECTED) -> list[tuple[str, str, str]]:
    """``(clip_id, relative path, label)`` of every audio file under ``root/<label>/``.

    Sorted by label, then path. Raises :class:`DatasetError` when there are
    no label folders or a label folder holds no audio.
    """
    label_dirs = visible_dirs(root)
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and is_audio_name(p.name))
    if loose:
        logger.warning("%d audio file(s) directly in %s are ignored (not in a label folder), e.g. %s",
                       len(loose), root, loose[0])
    if not label_dirs:
        raise DatasetError(f"no label folders in {root}; expected {expected}")
    rows: list[tuple[str, str, str]] = []
    for label_dir in label_dirs:
        files = list(iter_audio_files(label_dir))
        if not files:
            raise DatasetError(
                f"label folder {label_dir} holds no audio files; expected {expected} "
                "(remove the folder or put its audio back)"
            )
        label = label_dir.name
        stems = [f"{label}/{relative_posix(f, label_dir).rsplit('.', 1)[0]}" for f in files]
        seen: dict[str, int] = {}
        for stem in stems:
            seen[stem] = seen.get(stem, 0) + 1
        for f, stem in zip(files, stems):
            clip_id = stem if seen[stem] == 1 else f"{label}/{relative_posix(f, label_dir)}"
            rows.append((clip_id, relative_posix(f, root), label))
    return rows


def load_folder(root: str | Path | None, *, split: str = "random", seed: int = 0,
                val_fraction: float = DEFAULT_VAL_FRACTION, test_fraction: float = DEFAULT_TEST_FRACTION,
                n_folds: int = DEFAULT_N_FOLDS, storage_options: Mapping[str, Any] | None = None) -> Manifest:
    """Manifest of a ``root/<label>/<audio>`` collection.

    Parameters
    ----------
    root : path or URI
        The folder holding one sub-folder per label (local, or s3://,
        gs://, http(s)://: see :mod:`pipeline.sources`).
    split : {"random", "folds"}
        "random": stratified train/val/test; "folds": ``n_folds`` stratified folds.
    seed : int
        Seed of the split or fold assignment.
    val_fraction, test_fraction : float
        Shares of val and test per label under "random".
    n_folds : int
        Folds under "folds".
    storage_options : mapping, optional
        fsspec options of a remote root (endpoint, credentials).
    """
    path = require_dir(root, "folder", EXPECTED, storage_options)
    rows = scan_labelled_folders(path)
    labels = [r[2] for r in rows]
    splits, folds, k = assign_scheme(split, labels, seed=seed, val_fraction=val_fraction,
                                     test_fraction=test_fraction, n_folds=n_folds)
    clips = tuple(ClipRecord(clip_id=cid, path=rel, label=lab, split=s, fold=f)
                  for (cid, rel, lab), s, f in zip(rows, splits, folds))
    logger.info("folder %s: %d clips, %d labels, split %s", path, len(clips), len(set(labels)), split)
    return Manifest(dataset="folder", root=manifest_root(path), labels=tuple(sorted(set(labels))), clips=clips,
                    split_scheme=split, n_folds=k,
                    source=f"labels from folder names; {split} split (seed {seed})")
