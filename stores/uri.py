"""Store URIs: one function turns every accepted location into a Zarr store.

Accepted forms
--------------
- a local path (``str`` or :class:`~pathlib.Path`) or ``file://`` URL: a folder
  (:class:`zarr.storage.LocalStore`);
- a path ending in ``.zip``: a zip file, read-only
  (:class:`zarr.storage.ZipStore`; write a folder and ``pipeline export`` it);
- ``memory://``, ``s3://``, ``gs://``, ``gcs://``, ``az://`` ... : any fsspec
  filesystem (:class:`zarr.storage.FsspecStore`); ``storage_options`` go to
  fsspec (endpoint, credentials, retries). ``memory://`` is process-local, so
  only an in-process (``workers=0``) build can write one;
- ``http://`` and ``https://``: read-only; the store must carry consolidated
  metadata (every finished store does), since HTTP cannot list folders.

Credentials are only ever passed through ``storage_options`` or the
environment; :func:`redact_uri` strips any user:password part of a URL before
it is logged or written anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import fsspec.core

import zarr.storage

from stores.backend_errors import backend_errors
from stores.errors import StoreError, StoreNotFoundError
from stores.remote import local_path, redact_uri, scheme_of

logger = logging.getLogger(__name__)

READ_ONLY_SCHEMES = ("http", "https")


def is_zip(uri: str | Path) -> bool:
    return local_path(uri) is not None and str(uri).lower().endswith(".zip")


def make_store(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None,
               read_only: bool = True) -> zarr.storage.StoreLike:
    """Open the Zarr store at ``uri``: one version of it (``STORE@VERSION``, default the
    newest) or a writer's transaction (``STORE@txn-<id>``), see :mod:`stores.versions`.

    Parameters
    ----------
    uri : str or Path
        See the module docstring for the accepted forms.
    storage_options : mapping, optional
        fsspec options of remote URIs; refused for local paths, where they
        would be silently ignored.
    read_only : bool
        False to create or modify the store.

    Raises
    ------
    StoreNotFoundError
        A zip file to read does not exist.
    StoreError
        Writing is asked of a read-only kind of location (zip, http), or the
        fsspec backend of the scheme is not installed.
    """
    from stores.versions import TXN_MARK, location_repository, open_versioned, split_version  # built on this module

    location, ref = split_version(uri)
    writing = not read_only or (ref or "").startswith(TXN_MARK)
    with remote_errors(location, writing=not read_only):
        repo = location_repository(location, storage_options, writable=writing)
        return open_versioned(repo, ref, read_only=read_only)


def physical_store(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None,
                   read_only: bool = True) -> zarr.storage.StoreLike:
    """The Zarr store of the location ``uri`` itself (no versions; see :func:`make_store`)."""
    shown = redact_uri(uri)
    path = local_path(uri)
    if path is not None:
        if storage_options:
            raise StoreError(
                f"storage options {sorted(storage_options)} given for the local store {shown}; "
                "they only apply to remote URIs such as s3://bucket/store.zarr"
            )
        if is_zip(uri):
            if not read_only:
                raise StoreError(
                    f"{shown} is a zip file, which is read-only here; build into a folder "
                    f"and run `pipeline export FOLDER {shown}`"
                )
            if not path.is_file():
                raise StoreNotFoundError(f"no store at {shown}: the zip file does not exist")
            return zarr.storage.ZipStore(path, mode="r")
        return zarr.storage.LocalStore(path, read_only=read_only)
    scheme = scheme_of(uri)
    if scheme in READ_ONLY_SCHEMES and not read_only:
        raise StoreError(
            f"{shown} is an HTTP URL, which is read-only; write the store to a folder or "
            "object storage (s3://, gs://) and publish that"
        )
    try:
        return zarr.storage.FsspecStore.from_url(
            str(uri), storage_options=dict(storage_options or {}), read_only=read_only
        )
    except ImportError as exc:
        package = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
                   "http": "aiohttp", "https": "aiohttp"}.get(scheme, f"the fsspec backend of {scheme}://")
        raise StoreError(
            f"cannot open {shown}: the {scheme}:// filesystem needs {package} "
            f"(pip install {package})"
        ) from exc


def filesystem(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None):
    """``(fsspec filesystem, path)`` of ``uri`` for whole-store file operations."""
    path = local_path(uri)
    if path is not None:
        return fsspec.filesystem("file"), str(path.resolve())
    return fsspec.core.url_to_fs(str(uri), **dict(storage_options or {}))


@contextlib.contextmanager
def quiet_consolidated_warning() -> Iterator[None]:
    """Silence zarr's warning that consolidated metadata is not in the v3 spec.

    We rely on it knowingly: it is what makes HTTP and one-request opens work.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


def remote_errors(uri: str | Path, *, writing: bool = False):
    """Turn a backend's access, transport and decoding errors into StoreErrors that name the URI
    and the fix (:func:`stores.backend_errors.backend_errors`)."""
    return backend_errors(uri, writing=writing)
