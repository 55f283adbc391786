"""Walking dataset folders: which files count as audio, what is left out, and how paths are written.

Shared by the folder-shaped adapters (GTZAN, folder). A file is audio when
its extension is one of :data:`pipeline.dsp.formats.AUDIO_EXTENSIONS` (or
the list an ``extensions=`` option gives); every other file under the root
is not a clip, and goes into a :class:`SkipLog` with why, so that the build,
``pipeline scan`` and ``pipeline info`` say what was left out. Nothing here
opens an audio file: adapters list clips, the builder decodes them.
A folder is a local :class:`~pathlib.Path` or, under a remote root (s3://,
gs://, http(s)://), a :class:`~pipeline.sources.RemotePath`: the same calls
list both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.datasets.base import SkippedFiles
from pipeline.dsp.formats import AUDIO_EXTENSIONS, audio_extension
from pipeline.errors import DatasetError, describe_skipped
from pipeline.sources import FILE_LIST, RemotePath, is_remote, source_path

logger = logging.getLogger(__name__)

#: Why a file under a dataset root is not a clip (the skipped record's keys): phrases that follow
#: "skipped N files". Adapters add their own (e.g. GTZAN's naming rule).
NOT_AUDIO = "that are not audio"
HIDDEN = "that are hidden (dot files and folders, e.g. macOS ._* files)"


def is_hidden(name: str) -> bool:
    """Dot files, including the ``._name`` AppleDouble files macOS leaves in archives."""
    return name.startswith(".")


def is_audio_name(name: str, extensions: frozenset[str] = AUDIO_EXTENSIONS) -> bool:
    """True for a visible file name with one of ``extensions`` (any case)."""
    return not is_hidden(name) and audio_extension(name) in extensions


def visible_dirs(folder: Path | RemotePath) -> list[Path | RemotePath]:
    """The sub-folders of ``folder`` that are not hidden, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def walk_tree(root: Path | RemotePath) -> tuple[list[str], list[str]]:
    """``(files, hidden folders)`` under ``root``, as root-relative POSIX paths.

    Every regular file is listed (hidden ones too, so they can be counted)
    but an HTTP root's file list (:data:`pipeline.sources.FILE_LIST`);
    hidden folders (``.git``, ``.Trash``) are listed, with a trailing "/",
    but not walked. Sorting happens per directory level on the names, so the
    order is the same on every file system (and in object storage).
    """
    if isinstance(root, RemotePath):
        root.walk_all()  # the whole subtree in one listing, then walked from the cache
    files: list[str] = []
    hidden_dirs: list[str] = []

    def visit(folder: Path | RemotePath, prefix: str) -> None:
        for name, is_dir, child in _entries(folder):
            rel = prefix + name
            if rel == FILE_LIST:
                continue  # the listing of an HTTP root (pipeline.sources): the root's own index, not data
            if is_dir:
                if is_hidden(name):
                    hidden_dirs.append(rel + "/")
                else:
                    visit(child, rel + "/")
            else:
                files.append(rel)

    visit(root, "")
    return files, hidden_dirs


def visible_audio(root: Path | RemotePath, skipped: "SkipLog",
                  extensions: frozenset[str] = AUDIO_EXTENSIONS) -> list[str]:
    """The visible audio files under ``root`` (:func:`walk_tree` order, root-relative POSIX paths);
    hidden folders and files and files that are not audio go into ``skipped``."""
    files, hidden_dirs = walk_tree(root)
    for rel in hidden_dirs:
        skipped.add(HIDDEN, rel)
    audio = []
    for rel in files:
        if any(is_hidden(part) for part in rel.split("/")):
            skipped.add(HIDDEN, rel)
        elif audio_extension(rel) not in extensions:
            skipped.add(NOT_AUDIO, rel)
        else:
            audio.append(rel)
    return audio


def _entries(folder: Path | RemotePath) -> list[tuple[str, bool, Path | RemotePath]]:
    """``(name, is a folder, path)`` of the entries of ``folder``, sorted by name (regular files and folders)."""
    if isinstance(folder, RemotePath):
        return [(e.name, e.is_dir(), e) for e in folder.iterdir()]  # sorted by name
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"cannot list {folder}: {exc}") from exc
    out = []
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        # Anything else (a dangling link, a socket) counts as a file: it is named, and a clip of it fails
        # with its reason ("unreadable") instead of vanishing.
        out.append((entry.name, is_dir, Path(entry.path)))
    return out


class SkipLog:
    """Files under a dataset root that are not clips, grouped by why (root-relative POSIX paths)."""

    def __init__(self) -> None:
        self._by_why: dict[str, list[str]] = {}

    def add(self, why: str, path: str) -> None:
        self._by_why.setdefault(why, []).append(path)

    def record(self) -> tuple[SkippedFiles, ...]:
        """What the manifest carries (and the store keeps); groups by why, each sorted by path (the same
        on every file system and in object storage)."""
        return tuple(SkippedFiles(why, tuple(sorted(paths))) for why, paths in sorted(self._by_why.items()) if paths)

    def log(self, root: object) -> None:
        for group in self.record():
            logger.warning("%s: %s", root, describe_skipped(group.why, group.paths))


def relative_posix(path: Path | RemotePath, root: Path | RemotePath) -> str:
    """``path`` relative to ``root`` with forward slashes (the form stored in manifests)."""
    return path.relative_to(root).as_posix()


def require_dir(root: str | Path | None, dataset: str, expected: str,
                storage_options: Mapping[str, Any] | None = None) -> Path | RemotePath:
    """``root`` as a Path that exists and is a folder, or a :class:`DatasetError`.

    A remote root (s3://, gs://, http(s)://) becomes a checked
    :class:`~pipeline.sources.RemotePath` (see
    :func:`pipeline.sources.check_root`), read with ``storage_options`` and
    the environment; a ``file://`` URL is a local path. ``expected``
    describes the layout the adapter looks for there; it goes into the
    message so the user sees what should be where.
    """
    if root is None:
        raise DatasetError(f"dataset {dataset!r} needs a root folder (--root); expected {expected}")
    if is_remote(root):
        return source_path(root, storage_options)
    path = source_path(root)
    if not path.exists():
        raise DatasetError(f"dataset root {path} does not exist; expected {expected}")
    if not path.is_dir():
        raise DatasetError(f"dataset root {path} is not a folder; expected {expected}")
    return path
