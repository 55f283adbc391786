"""``pipeline bench build``: build throughput on 1 and 2 workers, and store size.

What is measured
----------------
The same demo manifest is built twice, into fresh stores: on a cluster of
one single-threaded worker process, then of two. Each cluster is started and
*warmed* first (every worker imports the DSP stack and runs one short clip
through every variant, so numba compilation and imports are not timed); the
clock runs from submitting the first shard task to the finalized store, so
the figures include the Dask scheduling, the store writes and the
finalization, but not cluster start-up. Beside them, the per-clip cost of the
extraction alone (timed inside the tasks) gives the overhead of the
distributed build: store writes, scheduling, creation and finalization.

Figures (``--json FILE`` keys): ``clips_per_s_1``, ``clips_per_s_2``,
``scaling`` (= 2-worker / 1-worker rate; target >= 1.8),
``bytes_per_clip_variant`` (stored bytes / clip-variants computed) and
``fraction_of_float32`` (stored bytes / the same valid frames in raw
float32; target <= 0.35), plus the conditions they were taken under.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.build import build_store
from pipeline.config import PipelineConfig
from pipeline.datasets.base import Manifest
from pipeline.errors import BuildError

logger = logging.getLogger(__name__)

#: Seconds of each demo clip: GTZAN's clip length, so per-clip figures compare.
DEMO_CLIP_SECONDS = 30.0


def warm_worker(config: PipelineConfig) -> float:
    """Run one short synthetic signal through every variant (imports, JIT); return seconds."""
    from pipeline.dsp.augment import apply_augmentation, draw_params
    from pipeline.extract import features_of_signal

    t0 = time.perf_counter()
    sr = config.audio.sample_rate
    t = np.arange(int(max(config.window.window_seconds, 4.0) * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    features_of_signal(y, config)
    for variant in config.augment.variants:
        features_of_signal(apply_augmentation(variant, y, sr=sr, params=draw_params(
            variant, clip_id="warm-up", cfg=config.augment)), config)
    return time.perf_counter() - t0


def demo_manifest(n_clips: int, root: Path) -> Manifest:
    """The first ``n_clips`` clips of the demo dataset (audio generated into ``root`` once)."""
    from pipeline.datasets import list_datasets, load_manifest
    from pipeline.datasets.demo_synth import GENRES

    if "demo" not in list_datasets():
        raise BuildError("the demo dataset adapter is not registered; cannot run the build benchmark")
    manifest = load_manifest("demo", root, clips_per_genre=max(1, math.ceil(n_clips / len(GENRES))),
                             clip_seconds=DEMO_CLIP_SECONDS)
    return manifest.balanced_head(n_clips)  # every genre and split in any size


def _timed_build(client, manifest: Manifest, out: Path, config: PipelineConfig, cps: int,
                 workers: list[str]) -> dict[str, Any]:
    """Warm ``workers``, then build ``manifest`` on them only; return the figures."""
    warm = client.run(warm_worker, config, workers=workers)
    logger.info("warmed %d worker(s): %s", len(warm), {w: f"{s:.1f}s" for w, s in warm.items()})
    summary = build_store(manifest, out, config=config, scheduler=client, clips_per_shard=cps, overwrite=True,
                          progress=True, worker_addresses=workers, max_failures=1.0)
    return {"workers": len(workers), "clips_per_s": summary.clips_per_s, "seconds": summary.build_seconds,
            "n_failed": summary.n_failed, "uri": out,
            "extract_seconds": summary.task_seconds - summary.write_seconds,
            "task_seconds": summary.task_seconds,
            "write_seconds": summary.write_seconds}


def run_bench(n_clips: int = 40, *, scheduler: str | None = None, out: str | Path | None = None,
              config: PipelineConfig | None = None) -> dict[str, Any]:
    """Build the demo store on 1 and on 2 workers; return the figures (see the module docstring)."""
    import distributed

    from pipeline.build import _SINGLE_THREAD_ENV, dask_client
    from stores import open_store
    from stores.checks import store_info

    config = config or PipelineConfig()
    if n_clips < 4:
        raise BuildError(f"--clips={n_clips}: the build benchmark needs at least 4 clips")
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-build-")
        out = tmp.name
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        manifest = demo_manifest(n_clips, out / "demo-audio")
        # At least 4 shards per worker of the 2-worker run, so the last shard
        # does not leave a worker idle for long; at most the default 16.
        cps = max(1, min(16, n_clips // 8))
        results = {}
        for n_workers in (1, 2):
            with dask_client(n_workers, scheduler) as client:  # n_workers is ignored with a scheduler
                available = sorted(client.scheduler_info(n_workers=-1)["workers"])
                if len(available) < n_workers:
                    raise BuildError(
                        f"the cluster at {scheduler} has {len(available)} worker(s); the benchmark needs 2"
                    )
                results[n_workers] = _timed_build(client, manifest, out / f"bench-{n_workers}.zarr", config, cps,
                                                  available[:n_workers])
        store = open_store(results[2]["uri"])
        info = store_info(results[2]["uri"])
        rate1, rate2 = results[1]["clips_per_s"], results[2]["clips_per_s"]
        figures = {
            "clips": n_clips,
            "clips_per_shard": cps,
            "clip_seconds": DEMO_CLIP_SECONDS,
            "variants": list(config.augment.variant_names),
            "augmented_clips": int((store.valid_frames[:, 1:] > 0).any(axis=1).sum()) if len(store.variants) > 1 else 0,
            "failed_clips": results[2]["n_failed"],
            "clips_per_s_1": rate1,
            "clips_per_s_2": rate2,
            "seconds_1": results[1]["seconds"],
            "seconds_2": results[2]["seconds"],
            "scaling": rate2 / rate1 if rate1 > 0 else float("nan"),
            "extract_s_per_clip": results[1]["extract_seconds"] / n_clips,
            "write_s_per_clip": results[1]["write_seconds"] / n_clips,
            # Everything a 1-worker build spends beyond decoding and extracting:
            # store writes, Dask scheduling, store creation and finalization.
            "overhead_1_worker": results[1]["seconds"] / results[1]["extract_seconds"] - 1.0,
            # Share of the wall time the workers spent inside tasks: near 1
            # means Dask kept them busy, so a scaling below 2 comes from the
            # tasks themselves running slower (CPU contention), not scheduling.
            "worker_utilisation_2": results[2]["task_seconds"] / (2 * results[2]["seconds"]),
            "bytes_per_clip_variant": info["bytes_per_clip_variant"],
            "fraction_of_float32": info["fraction_of_float32"],
            "store_bytes": info["nbytes_stored"],
            "scheduler": scheduler or "LocalCluster (in-process, worker processes, 1 thread each)",
            "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "thread_env": _SINGLE_THREAD_ENV,
            "distributed_version": distributed.__version__,
        }
        return figures
    finally:
        if tmp is not None:
            tmp.cleanup()


def format_figures(f: dict[str, Any]) -> str:
    ok = lambda good: "meets target" if good else "MISSES target"  # noqa: E731
    return "\n".join([
        f"demo store: {f['clips']} clips of {f['clip_seconds']:g} s ({f['augmented_clips']} with "
        f"{len(f['variants']) - 1} augmented variants), {f['clips_per_shard']} clips/shard",
        f"1 worker    {f['clips_per_s_1']:.3f} clips/s ({f['seconds_1']:.1f} s)",
        f"2 workers   {f['clips_per_s_2']:.3f} clips/s ({f['seconds_2']:.1f} s)",
        f"scaling     {f['scaling']:.2f}x  ({ok(f['scaling'] >= 1.8)} >= 1.8); the 2 workers were inside tasks "
        f"{100 * f['worker_utilisation_2']:.0f}% of the time",
        f"per clip    {f['extract_s_per_clip']:.2f} s decode+extract, {f['write_s_per_clip']:.3f} s store write; "
        f"1-worker build overhead beyond extraction {100 * f['overhead_1_worker']:+.1f}% (target <= 15%)",
        f"store       {f['bytes_per_clip_variant'] / 1024:.1f} KiB per clip-variant, "
        f"{f['fraction_of_float32']:.3f} of raw float32 ({ok(f['fraction_of_float32'] <= 0.35)} <= 0.35)",
        f"conditions  {f['cpu_count']} CPUs, load average {f['load_average_1min']:.1f} at the end; {f['scheduler']}",
    ])


def bench_build_cli(args: argparse.Namespace) -> int:
    """``pipeline bench build [--clips N] [--scheduler ADDR] [--out DIR] [--json FILE]``."""
    figures = run_bench(args.clips, scheduler=args.scheduler, out=args.out)
    print(format_figures(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0
