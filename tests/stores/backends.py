"""The storage backends a feature store lives on, as the conformance suite uses them.

A :class:`Backend` knows how to put the standard small test store
(:func:`tests.stores.test_store.build`) on its kind of location and where a
store that is not there would be:

========  ========  ======================================================
name      writable  how a store gets there
========  ========  ======================================================
folder    yes       built in place (``zarr.storage.LocalStore``)
memory    yes       built in place, ``memory://`` (process-local fsspec)
s3        yes       built in place on the loopback Ceph RADOS Gateway
zip       no        built in a folder, then ``export_store`` into a .zip
http      no        built in a folder served by :func:`serve_folder`
========  ========  ======================================================

:func:`serve_folder` is a static HTTP server with byte ranges, as a CDN,
nginx or S3 website hosting would publish a store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from stores.checks import export_store
from tests.http_fixtures import serve_folder
from tests.stores.test_store import build, small_config

BACKENDS: tuple[str, ...] = ("folder", "memory", "zip", "http", "s3")
WRITABLE: tuple[str, ...] = ("folder", "memory", "s3")


def backend_params(names: tuple[str, ...]) -> list:
    """``pytest.param`` per backend name; the S3 one carries the ``s3`` marker."""
    return [pytest.param(n, id=n, marks=[pytest.mark.s3] if n == "s3" else []) for n in names]


@dataclasses.dataclass
class Backend:
    """One kind of store location, set up for a test module.

    ``location(name)`` is where a store called ``name`` is (or would be) on
    this backend; ``put(name, **build_args)`` makes the standard test store
    there (with :func:`build` in place where the backend is writable, else
    built in ``scratch`` and published) and returns its URI.
    """

    name: str
    writable: bool
    location: Callable[[str], str]
    scratch: Path
    storage_options: dict[str, Any] | None = None
    publish: Callable[[Path, str], str] | None = None

    def put(self, name: str, **build_args: Any) -> str:
        if self.writable:
            uri = self.location(name)
            build(uri, small_config(), storage_options=self.storage_options, **build_args)
            return uri
        folder = self.scratch / f"{name}.zarr"
        build(folder, small_config(), **build_args)
        assert self.publish is not None
        return self.publish(folder, name)

    @property
    def options(self) -> dict[str, Any]:
        """``storage_options=...`` keyword arguments for the library calls."""
        return {"storage_options": self.storage_options} if self.storage_options else {}


@contextlib.contextmanager
def open_backend(name: str, request: pytest.FixtureRequest, tmp: Path) -> Iterator[Backend]:
    """Set up backend ``name`` with its files under ``tmp``; tear it down on exit."""
    scratch = tmp / "scratch"
    scratch.mkdir()
    if name == "folder":
        yield Backend(name, True, lambda store: str(tmp / f"{store}.zarr"), scratch)
    elif name == "memory":
        import fsspec

        root = f"hfs-conformance-{secrets.token_hex(4)}"
        try:
            yield Backend(name, True, lambda store: f"memory://{root}/{store}.zarr", scratch)
        finally:
            fs = fsspec.filesystem("memory")
            with contextlib.suppress(FileNotFoundError):
                fs.rm(f"/{root}", recursive=True)
    elif name == "zip":
        def publish(folder: Path, store: str) -> str:
            return str(export_store(folder, tmp / f"{store}.zip"))

        yield Backend(name, False, lambda store: str(tmp / f"{store}.zip"), scratch, publish=publish)
    elif name == "http":
        pytest.importorskip("aiohttp", reason="reading over HTTP needs aiohttp (pip install aiohttp)")
        served = tmp / "served"
        served.mkdir()
        with serve_folder(served) as base:
            def publish(folder: Path, store: str) -> str:
                folder.rename(served / f"{store}.zarr")
                return f"{base}/{store}.zarr"

            yield Backend(name, False, lambda store: f"{base}/{store}.zarr", scratch, publish=publish)
    elif name == "s3":
        server = request.getfixturevalue("s3_server")  # skips, saying how to install it, without a gateway
        fs = server.filesystem()
        bucket = f"hfs-conformance-{secrets.token_hex(5)}"
        fs.mkdir(bucket)
        try:
            yield Backend(name, True, lambda store: f"s3://{bucket}/stores/{store}.zarr", scratch,
                          storage_options=server.storage_options())
        finally:
            with contextlib.suppress(FileNotFoundError):
                fs.rm(bucket, recursive=True)
    else:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
