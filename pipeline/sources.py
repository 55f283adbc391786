"""Audio sources by URI: dataset roots on a local disk or in object storage.

A dataset root is a local path (as always), a ``file://`` URL, or a remote
URI: ``s3://bucket/prefix``, ``gs://bucket/prefix`` (any fsspec filesystem)
or ``http(s)://host/path`` (read-only). The dataset adapters list a remote
root through :class:`RemotePath`, the subset of :class:`pathlib.Path` they
use, backed by fsspec listings; a build fetches each shard's objects with
:func:`fetch_many` and decodes the bytes in memory, so workers need no
shared filesystem.

Listing
-------
s3:// and gs:// roots are listed folder by folder (one ``ls`` per folder
the adapter looks into, cached for the life of the manifest load; a whole
audio subtree in one flat listing where the adapter walks it all). An HTTP
server can be listed only when it serves folder index pages (``python -m
http.server``, nginx ``autoindex``, Apache ``Indexes``). Any root may
instead hold a file list, :data:`FILE_LIST` (one relative POSIX path per
line, optionally followed by a tab and the size in bytes): where it exists,
it is the listing, and nothing else is listed (the way to use a bucket that
allows ``GetObject`` but not ``ListBucket``, or a server without indexes).

Credentials
-----------
Endpoint and credentials come from where stores take them (see
:mod:`stores.uri`): the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``,
``GOOGLE_APPLICATION_CREDENTIALS``, ...) and fsspec ``storage_options``
(``--storage-option``). They are never written into a manifest or a store,
never printed: messages carry :func:`~stores.remote.redact_uri` forms of URIs
and are scrubbed of every credential value (:func:`~stores.remote.scrub`).
What travels to workers is :func:`~stores.remote.public_options`, the options
without credentials; workers use their own environment for those. All of
that knowledge lives in :mod:`stores.remote`, shared with the stores.

What is fetched
---------------
The first 2 MiB of each object, in one request: a 30 s clip (~0.5-1.3 MB as
MP3 at 128-320 kb/s, ~1.3 MB as 16-bit 22 kHz WAV or GTZAN .au) is then whole. Of a
larger object, an uncompressed one (WAV PCM or float, Sun .au) travels as its
header and the excerpt's bytes only, two more range requests
(:mod:`pipeline.dsp.partial`: a 10-minute WAV moves ~3.4 of its 26 MB); a
compressed one is fetched whole, since its excerpt needs the container's seek
tables and the frames before it. A decode that reads any byte of a partly
fetched object that was not fetched raises instead of answering, and the
object is fetched whole and decoded again: a partial fetch changes how fast a
clip decodes, never what it decodes to.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import posixpath
import random
import stat as stat_module
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec.core

from pipeline.dsp.audio import excerpt_window
from pipeline.dsp.partial import PartialObject, pcm_layout
from pipeline.errors import AudioDecodeError, AudioError, DatasetError
from stores.remote import (CREDENTIAL_HINT, ENDPOINT_HINT, CredentialFilter, is_connection_error, is_remote, local_path,
                           public_options, redact_uri, scheme_of, scrub, worker_credential_env)

logger = logging.getLogger(__name__)

__all__ = ["FILE_LIST", "CredentialFilter", "ExcerptPlan", "RemotePath", "check_root", "fetch_many", "is_remote", "join_root", "public_options",
           "scrub", "source_path", "worker_credential_env"]

#: Name of the optional file list at a dataset root (see the module docstring).
FILE_LIST = "hfs-files.txt"
#: Schemes served over plain HTTP (no listing API; relative paths are URL-quoted).
HTTP_SCHEMES = ("http", "https")
#: Objects up to this size are fetched whole; a larger PCM one in part (see fetch_many).
RANGE_READ_BYTES = 2 << 20
#: Tries of one object before it is given up as unreadable (transient errors only).
FETCH_ATTEMPTS = 4
#: First backoff in seconds; doubled after every failed try, with jitter.
FETCH_BACKOFF_S = 0.5


# --------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------
def join_root(root: str | Path, relative: str) -> str:
    """The location of the dataset-relative POSIX path ``relative`` under ``root``.

    A local root (path or ``file://``) gives the absolute local path, as
    builds have always used (``~`` expanded, symbolic links resolved). A
    remote root gives a URI: ``relative`` appended after one ``/``,
    URL-quoted for http(s):// (a space becomes ``%20``).
    """
    path = local_path(root)
    if path is not None:
        return str(path.expanduser().resolve() / relative)
    base = str(root).rstrip("/")
    rel = relative.lstrip("/")
    if scheme_of(root) in HTTP_SCHEMES:
        rel = urllib.parse.quote(rel)
    return f"{base}/{rel}"


def _filesystem(uri: str, storage_options: Mapping[str, Any] | None):
    """(fsspec filesystem, its path of ``uri``); a DatasetError naming the package when one is missing."""
    try:
        return fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    except ImportError as exc:
        scheme = scheme_of(uri)
        package = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
                   "http": "aiohttp", "https": "aiohttp"}.get(scheme, f"the fsspec backend of {scheme}://")
        raise DatasetError(f"cannot read {redact_uri(uri)}: the {scheme}:// filesystem needs {package} "
                           f"(pip install {package})") from exc
    except ValueError as exc:  # unknown protocol
        raise DatasetError(f"cannot read {redact_uri(uri)}: {scrub(str(exc), storage_options)}; a dataset root "
                           "is a local folder or an s3://, gs://, http(s):// or file:// URI") from exc


# --------------------------------------------------------------------------
# Classifying backend errors
# --------------------------------------------------------------------------
def _http_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)  # aiohttp.ClientResponseError
    return status if isinstance(status, int) else None


def _unreachable(exc: BaseException) -> bool:
    """Connection refused, reset, timed out: botocore's and the builtin (stores.uri), and aiohttp's."""
    if is_connection_error(exc) or isinstance(exc, TimeoutError):
        return True
    try:
        from aiohttp import ClientConnectionError  # optional: only the http(s):// backend has it
    except ImportError:
        return False
    return isinstance(exc, ClientConnectionError)


def _why(exc: BaseException) -> tuple[str, bool]:
    """(what went wrong in a few words, whether another try may help) for a backend exception."""
    status = _http_status(exc)
    if isinstance(exc, FileNotFoundError) or status in (404, 410):
        return "not found", False
    if isinstance(exc, PermissionError) or status in (401, 403):
        return "access denied", False
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file", False
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return f"HTTP status {status}", False
    if _unreachable(exc):
        return "the server cannot be reached", True
    return f"{type(exc).__name__}", True


# --------------------------------------------------------------------------
# Checking a root up front
# --------------------------------------------------------------------------
def check_root(root: str | Path | None, storage_options: Mapping[str, Any] | None = None) -> None:
    """Fail early, in one line, when the dataset root cannot be read.

    A local root must be an existing folder. A remote root must be
    reachable, readable with the credentials at hand, and hold something:
    its file list (:data:`FILE_LIST`) or at least one entry.

    Raises
    ------
    DatasetError
        The bucket or prefix does not exist, the credentials are refused,
        the server cannot be reached, or the fsspec backend is missing. The
        message names the (redacted) root and the fix and holds no
        credential.
    """
    if root is None:
        raise DatasetError("no dataset root given (--root)")
    path = local_path(root)
    if path is not None:
        path = path.expanduser()
        if not path.is_dir():
            what = "does not exist" if not path.exists() else "is not a folder"
            raise DatasetError(f"dataset root {path} {what}")
        return
    _RemoteTree.open(str(root), storage_options)


def _root_error(shown: str, exc: BaseException, storage_options: Mapping[str, Any] | None) -> DatasetError:
    why, _ = _why(exc)
    detail = scrub(str(exc) or type(exc).__name__, storage_options)
    if why == "access denied":
        return DatasetError(f"access to the dataset root {shown} was denied ({detail}); {CREDENTIAL_HINT}")
    if why == "not found":
        return DatasetError(f"no dataset root at {shown}: the bucket does not exist or holds nothing under "
                            "that prefix (or the URI is misspelt); upload the collection there or fix --root")
    if why == "the server cannot be reached":
        return DatasetError(f"cannot reach the server of the dataset root {shown} ({detail}); {ENDPOINT_HINT}")
    return DatasetError(f"cannot list the dataset root {shown} ({why}: {detail}); {ENDPOINT_HINT}, "
                        "and the credentials")


# --------------------------------------------------------------------------
# Listing: RemotePath
# --------------------------------------------------------------------------
@dataclasses.dataclass
class _Entry:
    is_dir: bool
    size: int | None = None


class _RemoteTree:
    """One remote root: its filesystem, its listings (cached) or its file list."""

    def __init__(self, root: str, fs: Any, base: str, storage_options: Mapping[str, Any] | None) -> None:
        self.root = root.rstrip("/")
        self.fs = fs
        self.base = base.rstrip("/")
        self.http = scheme_of(root) in HTTP_SCHEMES
        self._options = storage_options
        self._lock = threading.Lock()
        #: relative folder ("" = root) -> {name: entry}; None = not a folder
        self._listings: dict[str, dict[str, _Entry] | None] = {}
        self.from_file_list = False

    @classmethod
    def open(cls, root: str, storage_options: Mapping[str, Any] | None) -> "_RemoteTree":
        """The tree of ``root``, checked readable (see :func:`check_root`)."""
        shown = redact_uri(root)
        fs, base = _filesystem(root, storage_options)
        tree = cls(root, fs, base, storage_options)
        try:
            listed = tree._read_file_list()
            if not listed:
                entries = tree._ls("")
        except DatasetError:
            raise
        except Exception as exc:  # whatever the backend raises, as one line naming the root
            raise _root_error(shown, exc, storage_options) from exc
        if not listed and not entries:
            if tree.http:
                raise DatasetError(f"cannot list the dataset root {shown}: the server gives no folder index "
                                   f"there (or nothing is there); put a file list {FILE_LIST} at the root (one "
                                   "relative path per line; see docs/audio-from-object-storage.md) or fix --root")
            raise DatasetError(f"no dataset root at {shown}: the bucket does not exist or holds nothing under "
                               "that prefix (or the URI is misspelt); upload the collection there or fix --root")
        return tree

    # -- locations --------------------------------------------------------
    def fs_path(self, rel: str) -> str:
        if not rel:
            return self.base
        return f"{self.base}/{urllib.parse.quote(rel) if self.http else rel}"

    def uri(self, rel: str) -> str:
        return join_root(self.root, rel) if rel else self.root

    # -- listings ---------------------------------------------------------
    def _read_file_list(self) -> bool:
        """Fill the listings from :data:`FILE_LIST` when the root holds one."""
        try:
            text = self.fs.cat_file(self.fs_path(FILE_LIST)).decode("utf-8")
        except Exception as exc:
            why, _ = _why(exc)
            if why == "not found" or (self.http and why.startswith("HTTP status")):
                return False
            if why == "access denied" and not self.http:
                raise  # bad credentials: the listing below would say the same, less clearly
            return False
        listings: dict[str, dict[str, _Entry] | None] = {"": {}}
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            rel, _, size = line.partition("\t")
            rel = posixpath.normpath(rel.strip().lstrip("./") or ".")
            if rel in (".", "") or rel.startswith(".."):
                continue
            parts = rel.split("/")
            for depth in range(len(parts)):
                folder = "/".join(parts[:depth])
                entries = listings.setdefault(folder, {})
                if depth == len(parts) - 1:
                    entries[parts[-1]] = _Entry(False, int(size) if size.strip().isdigit() else None)
                else:
                    entries.setdefault(parts[depth], _Entry(True))
                    listings.setdefault("/".join(parts[:depth + 1]), {})
        self._listings = listings
        self.from_file_list = True
        logger.info("dataset root %s: listed by its %s (%d files)", redact_uri(self.root), FILE_LIST,
                    sum(1 for d in listings.values() if d for e in d.values() if not e.is_dir))
        return True

    def _ls(self, rel: str) -> dict[str, _Entry] | None:
        """Entries of the folder ``rel`` (None when it is not a folder)."""
        with self._lock:
            if rel in self._listings:
                return self._listings[rel]
        if self.from_file_list:
            return None
        folder = self.fs_path(rel)
        try:
            raw = self.fs.ls(folder + "/" if self.http else folder, detail=True)
        except FileNotFoundError:
            raw = None
        except Exception as exc:
            # A server without folder indexes answers 403 (or 401) for a folder URL.
            if not (self.http and _http_status(exc) in (401, 403)):
                raise
            raw = None
        entries = None if raw is None else self._entries(folder, raw)
        if entries is not None and not entries and rel:
            entries = None  # an empty prefix is no folder
        with self._lock:
            self._listings[rel] = entries
        return entries

    def _entries(self, folder: str, raw: list[dict]) -> dict[str, _Entry]:
        entries: dict[str, _Entry] = {}
        for item in raw:
            full = str(item.get("name", "")).rstrip("/")
            if self.http:
                if "?" in full or "#" in full or not full.startswith(folder.rstrip("/") + "/"):
                    continue
                name = urllib.parse.unquote(full[len(folder.rstrip("/")) + 1:])
                if "/" in name:
                    continue
                is_dir = str(item.get("name", "")).endswith("/") or item.get("type") == "directory"
            else:
                if full == folder.rstrip("/"):
                    continue  # a "folder/" marker object, or a file listed as itself
                name = full.rsplit("/", 1)[-1]
                is_dir = item.get("type") == "directory"
            if not name:
                continue
            size = item.get("size")
            entries[name] = _Entry(is_dir, int(size) if isinstance(size, int) and not is_dir else None)
        return entries

    def walk(self, rel: str) -> None:
        """List the whole subtree of ``rel`` at once (one flat listing on object stores)."""
        if self.from_file_list or self.http:
            return  # a file list is complete; HTTP indexes are listed folder by folder
        top = self.fs_path(rel)
        try:
            found = self.fs.find(top, detail=True)
        except FileNotFoundError:
            return
        listings: dict[str, dict[str, _Entry]] = {rel: {}}
        for full, item in found.items():
            sub = full[len(top):].strip("/")
            if not sub or full.endswith("/"):
                continue
            parts = sub.split("/")
            prefix = rel
            for depth, part in enumerate(parts):
                entries = listings.setdefault(prefix, {})
                last = depth == len(parts) - 1
                if last:
                    size = item.get("size")
                    entries[part] = _Entry(False, int(size) if isinstance(size, int) else None)
                else:
                    entries.setdefault(part, _Entry(True))
                prefix = f"{prefix}/{part}" if prefix else part
        with self._lock:
            for folder, entries in listings.items():
                self._listings[folder] = entries
        logger.debug("listed %s: %d folders", redact_uri(self.uri(rel)), len(listings))

    def entry(self, rel: str) -> _Entry | None:
        if not rel:
            return _Entry(True)
        parent, _, name = rel.rpartition("/")
        entries = self._ls(parent)
        return None if entries is None else entries.get(name)


class RemotePath:
    """A file or folder under a remote dataset root: the part of :class:`pathlib.Path` the adapters use.

    ``str()`` is the URI without any user:password part; ``relative_to``
    gives the dataset-relative POSIX path. Listings are cached, so asking
    ``is_file()`` of many files of one folder lists it once. There is no
    ``__fspath__``: nothing can open a RemotePath as a local file by mistake.
    """

    __slots__ = ("_tree", "_rel")

    def __init__(self, tree: _RemoteTree, rel: str = "") -> None:
        self._tree = tree
        self._rel = rel.strip("/")

    # -- pure parts -------------------------------------------------------
    def __truediv__(self, other: str | PurePosixPath) -> "RemotePath":
        joined = posixpath.normpath(posixpath.join(self._rel, str(other))) if str(other) else self._rel
        if joined == ".":
            joined = ""
        if joined.startswith(".."):
            raise DatasetError(f"{other!r} leads outside the dataset root {self._tree.root}")
        return RemotePath(self._tree, joined)

    @property
    def name(self) -> str:
        return self._rel.rsplit("/", 1)[-1] if self._rel else self._tree.root.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> "RemotePath":
        return RemotePath(self._tree, self._rel.rpartition("/")[0]) if self._rel else self

    @property
    def uri(self) -> str:
        """The full URI (as given, credentials included if the root held any: do not print it)."""
        return self._tree.uri(self._rel)

    def relative_to(self, other: "RemotePath") -> PurePosixPath:
        if not isinstance(other, RemotePath) or other._tree is not self._tree:
            raise ValueError(f"{self} is not under {other}")
        if other._rel and not (self._rel == other._rel or self._rel.startswith(other._rel + "/")):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self._rel[len(other._rel):].lstrip("/") or ".")

    def expanduser(self) -> "RemotePath":
        return self

    def __str__(self) -> str:
        return redact_uri(self.uri)

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other._tree is self._tree and other._rel == self._rel

    def __hash__(self) -> int:
        return hash((id(self._tree), self._rel))

    def __lt__(self, other: "RemotePath") -> bool:
        return self._rel < other._rel

    # -- listing ----------------------------------------------------------
    def exists(self) -> bool:
        return self._tree.entry(self._rel) is not None

    def is_dir(self) -> bool:
        entry = self._tree.entry(self._rel)
        return entry is not None and entry.is_dir

    def is_file(self) -> bool:
        entry = self._tree.entry(self._rel)
        return entry is not None and not entry.is_dir

    def iterdir(self) -> Iterator["RemotePath"]:
        entries = self._tree._ls(self._rel)
        if entries is None:
            raise DatasetError(f"cannot list {self}: it is not a folder")
        for name in sorted(entries):
            yield self / name

    def walk_all(self) -> None:
        """Prefetch the listings of everything under this folder (one request stream)."""
        self._tree.walk(self._rel)

    def stat(self) -> os.stat_result:
        """Size (``None`` where the listing gives none: HTTP, a file list without sizes) and kind."""
        entry = self._tree.entry(self._rel)
        if entry is None:
            raise FileNotFoundError(f"{self} does not exist")
        mode = stat_module.S_IFDIR if entry.is_dir else stat_module.S_IFREG
        return _Stat(mode, entry.size)  # type: ignore[return-value]

    # -- reading ----------------------------------------------------------
    def open(self, mode: str = "rb", **kwargs: Any):
        """A read-only file object (fsspec; read ahead in blocks)."""
        if mode not in ("r", "rb"):
            raise DatasetError(f"{self} is read-only here (mode {mode!r})")
        try:
            return self._tree.fs.open(self._tree.fs_path(self._rel), mode, **kwargs)
        except Exception as exc:
            raise self._read_error(exc) from exc

    def read_bytes(self) -> bytes:
        try:
            return self._tree.fs.cat_file(self._tree.fs_path(self._rel))
        except Exception as exc:
            raise self._read_error(exc) from exc

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def _read_error(self, exc: BaseException) -> DatasetError:
        why, _ = _why(exc)
        hint = CREDENTIAL_HINT if why == "access denied" else "check that it was uploaded and the URI"
        return DatasetError(f"cannot read {self}: {why} ({scrub(str(exc), self._tree._options)}); {hint}")


@dataclasses.dataclass(frozen=True)
class _Stat:
    st_mode: int
    st_size: int | None


def source_path(location: str | Path, storage_options: Mapping[str, Any] | None = None) -> Path | RemotePath:
    """A local :class:`~pathlib.Path` or a checked :class:`RemotePath` for a dataset root (or file) URI.

    Local paths and ``file://`` URLs become paths (``~`` expanded);
    ``storage_options`` given with them are refused, as for stores.
    """
    path = local_path(location)
    if path is not None:
        if storage_options:
            raise DatasetError(f"storage options {sorted(storage_options)} given for the local dataset root "
                               f"{path}; they only apply to remote roots such as s3://bucket/gtzan")
        return path.expanduser()
    return RemotePath(_RemoteTree.open(str(location), storage_options))


# --------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ExcerptPlan:
    """The excerpt a decode will take (``AudioConfig.clip_seconds`` and ``.excerpt``): which bytes a long
    PCM object's decode needs."""

    clip_seconds: float
    excerpt: str


def fetch_many(uris: Sequence[str], *, storage_options: Mapping[str, Any] | None = None,
               max_concurrency: int = 8, excerpt: ExcerptPlan | None = None
               ) -> list[bytes | PartialObject | AudioError]:
    """The bytes of every object in ``uris`` (local paths too), fetched concurrently.

    Parameters
    ----------
    uris : sequence of str
        Remote URIs (``s3://``, ``gs://``, ``http(s)://``, ...) or local
        paths, as :func:`join_root` gives them; one shard's clips.
    storage_options : mapping, optional
        fsspec options of the remote URIs (endpoint, credentials);
        ``None``: the environment's.
    max_concurrency : int
        Objects in flight at once (threads).
    excerpt : ExcerptPlan, optional
        With it, a remote object larger than :data:`RANGE_READ_BYTES` that
        is uncompressed PCM (WAV, Sun .au) is fetched in part: its header
        and the excerpt's bytes, two range requests
        (:class:`~pipeline.dsp.partial.PartialObject`). A decode that reads
        any other byte raises PartialReadError: fetch it again with
        ``excerpt=None``.

    Returns
    -------
    list of bytes, PartialObject or AudioError
        In the order of ``uris``. A transient error (connection, timeout,
        throttling, 5xx) is retried :data:`FETCH_ATTEMPTS` times with
        exponential backoff; an object that stays unreadable, is missing or
        is refused gives an :class:`~pipeline.errors.AudioDecodeError` of
        category "unreadable" naming the (redacted) URI and the cause, never
        an exception for the whole list. Messages hold no credential.
    """
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency={max_concurrency!r} must be a positive integer")
    if not uris:
        return []

    def locate(uri: str) -> tuple[Any, str] | AudioError | None:
        if local_path(uri) is not None:
            return None
        try:
            return _filesystem(uri, storage_options)  # fsspec keeps one filesystem per options
        except DatasetError as exc:
            return AudioDecodeError(redact_uri(uri), f"cannot be fetched: {exc}", "unreadable")

    targets = [(str(uri), locate(str(uri))) for uri in uris]
    workers = min(max_concurrency, len(targets))
    if workers == 1:
        return [_fetch_one(uri, target, storage_options, excerpt) for uri, target in targets]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        return list(pool.map(lambda t: _fetch_one(t[0], t[1], storage_options, excerpt), targets))


def _fetch_one(uri: str, target: tuple[Any, str] | AudioError | None,
               storage_options: Mapping[str, Any] | None,
               excerpt: ExcerptPlan | None = None) -> bytes | PartialObject | AudioError:
    if isinstance(target, AudioError):
        return target
    if target is None:
        return _read_local(uri)
    fs, path = target
    shown = redact_uri(uri)
    delay = FETCH_BACKOFF_S
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            return fs.cat_file(path) if excerpt is None else _fetch_excerpt(fs, path, shown, excerpt)
        except Exception as exc:  # every backend error becomes this object's failure, never the list's
            why, transient = _why(exc)
            detail = scrub(str(exc) or type(exc).__name__, storage_options)
            if transient and attempt < FETCH_ATTEMPTS:
                logger.debug("%s: fetch try %d failed (%s: %s); retrying in %.1f s", shown, attempt, why,
                             detail, delay)
                time.sleep(delay * (0.5 + random.random()))
                delay *= 2
                continue
            return AudioDecodeError(shown, _fetch_reason(why, detail, attempt), "unreadable")
    raise AssertionError("unreachable")  # pragma: no cover


def _fetch_excerpt(fs: Any, path: str, shown: str, excerpt: ExcerptPlan) -> bytes | PartialObject:
    """The object, or for a long PCM file its header and excerpt only (see :func:`fetch_many`)."""
    head = fs.cat_file(path, start=0, end=RANGE_READ_BYTES)
    if len(head) < RANGE_READ_BYTES:
        return head  # the whole object, in one request as before
    size = int(fs.size(path))
    layout = pcm_layout(head, size)
    if layout is not None:
        first, count = excerpt_window(layout.frames, layout.rate, excerpt.clip_seconds, excerpt.excerpt)
        start = layout.data_start + first * layout.frame_bytes
        end = min(size, start + count * layout.frame_bytes)
        if start > len(head) and end - len(head) <= size // 2:
            return PartialObject(shown, size, ((0, head), (start, fs.cat_file(path, start=start, end=end))))
    # Compressed (the decoder needs its frames), or most of it anyway: the rest in one more request.
    return head + fs.cat_file(path, start=len(head))


def _fetch_reason(why: str, detail: str, attempts: int) -> str:
    if why == "not found":
        return "cannot be fetched: not found; check that the collection was uploaded completely"
    if why == "access denied":
        return f"cannot be fetched: access denied ({detail}); {CREDENTIAL_HINT}"
    if why == "a folder, not a file":
        return "cannot be fetched: it is a folder, not an audio file"
    return (f"cannot be fetched: {why} ({detail}) after {attempts} tries; {ENDPOINT_HINT}, then rerun "
            "(a build resumes from its finished shards)")


def _read_local(path: str) -> bytes | AudioError:
    """A local file's bytes, or the "unreadable" error load_clip would give for it."""
    file_path = local_path(path)
    try:
        with open(file_path, "rb") as fh:
            return fh.read()
    except IsADirectoryError:
        return AudioDecodeError(str(file_path), "is a directory, not an audio file; check the path",
                                "unreadable")
    except OSError as exc:
        return AudioDecodeError(str(file_path), f"cannot be read ({exc.strerror or exc}); check the path "
                                                "and its permissions", "unreadable")
