"""One runner for every recipe: build -> train -> evaluate -> (noise | latency) -> report.

Every step is a stage of :mod:`workflows.stages`: it records its inputs'
hash when it finishes and is skipped on the next run when they have not
changed. Nothing here computes features, trains or scores by itself: the
stages call the library functions of :mod:`pipeline`, :mod:`stores` and
:mod:`model` (and :mod:`workflows.noise` for the noisy test set, which itself
goes through the pipeline's decode and feature functions).

Folder layout of a run (``out``)::

    out/
      recipe.json            the validated recipe, overrides applied
      results.json           everything the report shows
      report.md, figures/    the report
      build/stage.json       where the store is, its fingerprint
      models/<name>/         checkpoint + training log (stage.json)
      models/<name>/eval-<split>/   metrics.json, confusion matrix (stage.json)
      cv/fold-<k>/<name>/    cross-validation trainings and evaluations
      noise/, latency/       the extra experiments

The store itself lives in ``store_dir`` (default ``<out>/../stores``), named
by dataset, split scheme and config hash, so every recipe run on the same
data and config shares one store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from bench.model import latency as bench_latency
from model.checkpoint import checkpoint_file, store_version
from model.config import TrainConfig
from model.evaluate import evaluate
from model.networks import NON_NEURAL, PRESETS
from model.runtime import torch_threads
from model.train import train
from pipeline.build import build_store
from pipeline.datasets import load_manifest
from pipeline.errors import PROJECT_ERRORS, BuildError, ConfigError
from stores import open_store
from stores.protocol import ReadableStore
from workflows.noise import noisy_accuracy
from workflows.recipe import Recipe
from workflows.report import render_report
from workflows.stages import StageOutcome, inputs_hash, read_record, run_stage

logger = logging.getLogger(__name__)

Echo = Callable[[str], None]

#: Fold scheme used by cross-validation when the recipe leaves the split empty:
#: artist-grouped where the adapter knows artists (demo; FMA's "folds" are
#: artist-grouped already), stratified otherwise (GTZAN has no artist list).
CV_SPLITS: dict[str, str] = {"demo": "artist-folds"}

#: The macro averages kept of each evaluation level (window, clip).
METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "macro_precision", "macro_recall")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a finished run produced.

    out : the run folder.
    report : ``out/report.md``.
    figures : PNG files of the report.
    results : the mapping the report was rendered from (also ``results.json``).
    stages : every stage with whether it ran or was skipped.
    """

    out: Path
    report: Path
    figures: tuple[Path, ...]
    results: dict[str, Any]
    stages: tuple[StageOutcome, ...]


# -- the store ---------------------------------------------------------------

def split_scheme(recipe: Recipe) -> str:
    """The dataset split scheme the run uses ("" = the adapter's default)."""
    if recipe.kind == "cross-validation" and not recipe.dataset.split:
        return CV_SPLITS.get(recipe.dataset.name, "folds")
    return recipe.dataset.split_scheme


def manifest_options(recipe: Recipe) -> dict[str, Any]:
    """Keyword options for :func:`pipeline.datasets.load_manifest`."""
    options: dict[str, Any] = {}
    if recipe.dataset.name == "demo":
        options.update(dataclasses.asdict(recipe.dataset.demo))
    if "folds" in split_scheme(recipe):
        options["n_folds"] = recipe.cv.folds
    return options


def load_run_manifest(recipe: Recipe):
    """The recipe's manifest (first ``dataset.limit`` clips when set)."""
    root = recipe.dataset.root or None
    manifest = load_manifest(recipe.dataset.name, root, split=split_scheme(recipe) or None,
                             **manifest_options(recipe))
    if recipe.dataset.limit:
        manifest = manifest.head(recipe.dataset.limit)
    return manifest


def store_uri(recipe: Recipe, store_dir: Path) -> str:
    """Where the recipe's store lives: ``build.store`` or a content-named folder."""
    if recipe.build.store:
        return recipe.build.store
    cfg_hash = recipe.pipeline_config().config_hash()
    options = manifest_options(recipe)
    tag = inputs_hash({"options": options, "limit": recipe.dataset.limit, "root": recipe.dataset.root})[:8]
    scheme = split_scheme(recipe) or "default"
    return str(Path(store_dir) / f"{recipe.dataset.name}-{scheme}-{cfg_hash[:10]}-{tag}.zarr")


def _store_facts(store: ReadableStore) -> dict[str, Any]:
    clips = store.clips
    ok = clips.iloc[store.select()]  # the ok clips
    counts: dict[str, int] = {}
    for split, n in ok["split"].value_counts().sort_index().items():
        if str(split):  # a fold store leaves every split empty; its folds are counted below
            counts[str(split)] = int(n)
    if (ok["fold"] >= 0).any():
        for fold, n in ok["fold"].value_counts().sort_index().items():
            counts[f"fold {int(fold)}"] = int(n)
    return {
        "fingerprint": str(store.fingerprint),
        "version": store_version(store).get("version", ""),
        "config_hash": str(store.config_hash),
        "labels": [str(x) for x in store.labels],
        "clips": counts,
        "n_ok": int(len(ok)),
        "n_failed": int((clips["clip_id"] != "").sum() - len(ok)),  # padding rows of a grown store are no clips
    }


def build_stage(recipe: Recipe, out: Path, store_dir: Path, echo: Echo) -> StageOutcome:
    """Build the store, or reuse it when a matching one exists (the builder
    skips finished shards and refuses a store with another config)."""
    uri = store_uri(recipe, store_dir)
    cfg = recipe.pipeline_config()
    inputs = {
        "dataset": recipe.dataset.name,
        "root": str(Path(recipe.dataset.root).resolve()) if recipe.dataset.root else "",
        "split": split_scheme(recipe),
        "options": manifest_options(recipe),
        "limit": recipe.dataset.limit,
        "config_hash": cfg.config_hash(),
        "store": uri,
    }

    def build(folder: Path) -> dict[str, Any]:
        manifest = load_run_manifest(recipe)
        echo(f"      {len(manifest)} clips of {manifest.dataset} ({manifest.split_scheme or 'default'} split) "
             f"-> {uri}")
        summary = build_store(
            manifest, uri, config=cfg,
            workers=recipe.build.workers,
            scheduler=recipe.build.scheduler or None,
            max_failures=_max_failures(recipe.build.max_failures),
            progress=True,
        )
        if summary.failures_exceeded:
            raise BuildError(f"building {uri}: too many failed clips (build.max_failures="
                             f"{recipe.build.max_failures}):\n{summary.report()}")
        facts = _store_facts(open_store(uri))
        facts.update(uri=uri, dataset=manifest.dataset, split_scheme=manifest.split_scheme,
                     build_summary=_jsonable(summary.to_dict()))
        return facts

    outcome = run_stage("build", out / "build", inputs, build, echo=echo)
    if outcome.skipped:
        # The record says the store was finished; make sure it still is the same store.
        try:
            fingerprint = str(open_store(uri).fingerprint)
        except PROJECT_ERRORS as exc:
            echo(f"      the recorded store {uri} cannot be opened ({exc}); building again")
            return run_stage("build", out / "build", inputs, build, echo=echo, force=True)
        if fingerprint != outcome.result.get("fingerprint"):
            echo(f"      the store at {uri} changed since it was recorded; building again")
            return run_stage("build", out / "build", inputs, build, echo=echo, force=True)
    return outcome


def _max_failures(value: float) -> float | int:
    return int(value) if value >= 1 else float(value)


def _jsonable(obj: Any) -> Any:
    """A builder summary (dataclass or mapping) as plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, default=str))


# -- training and evaluation ------------------------------------------------------

def train_settings(recipe: Recipe) -> dict[str, Any]:
    """The recipe's training settings, as the stage inputs record them."""
    # The seven settings every recorded stage has, and any other that differs
    # from the trainer's default (a recipe cannot set the runner's own: model,
    # folds, progress), so stages recorded before recipes held every trainer
    # option keep their inputs hash. Threads change the speed, not the result.
    settings = recipe.train.settings.to_dict()
    defaults = TrainConfig().to_dict()
    recorded = ("epochs", "batch_size", "lr", "patience", "seed", "device", "loader_workers")
    return {k: v for k, v in settings.items() if k in recorded or (k != "threads" and v != defaults[k])}


def train_stage(recipe: Recipe, model: str, store: Mapping[str, Any], folder: Path, echo: Echo,
                *, roles: Mapping[int, str] | None = None) -> StageOutcome:
    """Train one model into ``folder/checkpoint``.

    ``roles`` (fold -> split) trains on a cross-validation round of a fold
    store (train and validation by fold). A training interrupted with the
    same inputs is resumed from its last checkpoint; one begun with other
    inputs is discarded first.
    """
    inputs = {"model": model, "store": store["fingerprint"], "train": train_settings(recipe),
              "roles": {str(k): v for k, v in sorted((roles or {}).items())}}
    pending = folder / "pending.json"

    def run(stage_dir: Path) -> dict[str, Any]:
        ckpt = stage_dir / "checkpoint"
        resume = False
        if ckpt.exists():
            same = pending.is_file() and json.loads(pending.read_text()).get("hash") == inputs_hash(inputs)
            if same and (ckpt / "checkpoint.pt").is_file():
                echo(f"      resuming the interrupted training in {ckpt}")
                resume = True
            else:
                echo(f"      discarding {ckpt}: it was trained with other inputs")
                shutil.rmtree(ckpt)
        pending.write_text(json.dumps({"hash": inputs_hash(inputs), "inputs": inputs}))
        options = dict(train_settings(recipe), progress=True)
        if roles:
            options.update(train_folds=tuple(sorted(f for f, r in roles.items() if r == "train")),
                           val_folds=tuple(sorted(f for f, r in roles.items() if r == "val")))
        start = time.perf_counter()
        with torch_threads(recipe.train.settings.threads):
            summary = train(store["uri"], model, ckpt, resume=resume, **options)
        return {"checkpoint": str(ckpt), "seconds": time.perf_counter() - start, "summary": _jsonable(summary),
                "checkpoint_sha256": checkpoint_digest(ckpt)}

    what = f"train {model}" + (f" (test fold {_test_fold(roles)})" if roles else "")
    return run_stage(what, folder, inputs, run, outputs=("checkpoint",), echo=echo)


def checkpoint_digest(folder: str | Path) -> str:
    """SHA-256 of the checkpoint file evaluation uses (``best.pt``), so an
    evaluation is redone whenever the weights it scored were replaced."""
    digest = hashlib.sha256()
    with open(checkpoint_file(folder), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _non_neural() -> tuple[str, ...]:
    return tuple(NON_NEURAL)


def round_roles(test_fold: int, n_folds: int) -> dict[int, str]:
    """Fold roles of one cross-validation round: test k, validation k+1 (mod n), train the rest."""
    if n_folds < 3 or not 0 <= test_fold < n_folds:
        raise ConfigError(f"test fold {test_fold} of {n_folds} folds: need n_folds >= 3 and 0 <= fold < n_folds")
    val = (test_fold + 1) % n_folds
    return {f: ("test" if f == test_fold else "val" if f == val else "train") for f in range(n_folds)}


def _test_fold(roles: Mapping[int, str] | None) -> int | None:
    return next((f for f, r in (roles or {}).items() if r == "test"), None)


def evaluate_stage(recipe: Recipe, model: str, store: Mapping[str, Any], trained: StageOutcome,
                   folder: Path, echo: Echo, *, roles: Mapping[int, str] | None = None) -> StageOutcome:
    """Evaluate a trained checkpoint on ``evaluate.split`` (or on the test fold of ``roles``)."""
    split = "test" if roles else recipe.evaluate.split
    inputs = {"model": model, "store": store["fingerprint"],
              "trained": read_record(trained.folder)["inputs_hash"],
              "weights": trained.result.get("checkpoint_sha256", ""),
              "split": split, "roles": {str(k): v for k, v in sorted((roles or {}).items())}}

    def run(stage_dir: Path) -> dict[str, Any]:
        if roles:
            kwargs: dict[str, Any] = {"folds": (_test_fold(roles),)}
        else:
            kwargs = {"split": split}
        with torch_threads(recipe.train.settings.threads):
            metrics = evaluate(trained.result["checkpoint"], store["uri"], stage_dir, **kwargs)
        return {"metrics": normalise_metrics(_jsonable(metrics))}

    where = f"test fold {_test_fold(roles)}" if roles else f"{split} split"
    return run_stage(f"evaluate {model} on {where}", folder, inputs, run, echo=echo)


def normalise_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluator's metrics JSON (:func:`model.evaluate.evaluate`) ->
    ``{"window": {...}, "clip": {...}, "confusion", "labels", "split"}``.

    Each level keeps the macro averages of :data:`METRICS` (None where the
    level does not apply: a fitted SVM has no window level); the confusion
    matrix is the clip level's.
    """
    def level(d: Mapping[str, Any] | None) -> dict[str, float | None]:
        d = d or {}
        return {k: None if d.get(k) is None else float(d[k]) for k in METRICS}

    clip = metrics.get("clip") or {}
    return {
        "window": level(metrics.get("window")),
        "clip": level(clip),
        "confusion": clip.get("confusion"),
        "labels": list(metrics.get("labels") or []),
        "split": metrics.get("split"),
    }


def read_curves(checkpoint: str | Path) -> list[dict[str, Any]]:
    """Per-epoch loss and validation accuracy from the trainer's ``metrics.jsonl``."""
    path = Path(checkpoint) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if "epoch" not in rec:
            continue
        rows.append({"epoch": rec["epoch"], "train_loss": rec.get("train_loss"), "val_loss": rec.get("val_loss"),
                     "val_accuracy": rec.get("val_acc"), "train_accuracy": rec.get("train_acc")})
    # A resumed training logs an epoch again: keep the last record of each.
    by_epoch = {r["epoch"]: r for r in rows}
    return [by_epoch[e] for e in sorted(by_epoch)]


def model_description(name: str) -> str:
    if name in PRESETS:
        return PRESETS[name].description
    return NON_NEURAL.get(name, "")


# -- experiments -----------------------------------------------------------------

def _train_and_evaluate(recipe: Recipe, store: Mapping[str, Any], out: Path, echo: Echo,
                        stages: list[StageOutcome]) -> tuple[list[dict[str, Any]], dict[str, StageOutcome]]:
    rows: list[dict[str, Any]] = []
    trained: dict[str, StageOutcome] = {}
    for name in recipe.train.models:
        t = train_stage(recipe, name, store, out / "models" / name, echo)
        e = evaluate_stage(recipe, name, store, t, out / "models" / name / f"eval-{recipe.evaluate.split}", echo)
        stages += [t, e]
        trained[name] = t
        m = e.result["metrics"]
        rows.append({"name": name, "description": model_description(name), "split": recipe.evaluate.split,
                     "window": m["window"], "clip": m["clip"], "confusion": m["confusion"],
                     "labels": m["labels"] or list(store["labels"]),
                     "curves": read_curves(t.result["checkpoint"]),
                     "train_seconds": t.result.get("seconds")})
        _echo_headline(echo, name, m, recipe.evaluate.split)
    return rows, trained


def _echo_headline(echo: Echo, name: str, m: Mapping[str, Any], where: str) -> None:
    w, c = m["window"], m["clip"]
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    echo(f"      {name}: {where}: clip accuracy {fmt(c['accuracy'])}, macro-F1 {fmt(c['macro_f1'])}; "
         f"window accuracy {fmt(w['accuracy'])}")


def _mean_std(folds: list[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for level in ("window", "clip"):
        mean[level], std[level] = {}, {}
        for key in METRICS:
            vals = [f[level][key] for f in folds if f[level].get(key) is not None]
            mean[level][key] = float(np.mean(vals)) if vals else None
            std[level][key] = float(np.std(vals)) if vals else None
    return mean, std


def _cross_validation(recipe: Recipe, store: Mapping[str, Any], out: Path, echo: Echo,
                      stages: list[StageOutcome]) -> dict[str, Any]:
    fold_counts = [k for k in store["clips"] if k.startswith("fold ")]
    if len(fold_counts) < recipe.cv.folds:
        raise ConfigError(
            f"cross-validation needs {recipe.cv.folds} folds but the store {store['uri']} has "
            f"{len(fold_counts)}; build it with a fold split (--set dataset.split=folds) or lower cv.folds"
        )
    result: dict[str, Any] = {}
    for name in recipe.train.models:
        folds_out = []
        for k in range(recipe.cv.folds):
            roles = round_roles(k, recipe.cv.folds)
            folder = out / "cv" / f"fold-{k}" / name
            t = train_stage(recipe, name, store, folder, echo, roles=roles)
            e = evaluate_stage(recipe, name, store, t, folder / "eval", echo, roles=roles)
            stages += [t, e]
            m = e.result["metrics"]
            folds_out.append({"fold": k, "window": m["window"], "clip": m["clip"]})
            _echo_headline(echo, name, m, f"test fold {k}")
        mean, std = _mean_std(folds_out)
        result[name] = {"folds": folds_out, "mean": mean, "std": std}
        echo(f"      {name}: {recipe.cv.folds}-fold clip accuracy "
             f"{100 * mean['clip']['accuracy']:.1f} ± {100 * std['clip']['accuracy']:.1f}%")
    return result


def _noise(recipe: Recipe, store: Mapping[str, Any], trained: Mapping[str, StageOutcome], out: Path,
           echo: Echo, stages: list[StageOutcome]) -> dict[str, Any]:
    inputs = {"store": store["fingerprint"], "split": recipe.evaluate.split,
              "snr_db": list(recipe.noise.snr_db), "seed": recipe.noise.seed,
              "max_clips": recipe.noise.max_clips, "root": recipe.dataset.root,
              "demo": dataclasses.asdict(recipe.dataset.demo),
              "models": {n: t.result.get("checkpoint_sha256", "") for n, t in trained.items()}}

    def run(folder: Path) -> dict[str, Any]:
        manifest = load_run_manifest(recipe)
        checkpoints = {n: t.result["checkpoint"] for n, t in trained.items()}
        with torch_threads(recipe.train.settings.threads):
            return {"noise": noisy_accuracy(checkpoints, store["uri"], manifest.root, split=recipe.evaluate.split,
                                            snr_db=recipe.noise.snr_db, seed=recipe.noise.seed,
                                            max_clips=recipe.noise.max_clips, echo=echo)}

    outcome = run_stage("noise robustness", out / "noise", inputs, run, echo=echo)
    stages.append(outcome)
    return outcome.result["noise"]


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:.1f} ms"


def _latency(recipe: Recipe, out: Path, echo: Echo, stages: list[StageOutcome]) -> dict[str, Any]:
    fitted = [m for m in recipe.train.models if m in _non_neural()]
    if fitted:
        raise ConfigError(f"the latency recipe benchmarks untrained torch networks; {fitted} are fitted models "
                          f"without one (use `pipeline bench predict --checkpoint DIR` on a trained one), "
                          f"so drop them from train.models")
    result: dict[str, Any] = {}
    cfg = recipe.pipeline_config()
    for name in recipe.train.models:
        result[name] = {}
        for device in recipe.latency.devices:
            if device == "cuda":
                import torch  # torch: the latency stage asks whether CUDA is there

                if not torch.cuda.is_available():
                    result[name][device] = {"absent": "no CUDA device on this machine"}
                    continue
            inputs = {"model": name, "device": device, "repeats": recipe.latency.repeats,
                      "config": cfg.config_hash()}

            def run(folder: Path, name: str = name, device: str = device) -> dict[str, Any]:
                return _jsonable(bench_latency(name, device=device, config=cfg, repeats=recipe.latency.repeats))

            outcome = run_stage(f"latency {name} on {device}", out / "latency" / name / device, inputs, run,
                                echo=echo)
            stages.append(outcome)
            result[name][device] = outcome.result
            r = outcome.result
            echo(f"      {name} on {device}: 30 s file {_ms(r.get('file_latency_s'))}, "
                 f"batch of {r.get('batch_size')} windows {_ms(r.get('batch_latency_s'))}")
    return result


# -- the run -----------------------------------------------------------------------

def run_recipe(recipe: Recipe, out: str | Path, *, store_dir: str | Path | None = None,
               echo: Echo | None = None) -> RunResult:
    """Run every stage of ``recipe`` into ``out`` and render the report.

    Parameters
    ----------
    recipe : a validated recipe (:func:`workflows.recipe.load_recipe`).
    out : the run folder (created); a rerun into the same folder skips the
        stages that finished with unchanged inputs.
    store_dir : where stores named by content live (default ``<out>/../stores``).
    echo : progress lines (default: the module logger).

    Returns
    -------
    RunResult
    """
    say: Echo = echo or logger.info
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store_dir = Path(store_dir) if store_dir is not None else out.parent / "stores"
    (out / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
    say(f"recipe {recipe.name} ({recipe.kind}) on {recipe.dataset.name}; output in {out}")
    start = time.perf_counter()
    stages: list[StageOutcome] = []

    results: dict[str, Any] = {"recipe": recipe.to_dict(), "kind": recipe.kind, "split": recipe.evaluate.split}
    if recipe.kind == "latency":
        # Latency depends on the model's shape and the feature config, not on
        # trained weights or a store: the benchmark uses untrained networks.
        results["dataset"] = {"name": "(none: synthetic 30 s input)", "split_scheme": "n/a"}
        results["config_hash"] = recipe.pipeline_config().config_hash()
        results["latency"] = _latency(recipe, out, say, stages)
    else:
        built = build_stage(recipe, out, store_dir, say)
        stages.append(built)
        store = built.result
        results["dataset"] = {"name": recipe.dataset.name,
                              "split_scheme": store.get("split_scheme") or split_scheme(recipe),
                              "clips": store["clips"], "labels": store["labels"]}
        results["store"] = {"uri": store["uri"], "fingerprint": store["fingerprint"],
                            "version": store.get("version", ""), "config_hash": store["config_hash"]}
        if recipe.kind in ("comparison", "ablation", "noise"):
            results["models"], trained = _train_and_evaluate(recipe, store, out, say, stages)
            if recipe.kind == "noise":
                results["noise"] = _noise(recipe, store, trained, out, say, stages)
        if recipe.kind == "cross-validation":
            results["split"] = "test folds"
            results["cv"] = _cross_validation(recipe, store, out, say, stages)

    results["stages"] = [{"name": s.name, "skipped": s.skipped, "seconds": s.seconds} for s in stages]
    results["wall_seconds"] = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report, figures = render_report(results, out)
    say(f"report: {report} ({len(figures)} figures)")
    return RunResult(out, report, tuple(figures), results, tuple(stages))
