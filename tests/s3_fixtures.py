"""Pytest fixtures for a real S3-compatible server on loopback.

``s3_server`` (session scope) yields an :class:`S3Server`, found in this order:

1. ``HFS_S3_ENDPOINT`` is set: use that running server, with credentials from
   ``HFS_S3_KEY`` / ``HFS_S3_SECRET`` / ``HFS_S3_REGION`` (defaulting to the
   loopback gateway's test credentials below);
2. the Ceph daemons are installed (``services/ceph-rgw.sh install``): start a
   single-node Ceph RADOS Gateway into a temporary folder on free ports and
   stop it when the session ends (about 20 s);
3. otherwise skip, saying how to install the server.

:class:`FlakyProxy` sits between a client and the server to drop connections
on demand (network-fault tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
CEPH_SCRIPT = REPO / "services" / "ceph-rgw.sh"
#: Credentials the loopback gateway is created with (test-only, never real).
TEST_KEY = "TESTACCESSKEY"
TEST_SECRET = "TESTSECRETKEY123"
#: The gateway's zonegroup; s3fs sends it as the bucket LocationConstraint.
TEST_REGION = "default"
START_TIMEOUT_S = 240


@dataclasses.dataclass(frozen=True)
class S3Server:
    """Where a running S3-compatible server is and how to sign requests to it."""

    endpoint_url: str
    key: str
    secret: str
    region: str = TEST_REGION

    def storage_options(self, endpoint_url: str | None = None) -> dict[str, object]:
        """fsspec/s3fs options for this server (``endpoint_url`` overrides, e.g. a proxy)."""
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": endpoint_url or self.endpoint_url, "region_name": self.region},
        }

    def env(self, endpoint_url: str | None = None) -> dict[str, str]:
        """The standard AWS environment variables botocore and s3fs read."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": endpoint_url or self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
        }

    def filesystem(self, **overrides: object):
        """A fresh (uncached) ``s3fs.S3FileSystem`` for this server."""
        import s3fs

        options = {**self.storage_options(), **overrides}
        return s3fs.S3FileSystem(skip_instance_cache=True, **options)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_gateway_port() -> int:
    """A port P with P, P-4180 and P-691 free (the gateway's and monitor's ports)."""
    for _ in range(200):
        port = 20000 + secrets.randbelow(40000)
        if all(_port_free(p) for p in (port, port - 4180, port - 691)):
            return port
    raise RuntimeError("no free port triple for the Ceph gateway on 127.0.0.1")


def ceph_installed() -> bool:
    """True when ``services/ceph-rgw.sh start`` can run on this machine."""
    result = subprocess.run(["bash", str(CEPH_SCRIPT), "installed"], capture_output=True)
    return result.returncode == 0


@contextlib.contextmanager
def running_ceph_gateway() -> Iterator[S3Server]:
    """Start a throw-away Ceph RADOS Gateway; stop it and delete its state on exit."""
    state = Path(tempfile.mkdtemp(prefix="hfs-ceph-"))
    port = _pick_gateway_port()
    try:
        result = subprocess.run(
            ["bash", str(CEPH_SCRIPT), "start", str(state), str(port)],
            capture_output=True, text=True, timeout=START_TIMEOUT_S,
        )
        if result.returncode != 0:
            logs = "\n".join(
                f"--- {p.name}\n" + p.read_text(errors="replace")[-2000:]
                for p in sorted((state / "log").glob("*")) if p.is_file()
            )
            raise RuntimeError(
                f"services/ceph-rgw.sh start {state} {port} failed (exit {result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}\n{logs}"
            )
        logger.info("Ceph RADOS Gateway on 127.0.0.1:%d (state in %s)", port, state)
        yield S3Server(f"http://127.0.0.1:{port}", TEST_KEY, TEST_SECRET, TEST_REGION)
    finally:
        subprocess.run(["bash", str(CEPH_SCRIPT), "stop", str(state)], capture_output=True, timeout=180)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server on loopback for the whole session (see module doc)."""
    endpoint = os.environ.get("HFS_S3_ENDPOINT")
    if endpoint:
        yield S3Server(
            endpoint,
            os.environ.get("HFS_S3_KEY", TEST_KEY),
            os.environ.get("HFS_S3_SECRET", TEST_SECRET),
            os.environ.get("HFS_S3_REGION", TEST_REGION),
        )
        return
    if not ceph_installed():
        pytest.skip(
            "no S3 server: install the loopback Ceph RADOS Gateway with "
            "`sudo services/ceph-rgw.sh install` (Debian/Ubuntu; .ci/run does it), "
            "or point HFS_S3_ENDPOINT (+ HFS_S3_KEY, HFS_S3_SECRET) at a running S3 server"
        )
    with running_ceph_gateway() as server:
        yield server


class FlakyProxy:
    """A TCP relay on 127.0.0.1 whose connections can be dropped on demand.

    Clients talk to ``endpoint_url``; bytes are relayed to ``target``
    (host, port). :meth:`cut` resets every open connection and makes new ones
    fail at once, as a dropped network would; :meth:`restore` heals it.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._down = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        #: Connections accepted so far (a test can wait for traffic).
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="flaky-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            if self._down.is_set():
                self._reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                self._reset(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass  # the other direction or cut() closed the socket: the relay ends
        finally:
            for sock in (src, dst):
                self._close(sock)

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees "connection reset"
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        with contextlib.suppress(OSError):
            sock.close()

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`restore`."""
        self._down.set()
        with self._lock:
            victims = list(self._open)
            self._open.clear()
        for sock in victims:
            self._reset(sock)

    def restore(self) -> None:
        self._down.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def flaky_s3(s3_server: S3Server) -> Iterator[FlakyProxy]:
    """A :class:`FlakyProxy` in front of the session's S3 server."""
    from urllib.parse import urlsplit

    parts = urlsplit(s3_server.endpoint_url)
    proxy = FlakyProxy((parts.hostname or "127.0.0.1", parts.port or 80))
    try:
        yield proxy
    finally:
        proxy.close()


#: Every AWS setting botocore/s3fs read from the environment.
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION",
            "AWS_PROFILE", "AWS_SESSION_TOKEN")


@pytest.fixture
def no_aws_env(monkeypatch):
    """No AWS setting in this process's environment: credentials only where a test passes them."""
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
