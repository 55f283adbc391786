"""``pipeline bench update``: what growing a store costs against building the new clips alone.

Measured in one run, on demo clips (all the same length):

1. ``alone_s``: a fresh build of only the ``new`` clips (into its own store);
2. ``update_s``: ``build --update`` of a store of ``base`` clips with the
   collection grown by the same ``new`` clips: only those are decoded and
   computed, into new shards, as a new version;
   ``update_ratio`` = update_s / alone_s (goal <= 1.1) and ``update_fixed_s`` =
   update_s - alone_s (goal < 5 s: reading the store's clip table, the split
   rule, the transaction, the commit);
3. ``noop_update_s``: the same ``--update`` again, nothing to add (goal < 5 s;
   the store's size is ``base + new`` clips).

:func:`run_noop_bench` measures the no-op update at the goal's size (25,000
clips): a folder collection of that many short clips (1 s, 8 kHz 8-bit WAV,
so that the files fit a laptop's disk), its store (the original variant
only: a no-op update reads the store's tables, not its features), then
``pipeline build --dataset folder --update`` as a user runs it, in a fresh
process (imports, the walk of the folder, the store's tables), timed whole.

Alone and update run in that order and then again in the other order
(``--repeats``), on fresh stores, and the medians are reported, because a
shared machine's speed drifts. The loader's rate on a versioned store against
the same files unversioned is measured by the command (it needs torch;
:func:`bench.model.stream_rates`, 6 alternated timings of each):
``store_uri`` is the grown store, ``plain_uri`` a copy of its first version
without version files (what a store built before versions is).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd  # the stored clip table the split rule reads

from pipeline.build import build_store
from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig, WindowConfig
from pipeline.datasets import load_manifest
from pipeline.datasets.demo_synth import GENRES
from pipeline.errors import ConfigError
from pipeline.isolation import ClipLimits
from pipeline.build.update import plan_growth
from stores import schema
from stores.versions import HEAD_HINT, MACHINERY_PREFIXES

logger = logging.getLogger(__name__)
#: The repository root: the fresh process imports this checkout's packages.
_REPO = str(Path(__file__).resolve().parents[1])


def run_update_bench(out: str | Path, base: int = 200, new: int = 20, *, seconds: float = 2.0, workers: int = 0,
                     repeats: int = 2) -> dict[str, Any]:
    """Time an update of ``new`` clips against a build of those clips alone (see the module docstring).

    Parameters
    ----------
    base, new : demo clips in the store before the update, and added by it.
    seconds : length of each demo clip.
    workers : 0 (serial, in this process: the steadiest timing) or a LocalCluster size.
    repeats : timed pairs (alone, update), alternating which goes first.
    out : folder for the audio and stores.
    """
    if base <= 0 or new <= 0 or repeats <= 0:
        raise ConfigError(f"--base={base}, --new={new} and --repeats={repeats} must be positive")
    folder = Path(out)
    per_genre = -(-(base + new) // len(GENRES))
    manifest = load_manifest("demo", folder / "audio", clips_per_genre=per_genre, clip_seconds=seconds)
    ranked = sorted(manifest.clips, key=lambda c: hashlib.sha256(c.clip_id.encode()).hexdigest())
    grown = dataclasses.replace(manifest, clips=tuple(ranked[:base + new]))
    added = {c.clip_id for c in ranked[base:base + new]}
    before = dataclasses.replace(grown, clips=tuple(c for c in grown.clips if c.clip_id not in added))
    # the new clips with the splits the update gives them (the split rule of pipeline.build.update), so that
    # both builds compute the same variants
    stored = pd.DataFrame([dataclasses.asdict(c) for c in before.clips])
    alone = dataclasses.replace(grown, clips=plan_growth(grown, stored, split_scheme=grown.split_scheme).new)
    config = PipelineConfig(audio=AudioConfig(clip_seconds=seconds))
    kw = dict(config=config, workers=workers, progress=False, max_failures=1.0)

    def timed(run: Any) -> float:
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0

    alone_s, update_s, noop_s = [], [], []
    store = folder / "grown-0.zarr"
    for r in range(repeats):
        store = folder / f"grown-{r}.zarr"
        first = build_store(before, store, **kw).version  # not timed: the store as it was
        # in shards of the grown store's size: the same per-shard work as the update's
        cps = schema.auto_clips_per_shard(len(before))
        pair = [("alone", lambda r=r: build_store(alone, folder / f"alone-{r}.zarr", clips_per_shard=cps, **kw)),
                ("update", lambda s=store: build_store(grown, s, update=True, **kw))]
        for name, run in (pair if r % 2 == 0 else pair[::-1]):
            (alone_s if name == "alone" else update_s).append(timed(run))
        noop_s.append(timed(lambda s=store: build_store(grown, s, update=True, **kw)))
    plain = folder / "plain.zarr"
    # without the version layer's own objects (stores.versions)
    layer = [prefix.rstrip("/") for prefix in MACHINERY_PREFIXES] + [HEAD_HINT]
    shutil.copytree(store, plain, ignore=shutil.ignore_patterns(*layer))
    a, u = statistics.median(alone_s), statistics.median(update_s)
    figures = {
        "base_clips": base, "new_clips": new, "clip_seconds": seconds, "workers": workers, "repeats": repeats,
        "alone_s": a, "update_s": u, "update_ratio": u / a, "update_fixed_s": u - a,
        "noop_update_s": statistics.median(noop_s), "store_clips": base + new,
        "alone_runs_s": alone_s, "update_runs_s": update_s, "noop_runs_s": noop_s,
        # the same files read through the version layer and as a store without versions
        "store_uri": f"{store}@{first}", "plain_uri": str(plain),
    }
    return figures


def format_update_figures(f: dict[str, Any]) -> str:
    lines = [
        f"update of {f['new_clips']} clips into a store of {f['base_clips']} ({f['clip_seconds']:g} s clips, "
        f"workers={f['workers']}, median of {f['repeats']}):",
        f"  build of the {f['new_clips']} clips alone  {f['alone_s']:.2f} s",
        f"  --update adding them            {f['update_s']:.2f} s  ratio {f['update_ratio']:.2f} (goal <= 1.1), "
        f"fixed part {f['update_fixed_s']:.2f} s (goal < 5 s)",
        f"  no-op --update ({f['store_clips']} clips)    {f['noop_update_s']:.2f} s (goal < 5 s)",
    ]
    if "loader_versioned_windows_per_s" in f:
        runs = len(f.get("loader_runs_windows_per_s", {}).get("versioned", ()))
        lines.append(f"  loader: versioned {f['loader_versioned_windows_per_s']:,.0f} windows/s, unversioned "
                     f"{f['loader_plain_windows_per_s']:,.0f} windows/s (medians of {runs} alternated), "
                     f"ratio {f['loader_ratio']:.2f} (goal >= 0.9)")
    return "\n".join(lines)


def write_short_collection(root: Path, clips: int, *, seconds: float, labels: int = 10) -> None:
    """``clips`` WAV files of ``seconds`` (8 kHz, 8-bit: a tone and some noise) as ``root/<label>/<n>.wav``."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    sr = 8000
    t = np.arange(int(round(seconds * sr))) / sr
    for i in range(clips):
        folder = root / f"label{i % labels:02d}"
        if i < labels:
            folder.mkdir(parents=True, exist_ok=True)
        y = 0.4 * np.sin(2 * np.pi * (100 + (i % 997)) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"{i:06d}.wav", y.astype(np.float32), sr, subtype="PCM_U8")


def run_noop_bench(out: str | Path, clips: int = 25000, *, seconds: float = 1.0, workers: int = 2,
                   repeats: int = 3) -> dict[str, Any]:
    """Time a no-op ``pipeline build --update`` of a store of ``clips`` clips (see the module docstring).

    Returns the setup's figures (writing the files, building the store) and
    each timed run: ``noop_cli_s`` the whole command in a fresh process, and
    in this process ``noop_manifest_s`` (walking the folder) and
    ``noop_build_s`` (the update itself: reading the store, nothing to do).
    """
    if clips <= 0 or repeats <= 0 or seconds <= 0:
        raise ConfigError(f"--noop-clips={clips}, --repeats={repeats} and --seconds={seconds} must be positive")
    folder = Path(out)
    root, store, config_file = folder / "collection", folder / "noop.zarr", folder / "config.toml"
    t0 = time.perf_counter()
    marker = folder / f"collection-{clips}-{seconds:g}s.done"
    if not marker.is_file():  # a kept folder (--noop-folder) is written once
        shutil.rmtree(root, ignore_errors=True)
        write_short_collection(root, clips, seconds=seconds)
        marker.touch()
    write_s = time.perf_counter() - t0
    config = PipelineConfig(audio=AudioConfig(clip_seconds=seconds), window=WindowConfig(window_seconds=seconds),
                            augment=AugmentConfig(variants=()))
    config_file.write_text(f"[audio]\nclip_seconds = {seconds}\n[window]\nwindow_seconds = {seconds}\n"
                           "[augment]\nvariants = []\n")
    t0 = time.perf_counter()
    manifest = load_manifest("folder", root)
    # the setup (a kept store is only checked; it resumes if it was interrupted), not timed: no sandbox per clip
    built = build_store(manifest, store, config=config, workers=workers, progress=False,
                        clip_limits=ClipLimits(isolate=False))
    build_s = time.perf_counter() - t0
    command = [sys.executable, "-c", "import sys; from workflows.cli import main; sys.exit(main())", "build", "--dataset", "folder", "--root", str(root),
               "--out", str(store), "--config", str(config_file), "--update", "--workers", str(workers)]
    cli_s, manifest_s, update_s = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _REPO})
        cli_s.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"the no-op update failed ({done.returncode}): {done.stderr[-2000:]}")
        t0 = time.perf_counter()
        manifest = load_manifest("folder", root)
        manifest_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = build_store(manifest, store, config=config, workers=workers, progress=False, update=True)
        update_s.append(time.perf_counter() - t0)
        if report.clips_built or report.version != built.version:
            raise RuntimeError(f"the no-op update built {report.clips_built} clips / committed {report.version}")
    return {"noop_store_clips": built.n_clips, "noop_clip_seconds": seconds, "noop_workers": workers,
            "noop_write_files_s": write_s, "noop_build_store_s": build_s, "noop_cli_s": statistics.median(cli_s),
            "noop_manifest_s": statistics.median(manifest_s), "noop_build_s": statistics.median(update_s),
            "noop_cli_runs_s": cli_s, "noop_manifest_runs_s": manifest_s, "noop_build_runs_s": update_s}


def format_noop_figures(f: dict[str, Any]) -> str:
    return "\n".join([
        f"no-op --update of a {f['noop_store_clips']:,}-clip store ({f['noop_clip_seconds']:g} s clips, folder dataset, "
        f"median of {len(f['noop_cli_runs_s'])}):",
        f"  the command, in a fresh process   {f['noop_cli_s']:.2f} s (goal < 5 s)",
        f"  of which, in one process: walking the folder {f['noop_manifest_s']:.2f} s, "
        f"the update {f['noop_build_s']:.2f} s",
        f"  (setup, not timed against the goal: writing the files {f['noop_write_files_s']:.0f} s, "
        f"building the store {f['noop_build_store_s']:.0f} s)",
    ])
