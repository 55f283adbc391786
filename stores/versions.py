"""Versions of a store: immutable objects, immutable manifests, a log appended by compare-and-swap.

Every write to a store (a build, a resumed build, an update) is one
*transaction* that becomes visible as one *version* when it commits. Readers
open one version and read only objects that no writer ever changes again, so
a trainer streaming version 3 keeps reading version 3 while a writer commits
version 4.

Physical layout of a versioned location (keys under the store's URI)::

    log/00000001.json        one per committed version, created exclusively: the commit point
    manifests/<id>.json.gz   that version's map: logical Zarr key -> physical object key
    data/<txn>/<key>         the objects written by transaction <txn> (never rewritten after its commit)
    tomb/<txn>/<key>         <key> deleted by transaction <txn>
    txn/<txn>.json           a transaction's intent: base version, whether it starts empty, what it changes
    tags/<name>.json         a name for a version, created exclusively
    head.json                a hint: the newest version seen (readers look past it for newer ones)

A commit lists its transaction's objects, writes the new manifest, then
creates ``log/<seq+1>.json`` with an exclusive create (``O_EXCL``-style link
locally, ``If-None-Match: *`` on S3). Two writers that started from the same
version race for the same log key: one wins, the other gets
:class:`ConcurrentWriteError` and its objects stay where they are (nothing of
the committed version is touched). A killed writer leaves only its
``data/<txn>/`` objects: the log still ends at the version before it, and the
same command (same base, same inputs: the same transaction id) resumes it.

Stores written before versions existed (a plain Zarr folder, a zip, an HTTP
URL) open as one read-only version, :data:`LEGACY_VERSION`; an update adopts
a plain folder as version 1 without copying (its manifest maps every key to
itself).

Logical keys are what zarr-python sees (``zarr.json``, ``mel/c/0/0/0/0``), so
everything above this module (the reader, the writer, our shard encoder and
decoder, consolidated metadata) works unchanged on a :class:`VersionedStore`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import gzip
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Iterator, Mapping

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync
import zarr.storage

from stores.errors import StoreError

logger = logging.getLogger(__name__)

LOG_PREFIX = "log/"
MANIFEST_PREFIX = "manifests/"
DATA_PREFIX = "data/"
TOMB_PREFIX = "tomb/"
TXN_PREFIX = "txn/"
TAG_PREFIX = "tags/"
HEAD_HINT = "head.json"
#: The version id of a store written before versions existed (read-only, one version).
LEGACY_VERSION = "legacy"
#: Transaction ids in a URI (``STORE@txn-<id>``) start with this.
TXN_MARK = "txn-"
_TAG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class VersionNotFoundError(StoreError, LookupError):
    """A ``@VERSION`` (id, prefix or tag) names no version of the store."""


class ConcurrentWriteError(StoreError):
    """Another writer committed a version while this one was writing."""


class ReadOnlyVersionError(StoreError, PermissionError):
    """A write was asked of a pinned (``@VERSION``) or pre-version store."""


def split_version(uri: str | Path) -> tuple[str | Path, str | None]:
    """``(location, ref)`` of ``STORE@REF``; ``ref`` None when the URI names no version.

    Only a last ``@`` followed by no ``/`` counts, so credentials
    (``s3://key:secret@bucket/x``) and folders with ``@`` in their names
    (``/data/a@b/x.zarr``) are not mistaken for versions.
    """
    text = str(uri)
    head, sep, tail = text.rpartition("@")
    if not sep or not head or not tail or "/" in tail or "\\" in tail or head.endswith("/"):
        return uri, None
    return (head if isinstance(uri, str) else Path(head)), tail


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """One committed version (the JSON of ``log/<seq>.json``).

    seq : position in the log, 1 first; id : 12 hex digits; parent : the id it was based on ("" for the first);
    time : UTC ISO time of the commit; change : what it changed, for people
    (``+240 clips (train 190, val 25, test 25)``); package : the version of our package that wrote it;
    fingerprint : the store's fingerprint in this version; manifest : physical key of its manifest.
    """

    seq: int
    id: str
    parent: str
    time: str
    change: str
    package: str
    fingerprint: str
    manifest: str

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> LogEntry:
        try:
            values = json.loads(data)
            return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{where} is not a version log entry ({exc}); the store's log is damaged") from exc


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _package_version() -> str:
    from stores.metadata import _package_version as version  # one definition of "our version"

    return version()


def _log_key(seq: int) -> str:
    return f"{LOG_PREFIX}{seq:08d}.json"


async def _read(store: Store, key: str) -> bytes | None:
    try:
        await store._ensure_open()  # a zip store opens its file on first use
        buffer = await store.get(key, prototype=default_buffer_prototype())
    except FileNotFoundError:  # a local folder that does not exist (yet)
        return None
    return None if buffer is None else buffer.to_bytes()


def _buffer(data: bytes) -> Buffer:
    return default_buffer_prototype().buffer.from_bytes(data)


async def create_exclusive(store: Store, key: str, data: bytes) -> bool:
    """Write ``key`` only if it does not exist yet, atomically; False when it existed.

    Local folders: the bytes go to a temporary file that is hard-linked to
    the key (``link`` fails if the key exists, and readers never see a half
    file). fsspec stores: ``pipe_file(mode="create")``, an S3 ``PUT`` with
    ``If-None-Match: *`` (AWS S3 and the Ceph RADOS gateway honour it; the
    tests run it against Ceph). Other fsspec backends fall back to check-then-write,
    which is not atomic (logged).
    """
    if isinstance(store, zarr.storage.LocalStore):
        target = Path(store.root) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
        finally:
            os.unlink(tmp)
        return True
    if isinstance(store, zarr.storage.FsspecStore):
        path = f"{store.path.rstrip('/')}/{key}"
        try:
            await store.fs._pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise
        except TypeError:  # a backend without exclusive writes
            logger.warning("%s cannot create objects exclusively: two writers committing at the same moment "
                           "are not detected", type(store.fs).__name__)
            if await store.fs._exists(path):
                return False
            await store.fs._pipe_file(path, data)
        return True
    if await store.exists(key):
        return False
    await store.set(key, _buffer(data))
    return True


def _precondition_failed(exc: OSError) -> bool:
    """True for an S3 "412 Precondition Failed" (the key exists). s3fs makes it a
    FileExistsError only when the server names the condition; the Ceph gateway
    does not, and s3fs then raises a plain OSError caused by the ClientError."""
    cause = exc.__cause__
    response = getattr(cause, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    status = (response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}).get("HTTPStatusCode")
    return error.get("Code") in ("PreconditionFailed", "412") or status == 412


class Repository:
    """The versions of the store at one physical location (see the module docstring).

    ``physical`` is the Zarr store of the location itself (a folder, an
    fsspec store); ``shown`` its URI for messages.
    """

    def __init__(self, physical: Store, shown: str) -> None:
        self.physical = physical
        self.shown = shown
        self._manifests: dict[str, dict[str, str]] = {}
        self._views: dict[str, VersionedStore] = {}

    # -- the log ----------------------------------------------------------------------------
    def entry(self, seq: int) -> LogEntry | None:
        data = sync(_read(self.physical, _log_key(seq)))
        return None if data is None else LogEntry.from_json(data, f"{_log_key(seq)} of {self.shown}")

    def head(self) -> LogEntry | None:
        """The newest committed version, None when there is none."""
        hint = sync(_read(self.physical, HEAD_HINT))
        seq = 0
        if hint is not None:
            try:
                seq = int(json.loads(hint)["seq"])
            except (ValueError, KeyError, TypeError):
                seq = 0
        newest = self.entry(seq) if seq else None
        while True:  # the hint is written after a commit: newer versions may exist beyond it
            following = self.entry(seq + 1)
            if following is None:
                return newest
            newest, seq = following, seq + 1

    def is_versioned(self) -> bool:
        return self.head() is not None

    def entries(self) -> list[LogEntry]:
        """Every committed version, oldest first."""
        head = self.head()
        if head is None:
            return []

        async def read_all() -> list[bytes | None]:
            return list(await asyncio.gather(*(_read(self.physical, _log_key(s)) for s in range(1, head.seq + 1))))

        found = sync(read_all())
        return [LogEntry.from_json(d, f"{_log_key(i + 1)} of {self.shown}") for i, d in enumerate(found) if d]

    def tags(self) -> dict[str, str]:
        """Tag name -> version id."""
        async def read_tags() -> dict[str, str]:
            names = [k async for k in self.physical.list_prefix(TAG_PREFIX)] \
                if self.physical.supports_listing else []
            out = {}
            for key in names:
                data = await _read(self.physical, key)
                if data is not None:
                    out[key[len(TAG_PREFIX):].removesuffix(".json")] = json.loads(data)["version"]
            return out

        return sync(read_tags())

    def resolve(self, ref: str | None) -> LogEntry:
        """The version a ref names: None or "latest" (the head), a tag, an id or a unique id prefix.

        Raises
        ------
        VersionNotFoundError
            No version, or an ambiguous prefix; the message lists what exists.
        """
        entries = self.entries()
        if not entries:
            raise VersionNotFoundError(f"{self.shown} has no committed version yet; build it with `pipeline build`")
        if ref is None or ref == "latest":
            return entries[-1]
        tag = sync(_read(self.physical, f"{TAG_PREFIX}{ref}.json")) if _TAG_NAME.match(ref) else None
        if tag is not None:
            ref = json.loads(tag)["version"]
        matches = [e for e in entries if e.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(f"{e.id}" for e in reversed(entries[-5:]))
        if matches:
            raise VersionNotFoundError(f"{ref!r} is a prefix of {len(matches)} versions of {self.shown} "
                                       f"({', '.join(e.id for e in matches)}); give more digits")
        raise VersionNotFoundError(f"{self.shown} has no version or tag {ref!r}; newest versions: {known} "
                                   f"(`pipeline log {self.shown}` lists them all)")

    def manifest(self, entry: LogEntry) -> dict[str, str]:
        """Logical key -> physical key of one version (cached: a manifest never changes)."""
        cached = self._manifests.get(entry.id)
        if cached is None:
            data = sync(_read(self.physical, entry.manifest))
            if data is None:
                raise StoreError(f"the manifest {entry.manifest} of version {entry.id} of {self.shown} is missing; "
                                 "the store is damaged (its objects were deleted)")
            cached = self._manifests[entry.id] = json.loads(gzip.decompress(data))
        return cached

    # -- tags -------------------------------------------------------------------------------
    def tag(self, name: str, ref: str | None = None) -> LogEntry:
        """Name version ``ref`` (default: the newest) ``name``; a tag is never moved.

        Raises
        ------
        StoreError
            The name is not a valid tag name, or is taken.
        """
        if not _TAG_NAME.match(name) or re.fullmatch(r"[0-9a-f]+", name) or name == "latest":
            raise StoreError(f"tag name {name!r} must be 1-64 letters, digits, '.', '_' or '-', start with a letter "
                             "or digit, not be 'latest' and not look like a version id (only hex digits)")
        entry = self.resolve(ref)
        body = json.dumps({"version": entry.id, "time": _now()}).encode()
        if not sync(create_exclusive(self.physical, f"{TAG_PREFIX}{name}.json", body)):
            taken = self.resolve(name)
            raise StoreError(f"tag {name!r} of {self.shown} already names version {taken.id}; tags never move, "
                             "choose another name")
        return entry

    # -- transactions -----------------------------------------------------------------------
    def begin(self, *, base: LogEntry | None, intent: str, fresh: bool, change: str) -> str:
        """Start (or find again, to resume) the transaction of ``intent`` on ``base``; return its id.

        The id is a hash of the base version and the intent (what the caller
        is about to write: its inputs), so running the same command again
        after a kill finds its transaction and its finished shards.
        """
        base_id = "" if base is None else base.id
        txn = hashlib.sha256(f"{base_id}\x00{intent}\x00{fresh}".encode()).hexdigest()[:16]
        record = json.dumps({"base": base_id, "fresh": bool(fresh), "change": change, "started": _now()}).encode()
        sync(create_exclusive(self.physical, f"{TXN_PREFIX}{txn}.json", record))
        return txn

    def open_transaction(self) -> str:
        """The transaction a writer started on the newest version (the latest started, when
        several were: a writer's own tasks name theirs, ``StoreWriter.target_uri``).

        Raises
        ------
        StoreError
            No transaction is open on the newest version.
        """
        head = self.head()
        base = "" if head is None else head.id

        async def records() -> list[tuple[str, dict[str, Any]]]:
            out = []
            async for key in self.physical.list_prefix(TXN_PREFIX):
                data = await _read(self.physical, key)
                if data is not None:
                    out.append((key[len(TXN_PREFIX):].removesuffix(".json"), json.loads(data)))
            return out

        open_ = sorted((r["started"], txn) for txn, r in sync(records()) if r.get("base", "") == base)
        if not open_:
            raise StoreError(f"no store to write at {self.shown}: no build is under way on its newest version; "
                             "create it with create_store first")
        return open_[-1][1]

    def transaction(self, txn: str) -> dict[str, Any]:
        data = sync(_read(self.physical, f"{TXN_PREFIX}{txn}.json"))
        if data is None:
            raise StoreError(f"transaction {txn} of {self.shown} does not exist (it was never started, or it "
                             "committed and was cleaned up); rerun the build")
        return json.loads(data)

    def base_manifest(self, txn: str) -> tuple[LogEntry | None, dict[str, str]]:
        """The version a transaction started from and the manifest its view starts with."""
        record = self.transaction(txn)
        if not record["base"]:
            return None, {}
        base = self.resolve(record["base"])
        return base, ({} if record["fresh"] else self.manifest(base))

    def view(self, txn: str) -> VersionedStore:
        """The writable view of a transaction: its base version with its own writes on top.

        Kept per process: a build task opens its transaction for every shard, and the
        base never changes (reading it again would read the whole log each time).
        """
        view = self._views.get(txn)
        if view is None:
            _, manifest = self.base_manifest(txn)
            view = self._views[txn] = VersionedStore(self.physical, manifest, txn=txn, shown=self.shown, repo=self)
        return view

    def pinned(self, entry: LogEntry) -> VersionedStore:
        return VersionedStore(self.physical, self.manifest(entry), shown=self.shown, version=entry.id, repo=self)

    def written(self, txn: str) -> tuple[list[str], list[str]]:
        """Logical keys a transaction wrote and deleted (listing its objects)."""
        async def keys(prefix: str) -> list[str]:
            return [k[len(prefix):] async for k in self.physical.list_prefix(prefix)]

        return sync(keys(f"{DATA_PREFIX}{txn}/")), sync(keys(f"{TOMB_PREFIX}{txn}/"))

    def commit(self, txn: str, *, fingerprint: str, change: str | None = None) -> LogEntry:
        """Make transaction ``txn`` the newest version, atomically.

        Raises
        ------
        ConcurrentWriteError
            Another writer committed after this transaction's base; this
            transaction's objects stay (nothing is lost), rerunning applies
            the change on top of the new version.
        """
        record = self.transaction(txn)
        base, manifest = self.base_manifest(txn)
        written, deleted = self.written(txn)
        new = dict(manifest)
        for key in deleted:
            new.pop(key, None)
        for key in written:
            new[key] = f"{DATA_PREFIX}{txn}/{key}"
        body = gzip.compress(json.dumps(new, sort_keys=True, separators=(",", ":")).encode(), mtime=0)
        seq = 1 if base is None else base.seq + 1
        version = hashlib.sha256(f"{seq}\x00{'' if base is None else base.id}\x00{txn}".encode()
                                 + body).hexdigest()[:12]
        manifest_key = f"{MANIFEST_PREFIX}{version}.json.gz"
        sync(self.physical.set(manifest_key, _buffer(body)))
        entry = LogEntry(seq=seq, id=version, parent="" if base is None else base.id, time=_now(),
                         change=change or record["change"], package=_package_version(), fingerprint=fingerprint,
                         manifest=manifest_key)
        if not sync(create_exclusive(self.physical, _log_key(seq), entry.to_json())):
            winner = self.entry(seq)
            raise ConcurrentWriteError(
                f"another writer committed version {winner.id if winner else '?'} "
                f"({winner.change if winner else 'unknown change'}) to {self.shown} while this one ran from version "
                f"{entry.parent or '(none)'}; nothing was lost and that version is untouched: rerun the same "
                "command to apply this change on top of it"
            )
        sync(self.physical.set(HEAD_HINT, _buffer(json.dumps({"seq": seq, "id": version}).encode())))
        sync(self.physical.delete(f"{TXN_PREFIX}{txn}.json"))
        self._views.pop(txn, None)
        self._manifests[version] = new
        logger.info("committed version %s of %s: %s", version, self.shown, entry.change)
        return entry

    def adopt_legacy(self, *, fingerprint: str, change: str = "(store built before versions, adopted)") -> LogEntry:
        """Make a plain (pre-version) Zarr store at this location its own version 1, without copying."""
        async def keys() -> list[str]:
            return [k async for k in self.physical.list()]

        mapping = {k: k for k in sync(keys()) if not k.startswith((LOG_PREFIX, MANIFEST_PREFIX, DATA_PREFIX,
                                                                    TOMB_PREFIX, TXN_PREFIX, TAG_PREFIX))
                   and k != HEAD_HINT}
        body = gzip.compress(json.dumps(mapping, sort_keys=True, separators=(",", ":")).encode(), mtime=0)
        version = hashlib.sha256(b"legacy\x00" + body).hexdigest()[:12]
        manifest_key = f"{MANIFEST_PREFIX}{version}.json.gz"
        sync(self.physical.set(manifest_key, _buffer(body)))
        entry = LogEntry(seq=1, id=version, parent="", time=_now(), change=change,
                         package=_package_version(), fingerprint=fingerprint, manifest=manifest_key)
        if not sync(create_exclusive(self.physical, _log_key(1), entry.to_json())):
            return self.resolve(None)
        sync(self.physical.set(HEAD_HINT, _buffer(json.dumps({"seq": 1, "id": version}).encode())))
        return entry


class VersionedStore(Store):
    """A Zarr store that reads one version (``txn`` None: read-only) or writes one transaction.

    Logical keys map to physical objects through the version's manifest; a
    transaction's writes go to ``data/<txn>/<key>`` and are read back first.
    """

    supports_partial_writes = False  # type: ignore[assignment]

    def __init__(self, physical: Store, manifest: Mapping[str, str], *, shown: str, txn: str | None = None,
                 version: str | None = None, repo: Repository | None = None, read_only: bool | None = None) -> None:
        super().__init__(read_only=txn is None if read_only is None else read_only or txn is None)
        self.repo = repo
        self.physical = physical
        self.manifest = manifest
        self.txn = txn
        self.version = version
        self.shown = shown

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, VersionedStore) and other.physical == self.physical
                and other.txn == self.txn and other.version == self.version)

    def __repr__(self) -> str:
        return f"VersionedStore({self.shown!r}, version={self.version!r}, txn={self.txn!r})"

    def with_read_only(self, read_only: bool = False) -> VersionedStore:
        return VersionedStore(self.physical, self.manifest, shown=self.shown, txn=self.txn, version=self.version,
                              repo=self.repo, read_only=read_only)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyVersionError(f"version {self.version} of {self.shown} is read-only; "
                                       "write with `pipeline build --out STORE --update` (no @VERSION)")

    # -- reading ---------------------------------------------------------------------------
    async def _physical_key(self, key: str) -> str | None:
        if self.txn is not None:
            own = f"{DATA_PREFIX}{self.txn}/{key}"
            if await self.physical.exists(own):
                return own
            if key in self.manifest and await self.physical.exists(f"{TOMB_PREFIX}{self.txn}/{key}"):
                return None
        return self.manifest.get(key)

    async def get(self, key: str, prototype: BufferPrototype | None = None,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        prototype = prototype or default_buffer_prototype()
        if self.txn is not None:
            found = await self.physical.get(f"{DATA_PREFIX}{self.txn}/{key}", prototype, byte_range)
            if found is not None:
                return found
            if key in self.manifest and await self.physical.exists(f"{TOMB_PREFIX}{self.txn}/{key}"):
                return None
        physical = self.manifest.get(key)
        return None if physical is None else await self.physical.get(physical, prototype, byte_range)

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        return await self._physical_key(key) is not None

    # -- writing ---------------------------------------------------------------------------
    @property
    def supports_writes(self) -> bool:
        return self.txn is not None

    @property
    def supports_deletes(self) -> bool:
        return self.txn is not None

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await self.physical.set(f"{DATA_PREFIX}{self.txn}/{key}", value)
        if key in self.manifest:
            await _delete_quietly(self.physical, f"{TOMB_PREFIX}{self.txn}/{key}")

    async def delete(self, key: str) -> None:
        self._check_writable()
        await _delete_quietly(self.physical, f"{DATA_PREFIX}{self.txn}/{key}")
        if key in self.manifest:
            await self.physical.set(f"{TOMB_PREFIX}{self.txn}/{key}", _buffer(b""))

    # -- listing ---------------------------------------------------------------------------
    @property
    def supports_listing(self) -> bool:
        return True

    async def _keys(self) -> list[str]:
        keys = set(self.manifest)
        if self.txn is not None:
            own = f"{DATA_PREFIX}{self.txn}/"
            tomb = f"{TOMB_PREFIX}{self.txn}/"
            keys -= {k[len(tomb):] async for k in self.physical.list_prefix(tomb)}
            keys |= {k[len(own):] async for k in self.physical.list_prefix(own)}
        return sorted(keys)

    async def list(self) -> AsyncIterator[str]:  # type: ignore[override]
        for key in await self._keys():
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:  # type: ignore[override]
        for key in await self._keys():
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:  # type: ignore[override]
        prefix = prefix.rstrip("/")
        start = f"{prefix}/" if prefix else ""
        seen = set()
        for key in await self._keys():
            if key.startswith(start):
                child = key[len(start):].split("/", 1)[0]
                if child not in seen:
                    seen.add(child)
                    yield child


async def _delete_quietly(store: Store, key: str) -> None:
    try:
        await store.delete(key)
    except FileNotFoundError:
        pass


#: Repositories per physical location and process (their manifests are cached; they never change).
_REPOSITORIES: dict[tuple[str, str], Repository] = {}


def location_repository(location: str | Path, storage_options: Mapping[str, Any] | None, *,
                        writable: bool) -> Repository:
    """The :class:`Repository` of a location (no ``@``), one per process and options (its manifest cache)."""
    from stores.uri import physical_store, redact_uri  # stores.uri opens versions lazily, too

    key = (str(location), writable, repr(sorted((storage_options or {}).items())))
    repo = _REPOSITORIES.get(key)
    if repo is None:
        if len(_REPOSITORIES) > 16:
            _REPOSITORIES.pop(next(iter(_REPOSITORIES)))
        physical = physical_store(location, storage_options=storage_options, read_only=not writable)
        repo = _REPOSITORIES[key] = Repository(physical, redact_uri(location))
    return repo


def begin_transaction(uri: str | Path, storage_options: Mapping[str, Any] | None, legacy: Any, *, intent: str,
                      fresh: bool, change: str) -> str:
    """Start (or find again) a writer's transaction on the newest version of ``uri``; return
    the URI its tasks write through (``uri@txn-<id>``).

    ``legacy`` is the metadata of the newest store at ``uri`` (None: nothing there); a
    store built before versions is adopted as version 1 first, unless ``fresh``
    (a build that replaces everything does not need its contents).
    """
    repo = location_repository(uri, storage_options, writable=True)
    head = repo.head()
    if head is None and legacy is not None and not fresh:
        head = repo.adopt_legacy(fingerprint=legacy.fingerprint or "")
    txn = repo.begin(base=head, intent=intent, fresh=fresh, change=change)
    return f"{uri}@{TXN_MARK}{txn}"


def describe_clips(splits: Iterable[str]) -> str:
    """``1,000 clips (train 800, val 100, test 100)``: a count for a version's log line."""
    counts: dict[str, int] = {}
    for split in splits:
        counts[str(split) or "no split"] = counts.get(str(split) or "no split", 0) + 1
    order = sorted(counts, key=lambda s: (("train", "val", "test").index(s) if s in ("train", "val", "test") else 3, s))
    total = sum(counts.values())
    parts = ", ".join(f"{s} {counts[s]:,}" for s in order)
    return f"{total:,} clip{'s' if total != 1 else ''} ({parts})" if parts else "0 clips"


def open_versioned(repo: Repository, ref: str | None, *, read_only: bool) -> Store:
    """The Zarr store to hand to zarr-python for ``LOCATION@ref``.

    - ``ref`` a transaction (``txn-<id>``): that transaction's writable view;
    - a versioned location: the version ``ref`` names (default: the newest), read-only;
    - a location without versions (a store built before them, or nothing yet):
      the physical store itself, and a ``ref`` other than "legacy"/"latest" is refused.
    """
    physical, shown = repo.physical, repo.shown
    if ref is not None and ref.startswith(TXN_MARK):
        return repo.view(ref[len(TXN_MARK):])
    head = repo.head()
    if not read_only:
        if ref is not None:
            raise ReadOnlyVersionError(f"{shown}@{ref} is one version, read-only; write to {shown}")
        # the first build of a location writes the plain layout in place; later writes are transactions
        return physical if head is None else repo.view(repo.open_transaction())
    if head is None:
        if ref not in (None, LEGACY_VERSION, "latest"):
            raise VersionNotFoundError(f"{shown} has no versions (it was built before versions existed, or not at "
                                       f"all): drop @{ref}, or use @{LEGACY_VERSION}")
        return physical
    return repo.pinned(head if ref in (None, "latest") else repo.resolve(ref))


def version_of(store: Store) -> str:
    """The version id a Zarr store shows (:data:`LEGACY_VERSION` for a store without versions)."""
    if isinstance(store, VersionedStore):
        return store.version or f"{TXN_MARK}{store.txn}"
    return LEGACY_VERSION


def iter_objects(store: Store) -> Iterator[tuple[str, bytes]]:
    """``(logical key, bytes)`` of every object a Zarr store (a version, or a plain store) shows, sorted by key."""
    async def keys() -> list[str]:
        return sorted([k async for k in store.list()])

    for key in sync(keys()):
        data = sync(_read(store, key))
        if data is not None:
            yield key, data


#: Physical prefixes of the versioning machinery (never part of the plain Zarr layout of version 1).
MACHINERY_PREFIXES = (LOG_PREFIX, MANIFEST_PREFIX, DATA_PREFIX, TOMB_PREFIX, TXN_PREFIX, TAG_PREFIX)


def unreferenced_plain_objects(store: Store) -> list[str] | None:
    """Physical objects in the plain Zarr layout of a versioned location that no version refers to, sorted.

    A :class:`VersionedStore` lists only the keys of its manifest, so an object
    dropped into the folder (``cens/c/99/0/0/0``) is invisible through it, yet a
    plain zarr or xarray reader of the folder (which sees version 1's layout)
    would meet it. Objects under the machinery prefixes (``data/<txn>/`` of an
    open or abandoned transaction, old manifests) are the versions' own and are
    not listed. None: ``store`` is not a versioned view, or its location cannot be listed (HTTP).
    """
    if not isinstance(store, VersionedStore) or store.repo is None:
        return None
    repo = store.repo

    async def keys() -> list[str]:
        return [k async for k in repo.physical.list()]

    try:
        physical = sync(keys())
    except Exception:  # noqa: BLE001 - a location that cannot be listed: unknowable there
        return None
    referenced: set[str] = set()
    for entry in repo.entries():
        referenced.update(repo.manifest(entry).values())
    return sorted(k for k in physical if k not in referenced and k != HEAD_HINT and not k.startswith(MACHINERY_PREFIXES)
                  and k.rsplit("/", 1)[-1][:5] != ".tmp-")


def delete_unreferenced(store: Store, key: str) -> bool:
    """Delete physical object ``key`` of a versioned location when no version refers to it; True if deleted.

    What a repair does with a stray outside every manifest: it is no version's
    object, so deleting it changes no committed version.
    """
    if not isinstance(store, VersionedStore) or store.repo is None:
        return False
    if key not in (unreferenced_plain_objects(store) or ()):
        return False
    sync(_delete_quietly(store.physical, key))
    return True


def writes_transaction(store: Store) -> bool:
    """True when ``store`` is a transaction's writable view (a commit will make it a version)."""
    return isinstance(store, VersionedStore) and store.txn is not None


def commit_transaction(store: Store, uri: str | Path, *, fingerprint: str, change: str) -> LogEntry:
    """Make what a writer wrote through ``store`` the newest version of ``uri``.

    A transaction's view commits (:meth:`Repository.commit`); the first build of a
    location, which writes the plain Zarr layout in place (so that zarr and
    xarray open a one-version store directly), becomes version 1 by adoption
    (``change`` describes it).
    """
    if writes_transaction(store) and store.repo is not None:
        return store.repo.commit(store.txn, fingerprint=fingerprint)
    from stores.uri import redact_uri

    return Repository(store, redact_uri(split_version(uri)[0])).adopt_legacy(fingerprint=fingerprint, change=change)


def entry_dict(entry: LogEntry, tags: Mapping[str, str]) -> dict[str, Any]:
    return {**dataclasses.asdict(entry), "tags": sorted(n for n, v in tags.items() if v == entry.id)}


def store_log(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The versions of the store at ``uri``, newest first (what ``pipeline log`` prints).

    A store built before versions is one entry, :data:`LEGACY_VERSION`.

    Raises
    ------
    StoreNotFoundError
        Nothing is at ``uri``.
    """
    from stores.uri import remote_errors

    location, _ = split_version(uri)
    with remote_errors(location):
        repo = location_repository(location, storage_options, writable=False)
        entries = repo.entries()
        if entries:
            tags = repo.tags()
            return [entry_dict(e, tags) for e in sorted(entries, key=lambda e: -e.seq)]
    from stores.reader import open_store  # a store without versions: one, read-only

    store = open_store(location, storage_options=storage_options, allow_incomplete=True)
    return [{"seq": 0, "id": LEGACY_VERSION, "parent": "", "time": store.metadata.finished or "",
             "change": f"built before versions: {store.n_clips:,} clips", "fingerprint": store.fingerprint,
             "package": store.metadata.provenance.package_version, "manifest": "", "tags": []}]


def tag_store(uri: str | Path, name: str, *, version: str | None = None,
              storage_options: Mapping[str, Any] | None = None) -> LogEntry:
    """Name a version of the store at ``uri`` (default: the newest); tags never move.

    Raises
    ------
    VersionNotFoundError
        The store has no versions (built before them: rebuild or update it first) or no version ``version``.
    """
    from stores.uri import remote_errors

    location, ref = split_version(uri)
    with remote_errors(location, writing=True):
        return location_repository(location, storage_options, writable=True).tag(name, version or ref)


def format_entries(entries: Iterable[Mapping[str, Any]]) -> str:
    """``pipeline log``'s text: one line per version, newest first."""
    lines = []
    for e in entries:
        tags = f" [{', '.join(e['tags'])}]" if e.get("tags") else ""
        lines.append(f"{e['id']}{tags}  {e['time']}  {e['change']}  (harmonic-feature-store {e['package']})")
    return "\n".join(lines)
