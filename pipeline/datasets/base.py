"""The manifest: what every dataset adapter produces and the builder consumes.

A manifest is one row per clip, with the clip's audio path relative to the
dataset root (absolute paths of the building machine never reach a store).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.sources import RemotePath, join_root

#: Split names used everywhere ("" when a dataset has no split for a clip).
SPLITS: tuple[str, ...] = ("train", "val", "test")


def manifest_root(path: Path | RemotePath) -> Path | str:
    """What a manifest records as its root: the Path, or the URI of a remote root."""
    return path.uri if isinstance(path, RemotePath) else path


@dataclasses.dataclass(frozen=True)
class ClipRecord:
    """One clip of a dataset.

    clip_id : unique within the dataset and stable across machines
        (GTZAN: "blues.00000"; FMA: "000002"; folder: "<label>/<stem>").
    path : audio file path relative to the dataset root, POSIX separators.
    label : genre name (one of the manifest's labels).
    split : "train", "val", "test" or "" (not in the chosen split scheme).
    fold : cross-validation fold 0..k-1, or -1 when the scheme has none.
    group : artist (or other leakage group) where known, else "".
    """

    clip_id: str
    path: str
    label: str
    split: str = ""
    fold: int = -1
    group: str = ""


@dataclasses.dataclass(frozen=True)
class SkippedFiles:
    """Files under the dataset root that are not clips, for one reason.

    why : a phrase that follows "skipped N files" ("that are not audio").
    paths : the files, relative to the dataset root, POSIX separators, sorted.
    """

    why: str
    paths: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Manifest:
    """All clips of one dataset under one split scheme.

    dataset : adapter name ("demo", "gtzan", "fma-medium", "folder", ...).
    root : the dataset root (never written to a store): a local Path, or
        the URI string of a remote root (s3://, gs://, http(s)://; see
        :mod:`pipeline.sources`). Clip paths are relative to it either way.
    labels : sorted genre names; a clip's label index is its position here.
    clips : the clips, in a stable order (the store's clip axis).
    split_scheme : name of the split scheme used ("official",
        "fault-filtered", "random", "folds", ...).
    n_folds : number of folds when the scheme has folds, else 0.
    source : short citation/description of where labels and splits come from.
    skipped : the files under the root that are not clips, by why (the
        build keeps them in the store, so nothing is left out in silence).
    """

    dataset: str
    root: Path | str
    labels: tuple[str, ...]
    clips: tuple[ClipRecord, ...]
    split_scheme: str
    n_folds: int = 0
    source: str = ""
    skipped: tuple[SkippedFiles, ...] = ()

    def __len__(self) -> int:
        return len(self.clips)

    def absolute_path(self, clip: ClipRecord) -> Path | str:
        """Where ``clip`` is: a Path under a local root, a URI under a remote one
        (:func:`pipeline.sources.join_root`)."""
        if isinstance(self.root, Path):
            return self.root / clip.path
        return join_root(self.root, clip.path)

    def head(self, n: int) -> "Manifest":
        """The first ``n`` clips (smoke tests and benchmarks)."""
        return dataclasses.replace(self, clips=self.clips[:n])

    def balanced_head(self, n: int) -> "Manifest":
        """``n`` clips taken from the labels in turn (the first of each label, then the second, ...).

        Adapters sort clips by label, so :meth:`head` of a small ``n`` holds
        one or two labels only; this keeps every label in a smoke run. The
        chosen clips keep their manifest order.
        """
        by_label: dict[str, list[int]] = {}
        for i, clip in enumerate(self.clips):
            by_label.setdefault(clip.label, []).append(i)
        chosen: list[int] = []
        rank = 0
        while len(chosen) < min(n, len(self.clips)):
            for indices in by_label.values():
                if rank < len(indices) and len(chosen) < n:
                    chosen.append(indices[rank])
            rank += 1
        return dataclasses.replace(self, clips=tuple(self.clips[i] for i in sorted(chosen)))
