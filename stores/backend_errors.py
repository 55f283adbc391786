"""What the storage backends raise, turned into one-line StoreErrors that name the URI and the fix.

zarr-python and the fsspec backends under it report trouble in their own
types: botocore's ``NoCredentialsError`` and ``ClientError``, aiohttp's
``ClientConnectorError`` and ``ClientResponseError``, s3fs's bare
``PermissionError("Forbidden")`` and ``FileNotFoundError(None)``,
``zipfile.BadZipFile``, ``json.JSONDecodeError`` for a ``zarr.json`` that is
not JSON, and zarr's ``ValueError("Stored and computed checksum do not
match")``. A user who opens a store sees instead which store, what was found
and what to do, as a subclass of :class:`~stores.errors.StoreError`
(``pipeline --debug`` still shows the original traceback, chained).

The backends are optional dependencies: each is recognised by its class name
and module, so this module imports none of them.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path
from typing import Iterator

from stores.errors import StoreAccessError, StoreConnectionError, StoreDamageError, StoreError, StoreNotFoundError
from stores.remote import CREDENTIAL_HINT, ENDPOINT_HINT, is_connection_error, local_path, redact_uri

#: What to do about a store whose bytes are damaged (every damage message ends with it).
REPAIR_FIX = ("rerun the `pipeline build` command that made it (same --out): it rebuilds only the damaged "
              "shards; `pipeline verify {uri}` lists every damaged object")
#: What to do about a store whose root zarr.json is lost: its attributes (configuration, fingerprint) are
#: recorded nowhere else, so a rerun cannot tell which build made the shards.
ROOT_FIX = "restore its zarr.json from a copy of the store, or rebuild it with `pipeline build --overwrite`"

_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                   "NoAuthTokenError", "UnauthorizedSSOTokenError", "DefaultCredentialsError"}
_REFUSED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "403", "401",
                  "ExpiredToken", "InvalidToken", "AllAccessDisabled", "AccountProblem"}
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
#: aiohttp's and botocore's transport failures (neither derives from the builtin ConnectionError throughout)
_TRANSPORT = {"ClientConnectionError", "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
              "ClientPayloadError", "ServerTimeoutError", "TimeoutError", "ReadTimeoutError", "ConnectTimeoutError"}


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _client_error_code(exc: BaseException) -> str:
    """The error code of a botocore ``ClientError`` ("" for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Code", ""))
    return ""


def is_checksum_mismatch(exc: BaseException) -> bool:
    """zarr's crc32c codec found a chunk whose bytes changed since they were written."""
    return isinstance(exc, ValueError) and "checksum do not match" in str(exc)


def translate(exc: BaseException, uri: str | Path, *, writing: bool = False) -> StoreError | None:
    """The StoreError that explains ``exc`` raised while using the store at ``uri``, or None
    when ``exc`` is not a backend's access, transport or decoding error (a bug: let it through)."""
    if isinstance(exc, StoreError):
        return exc
    shown = redact_uri(uri)
    names = _names(exc)
    remote = local_path(uri) is None
    if names & _NO_CREDENTIALS:
        return StoreAccessError(f"no credentials for {shown} ({type(exc).__name__}: {exc}); "
                                f"{CREDENTIAL_HINT}")
    code = _client_error_code(exc)
    if code in _REFUSED_CODES or (remote and isinstance(exc, PermissionError)):
        return StoreAccessError(f"access to {shown} was denied ({code or exc}): {CREDENTIAL_HINT}")
    if isinstance(exc, PermissionError):
        return StoreAccessError(f"permission denied reading {shown} ({exc}): give this user read access "
                                "to the folder and its files (and write access to build into it)")
    if code in _MISSING_CODES or (remote and isinstance(exc, FileNotFoundError)):
        if writing:
            return StoreNotFoundError(
                f"cannot write {shown}: its bucket does not exist (or the URI is misspelt); "
                "create the bucket first (e.g. `aws s3 mb`, `mc mb`) or fix --out")
        return StoreNotFoundError(f"no feature store at {shown}: the bucket or object does not exist "
                                  f"({code or exc or 'not found'}); check the URI, or build one with "
                                  "`pipeline build --out`")
    status = getattr(exc, "status", None)
    if "ClientResponseError" in names and isinstance(status, int):
        if status == 404:
            return StoreNotFoundError(f"no feature store at {shown}: the server answered HTTP 404 "
                                      f"({getattr(exc, 'message', '')}); check the URL")
        if status in (401, 403):
            return StoreAccessError(f"the server of {shown} refused access (HTTP {status}): "
                                    "check the URL and any credentials the server needs")
        return StoreConnectionError(f"the server of {shown} answered HTTP {status} "
                                    f"({getattr(exc, 'message', '')}); retry later or check the server")
    if is_connection_error(exc) or names & _TRANSPORT:
        return StoreConnectionError(
            f"cannot reach the server of {shown} ({type(exc).__name__}: {exc}); {ENDPOINT_HINT} (or the URL), "
            "then rerun: a build resumes from its finished shards")
    if isinstance(exc, zipfile.BadZipFile):
        return StoreDamageError(f"{shown} is not a readable zip file ({exc}): it is not a zip or was cut short "
                                "in transfer; copy it again, or export it again with `pipeline export`")
    if isinstance(exc, json.JSONDecodeError):
        return StoreDamageError(f"a zarr.json of {shown} is not JSON ({exc}): the store's metadata is damaged; "
                                f"`pipeline verify {shown}` names it and the fix")
    if is_checksum_mismatch(exc):
        return StoreDamageError(f"a chunk of {shown} fails its CRC32C checksum: its bytes changed since the "
                                "build wrote them; " + REPAIR_FIX.format(uri=shown))
    return None


@contextlib.contextmanager
def backend_errors(uri: str | Path, *, writing: bool = False) -> Iterator[None]:
    """Re-raise what :func:`translate` explains as a StoreError naming ``uri`` and the fix
    (the backend's exception chained); anything else passes unchanged."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        error = translate(exc, uri, writing=writing)
        if error is None:
            raise
        raise error from exc
