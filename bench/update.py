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
   the store's size is ``base + new`` clips: pass many short clips for a large store).

Alone and update run in that order and then again in the other order
(``--repeats``), on fresh stores, and the medians are reported, because a
shared machine's speed drifts. The loader's rate on a versioned store against
the same files unversioned is measured by the command (it needs torch):
``store_uri`` is the grown store, ``plain_uri`` a copy of its first version
without version files (what a store built before versions is).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd  # the stored clip table the split rule reads

from pipeline.build import build_store
from pipeline.config import AudioConfig, PipelineConfig
from pipeline.datasets import load_manifest
from pipeline.datasets.demo_synth import GENRES
from pipeline.errors import ConfigError
from pipeline.build.update import plan_growth
from stores import schema
from stores.versions import HEAD_HINT, MACHINERY_PREFIXES

logger = logging.getLogger(__name__)


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
        lines.append(f"  loader: versioned {f['loader_versioned_windows_per_s']:,.0f} windows/s, unversioned "
                     f"{f['loader_plain_windows_per_s']:,.0f} windows/s, ratio {f['loader_ratio']:.2f} (goal >= 0.9)")
    return "\n".join(lines)
