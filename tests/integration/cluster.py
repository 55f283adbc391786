"""A real multi-process Dask cluster on loopback, started with the ``dask`` CLI.

:func:`loopback_cluster` runs ``dask scheduler`` and N ``dask worker``
processes (one thread each, BLAS/OpenMP pinned to one thread, as on a real
cluster) as separate process groups, so a test can kill one worker with its
nanny as a lost machine would be lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

DASK = str(Path(sys.executable).with_name("dask"))
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class LoopbackCluster:
    address: str
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen]
    logs: Path

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker and its nanny (the whole process group): a lost node."""
        proc = self.workers[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}"
                         for p in sorted(self.logs.glob("*.log")))


def _spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    # own session: killpg reaches the worker's nanny and its child together;
    # the child keeps its own copy of the log's descriptor
    with log.open("wb") as handle:
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@contextlib.contextmanager
def loopback_cluster(logs: Path, *, n_workers: int = 2, memory_limit: str = "2GiB",
                     extra_env: dict[str, str] | None = None,
                     timeout_s: float = 90.0) -> Iterator[LoopbackCluster]:
    """Start ``dask scheduler`` + ``n_workers`` x ``dask worker`` on 127.0.0.1.

    Yields once every worker has registered with the scheduler; stops every
    process on exit.
    """
    from distributed import Client

    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **THREAD_ENV, **(extra_env or {})}
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                        "--dashboard-address", f"127.0.0.1:{free_port()}"],
                       logs / "scheduler.log", env)
    workers: dict[str, subprocess.Popen] = {}
    cluster = LoopbackCluster(address, scheduler, workers, logs)
    try:
        for i in range(n_workers):
            name = f"w{i}"
            workers[name] = _spawn(
                [DASK, "worker", address, "--name", name, "--nthreads", "1",
                 "--memory-limit", memory_limit, "--host", "127.0.0.1",
                 "--dashboard-address", f"127.0.0.1:{free_port()}",
                 "--local-directory", str(logs / name)],
                logs / f"{name}.log", env,
            )
        deadline = time.monotonic() + timeout_s
        with Client(address, timeout=timeout_s) as client:
            while len(client.scheduler_info(n_workers=-1)["workers"]) < n_workers:
                dead = [n for n, p in workers.items() if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"workers {dead or 'did not register'}:\n{cluster.log_tail()}")
                time.sleep(0.2)
        yield cluster
    finally:
        for proc in [*workers.values(), scheduler]:
            _stop(proc)
