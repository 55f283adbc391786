"""Any collection laid out as ``root/<label>/<audio files>``.

Every visible sub-folder of the root is a label; every audio file below it
(recursively, any of :data:`pipeline.dsp.formats.AUDIO_EXTENSIONS` in any
case, or the list of the ``extensions`` option) is a clip of that label.
Every other file under the root (not audio, hidden, macOS ``._*``, loose in
the root) is skipped and reported by why (:class:`~pipeline.datasets.base.SkippedFiles`,
kept in the store). A label folder without
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
from pipeline.datasets.walk import SkipLog, require_dir, visible_audio, visible_dirs
from pipeline.dsp.formats import AUDIO_EXTENSIONS, parse_extensions
from pipeline.datasets.splits import (DEFAULT_N_FOLDS, DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION,
                                      assign_scheme)
from pipeline.errors import DatasetError
from pipeline.sources import RemotePath

logger = logging.getLogger(__name__)

SPLIT_SCHEMES: tuple[str, ...] = ("random", "folds")
EXPECTED = "one sub-folder per label holding audio files: <root>/<label>/<file>.wav|.mp3|.flac|..."


#: Why an audio file directly in the root is skipped.
LOOSE = "that lie directly in the root, not in a label folder"


def scan_labelled_folders(root: Path | RemotePath, *, expected: str = EXPECTED,
                          extensions: frozenset[str] = AUDIO_EXTENSIONS,
                          skipped: SkipLog | None = None) -> list[tuple[str, str, str]]:
    """``(clip_id, relative path, label)`` of every audio file under ``root/<label>/``.

    Sorted by label, then path. Every other file under ``root`` goes into
    ``skipped`` with why (not audio, hidden, loose in the root). Raises
    :class:`DatasetError` when there are no label folders or a label
    folder holds no audio.
    """
    skipped = SkipLog() if skipped is None else skipped
    label_dirs = visible_dirs(root)
    if not label_dirs:
        raise DatasetError(f"no label folders in {root}; expected {expected}")
    by_label: dict[str, list[str]] = {d.name: [] for d in label_dirs}
    for rel in visible_audio(root, skipped, extensions):
        parts = rel.split("/")
        if len(parts) == 1:
            skipped.add(LOOSE, rel)
        else:
            by_label[parts[0]].append(rel)
    rows: list[tuple[str, str, str]] = []
    for label, rels in by_label.items():
        if not rels:
            raise DatasetError(
                f"label folder {root / label} holds no audio files; expected {expected} "
                "(remove the folder or put its audio back; extensions=+.ext adds a file extension)"
            )
        stems = [rel.rsplit(".", 1)[0] for rel in rels]
        seen: dict[str, int] = {}
        for stem in stems:
            seen[stem] = seen.get(stem, 0) + 1
        for rel, stem in zip(rels, stems):
            rows.append((stem if seen[stem] == 1 else rel, rel, label))
    return rows


def load_folder(root: str | Path | None, *, split: str = "random", seed: int = 0,
                val_fraction: float = DEFAULT_VAL_FRACTION, test_fraction: float = DEFAULT_TEST_FRACTION,
                n_folds: int = DEFAULT_N_FOLDS, extensions: str | None = None,
                storage_options: Mapping[str, Any] | None = None) -> Manifest:
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
    extensions : str, optional
        File extensions taken as audio (:func:`pipeline.dsp.formats.parse_extensions`):
        ``".wav,.flac"`` only these, ``"+.ape"`` the default list and these.
    storage_options : mapping, optional
        fsspec options of a remote root (endpoint, credentials).
    """
    path = require_dir(root, "folder", EXPECTED, storage_options)
    skipped = SkipLog()
    rows = scan_labelled_folders(path, extensions=parse_extensions(extensions), skipped=skipped)
    skipped.log(path)
    labels = [r[2] for r in rows]
    splits, folds, k = assign_scheme(split, labels, seed=seed, val_fraction=val_fraction,
                                     test_fraction=test_fraction, n_folds=n_folds)
    clips = tuple(ClipRecord(clip_id=cid, path=rel, label=lab, split=s, fold=f)
                  for (cid, rel, lab), s, f in zip(rows, splits, folds))
    logger.info("folder %s: %d clips, %d labels, split %s", path, len(clips), len(set(labels)), split)
    return Manifest(dataset="folder", root=manifest_root(path), labels=tuple(sorted(set(labels))), clips=clips,
                    split_scheme=split, n_folds=k,
                    source=f"labels from folder names; {split} split (seed {seed})", skipped=skipped.record())
