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
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from pipeline.allocator import (MALLOC_TUNABLE_ENV, AllocatorPlugin, nanny_environ_without_tunables, quiet_server,
                                tune_allocator)
from pipeline.config import AUGMENTATIONS, ORIGINAL, PipelineConfig
from pipeline.datasets.base import Manifest
from pipeline.errors import AudioError, BuildError, ConfigError, count_failures, describe_failure_counts
from pipeline.extract import process_clip, warm_up
from pipeline.isolation import PARTIAL_READ, ClipLimits, Job, Outcome, run_isolated
from pipeline.update import growth_of, open_newest, start_extension, start_growth
from pipeline.sources import (ExcerptPlan, check_root, fetch_many, is_remote, join_root, public_options,
                              worker_credential_env)
from stores import ClipResult, create_store, open_store, open_writer, schema
from stores.schema import MANTISSA_BITS, STATIC_COLUMNS, round_mantissa
from stores.uri import local_path, redact_uri, remote_errors, scheme_of
from stores.updates import write_extension
from stores.versions import LEGACY_VERSION

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
#: What a failed shard task does to the build (see build_store's on_shard_error).
SHARD_ERROR_POLICIES = ("finish", "stop")
#: Dask retries of a task that raised (not counting tasks lost with a worker).
TASK_RETRIES = 2


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """Everything one task needs, picklable and free of open handles.

    clips : per clip of the shard, ``(clip_id, audio path readable by the
        workers, path relative to the dataset root, variants to compute)``.
    """

    shard_index: int
    clips: tuple[tuple[str, str, str, tuple[str, ...]], ...]
    config: PipelineConfig
    uri: str
    storage_options: Mapping[str, Any]
    limits: ClipLimits = ClipLimits()
    #: fsspec options for remote audio (``--root s3://...``): without credentials when the
    #: task goes to workers (they use their own environment), see pipeline.sources.public_options.
    source_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: An update that adds these augmentation variants: only they are computed and written
    #: (:func:`stores.updates.write_extension`); clips with no variants are not decoded.
    extend: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ShardReport:
    """What a finished task reports back (small: the data went to the store)."""

    shard_index: int
    n_clips: int
    n_failed: int
    seconds: float
    write_seconds: float
    digest: str


def build_shard(task: ShardTask) -> ShardReport:
    """Decode, extract and write one shard; the body of one Dask task.

    Raises
    ------
    pipeline.errors.StoreError
        The store cannot be written (the task is retried by Dask).
    """
    t0 = time.perf_counter()
    tune_allocator()  # once per process: workers we did not start may run with Dask's malloc setting
    # One BLAS/OpenMP thread whatever process runs the task (this one, a
    # LocalCluster worker, or a worker someone started without the thread
    # variables): a multi-threaded BLAS sums in another order, which moves a
    # few float16 roundings and would make serial and distributed stores differ.
    with threadpool_limits(limits=1):
        results = _extract_shard(task)
    t_write = time.perf_counter()
    # A network fault mid-write surfaces as a StoreError that names the store
    # and says to rerun, not as a bare botocore exception.
    with remote_errors(task.uri):
        writer = open_writer(task.uri, storage_options=task.storage_options)
        digest = write_extension(writer, task.shard_index, results, task.extend) if task.extend \
            else writer.write_shard(task.shard_index, results)
    n_failed = sum(r.status != "ok" for r in results)
    t_end = time.perf_counter()
    return ShardReport(task.shard_index, len(results), n_failed, t_end - t0, t_end - t_write, digest)


def _extract_shard(task: ShardTask) -> list:
    """Decode and extract every clip of the shard; any failure of a clip becomes its failed ClipResult.

    The kernels are compiled here first so the sandbox child inherits them.
    """
    warm_up(task.config)
    # an update adding variants decodes only the clips that get them
    todo = [k for k, clip in enumerate(task.clips) if clip[3] or not task.extend]
    outcomes = clip_outcomes([(path, source, (clip_id, task.config, variants))
                              for clip_id, path, source, variants in (task.clips[k] for k in todo)],
                             extract_for_store, limits=task.limits, source_options=task.source_options,
                             excerpt=excerpt_plan(task.config))
    results = [ClipResult("ok")] * len(task.clips)
    for k, outcome in zip(todo, outcomes):
        results[k] = _clip_result(outcome, task.clips[k], ClipResult)
    return results


def clip_outcomes(clips: Sequence[tuple[str, str, tuple]], work: Any, *, limits: ClipLimits,
                  source_options: Mapping[str, Any] | None = None, excerpt: ExcerptPlan | None = None
                  ) -> list[Outcome]:
    """``work(audio, *args, name=source)`` for each ``(location, source, args)``, one clip failing only itself.

    The clips run in a sandbox child (:func:`pipeline.isolation.run_isolated`).
    Remote locations are fetched first by this task, concurrently, and decoded
    from memory (no shared filesystem); an object that stays unreadable is
    its clip's failure and starts no job. With ``excerpt``, a long PCM object
    is fetched in part (:func:`pipeline.sources.fetch_many`); a clip whose
    decode needed more is fetched whole and run again. Build and scan tasks
    both use this.
    """
    remote = [i for i, (location, _, _) in enumerate(clips) if is_remote(location)]
    audio: dict[int, Any] = {i: location for i, (location, _, _) in enumerate(clips)}
    if remote:
        audio.update(zip(remote, fetch_many([clips[i][0] for i in remote], storage_options=source_options or None,
                                            excerpt=excerpt)))
    outcomes = _run_clips(clips, audio, range(len(clips)), work, limits)
    again = [i for i in remote if outcomes[i].category == PARTIAL_READ]
    if again:
        logger.debug("%d partly fetched object(s) needed more bytes; fetching them whole", len(again))
        audio.update(zip(again, fetch_many([clips[i][0] for i in again], storage_options=source_options or None)))
        outcomes.update(_run_clips(clips, audio, again, work, limits))
    return [outcomes[i] for i in range(len(clips))]


def _run_clips(clips: Sequence[tuple[str, str, tuple]], audio: Mapping[int, Any], which: Iterable[int],
               work: Any, limits: ClipLimits) -> dict[int, Outcome]:
    outcomes: dict[int, Outcome] = {}
    jobs, positions = [], []
    for i in which:
        _, source, args = clips[i]
        if isinstance(audio[i], AudioError):
            outcomes[i] = Outcome(False, category=audio[i].category, reason=audio[i].reason)
            continue
        jobs.append(Job(source, (audio[i], *args, source)))
        positions.append(i)
    outcomes.update(zip(positions, run_isolated(jobs, work, limits=limits)))
    return outcomes


def excerpt_plan(config: PipelineConfig) -> ExcerptPlan:
    """The excerpt every clip's decode takes under ``config`` (what a partial fetch must hold)."""
    return ExcerptPlan(config.audio.clip_seconds, config.audio.excerpt)


def extract_for_store(audio: "str | bytes", clip_id: str, config: PipelineConfig, variants: tuple[str, ...],
                      name: str | None = None):
    """:func:`pipeline.extract.process_clip` with every feature already rounded to the store's float16.

    Runs in the sandbox child: rounding there halves the bytes that travel
    back to the task (float16 instead of float32), and the writer takes
    float16 features as they are.
    """
    clip = process_clip(audio, clip_id, config, variants, name=name)
    for feats in clip.features.values():
        for feature, x in feats.items():
            feats[feature] = round_mantissa(x, MANTISSA_BITS)
    return clip


def clip_variants(clip: Any, augmented: Sequence[str], config: PipelineConfig) -> tuple[str, ...]:
    """The variants a clip of the manifest gets: all of them in an augmented split, else the original."""
    return config.augment.variant_names if "all" in augmented or clip.split in augmented else (ORIGINAL,)


def _clip_result(outcome: Outcome, clip: tuple[str, str, str, tuple[str, ...]], result_type: Any) -> Any:
    """The store's ClipResult of one clip's outcome; a failure is quarantined with its category and reason."""
    clip_id, path, source, _ = clip
    if outcome.ok:
        features = outcome.value
        return result_type("ok", duration_s=float(features.duration_s),
                           features=features.features, params=features.params)
    # Decoders quote the file's path; the store holds only the dataset-relative one.
    reason = outcome.failure_text.replace(path, source)
    logger.warning("clip %s (%s) failed: %s", clip_id, source, reason)
    return result_type("failed", reason=reason)


@dataclasses.dataclass
class BuildSummary:
    """The outcome of :func:`build_store`.

    failures : ``(clip_id, source, reason)`` of every failed clip in the store
        (including those of earlier, resumed runs).
    seconds : wall time of the whole call (cluster start included).
    build_seconds : from submitting the first task to the finalized store.
    clips_per_s : clips built by this call / ``build_seconds``.
    task_seconds : summed duration of the shard tasks (decode, extract, write).
    write_seconds : the part of ``task_seconds`` spent writing to the store.
    """

    uri: str
    n_clips: int
    n_ok: int
    n_failed: int
    failures: list[tuple[str, str, str]]
    variants: tuple[str, ...]
    n_shards: int
    shards_built: int
    shards_skipped: int
    clips_built: int
    seconds: float
    build_seconds: float
    clips_per_s: float
    nbytes_stored: int
    fingerprint: str
    max_failures: int
    task_seconds: float = 0.0
    write_seconds: float = 0.0
    dashboard: str | None = None
    failure_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    #: The version this build committed (or found unchanged); see stores.versions.
    version: str = ""
    #: What an update left alone: clips in the store whose files are gone from the collection.
    vanished: tuple[str, ...] = ()

    @property
    def failures_exceeded(self) -> bool:
        return self.n_failed > self.max_failures

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["failures_exceeded"] = self.failures_exceeded
        return out

    def report(self) -> str:
        """The closing summary printed by ``pipeline build``."""
        lines = [
            f"store       {self.uri}",
            f"clips       {self.n_ok} ok, {self.n_failed} failed, {self.n_clips} in all",
            *([f"failures    {describe_failure_counts(self.failure_counts)}"] if self.failure_counts else []),
            f"variants    {', '.join(self.variants)}",
            f"shards      {self.shards_built} built, {self.shards_skipped} already done, {self.n_shards} in all",
            f"size        {_human_bytes(self.nbytes_stored)}",
            f"time        {self.seconds:.1f} s ({self.build_seconds:.1f} s building)",
            f"throughput  {self.clips_per_s:.2f} clips/s",
            f"fingerprint {self.fingerprint[:16]}",
            f"version     {self.version} (open exactly this store as {self.uri}@{self.version})",
        ]
        if self.vanished:
            lines.append(f"vanished    {len(self.vanished)} clip(s) of the store are no longer in the collection; "
                         f"they stay in the store: {', '.join(self.vanished[:10])}"
                         + (" ..." if len(self.vanished) > 10 else ""))
        if self.failures:
            lines.append(f"failed clips ({self.n_failed}, allowed {self.max_failures}):")
            lines += [f"  {cid}  {src}: {why}" for cid, src, why in self.failures[:50]]
            if len(self.failures) > 50:
                lines.append(f"  ... and {len(self.failures) - 50} more (see the store's status/reason columns)")
        if self.failures_exceeded:
            lines.append(f"FAILED: {self.n_failed} failed clips exceed --max-failures ({self.max_failures})")
        return "\n".join(lines)


def _human_bytes(n: int) -> str:
    if n < 0:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def parse_max_failures(value: str | int | float, n_clips: int) -> int:
    """Failed clips allowed: a count ("3"), a fraction ("0.05") or a percentage ("5%").

    Returns
    -------
    int
        The number of failed clips that still counts as a successful build.
    """
    text = str(value).strip()
    try:
        if text.endswith("%"):
            fraction: float | None = float(text[:-1]) / 100.0
        elif isinstance(value, float) or any(ch in text for ch in ".eE"):
            fraction = float(text)
        else:
            fraction, count = None, int(text)
    except ValueError as exc:
        raise ConfigError(
            f"--max-failures={value!r} must be a count (3), a fraction (0.05) or a percentage (5%)"
        ) from exc
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"--max-failures={value!r}: a fraction must lie in [0, 1] (a percentage in [0%, 100%])")
        return int(math.floor(fraction * n_clips + 1e-9))
    if count < 0:
        raise ConfigError(f"--max-failures={value!r} must not be negative")
    return count


def augmented_splits(manifest: Manifest, config: PipelineConfig) -> tuple[str, ...]:
    """Splits whose clips get augmented variants, as recorded in the store.

    ``("all",)`` when the split scheme has folds (each clip trains in some
    fold); else ``augment_splits`` (train by default, or "all").
    """
    return ("all",) if manifest.n_folds > 0 else tuple(config.augment.augment_splits)


def _aug_param_names(config: PipelineConfig) -> dict[str, list[str]]:
    """Variant -> the parameter names it draws (from the augmentation registry)."""
    return {v: sorted(AUGMENTATIONS[v].param_names) for v in config.augment.variants}


def _static_columns(manifest: Manifest) -> dict[str, list[Any]]:
    labels = list(manifest.labels)
    cols: dict[str, list[Any]] = {k: [] for k in STATIC_COLUMNS}
    for clip in manifest.clips:
        if clip.label not in labels:
            raise BuildError(f"clip {clip.clip_id}: label {clip.label!r} is not one of the manifest's labels {labels}")
        cols["clip_id"].append(clip.clip_id)
        cols["label"].append(clip.label)
        cols["label_index"].append(labels.index(clip.label))
        cols["split"].append(clip.split)
        cols["fold"].append(clip.fold)
        cols["group"].append(clip.group)
        cols["source"].append(clip.path)
    return cols


def _writable_uri(out_uri: str | Path) -> str:
    """A URI that other processes resolve to the same place (local paths made absolute)."""
    path = local_path(out_uri)
    return str(path.resolve()) if path is not None else str(out_uri)


@contextlib.contextmanager
def dask_client(workers: int, scheduler: "str | distributed.Client | None", *,
                worker_env: Mapping[str, str] | None = None) -> Iterator["distributed.Client"]:
    """A client of an existing scheduler, or of a fresh LocalCluster of worker processes.

    ``worker_env``: variables set in each LocalCluster worker process at its
    start (the credentials of :func:`pipeline.sources.worker_credential_env`);
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


def store_order(manifest: Manifest) -> Manifest:
    """The manifest's clips in the order the store keeps them.

    Grouped by split (train, val, test, then clips outside the scheme), and
    within a split in the order of a SHA-256 of the clip id. Adapters list
    clips by label, so shards of consecutive clips would each hold one or two
    genres, and a trainer shuffling through a buffer of a few shards would
    see batches of a few genres at a time; hashed order makes every shard a
    label-mixed sample. Grouping by split keeps a split's clips in few shards:
    training reads no val/test-only shards and evaluation no train shards.
    The order depends only on the clip ids and splits, so every build of the
    same manifest (and a resumed one) agrees.
    """
    rank = {split: i for i, split in enumerate(("train", "val", "test"))}

    def key(clip: Any) -> tuple[int, str]:
        return rank.get(clip.split, len(rank)), hashlib.sha256(clip.clip_id.encode()).hexdigest()

    return dataclasses.replace(manifest, clips=tuple(sorted(manifest.clips, key=key)))


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
) -> BuildSummary:
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
        ``BuildSummary.failures_exceeded`` is True (``pipeline build`` exits 1).
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
        part (:func:`pipeline.sources.public_options`) goes to workers, which
        take credentials from their own environment.
    on_shard_error : {"finish", "stop"}
        What a shard task that fails (after Dask's retries, on a cluster)
        does to the build, the same on every path: "finish" lets the other
        shards finish, then raises one BuildError naming the first failure;
        "stop" stops at the first and raises its own error (debugging, tests).
    update : bool
        Add the clips of ``manifest`` that the store at ``out_uri`` lacks, as a
        new version (:mod:`pipeline.update`, :mod:`stores.updates`); without it
        a grown collection is refused, naming the number of new clips.

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
    plan = _plan(manifest, out_uri, config=config, workers=workers, scheduler=scheduler, overwrite=overwrite,
                 max_failures=max_failures, storage_options=storage_options, clips_per_shard=clips_per_shard,
                 clip_limits=clip_limits, source_storage_options=source_storage_options, update=update)
    run = _execute(plan, scheduler=scheduler, progress=progress, worker_addresses=worker_addresses,
                   on_shard_error=on_shard_error)
    fingerprint = plan.writer.finalize()
    return dataclasses.replace(_summary(plan, run, fingerprint, time.perf_counter() - t_start),
                               vanished=plan.vanished)


@dataclasses.dataclass
class _BuildPlan:
    """What a build will do, decided before any task runs."""

    shown: str  # the store URI as it may be printed
    uri: str
    options: dict[str, Any]  # the store's storage options (this process)
    writer: Any  # stores.StoreWriter
    tasks: list[ShardTask]
    n_workers: int  # 0: serial
    worker_env: dict[str, str]  # credentials for the workers of a LocalCluster we start
    allowed_failures: int
    config: PipelineConfig
    vanished: tuple[str, ...] = ()


@dataclasses.dataclass
class _BuildRun:
    reports: list[ShardReport]
    seconds: float
    dashboard: str | None


def _plan(manifest: Manifest, out_uri: str | Path, *, config: PipelineConfig, workers: int | None,
          scheduler: "str | distributed.Client | None", overwrite: bool, max_failures: str | int | float,
          storage_options: Mapping[str, Any] | None, clips_per_shard: int | None, clip_limits: ClipLimits,
          source_storage_options: Mapping[str, Any] | None, update: bool = False) -> _BuildPlan:
    """Check the inputs, create (or reopen, or start an update of) the store, and make one task per pending shard."""
    shown = redact_uri(out_uri)
    if len(manifest) == 0:
        raise BuildError(f"the manifest of {manifest.dataset!r} has no clips; nothing to build into {shown}")
    manifest = store_order(manifest)
    if workers is not None and (isinstance(workers, bool) or workers < 0):
        raise ConfigError(f"workers={workers!r} must be 0 (serial) or a positive number of processes")
    allowed = parse_max_failures(max_failures, len(manifest))
    serial = scheduler is None and workers == 0
    if scheme_of(out_uri) == "memory" and not serial:
        raise BuildError(
            f"{shown} is an in-process memory store that worker processes cannot reach; "
            "build it with workers=0 (--workers 0) or write to a folder or object storage"
        )
    uri = _writable_uri(out_uri)
    options = dict(storage_options or {})
    source_options = dict(source_storage_options or {})
    (task_options, task_source_options), worker_env = split_credentials(serial, scheduler, options, source_options)
    if is_remote(manifest.root):
        check_root(manifest.root, source_options)  # a missing bucket or bad credentials: one line, up front

    augmented = augmented_splits(manifest, config)
    growth = None if overwrite else growth_of(manifest, uri, options, update=update)
    extension = start_extension(uri, config, options) if growth is not None and not growth.new else None
    per_clip_variants: dict[int, tuple[str, ...]] = {}
    added: tuple[str, ...] = ()
    if growth is not None and growth.new:
        writer, store_clips = start_growth(uri, growth, manifest, config, options)
    elif extension is not None:
        writer, store_clips, per_clip_variants, added = extension
    else:
        writer = create_store(
            uri, config=config, clips=_static_columns(manifest), labels=manifest.labels,
            aug_params=_aug_param_names(config),
            dataset={"name": manifest.dataset, "split_scheme": manifest.split_scheme,
                     "n_folds": manifest.n_folds, "source": manifest.source},
            augmented_splits=augmented, clips_per_shard=clips_per_shard, overwrite=overwrite,
            storage_options=options,
        ) if growth is None else open_newest(uri, options, config)
        store_clips = {i: clip for i, clip in enumerate(manifest.clips)}
    augmented = writer.metadata.augmented_splits
    tasks = []
    for i in writer.pending_shards():
        start, stop = writer.layout.shard_range(i)
        clips = tuple(
            (c.clip_id, join_root(manifest.root, c.path), c.path,
             per_clip_variants[j] if extension is not None else clip_variants(c, augmented, config))
            for j, c in ((j, store_clips[j]) for j in range(start, stop))
        )
        tasks.append(ShardTask(i, clips, config, writer.target_uri, task_options, clip_limits, task_source_options,
                               extend=added))
    n_workers = 0 if serial else (workers or min(os.cpu_count() or 1, max(1, len(tasks))))
    logger.info("%s: %d of %d shards to build (%d clips)", shown, len(tasks), writer.layout.n_shards,
                sum(len(t.clips) for t in tasks))
    return _BuildPlan(shown, uri, options, writer, tasks, n_workers, worker_env, allowed, config,
                      growth.vanished if growth is not None else ())


def split_credentials(serial: bool, scheduler: "str | distributed.Client | None",
                      *option_sets: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The storage options that tasks carry, and the environment of the workers we start.

    Tasks that go to workers carry no credential (payloads are pickled in the
    clear): workers take credentials from their own environment, which for a
    LocalCluster we start is given them at spawn
    (:func:`pipeline.sources.worker_credential_env`). In this process
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


def _execute(plan: _BuildPlan, *, scheduler: "str | distributed.Client | None", progress: bool,
             worker_addresses: Sequence[str] | None, on_shard_error: str) -> _BuildRun:
    """Run the plan's tasks, in this process or on a cluster, under one shard-error policy."""
    reports: list[ShardReport] = []
    dashboard = None
    t_build = time.perf_counter()
    if not plan.tasks:
        return _BuildRun(reports, 0.0, None)
    bar = progress_bar(sum(len(t.clips) for t in plan.tasks), progress)
    try:
        if plan.n_workers == 0:
            errors = _run_serial(plan.tasks, bar, reports, on_shard_error)
        else:
            with dask_client(plan.n_workers, scheduler, worker_env=plan.worker_env) as client:
                dashboard = client.dashboard_link or None
                if dashboard:
                    logger.info("Dask dashboard: %s", dashboard)
                    if progress:
                        bar.write(f"Dask dashboard: {dashboard}")
                t_build = time.perf_counter()
                errors = _run_distributed(client, plan.tasks, bar, plan.config, plan.uri, worker_addresses,
                                          reports, on_shard_error)
    finally:
        bar.close()
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


def _summary(plan: _BuildPlan, run: _BuildRun, fingerprint: str, seconds: float) -> BuildSummary:
    """The finished store's counts, as the build reports them."""
    version = plan.writer.version
    # the version this build committed, not whatever is newest by now
    store = open_store(plan.uri if version == LEGACY_VERSION else f"{plan.uri}@{version}", storage_options=plan.options)
    clips = store.clips
    failed = clips[clips["status"] == schema.STATUS_FAILED]
    failures = [(str(r.clip_id), str(r.source), str(r.reason)) for r in failed.itertuples()]
    built = sum(len(t.clips) for t in plan.tasks)
    return BuildSummary(
        uri=plan.shown, n_clips=len(clips), n_ok=int((clips["status"] == schema.STATUS_OK).sum()),
        n_failed=len(failures), failures=failures, variants=store.variants,
        n_shards=plan.writer.layout.n_shards, shards_built=len(plan.tasks),
        shards_skipped=plan.writer.layout.n_shards - len(plan.tasks), clips_built=built,
        seconds=seconds, build_seconds=run.seconds,
        clips_per_s=built / run.seconds if run.seconds > 0 else 0.0,
        nbytes_stored=store.nbytes_stored, fingerprint=fingerprint, max_failures=plan.allowed_failures,
        task_seconds=sum(r.seconds for r in run.reports), write_seconds=sum(r.write_seconds for r in run.reports),
        dashboard=run.dashboard, failure_counts=count_failures([why for _, _, why in failures]),
        version=version,
    )


def progress_bar(total: int, enabled: bool):
    return tqdm(total=total, unit="clip", desc="build", disable=not enabled, file=sys.stderr, smoothing=0.1)


def _run_serial(tasks: Sequence[ShardTask], bar, reports: list[ShardReport],
                on_shard_error: str) -> list[tuple[int, BaseException]]:
    """The same tasks, one after another, in this process; a failed shard as :func:`_run_distributed` treats it."""
    errors: list[tuple[int, BaseException]] = []
    for task in tasks:
        try:
            report = build_shard(task)
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
            build_shard, task, key=f"{prefix}-{task.shard_index}", retries=TASK_RETRIES, pure=False,
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
