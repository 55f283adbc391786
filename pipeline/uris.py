"""Locations as text: the scheme of a URI, its local path, its printable form.

Pure string functions shared by the audio sources (:mod:`pipeline.sources`)
and the stores (:mod:`stores.uri`), so that neither layer imports the other
for them.
"""

from __future__ import annotations

import re
from pathlib import Path

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")


def scheme_of(uri: str | Path) -> str:
    """URL scheme of ``uri`` ("" for a plain local path, "file" for file://)."""
    match = _SCHEME.match(str(uri))
    return match.group(1).lower() if match else ""


def redact_uri(uri: str | Path) -> str:
    """``uri`` without any ``user:password@`` part (safe to log and store)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.\-]*://)[^/@]*@", r"\1", str(uri))


def local_path(uri: str | Path) -> Path | None:
    """The local filesystem path of ``uri``, or None for a remote URI."""
    scheme = scheme_of(uri)
    if scheme == "":
        return Path(uri).expanduser()
    if scheme == "file":
        return Path(str(uri)[len("file://"):])
    return None


def is_connection_error(exc: BaseException) -> bool:
    """True for "cannot reach the server" errors of the fsspec backends."""
    if isinstance(exc, ConnectionError):
        return True
    try:  # optional dependency: botocore's connection errors do not derive from the builtin one
        from botocore.exceptions import ConnectionError as BotoConnectionError  # optional: only the s3:// backend has it
    except ImportError:
        return False
    return isinstance(exc, BotoConnectionError)
