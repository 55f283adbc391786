"""Walking dataset folders: which files count as audio, and how paths are written.

Shared by the folder-shaped adapters (GTZAN, folder). Nothing here
opens an audio file: adapters list clips, the builder decodes them.
A folder is a local :class:`~pathlib.Path` or, under a remote root (s3://,
gs://, http(s)://), a :class:`~pipeline.sources.RemotePath`: the same calls
list both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import DatasetError
from pipeline.sources import RemotePath, is_remote, source_path

logger = logging.getLogger(__name__)

#: File extensions (lower case) taken as audio by the folder-shaped adapters.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".mp3", ".flac", ".ogg", ".opus", ".au", ".aiff", ".aif", ".m4a"}
)


def is_hidden(name: str) -> bool:
    """Dot files, including the ``._name`` AppleDouble files macOS leaves in archives."""
    return name.startswith(".")


def is_audio_name(name: str) -> bool:
    """True for a visible file name with an audio extension (any case)."""
    return not is_hidden(name) and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def visible_dirs(folder: Path | RemotePath) -> list[Path | RemotePath]:
    """The sub-folders of ``folder`` that are not hidden, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def iter_audio_files(folder: Path | RemotePath) -> Iterator[Path | RemotePath]:
    """Audio files under ``folder`` (recursively) in sorted order, skipping hidden files and folders.

    Sorting happens per directory level on the names, so the order is the
    same on every file system (and in object storage).
    """
    if isinstance(folder, RemotePath):
        folder.walk_all()  # the whole subtree in one listing, then walked from the cache
        yield from _iter_remote_audio(folder)
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"cannot list {folder}: {exc}") from exc
    for entry in entries:
        if is_hidden(entry.name):
            continue
        if entry.is_dir():
            yield from iter_audio_files(Path(entry.path))
        elif is_audio_name(entry.name):
            yield Path(entry.path)


def _iter_remote_audio(folder: RemotePath) -> Iterator[RemotePath]:
    for entry in folder.iterdir():  # sorted by name
        if is_hidden(entry.name):
            continue
        if entry.is_dir():
            yield from _iter_remote_audio(entry)
        elif is_audio_name(entry.name):
            yield entry


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
