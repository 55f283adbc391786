"""Everything remote storage: locations as text, credentials, error hints.

One module for what a new object-storage backend touches, used by the store
library (:mod:`stores.uri`) and, from the layer above, by the audio sources
(:mod:`pipeline.sources`) and the build (:mod:`pipeline.build`):

- locations: the scheme of a URI, its local path, its printable form;
- credentials: which storage options hold them (:data:`CREDENTIAL_KEYS`),
  what tasks may carry (:func:`public_options`, :func:`split_credentials`),
  how worker processes we start receive them (:func:`worker_credential_env`);
- log masking: :class:`CredentialFilter` and :func:`scrub`;
- the hints an access or connection error ends with
  (:data:`CREDENTIAL_HINT`, :data:`ENDPOINT_HINT`), and
  :func:`is_connection_error`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from stores.errors import CredentialError

if TYPE_CHECKING:  # pragma: no cover
    import distributed

logger = logging.getLogger(__name__)

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


#: storage_options keys (at any nesting level) that hold credentials, lower case.
CREDENTIAL_KEYS = frozenset({
    "key", "secret", "token", "password", "username", "user", "session_token", "security_token",
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "account_key", "sas_token",
    "client_secret", "connection_string", "credentials", "credential", "profile", "auth", "headers",
})
#: Environment variables whose values are credentials (scrubbed from messages).
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                  "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING")
CREDENTIAL_HINT = ("check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE in the "
                    "environment, or --storage-option key=... --storage-option secret=...) and that they "
                    "grant access to this bucket")
ENDPOINT_HINT = ("check the endpoint (AWS_ENDPOINT_URL or --storage-option client_kwargs.endpoint_url=...) "
                  "and the network")


def is_remote(root: str | Path | None) -> bool:
    """True for a root that is not on this machine's filesystem (s3://, gs://, http(s)://, ...)."""
    return root is not None and local_path(root) is None


def public_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``storage_options`` without any credential (:data:`CREDENTIAL_KEYS`, at every level).

    This is what may travel to workers in task payloads: endpoint, region,
    anonymous access, retries. Workers find credentials in their own
    environment (or ``~/.aws``, a metadata service, ...).
    """
    out: dict[str, Any] = {}
    for key, value in (storage_options or {}).items():
        if str(key).lower() in CREDENTIAL_KEYS:
            continue
        out[key] = public_options(value) if isinstance(value, Mapping) else value
    return out


#: s3fs credential options (top level, or botocore's names in ``client_kwargs``) and the
#: AWS variables through which worker processes we start receive them instead.
_S3_CREDENTIAL_ENV = {
    "key": "AWS_ACCESS_KEY_ID", "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "secret": "AWS_SECRET_ACCESS_KEY", "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "token": "AWS_SESSION_TOKEN", "session_token": "AWS_SESSION_TOKEN", "aws_session_token": "AWS_SESSION_TOKEN",
    "profile": "AWS_PROFILE",
}


def worker_credential_env(*option_sets: Mapping[str, Any] | None) -> dict[str, str]:
    """The environment that hands the credentials of ``option_sets`` to worker processes we start.

    Task payloads carry :func:`public_options` only; workers find
    credentials in their environment. A LocalCluster's workers are started by
    this process, so credentials given as storage options (``--storage-option
    key=... secret=...``) reach them as the standard AWS variables, set in the
    worker process at its start (never in a task, a log or the store).

    Raises
    ------
    CredentialError
        A credential that no AWS variable carries (an HTTP password, a GCS
        token), or two different values for one variable (a store and an
        audio bucket with different keys): the workers' environment must
        provide it, or the build runs serially (``--workers 0``).
    """
    env: dict[str, str] = {}

    def take(options: Mapping[str, Any], where: str) -> None:
        for key, value in options.items():
            lowered = str(key).lower()
            if isinstance(value, Mapping):
                if lowered in ("client_kwargs", "config_kwargs"):
                    take(value, f"{where}{key}.")
                    continue
                if lowered not in CREDENTIAL_KEYS:
                    continue
            if lowered not in CREDENTIAL_KEYS or value in (None, "", False):
                continue
            name = _S3_CREDENTIAL_ENV.get(lowered)
            if name is None or not isinstance(value, str):
                raise CredentialError(
                    f"the storage option {where}{key} is a credential that cannot reach the worker processes "
                    "(they take credentials from their own environment, never from the tasks): give it to the "
                    "workers in their environment, or build with --workers 0"
                )
            if env.get(name, value) != value:
                raise CredentialError(
                    f"two different values for {name} in the storage options (the store's and the audio's): "
                    "worker processes take one set of credentials from their environment; use one set that "
                    "grants both, or build with --workers 0"
                )
            env[name] = value

    for options in option_sets:
        take(options or {}, "")
    return env


def _secret_values(storage_options: Mapping[str, Any] | None) -> list[str]:
    found = [os.environ[name] for name in CREDENTIAL_ENV if os.environ.get(name)]

    def walk(options: Mapping[str, Any]) -> None:
        for key, value in options.items():
            if isinstance(value, Mapping):
                walk(value)
            elif str(key).lower() in CREDENTIAL_KEYS and isinstance(value, str) and value:
                found.append(value)

    walk(storage_options or {})
    return sorted(set(found), key=len, reverse=True)


class CredentialFilter(logging.Filter):
    """A log handler filter that masks credential values in every record (ours and third parties').

    botocore, s3fs and fsspec log request headers and options at debug
    level; with ``-vv`` those records reach the user's terminal. The values
    masked are those of ``storage_options`` and of :data:`CREDENTIAL_ENV`,
    read when the filter is made.
    """

    def __init__(self, storage_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.secrets = [value for value in _secret_values(storage_options) if len(value) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = _mask(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_text:
            record.exc_text = _mask(record.exc_text, self.secrets)
        return True


def _mask(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


_URL_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://)[^/@\s]*@")


def scrub(text: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """``text`` with every credential value (of ``storage_options`` and the environment) masked
    and every URL in it without its ``user:password@`` part."""
    text = _URL_USERINFO.sub(r"\1", text)
    return _mask(text, [secret for secret in _secret_values(storage_options) if len(secret) >= 4])


def split_credentials(serial: bool, scheduler: "str | distributed.Client | None",
                      *option_sets: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The storage options that tasks carry, and the environment of the workers we start.

    Tasks that go to workers carry no credential (payloads are pickled in the
    clear): workers take credentials from their own environment, which for a
    LocalCluster we start is given them at spawn
    (:func:`worker_credential_env`). In this process
    (``serial``) the options are used as they are. Build and scan share this.
    """
    if serial:
        return [dict(options) for options in option_sets], {}
    public = [public_options(options) for options in option_sets]
    if scheduler is None:
        return public, worker_credential_env(*option_sets)
    if public != [dict(options) for options in option_sets]:
        logger.info("credentials given as storage options stay in this process: the workers of %s use their "
                    "own environment's", scheduler)
    return public, {}
