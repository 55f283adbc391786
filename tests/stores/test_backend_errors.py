"""Every backend exception a store read meets becomes one StoreError naming the URI, what was found and the fix."""

from __future__ import annotations

import json
import zipfile

import pytest

from pipeline.errors import (StoreAccessError, StoreConnectionError, StoreDamageError, StoreError,
                             StoreNotFoundError)
from stores.backend_errors import backend_errors, translate

aiohttp = pytest.importorskip("aiohttp")
botocore_exceptions = pytest.importorskip("botocore.exceptions")

S3 = "s3://bucket/x.zarr"
HTTP = "https://host/x.zarr"


def http_status(status: int) -> Exception:
    from aiohttp.client_reqrep import RequestInfo
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    info = RequestInfo(URL(HTTP), "GET", CIMultiDictProxy(CIMultiDict()), URL(HTTP))
    return aiohttp.ClientResponseError(info, (), status=status, message="reason")


def client_error(code: str) -> Exception:
    return botocore_exceptions.ClientError({"Error": {"Code": code, "Message": "m"}}, "GetObject")


CASES = [
    (S3, botocore_exceptions.NoCredentialsError(), StoreAccessError, "no credentials for s3://bucket/x.zarr"),
    (S3, botocore_exceptions.PartialCredentialsError(provider="env", cred_var="secret"), StoreAccessError,
     "AWS_SECRET_ACCESS_KEY"),
    (S3, client_error("InvalidAccessKeyId"), StoreAccessError, "access to s3://bucket/x.zarr was denied"),
    (S3, client_error("AccessDenied"), StoreAccessError, "grant access to this bucket"),
    (S3, PermissionError("Forbidden"), StoreAccessError, "denied (Forbidden)"),
    (S3, client_error("NoSuchBucket"), StoreNotFoundError, "the bucket or object does not exist"),
    (S3, FileNotFoundError(None), StoreNotFoundError, "no feature store at s3://bucket/x.zarr"),
    (S3, botocore_exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), StoreConnectionError,
     "AWS_ENDPOINT_URL"),
    (HTTP, aiohttp.ClientConnectionError("refused"), StoreConnectionError, "cannot reach the server of " + HTTP),
    (HTTP, http_status(404), StoreNotFoundError, "HTTP 404"),
    (HTTP, http_status(403), StoreAccessError, "refused access (HTTP 403)"),
    (HTTP, http_status(503), StoreConnectionError, "answered HTTP 503"),
    ("/data/x.zip", zipfile.BadZipFile("File is not a zip file"), StoreDamageError, "export it again"),
    ("/data/x.zarr", json.JSONDecodeError("Expecting value", "{", 1), StoreDamageError, "is not JSON"),
    ("/data/x.zarr", ValueError("Stored and computed checksum do not match. Stored: b'1'. Computed: b'2'."),
     StoreDamageError, "fails its CRC32C checksum"),
    ("/data/x.zarr", PermissionError(13, "Permission denied"), StoreAccessError, "give this user read access"),
]


@pytest.mark.parametrize("uri, exc, kind, says", CASES, ids=[f"{type(c[1]).__name__}-{i}" for i, c in enumerate(CASES)])
def test_backend_exceptions_become_one_line(uri, exc, kind, says):
    with pytest.raises(kind) as caught, backend_errors(uri):
        raise exc
    message = str(caught.value)
    assert says in message and uri in message and "\n" not in message
    assert caught.value.__cause__ is exc  # `--debug` shows the backend's own traceback


def test_a_bug_is_not_translated():
    assert translate(KeyError("x"), S3) is None
    with pytest.raises(KeyError), backend_errors(S3):
        raise KeyError("x")


def test_credentials_in_the_uri_are_never_shown():
    with pytest.raises(StoreError) as caught, backend_errors("https://user:secret@host/x.zarr"):
        raise http_status(404)
    assert "secret" not in str(caught.value) and "https://host/x.zarr" in str(caught.value)
