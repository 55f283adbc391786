"""``pipeline bench build``: the distributed build measured against the machine's limit.

What is measured, in one run, on the same demo clips
----------------------------------------------------
1. **Serial limit** (``serial_clips_per_s``): the clips decoded and extracted
   one after another in this one plain process, one BLAS thread, no Dask, no
   fork, no store: the most one core can do. Measured before and after the
   cluster runs (``serial_before_clips_per_s``, ``serial_after_clips_per_s``)
   and averaged, because a shared machine's per-core rate drifts. It is the baseline because a
   baseline timed inside the build's own tasks inherits their handicaps (our
   build ran at half speed for weeks while such a figure looked fine).
2. **Builds on 1 and on 2 workers** (``clips_per_s_1``, ``clips_per_s_2``): a
   fresh LocalCluster each (or the given ``--scheduler``'s first 1 and 2
   workers), started (``startup_s_N``) and warmed (imports, numba, every
   variant once: ``warmup_s_N``), then the whole build is timed, from the
   first submitted shard to the finalized store: Dask scheduling, the
   per-shard fork of :mod:`pipeline.isolation`, store writes, finalization.
3. **Efficiency** = rate with N workers / (N x serial rate)
   (``efficiency_1``, ``efficiency_2``; target >= 0.9 on this machine), and
   the peak memory (RSS) of each worker process and its clip children
   (``peak_rss_mib_N``).

Other figures (``--json FILE`` keys): ``scaling`` (2-worker / 1-worker rate),
``bytes_per_clip_variant`` and ``fraction_of_float32`` (store size; target
<= 0.35), ``extract_s_per_clip`` and ``write_s_per_clip`` (inside the tasks),
and the conditions they were taken under. ``--clips N --seconds S`` choose
the demo clips (``--workers-only`` skips the serial pass for scale runs).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from pipeline.build.allocator import tune_allocator
from pipeline.build import SINGLE_THREAD_ENV, augmented_splits, build_store, clip_variants, dask_client
from stores.remote import split_credentials
from pipeline.config import PipelineConfig
from pipeline.datasets import list_datasets, load_manifest
from pipeline.datasets.base import Manifest
from pipeline.datasets.demo_synth import GENRES
from pipeline.errors import BuildError
from pipeline.extract import process_clip, warm_up
from pipeline.sources import check_root, is_remote, join_root, scrub
from stores import open_store
from stores.checks import store_info
from stores.uri import filesystem, redact_uri

logger = logging.getLogger(__name__)

#: Seconds of each demo clip: GTZAN's clip length, so per-clip figures compare.
DEMO_CLIP_SECONDS = 30.0


def demo_manifest(n_clips: int, root: Path, clip_seconds: float | None = None) -> Manifest:
    """The first ``n_clips`` clips of the demo dataset (audio generated into ``root`` once)."""
    if "demo" not in list_datasets():
        raise BuildError("the demo dataset adapter is not registered; cannot run the build benchmark")
    manifest = load_manifest("demo", root, clips_per_genre=max(1, math.ceil(n_clips / len(GENRES))),
                             clip_seconds=DEMO_CLIP_SECONDS if clip_seconds is None else clip_seconds)
    return manifest.balanced_head(n_clips)  # every genre and split in any size


def serial_limit(manifest: Manifest, config: PipelineConfig) -> dict[str, Any]:
    """Decode and extract every clip of ``manifest`` in this process, one thread: the per-core limit."""

    augmented = augmented_splits(manifest, config)
    root = Path(manifest.root)
    with threadpool_limits(limits=1):
        warm_up(config)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        for clip in manifest.clips:
            process_clip(str(root / clip.path), clip.clip_id, config, clip_variants(clip, augmented, config))
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return {"clips_per_s": len(manifest) / seconds, "seconds": seconds, "cpu_s_per_clip": cpu / len(manifest),
            "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    """Peak RSS of this process and of the largest of its finished children, MiB (Linux: ru_maxrss in KiB)."""
    import resource  # POSIX only (ru_maxrss)

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def _warm(config: PipelineConfig) -> float:
    """Warm one worker the way a build task does (allocator, imports, numba, every variant): seconds."""
    t0 = time.perf_counter()
    tune_allocator()
    warm_up(config)
    return time.perf_counter() - t0


def _timed_build(client, manifest: Manifest, out: Path, config: PipelineConfig, cps: int | None,
                 workers: list[str], source_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Warm ``workers``, then build ``manifest`` on them only; return the figures."""
    t0 = time.perf_counter()
    warm = client.run(_warm, config, workers=workers)
    warmup = time.perf_counter() - t0
    logger.info("warmed %d worker(s): %s", len(warm), {w: f"{s:.1f}s" for w, s in warm.items()})
    summary = build_store(manifest, out, config=config, scheduler=client, clips_per_shard=cps, overwrite=True,
                          progress=True, worker_addresses=workers, max_failures=1.0,
                          source_storage_options=source_options)
    peak = client.run(_peak_rss_mib, workers=workers)
    return {"workers": len(workers), "clips_per_s": summary.clips_per_s, "seconds": summary.build_seconds,
            "n_failed": summary.n_failed, "uri": out, "warmup_s": warmup, "fingerprint": summary.fingerprint,
            "peak_rss_mib": max(peak.values()),
            "extract_seconds": summary.task_seconds - summary.write_seconds,
            "task_seconds": summary.task_seconds,
            "write_seconds": summary.write_seconds}


def run_bench(n_clips: int = 200, *, seconds: float | None = None, scheduler: str | None = None,
              out: str | Path | None = None, config: PipelineConfig | None = None,
              clips_per_shard: int | None = None, serial: bool = True,
              worker_counts: tuple[int, ...] = (1, 2), source_root: str | None = None,
              source_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The serial limit, then builds on 1 and on 2 workers; return the figures (see the module docstring).

    ``source_root``: a remote URI (``s3://bucket/prefix``) the demo clips are
    uploaded under; the largest cluster then also builds them from there,
    between two local builds on the same workers (:func:`_bucket_builds`).
    """
    import distributed  # distributed: its version goes into the figures

    clip_seconds = float(seconds) if seconds is not None else DEMO_CLIP_SECONDS
    config = config or PipelineConfig()
    if clip_seconds != config.audio.clip_seconds:
        config = dataclasses.replace(config, audio=dataclasses.replace(config.audio, clip_seconds=clip_seconds))
    if n_clips < 4:
        raise BuildError(f"--clips={n_clips}: the build benchmark needs at least 4 clips")
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-build-")
        out = tmp.name
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        manifest = demo_manifest(n_clips, out / f"demo-audio-{clip_seconds:g}s", clip_seconds)
        generate_s = time.perf_counter() - t0
        limit = serial_limit(manifest, config) if serial else None
        t0 = time.perf_counter()
        remote = _upload_demo(manifest, source_root, source_options) if source_root else None
        upload_s = time.perf_counter() - t0
        worker_env = split_credentials(False, scheduler, source_options or {})[1] if remote else {}
        results: dict[int, dict[str, Any]] = {}
        bucket: dict[str, Any] = {}
        for n_workers in worker_counts:
            t_start = time.perf_counter()
            # n_workers is ignored with a scheduler
            with dask_client(n_workers, scheduler, worker_env=worker_env) as client:
                startup = time.perf_counter() - t_start
                available = sorted(client.scheduler_info(n_workers=-1)["workers"])
                if len(available) < n_workers:
                    raise BuildError(
                        f"the cluster at {scheduler} has {len(available)} worker(s); the benchmark needs "
                        f"{max(worker_counts)}"
                    )
                results[n_workers] = _timed_build(client, manifest, out / f"bench-{n_workers}.zarr", config,
                                                  clips_per_shard, available[:n_workers])
                results[n_workers]["startup_s"] = startup
                if remote and n_workers == max(worker_counts):
                    bucket = _bucket_builds(client, manifest, remote, out, config, clips_per_shard,
                                            available[:n_workers], source_options, results[n_workers])
        if limit is not None:
            # Once more after the cluster runs: on a shared machine the per-core
            # rate drifts, and the mean of before and after brackets the builds.
            again = serial_limit(manifest, config)
            limit = {"clips_per_s": (limit["clips_per_s"] + again["clips_per_s"]) / 2,
                     "seconds": (limit["seconds"] + again["seconds"]) / 2,
                     "cpu_s_per_clip": (limit["cpu_s_per_clip"] + again["cpu_s_per_clip"]) / 2,
                     "peak_rss_mib": max(limit["peak_rss_mib"], again["peak_rss_mib"]),
                     "before": limit["clips_per_s"], "after": again["clips_per_s"]}
        last = results[max(worker_counts)]
        store = open_store(last["uri"])
        info = store_info(last["uri"])
        figures: dict[str, Any] = {
            "clips": n_clips,
            "clips_per_shard": store.clips_per_shard,
            "clip_seconds": clip_seconds,
            "variants": list(config.augment.variant_names),
            "augmented_clips": int((store.valid_frames[:, 1:] > 0).any(axis=1).sum()) if len(store.variants) > 1 else 0,
            "failed_clips": last["n_failed"],
            "generate_audio_s": generate_s,
        }
        if limit is not None:
            figures.update(serial_clips_per_s=limit["clips_per_s"], serial_seconds=limit["seconds"],
                           serial_before_clips_per_s=limit["before"], serial_after_clips_per_s=limit["after"],
                           serial_cpu_s_per_clip=limit["cpu_s_per_clip"], serial_peak_rss_mib=limit["peak_rss_mib"])
        for n, r in results.items():
            figures.update({
                f"clips_per_s_{n}": r["clips_per_s"], f"seconds_{n}": r["seconds"],
                f"startup_s_{n}": r["startup_s"], f"warmup_s_{n}": r["warmup_s"],
                f"peak_rss_mib_{n}": r["peak_rss_mib"],
                f"worker_utilisation_{n}": r["task_seconds"] / (n * r["seconds"]),
            })
            if limit is not None:
                figures[f"efficiency_{n}"] = r["clips_per_s"] / (n * limit["clips_per_s"])
        if 1 in results and 2 in results:
            figures["scaling"] = results[2]["clips_per_s"] / results[1]["clips_per_s"]
        if bucket:
            figures.update(bucket, upload_s=upload_s)
        first = results[min(worker_counts)]
        figures.update({
            "extract_s_per_clip": first["extract_seconds"] / n_clips,
            "write_s_per_clip": first["write_seconds"] / n_clips,
            "bytes_per_clip_variant": info["bytes_per_clip_variant"],
            "fraction_of_float32": info["fraction_of_float32"],
            "store_bytes": info["nbytes_stored"],
            "scheduler": scheduler or "LocalCluster (in-process, worker processes, 1 thread each)",
            "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "thread_env": SINGLE_THREAD_ENV,
            "distributed_version": distributed.__version__,
        })
        return figures
    finally:
        if remote:
            _remove_upload(remote, source_options)
        if tmp is not None:
            tmp.cleanup()


def _upload_demo(manifest: Manifest, source_root: str, source_options: Mapping[str, Any] | None) -> Manifest:
    """The demo clips uploaded under ``source_root`` (a fresh prefix), as a manifest rooted there."""
    if not is_remote(source_root):
        raise BuildError(f"--root {source_root}: give a remote URI (s3://bucket/prefix, gs://...) to upload "
                         "the demo clips to; the local rate is measured from a local folder anyway")
    prefix = join_root(source_root, f"hfs-bench-{os.getpid()}-{int(time.time())}")
    fs, path = filesystem(prefix, storage_options=source_options)
    try:
        fs.put([str(Path(manifest.root) / c.path) for c in manifest.clips],
               [f"{path}/{c.path}" for c in manifest.clips])
    except Exception as exc:  # noqa: BLE001 - any backend error: one line naming the URI
        raise BuildError(f"cannot upload the demo clips to {redact_uri(prefix)}: "
                         f"{scrub(str(exc) or type(exc).__name__, source_options)}; check the URI, the "
                         "credentials and that the bucket exists") from None
    check_root(prefix, source_options)
    logger.info("uploaded %d clips to %s", len(manifest), redact_uri(prefix))
    return dataclasses.replace(manifest, root=prefix)


def _remove_upload(remote: Manifest, source_options: Mapping[str, Any] | None) -> None:
    try:
        fs, path = filesystem(str(remote.root), storage_options=source_options)
        fs.rm(path, recursive=True)
    except Exception as exc:  # noqa: BLE001 - leftovers are named, never fatal
        logger.warning("could not remove the uploaded demo clips at %s: %s", redact_uri(str(remote.root)), exc)


def _bucket_builds(client, manifest: Manifest, remote: Manifest, out: Path, config: PipelineConfig,
                   cps: int | None, workers: list[str], source_options: Mapping[str, Any] | None,
                   local_before: dict[str, Any]) -> dict[str, Any]:
    """The same clips from the bucket, then from the local folder again, on the same workers.

    The local rate is the mean of the builds before and after, so that a
    shared machine's drift does not count for or against the bucket.
    """
    remote_run = _timed_build(client, remote, out / "bench-bucket.zarr", config, cps, workers, source_options)
    local_after = _timed_build(client, manifest, out / "bench-local-again.zarr", config, cps, workers)
    if remote_run["fingerprint"] != local_before["fingerprint"]:
        raise BuildError(f"the store built from {redact_uri(str(remote.root))} differs from the local build "
                         f"({remote_run['fingerprint'][:12]} vs {local_before['fingerprint'][:12]}): this is "
                         "a bug of ours, please report it")
    local = (local_before["clips_per_s"] + local_after["clips_per_s"]) / 2
    return {"bucket_root": redact_uri(str(remote.root)), "bucket_workers": len(workers),
            "bucket_clips_per_s": remote_run["clips_per_s"], "local_clips_per_s": local,
            "local_before_clips_per_s": local_before["clips_per_s"],
            "local_after_clips_per_s": local_after["clips_per_s"],
            "bucket_fraction": remote_run["clips_per_s"] / local if local > 0 else 0.0,
            "bucket_failed_clips": remote_run["n_failed"]}


def format_figures(f: dict[str, Any]) -> str:
    ok = lambda good: "meets target" if good else "MISSES target"  # noqa: E731
    lines = [
        f"demo store: {f['clips']} clips of {f['clip_seconds']:g} s ({f['augmented_clips']} with "
        f"{len(f['variants']) - 1} augmented variants), {f['clips_per_shard']} clips/shard",
    ]
    if "serial_clips_per_s" in f:
        lines.append(f"serial      {f['serial_clips_per_s']:.3f} clips/s in one plain process "
                     f"({f['serial_before_clips_per_s']:.3f} before the cluster runs, "
                     f"{f['serial_after_clips_per_s']:.3f} after; {f['serial_cpu_s_per_clip']:.3f} core-s per clip; "
                     f"the per-core limit), peak {f['serial_peak_rss_mib']:.0f} MiB")
    for n in (1, 2):
        if f"clips_per_s_{n}" not in f:
            continue
        eff = (f"efficiency {f[f'efficiency_{n}']:.2f} ({ok(f[f'efficiency_{n}'] >= 0.9)} >= 0.9); "
               if f"efficiency_{n}" in f else "")
        lines.append(f"{n} worker{'s' if n > 1 else ' '}   {f[f'clips_per_s_{n}']:.3f} clips/s "
                     f"({f[f'seconds_{n}']:.1f} s); {eff}start-up {f[f'startup_s_{n}']:.1f} s, "
                     f"warm-up {f[f'warmup_s_{n}']:.1f} s, peak {f[f'peak_rss_mib_{n}']:.0f} MiB per worker, "
                     f"inside tasks {100 * f[f'worker_utilisation_{n}']:.0f}% of the time")
    if "scaling" in f:
        lines.append(f"scaling     {f['scaling']:.2f}x (2 workers / 1 worker)")
    if "bucket_clips_per_s" in f:
        lines.append(f"bucket      {f['bucket_clips_per_s']:.3f} clips/s from {f['bucket_root']} on "
                     f"{f['bucket_workers']} worker(s), against {f['local_clips_per_s']:.3f} from the local folder "
                     f"({f['local_before_clips_per_s']:.3f} before, {f['local_after_clips_per_s']:.3f} after): "
                     f"{100 * f['bucket_fraction']:.0f}% ({ok(f['bucket_fraction'] >= 0.9)} >= 90%), "
                     "the same store fingerprint")
    lines += [
        f"per clip    {f['extract_s_per_clip']:.2f} s decode+extract, {f['write_s_per_clip']:.3f} s store write "
        "(inside the tasks)",
        f"store       {f['bytes_per_clip_variant'] / 1024:.1f} KiB per clip-variant, "
        f"{f['fraction_of_float32']:.3f} of raw float32 ({ok(f['fraction_of_float32'] <= 0.35)} <= 0.35)",
        f"conditions  {f['cpu_count']} CPUs, load average {f['load_average_1min']:.1f} at the end; {f['scheduler']}",
    ]
    return "\n".join(lines)
