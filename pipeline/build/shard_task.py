"""One shard task: decode, extract and write the clips of one store shard.

The body of one Dask task (or one step of a serial build). Each clip runs in
a forked child (:mod:`pipeline.isolation`), so a clip can only fail itself;
the task writes whole shards of every array and, last, the shard's digest."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Iterable, Mapping, Sequence

from threadpoolctl import threadpool_limits

from pipeline.build.allocator import tune_allocator
from pipeline.config import ORIGINAL, PipelineConfig
from pipeline.errors import AudioError
from pipeline.extract import process_clip, warm_up
from pipeline.isolation import PARTIAL_READ, ClipLimits, Job, Outcome, run_isolated
from pipeline.sources import ExcerptPlan, fetch_many
from stores.remote import is_remote
from stores import ClipResult, open_writer
from stores.schema import MANTISSA_BITS, round_mantissa
from stores.uri import remote_errors
from stores.updates import write_added_features, write_extension

logger = logging.getLogger(__name__)


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
    #: task goes to workers (they use their own environment), see stores.remote.public_options.
    source_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: An update that adds these augmentation variants: only they are computed and written
    #: (:func:`stores.updates.write_extension`); clips with no variants are not decoded.
    extend: tuple[str, ...] = ()
    #: An update that adds these features: only they are computed (of the variants each clip has
    #: stored) and written (:func:`stores.updates.write_added_features`).
    add_features: tuple[str, ...] = ()


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
    stores.errors.StoreError
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
        if task.extend:
            digest = write_extension(writer, task.shard_index, results, task.extend)
        elif task.add_features:
            digest = write_added_features(writer, task.shard_index, results, task.add_features)
        else:
            digest = writer.write_shard(task.shard_index, results)
    n_failed = sum(r.status != "ok" for r in results)
    t_end = time.perf_counter()
    return ShardReport(task.shard_index, len(results), n_failed, t_end - t0, t_end - t_write, digest)


def _extract_shard(task: ShardTask) -> list:
    """Decode and extract every clip of the shard; any failure of a clip becomes its failed ClipResult.

    The kernels are compiled here first so the sandbox child inherits them.
    """
    warm_up(task.config)
    # an update decodes only the clips that get something
    updating = bool(task.extend or task.add_features)
    todo = [k for k, clip in enumerate(task.clips) if clip[3] or not updating]
    features = task.add_features or None
    outcomes = clip_outcomes([(path, source, (clip_id, task.config, variants, features))
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
                      features: tuple[str, ...] | None = None, name: str | None = None):
    """:func:`pipeline.extract.process_clip` (of ``features`` only, if given) with every feature
    already rounded to the store's float16.

    Runs in the sandbox child: rounding there halves the bytes that travel
    back to the task (float16 instead of float32), and the writer takes
    float16 features as they are.
    """
    clip = process_clip(audio, clip_id, config, variants, name=name, features=features)
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
        return result_type("ok", reason=features.note.replace(path, source), duration_s=float(features.duration_s),
                           features=features.features, params=features.params)
    # Decoders quote the file's path; the store holds only the dataset-relative one.
    reason = outcome.failure_text.replace(path, source)
    logger.warning("clip %s (%s) failed: %s", clip_id, source, reason)
    return result_type("failed", reason=reason)

