"""``pipeline demo`` (``make demo``): the whole system on the synthetic demo set.

Runs the shipped ``demo`` recipe: generate the demo audio, build its store on
a local Dask cluster of 2 worker processes, train the DFN and the baselines
the recipe lists, evaluate them on the test split, write the report, then
print where it is, the headline numbers and the store's ``pipeline info``.
It is sized (clips, clip length, epochs) to finish in under 10 minutes on a
2-core machine; a rerun skips every finished stage.
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Callable, Sequence

from stores.checks import format_info, store_info
from workflows.recipe import load_recipe
from workflows.runner import RunResult, load_run_manifest, run_recipe

logger = logging.getLogger(__name__)


def headline_lines(result: RunResult) -> list[str]:
    """One line per model: clip and window accuracy and macro-F1, with the split."""
    lines = []
    split = result.results.get("split", "test")
    for m in result.results.get("models") or []:
        c, w = m["clip"], m["window"]
        fmt = lambda v: "  n/a" if v is None else f"{100 * v:5.1f}%"  # noqa: E731
        lines.append(f"  {m['name']:<24} clip acc {fmt(c['accuracy'])}  clip macro-F1 {fmt(c['macro_f1'])}  "
                     f"window acc {fmt(w['accuracy'])}   ({split} split)")
    return lines


def store_info_text(uri: str) -> str:
    """The store summary ``pipeline info URI`` prints."""
    return format_info(store_info(uri))


def run_demo(out: str | Path = "runs/demo", *, overrides: Sequence[str] = (),
             echo: Callable[[str], None] = print) -> RunResult:
    """Run the demo recipe into ``out`` and print the headline numbers.

    Parameters
    ----------
    out : run folder; the store goes to ``<out>/../stores``.
    overrides : ``--set`` pairs applied to the demo recipe.
    echo : where progress and the summary go.
    """
    start = time.perf_counter()
    recipe = load_recipe("demo", list(overrides))
    d = recipe.dataset.demo
    echo(f"demo: {d.clips_per_genre} clips per genre of {d.clip_seconds:g} s synthetic audio (seed {d.seed}); "
         f"models {', '.join(recipe.train.models)}; {recipe.train.settings.epochs} epochs; "
         f"{recipe.build.workers} Dask workers")
    result = run_recipe(recipe, out, echo=echo)
    wall = time.perf_counter() - start
    echo("")
    echo(f"demo finished in {wall / 60:.1f} min; report: {result.report.resolve()}")
    echo("headline numbers (synthetic demo data; not comparable with the paper's GTZAN/FMA figures):")
    for line in headline_lines(result):
        echo(line)
    echo("")
    uri = result.results["store"]["uri"]
    echo(f"$ pipeline info {uri}")
    echo(store_info_text(uri))
    command = predict_command_line(result, recipe)
    if command:
        echo("")
        echo("classify an audio file with the model just trained (any file ffmpeg decodes; here a test clip):")
        echo(f"$ {command}")
    return result


def predict_command_line(result: RunResult, recipe) -> str:
    """The exact ``pipeline predict`` command for the run's DFN checkpoint (else its first model's)
    on one of its test clips; "" when no model was trained."""

    models = list(recipe.train.models)
    if not models:
        return ""
    name = "dfn" if "dfn" in models else models[0]
    checkpoint = Path(result.out) / "models" / name / "checkpoint"
    if not checkpoint.is_dir():
        return ""
    manifest = load_run_manifest(recipe)
    clip = next((c for c in manifest.clips if c.split == "test"), manifest.clips[0])
    audio = Path(manifest.root) / clip.path
    return (f"pipeline predict --checkpoint {shlex.quote(str(checkpoint.resolve()))} "
            f"{shlex.quote(str(audio.resolve()))}")
