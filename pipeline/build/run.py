"""The build: a manifest of clips -> a feature store, one Dask task per shard.

Why one task per shard: a shard of a Zarr v3 array is one object, and
zarr-python loses data when two writers touch the same shard (zarr-python
issues 3514 and 3682). So each task decodes and extracts all of its clips and
writes whole shards of every array itself, then records the shard's digest;
nothing else ever writes into that shard. The coordinating process creates
the store before the tasks run and finalizes it after (one writer each time).

Failure handling
----------------
- One clip can only ever fail itself. Its work runs in a forked child
  (:mod:`pipeline.isolation`): bad audio (:class:`~pipeline.errors.AudioError`),
  any other exception (an "internal error": our bug), a decoder that crashes,
  hangs past the clip's time limit or exhausts its memory limit all become a
  clip stored as "failed" with ``"<category>: <reason>"``, and the shard goes
  on. ``max_failures`` (a count, or a fraction of the clips) decides whether
  the build as a whole counts as failed; the summary counts failures by
  category, bad audio apart from crashes and bugs.
- Any other error in a task is a bug or an infrastructure fault: Dask retries
  the task (``retries=2``); if it still fails, the other shards still finish
  and :class:`~pipeline.errors.BuildError` says to rerun once fixed.
- A lost worker process: Dask reschedules its tasks elsewhere. The redone
  task rewrites whole shards with the same (deterministic) contents.
- Interruption (Ctrl-C, a killed process): finished shards carry their
  digest; rerunning the same build skips them and ends with the same store.

Parallelism is passed in: ``workers=0`` runs the same tasks serially in this
process (debugging; the same store), ``workers=N`` starts a LocalCluster of N
single-threaded worker processes, ``scheduler=`` uses an existing cluster.

The modules of this package: :mod:`~pipeline.build.plan` (what to build),
:mod:`~pipeline.build.shard_task` (one task), :mod:`~pipeline.build.cluster`
(where tasks run), :mod:`~pipeline.build.summary` (what the build reports);
this one runs the plan's tasks under one shard-error policy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.build import shard_task
from pipeline.build.plan import BuildPlan, make_plan
from pipeline.build.shard_task import ShardReport, ShardTask
from pipeline.build.summary import BuildReport
from pipeline.config import PipelineConfig
from pipeline.datasets.base import Manifest
from pipeline.errors import BuildError, ConfigError
from pipeline.isolation import ClipLimits
from stores import open_store, schema
from stores.failures import count_ends_early, count_failures
from stores.versions import LEGACY_VERSION

if TYPE_CHECKING:  # pragma: no cover
    import distributed

logger = logging.getLogger(__name__)

#: What a failed shard task does to the build (see build_store's on_shard_error).
SHARD_ERROR_POLICIES = ("finish", "stop")
#: Dask retries of a task that raised (not counting tasks lost with a worker).
TASK_RETRIES = 2


def build_store(
    manifest: Manifest,
    out_uri: str | Path,
    *,
    config: PipelineConfig,
    workers: int | None = None,
    scheduler: "str | distributed.Client | None" = None,
    overwrite: bool = False,
    max_failures: str | int | float = 0.05,
    storage_options: Mapping[str, Any] | None = None,
    clips_per_shard: int | None = None,
    progress: bool = True,
    worker_addresses: Sequence[str] | None = None,
    clip_limits: ClipLimits = ClipLimits(),
    source_storage_options: Mapping[str, Any] | None = None,
    on_shard_error: str = "finish",
    update: bool = False,
) -> BuildReport:
    """Build (or resume) the feature store of ``manifest`` at ``out_uri``.

    Parameters
    ----------
    manifest : Manifest
        The clips; the store holds them in :func:`store_order`.
    out_uri : str or Path
        A folder, ``file://``, ``s3://``, ``gs://`` or (with ``workers=0``)
        ``memory://`` URI.
    config : PipelineConfig
    workers : int, optional
        0: serial, in this process. N: a LocalCluster of N single-threaded
        worker processes. Default: the machine's CPU count (capped by the
        number of shards to build). Ignored with ``scheduler``.
    scheduler : str or distributed.Client, optional
        Address (``tcp://host:8786``) or client of an existing cluster; its
        workers must be able to read the audio paths and the store URI.
    overwrite : bool
        Replace an existing store built with other inputs.
    max_failures : str, int or float
        Failed clips tolerated (see :func:`parse_max_failures`); beyond it
        ``BuildReport.failures_exceeded`` is True (``pipeline build`` exits 1).
    storage_options : mapping, optional
        fsspec options of a remote ``out_uri``; sent to the workers, never
        written to the store.
    clips_per_shard : int, optional
        Default: the existing store's when resuming, else
        :func:`stores.schema.auto_clips_per_shard` (16, or fewer for a
        collection of under 512 clips so that every worker has shards to do).
    progress : bool
        Show a progress bar and the dashboard address on stderr.
    worker_addresses : sequence of str, optional
        Run the tasks only on these workers of the cluster (benchmarks).
    clip_limits : ClipLimits
        Time and memory limit of each clip, and whether clips run in a
        forked child (see :mod:`pipeline.isolation`); not part of the store.
    source_storage_options : mapping, optional
        fsspec options of a remote dataset root (``manifest.root`` an
        ``s3://``, ``gs://`` or ``http(s)://`` URI). Only their credential-free
        part (:func:`stores.remote.public_options`) goes to workers, which
        take credentials from their own environment.
    on_shard_error : {"finish", "stop"}
        What a shard task that fails (after Dask's retries, on a cluster)
        does to the build, the same on every path: "finish" lets the other
        shards finish, then raises one BuildError naming the first failure;
        "stop" stops at the first and raises its own error (debugging, tests).
    update : bool
        Add the clips of ``manifest`` that the store at ``out_uri`` lacks (or
        the augmentation variants ``config`` appends), as a new version
        (:mod:`pipeline.build.update`, :mod:`stores.updates`); without it a
        grown collection is refused, naming the number of new clips.

    Raises
    ------
    ConfigMismatchError
        The store at ``out_uri`` was built from other inputs (and not ``overwrite``).
    BuildError
        Tasks failed for reasons other than bad audio (after retries), or
        the scheduler cannot be reached. Finished shards are kept.
    Exception
        With ``on_shard_error="stop"``, the first failed shard's own error.
    """
    t_start = time.perf_counter()
    if on_shard_error not in SHARD_ERROR_POLICIES:
        raise ConfigError(f"on_shard_error={on_shard_error!r} is not one of {', '.join(SHARD_ERROR_POLICIES)}")
    plan = make_plan(manifest, out_uri, config=config, workers=workers, scheduler=scheduler, overwrite=overwrite,
                 max_failures=max_failures, storage_options=storage_options, clips_per_shard=clips_per_shard,
                 clip_limits=clip_limits, source_storage_options=source_storage_options, update=update)
    run = _execute(plan, scheduler=scheduler, progress=progress, worker_addresses=worker_addresses,
                   on_shard_error=on_shard_error)
    fingerprint = plan.writer.finalize()
    return _summary(plan, run, fingerprint, time.perf_counter() - t_start)



@dataclasses.dataclass
class _BuildRun:
    reports: list[ShardReport]
    seconds: float
    dashboard: str | None



def _execute(plan: BuildPlan, *, scheduler: "str | distributed.Client | None", progress: bool,
             worker_addresses: Sequence[str] | None, on_shard_error: str) -> _BuildRun:
    """Run the plan's tasks, in this process or on a cluster, under one shard-error policy."""
    reports: list[ShardReport] = []
    dashboard = None
    t_build = time.perf_counter()
    if not plan.tasks:
        return _BuildRun(reports, 0.0, None)
    with progress_bar(sum(len(t.clips) for t in plan.tasks), progress) as bar:
        if plan.n_workers == 0:
            errors = _run_serial(plan.tasks, bar, reports, on_shard_error)
        else:
            from pipeline.build.cluster import dask_client  # distributed: imported where a cluster starts

            with dask_client(plan.n_workers, scheduler, worker_env=plan.worker_env) as client:
                dashboard = client.dashboard_link or None
                if dashboard:
                    logger.info("Dask dashboard: %s", dashboard)
                    if progress:
                        bar.write(f"Dask dashboard: {dashboard}")
                t_build = time.perf_counter()
                errors = _run_distributed(client, plan.tasks, bar, plan.config, plan.uri, worker_addresses,
                                          reports, on_shard_error)
    if errors:
        shard, first = errors[0]
        if on_shard_error == "stop":
            raise first
        raise BuildError(
            f"{len(errors)} shard task(s) of {plan.shown} failed"
            f"{f' after {TASK_RETRIES} retries' if plan.n_workers else ''} (first: shard {shard}: {first!r}); "
            "finished shards are kept, fix the cause and rerun the same command to resume"
        ) from first
    return _BuildRun(reports, time.perf_counter() - t_build, dashboard)


def _summary(plan: BuildPlan, run: _BuildRun, fingerprint: str, seconds: float) -> BuildReport:
    """The finished store's counts, as the build reports them."""
    version = plan.writer.version
    # the version this build committed, not whatever is newest by now
    pinned = plan.uri if version == LEGACY_VERSION else f"{plan.uri}@{version}"
    store = open_store(pinned, storage_options=plan.options)
    clips = store.clips
    failed = clips[clips["status"] == schema.STATUS_FAILED]
    failures = [(str(r.clip_id), str(r.source), str(r.reason)) for r in failed.itertuples()]
    built = sum(len(t.clips) for t in plan.tasks)
    return BuildReport(
        uri=plan.shown, n_clips=len(clips), n_ok=int((clips["status"] == schema.STATUS_OK).sum()),
        n_failed=len(failures), failures=failures, variants=store.variants,
        n_shards=plan.writer.layout.n_shards, shards_built=len(plan.tasks),
        shards_skipped=plan.writer.layout.n_shards - len(plan.tasks), clips_built=built,
        seconds=seconds, build_seconds=run.seconds,
        clips_per_s=built / run.seconds if run.seconds > 0 else 0.0,
        nbytes_stored=store.nbytes_stored, fingerprint=fingerprint, max_failures=plan.allowed_failures,
        task_seconds=sum(r.seconds for r in run.reports), write_seconds=sum(r.write_seconds for r in run.reports),
        dashboard=run.dashboard, failure_counts=count_failures([why for _, _, why in failures]),
        skipped={why: list(paths) for why, paths in store.metadata.dataset.skipped.items()},
        ends_early=count_ends_early(clips.loc[clips["status"] == schema.STATUS_OK, "reason"].tolist()),
        version=version, vanished=plan.vanished,
    )


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool, desc: str = "build") -> Iterator[Any]:
    """A progress bar of ``total`` clips on stderr; while it shows, this process's log lines go
    through ``tqdm.write`` (above the bar) instead of tearing it."""
    bar = tqdm(total=total, unit="clip", desc=desc, disable=not enabled, file=sys.stderr, smoothing=0.1)
    try:
        if enabled:
            with logging_redirect_tqdm(tqdm_class=type(bar)):
                yield bar
        else:
            yield bar
    finally:
        bar.close()


def _run_serial(tasks: Sequence[ShardTask], bar, reports: list[ShardReport],
                on_shard_error: str) -> list[tuple[int, BaseException]]:
    """The same tasks, one after another, in this process; a failed shard as :func:`_run_distributed` treats it."""
    errors: list[tuple[int, BaseException]] = []
    for task in tasks:
        try:
            report = shard_task.build_shard(task)
        except Exception as exc:  # noqa: BLE001 - the shard's failure, handled by the policy
            if _shard_failed(task, exc, errors, bar, on_shard_error):
                break
            continue
        _record(report, reports, bar)
    return errors


def _shard_failed(task: ShardTask, exc: BaseException, errors: list[tuple[int, BaseException]], bar,
                  on_shard_error: str) -> bool:
    """Keep a failed shard's error; True when the policy stops the build there."""
    logger.error("shard %d failed: %r", task.shard_index, exc)
    errors.append((task.shard_index, exc))
    if on_shard_error == "stop":
        return True
    bar.update(len(task.clips))
    return False


def _record(report: ShardReport, reports: list[ShardReport], bar) -> None:
    """A finished shard: keep its report, advance the bar, show the failed clips so far."""
    reports.append(report)
    bar.update(report.n_clips)
    bar.set_postfix(failed=sum(r.n_failed for r in reports), refresh=False)


def _task_key_prefix(config: PipelineConfig, uri: str) -> str:
    """Deterministic: the same shard of the same build has the same key on every run."""
    where = hashlib.sha256(uri.encode()).hexdigest()[:6]
    return f"shard-{config.config_hash()[:8]}-{where}"


def _run_distributed(client: "distributed.Client", tasks: Sequence[ShardTask], bar, config: PipelineConfig,
                     uri: str, worker_addresses: Sequence[str] | None, reports: list[ShardReport],
                     on_shard_error: str) -> list[tuple[int, BaseException]]:
    """Submit one task per shard; update the bar as shards finish; collect task errors
    (``"stop"``: cancel the rest at the first)."""
    import distributed  # only a cluster build needs it (about 1 s to import)

    prefix = _task_key_prefix(config, uri)  # hashed once, not per shard
    futures = {}
    for task in tasks:
        future = client.submit(
            shard_task.build_shard, task, key=f"{prefix}-{task.shard_index}", retries=TASK_RETRIES, pure=False,
            workers=list(worker_addresses) if worker_addresses else None,
            allow_other_workers=False,
        )
        futures[future] = task
    errors: list[tuple[int, BaseException]] = []
    try:
        for future in distributed.as_completed(list(futures)):
            task = futures[future]
            if future.status == "error":
                if _shard_failed(task, future.exception(), errors, bar, on_shard_error):
                    client.cancel(list(futures))
                    break
                continue
            _record(future.result(), reports, bar)
    except BaseException:
        # Interrupted: stop the remaining tasks; finished shards stay done.
        client.cancel(list(futures))
        raise
    return errors
