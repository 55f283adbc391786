"""The cluster a build (or a scan) runs on: an existing Dask scheduler, or a
LocalCluster of single-threaded worker processes started here, with the
environment its workers get (one thread per numeric library, the
allocator's settings of :mod:`pipeline.build.allocator`, the credentials of
:func:`stores.remote.split_credentials`) and quiet logs."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Iterator, Mapping

from pipeline.build.allocator import MALLOC_TUNABLE_ENV, nanny_environ_without_tunables, quiet_server
from pipeline.build.worker_plugin import AllocatorPlugin
from pipeline.errors import BuildError

if TYPE_CHECKING:  # pragma: no cover
    import distributed

logger = logging.getLogger(__name__)

#: Threads of numeric libraries in every worker: one, because parallelism
#: comes from worker processes and oversubscribed BLAS/OpenMP threads only
#: add contention.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
#: Dask settings of the LocalCluster a build starts. Measured here on an idle
#: 2-worker cluster: the scheduler's process used 4.7% of a core and each
#: worker 3.6-4.0% (the 20 ms event-loop tick, the profiler sampling worker
#: stacks 100 times a second, the system monitor, work stealing); with these,
#: 1.9% and 0.8%. On a 2-core machine that difference is 4% of the build.
#: Workers started elsewhere can take the same settings from the environment
#: (README: DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False, ...).
QUIET_CLUSTER_CONFIG = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.scheduler.work-stealing": False,  # one task per shard, queued in order: nothing to steal
    "distributed.worker.profile.enabled": False,
}

@contextlib.contextmanager
def dask_client(workers: int, scheduler: "str | distributed.Client | None", *,
                worker_env: Mapping[str, str] | None = None) -> Iterator["distributed.Client"]:
    """A client of an existing scheduler, or of a fresh LocalCluster of worker processes.

    ``worker_env``: variables set in each LocalCluster worker process at its
    start (the credentials of :func:`stores.remote.worker_credential_env`);
    ignored for an existing cluster, whose workers have their own environment.
    """
    # Only a cluster build or scan needs Dask (about 1 s to import): serial ones start without it.
    import dask
    import distributed

    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout="30s")
        except OSError as exc:
            raise BuildError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}; start one with "
                "`dask scheduler` and workers with `dask worker ADDRESS`, or drop --scheduler"
            ) from exc
        try:
            _register_allocator_plugin(client)
            yield client
        finally:
            client.close()
        return
    # LocalCluster's nannies live in this process and apply their pre-spawn
    # environment with os.environ.update (at start and at every worker
    # restart): put this process's values back afterwards, or a later numba
    # compile here fails ("Cannot set NUMBA_NUM_THREADS ... once the threads
    # have been launched") and BLAS in this process stays pinned.
    saved_env = {name: os.environ.get(name) for name in (*SINGLE_THREAD_ENV, *MALLOC_TUNABLE_ENV)}
    # Worker processes inherit this environment too, and an earlier LocalCluster
    # in this process (ours or anyone's) may have left Dask's malloc setting in it.
    for name in MALLOC_TUNABLE_ENV:
        os.environ.pop(name, None)
    try:
        with _quiet_distributed_logs():
            # Pre-spawn so the variables are set before numpy/BLAS initialise in
            # the worker; without Dask's MALLOC_TRIM_THRESHOLD_, which halves
            # extraction speed (see pipeline.allocator).
            spawn_env = nanny_environ_without_tunables(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
            with dask.config.set({"distributed.nanny.pre-spawn-environ": {**spawn_env, **SINGLE_THREAD_ENV},
                                  **QUIET_CLUSTER_CONFIG}):
                cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=":0", silence_logs=logging.ERROR, env=dict(worker_env or {}),
                )
            try:
                with distributed.Client(cluster) as client:
                    # The workers' log records (a failed clip's warning) come here and go through this
                    # process's handlers, above the progress bar, instead of straight to the terminal.
                    client.forward_logging(level=logging.getLogger().getEffectiveLevel())
                    yield client
            finally:
                cluster.close()
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _register_allocator_plugin(client: "distributed.Client") -> None:
    """Tune the allocator of every worker of a cluster we did not start (see :mod:`pipeline.allocator`)."""
    try:
        client.register_plugin(AllocatorPlugin())
        client.run_on_scheduler(_quiet_scheduler)
    except Exception as exc:  # noqa: BLE001 - the tasks tune the allocator themselves anyway
        logger.debug("could not register the allocator plugin: %r", exc)


def _quiet_scheduler(dask_scheduler) -> None:  # noqa: ANN001 - run by Dask on the scheduler
    quiet_server(dask_scheduler)


@contextlib.contextmanager
def _quiet_distributed_logs() -> Iterator[None]:
    """Keep the in-process scheduler's INFO chatter (start, stop, worker removal) out
    of the progress output, unless this module logs at INFO itself (``-v``)."""
    if logger.isEnabledFor(logging.INFO):
        yield
        return
    dask_logger = logging.getLogger("distributed")
    previous = dask_logger.level
    dask_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        dask_logger.setLevel(previous)

