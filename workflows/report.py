"""``report.md`` and its PNG figures, rendered from a run's ``results.json``.

The renderer only formats; every number comes from the results mapping the
runner assembled (see :func:`workflows.runner.run_recipe`). Its shape::

    {
      "recipe": {...}, "kind": "comparison" | "ablation" | ...,
      "dataset": {"name", "split_scheme", "clips": {split: n}, "labels": [...]},
      "store": {"uri", "fingerprint", "config_hash"},
      "split": "test",
      "models": [{"name", "description", "split",
                  "window": {"accuracy", "macro_f1", "macro_precision", "macro_recall"},
                  "clip": {...same...},
                  "confusion": [[int]] (clip level, rows true, cols predicted),
                  "labels": [...], "curves": [{"epoch", "train_loss", "val_loss", "val_accuracy", "train_accuracy"}],
                  "train_seconds"}],
      "cv": {model: {"folds": [{"fold", "window": {...}, "clip": {...}}],
                     "mean": {"window": {...}, "clip": {...}}, "std": {...}}},
      "noise": {model: [{"snr_db": float | None (clean), "clip_accuracy", "clip_macro_f1", "clips", "skipped"}]},
      "latency": {model: {device: {"file_latency_s", "batch_latency_s", "batch_size"} | {"absent": reason}}},
      "stages": [{"name", "skipped", "seconds"}],
    }

Accuracies and F1 are fractions in [0, 1] in the results and percentages in
the report.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from model.plots import plot_confusion, pyplot
from workflows import paper

logger = logging.getLogger(__name__)

FIGURES = "figures"


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100.0 * float(value):.1f}"


def _paper_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


# -- figures ---------------------------------------------------------------

def plot_curves(curves: Sequence[Mapping[str, Any]], title: str, path: Path) -> Path:
    """Training and validation loss (left) and accuracy (right) per epoch."""
    plt = pyplot()
    epochs = [c["epoch"] for c in curves]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, keys, scale in ((ax1, ("train_loss", "val_loss"), 1.0), (ax2, ("train_accuracy", "val_accuracy"), 100.0)):
        for key, style in zip(keys, ("-o", "-s")):
            ys = [c.get(key) for c in curves]
            if any(y is not None for y in ys):
                ax.plot(epochs, [np.nan if y is None else scale * y for y in ys], style, ms=3,
                        label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        if ax.get_lines():
            ax.legend(fontsize=8)
    ax1.set_ylabel("cross-entropy loss")
    ax2.set_ylabel("window accuracy (%)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def has_curves(curves: Sequence[Mapping[str, Any]]) -> bool:
    """True when the log holds a loss to plot (an SVM's one-step fit has none)."""
    return any(c.get("train_loss") is not None or c.get("val_loss") is not None for c in curves)


def plot_cv(cv: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Per-fold clip accuracy (dots) and mean +- std (bars) per model."""
    plt = pyplot()
    models = list(cv)
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(models), 3.4))
    for i, name in enumerate(models):
        accs = [100 * f["clip"]["accuracy"] for f in cv[name]["folds"]]
        mean, std = float(np.mean(accs)), float(np.std(accs))
        ax.bar(i, mean, yerr=std, capsize=6, color="tab:blue", alpha=0.5)
        ax.plot(np.full(len(accs), i) + np.linspace(-0.2, 0.2, len(accs)), accs, "k.", ms=5)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("clip accuracy per fold (%)")
    ax.set_ylim(0, 100)
    ax.set_title("cross-validation: folds (dots), mean and std (bars)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_noise(noise: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> Path:
    """Clip accuracy against SNR per model; the clean condition at the right."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, rows in noise.items():
        noisy = sorted((r for r in rows if r["snr_db"] is not None), key=lambda r: r["snr_db"])
        xs = [r["snr_db"] for r in noisy]
        ys = [100 * r["clip_accuracy"] for r in noisy]
        line, = ax.plot(xs, ys, "-o", ms=4, label=name)
        clean = [r for r in rows if r["snr_db"] is None]
        if clean and xs:
            ax.plot([max(xs) + 10], [100 * clean[0]["clip_accuracy"]], "*", ms=10, color=line.get_color())
    ax.set_xlabel("SNR (dB); star: clean audio")
    ax.set_ylabel("test clip accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("robustness to additive Gaussian noise", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- markdown --------------------------------------------------------------

def _results_table(models: Sequence[Mapping[str, Any]], kind: str) -> list[str]:
    head = ("| Model | Acc. window (%) | Acc. clip (%) | Macro-F1 window (%) | Macro-F1 clip (%) "
            "| Paper: acc. GTZAN (%) | Paper: acc. FMA (%) |")
    lines = [head, "|" + "---|" * 7]
    for m in models:
        w, c = m.get("window") or {}, m.get("clip") or {}
        lines.append(
            f"| {paper.row_label(m['name'], kind)} (`{m['name']}`) | {_pct(w.get('accuracy'))} | "
            f"{_pct(c.get('accuracy'))} | {_pct(w.get('macro_f1'))} | {_pct(c.get('macro_f1'))} | "
            f"{_paper_pct(paper.published(m['name'], 'gtzan'))} | {_paper_pct(paper.published(m['name'], 'fma'))} |"
        )
    return lines


def _provenance(results: Mapping[str, Any]) -> list[str]:
    ds = results.get("dataset") or {}
    store = results.get("store") or {}
    clips = ds.get("clips") or {}
    counts = ", ".join(f"{k}: {v}" for k, v in clips.items()) or "n/a"
    lines = [
        "## Data",
        "",
        f"- Dataset: **{ds.get('name', 'n/a')}**" + (
            " (synthetic audio generated by the `demo` adapter: these numbers say the system works, "
            "they are not comparable with the paper's)" if ds.get("name") == "demo" else ""),
        f"- Split scheme: **{ds.get('split_scheme') or 'the adapter default'}**; clips per split: {counts}"
        + (" (a random split: clips of one artist can fall on both sides, which flatters accuracy)"
           if ds.get("split_scheme") == "random" else ""),
        f"- Labels ({len(ds.get('labels') or [])}): {', '.join(ds.get('labels') or [])}",
        f"- Store: `{store.get('uri', 'n/a')}`",
        f"- Store fingerprint: `{store.get('fingerprint', 'n/a')}`"
        + (f", version `{store['version']}`" if store.get("version") else "") + "; feature config hash: "
        f"`{str(store.get('config_hash', 'n/a'))[:16]}`",
        "",
    ]
    return lines


def _model_sections(models: Sequence[Mapping[str, Any]], fig_dir: Path, out_dir: Path,
                    split: str, written: list[Path]) -> list[str]:
    lines: list[str] = []
    for m in models:
        name = m["name"]
        lines += [f"### `{name}`", ""]
        if m.get("description"):
            lines += [m["description"], ""]
        extra = []
        for level in ("window", "clip"):
            d = m.get(level) or {}
            if d.get("accuracy") is None:
                extra.append(f"{level}: not applicable")
                continue
            extra.append(f"{level}: precision {_pct(d.get('macro_precision'))}%, "
                         f"recall {_pct(d.get('macro_recall'))}%")
        lines += [f"Macro averages (%) on the {m.get('split', split)} split — " + "; ".join(extra) + ".", ""]
        if m.get("train_seconds") is not None:
            lines += [f"Training time: {m['train_seconds']:.0f} s.", ""]
        if m.get("confusion") and m.get("labels"):
            png = plot_confusion(m["confusion"], m["labels"],
                                 f"{name}: clip-level confusion, {m.get('split', split)} split",
                                 fig_dir / f"confusion-{name}.png")
            written.append(png)
            lines += [f"![confusion matrix of {name}]({png.relative_to(out_dir).as_posix()})", ""]
        curves = m.get("curves") or []
        if has_curves(curves):
            png = plot_curves(curves, f"{name}: training curves (validation = val split)",
                              fig_dir / f"curves-{name}.png")
            written.append(png)
            lines += [f"![training curves of {name}]({png.relative_to(out_dir).as_posix()})", ""]
        else:
            lines += ["(Fitted in one step, not by epochs: no training curves.)", ""]
    return lines


def _cv_section(cv: Mapping[str, Mapping[str, Any]], fig_dir: Path, out_dir: Path,
                written: list[Path]) -> list[str]:
    lines = ["## Cross-validation", "",
             "Each fold is the test set once; the next fold validates (early stopping) and the rest train. "
             "Mean ± standard deviation over the folds (population std).", "",
             "| Model | Folds | Acc. window (%) | Acc. clip (%) | Macro-F1 window (%) | Macro-F1 clip (%) |",
             "|---|---|---|---|---|---|"]
    for name, r in cv.items():
        mean, std = r["mean"], r["std"]
        cells = [f"{_pct(mean[lvl].get(k))} ± {_pct(std[lvl].get(k))}" if mean[lvl].get(k) is not None else "n/a"
                 for k in ("accuracy", "macro_f1") for lvl in ("window", "clip")]
        lines.append(f"| `{name}` | {len(r['folds'])} | " + " | ".join(cells) + " |")
    lines += ["", "Per fold (clip accuracy, %): "]
    for name, r in cv.items():
        lines.append(f"- `{name}`: " + ", ".join(f"fold {f['fold']}: {_pct(f['clip']['accuracy'])}"
                                                  for f in r["folds"]))
    png = plot_cv(cv, fig_dir / "cross-validation.png")
    written.append(png)
    lines += ["", f"![cross-validation]({png.relative_to(out_dir).as_posix()})", ""]
    return lines


def _noise_section(noise: Mapping[str, Sequence[Mapping[str, Any]]], split: str, fig_dir: Path,
                   out_dir: Path, written: list[Path]) -> list[str]:
    snrs = sorted({r["snr_db"] for rows in noise.values() for r in rows if r["snr_db"] is not None},
                  reverse=True)
    head = "| Model | clean | " + " | ".join(f"{s:g} dB" for s in snrs) + " |"
    lines = ["## Robustness to noise", "",
             f"White Gaussian noise added to the audio of each {split}-split clip at the given "
             "signal-to-noise ratio (signal power / noise power), features recomputed with the "
             "store's own pipeline config, then the clip-level accuracy (%) of each model:", "",
             head, "|" + "---|" * (len(snrs) + 2)]
    for name, rows in noise.items():
        by = {r["snr_db"]: r for r in rows}
        cells = [_pct(by[None]["clip_accuracy"]) if None in by else "n/a"]
        cells += [_pct(by[s]["clip_accuracy"]) if s in by else "n/a" for s in snrs]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    png = plot_noise(noise, fig_dir / "noise.png")
    written.append(png)
    lines += ["", f"![accuracy against SNR]({png.relative_to(out_dir).as_posix()})", ""]
    return lines


def _latency_section(latency: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["## Inference latency", "",
             "End to end: decode one 30 s file, compute its features with the pipeline, run the model "
             "on all its windows. Model only: one forward pass over a batch of windows. Medians over the "
             "repeats; untrained weights (latency does not depend on them); CPU figures use the stated "
             "number of torch threads.", "",
             "| Model | Device | 30 s file, end to end (ms) | Batch of windows, model only (ms) | Batch size "
             "| CPU threads |",
             "|---|---|---|---|---|---|"]
    for name, devices in latency.items():
        for device, r in devices.items():
            if "absent" in r:
                lines.append(f"| `{name}` | {device} | absent: {r['absent']} | | | |")
                continue
            file_ms = "n/a" if r.get("file_latency_s") is None else f"{1000 * r['file_latency_s']:.1f}"
            batch_ms = "n/a" if r.get("batch_latency_s") is None else f"{1000 * r['batch_latency_s']:.1f}"
            lines.append(f"| `{name}` | {device} | {file_ms} | {batch_ms} | {r.get('batch_size', 'n/a')} "
                         f"| {r.get('threads') or 'n/a'} |")
    return lines + [""]


def render_report(results: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, list[Path]]:
    """Write ``report.md`` and its figures (under ``figures/``) into ``out_dir``.

    Returns
    -------
    report : path of ``report.md``.
    figures : paths of the PNG files written.
    """
    out_dir = Path(out_dir)
    fig_dir = out_dir / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    recipe = results.get("recipe") or {}
    kind = results.get("kind", recipe.get("kind", ""))
    split = results.get("split", "test")
    ds = results.get("dataset") or {}
    family = paper.dataset_family(ds.get("name", ""))
    lines = [f"# {recipe.get('name', 'run')}: {kind}", ""]
    if recipe.get("description"):
        lines += [recipe["description"], ""]
    lines += [
        f"Reproduces the experiment of the paper *{paper.PAPER_TITLE}*. Columns headed **Paper** are "
        "the paper's published figures, copied as published (\"n/a\": we hold no published figure for "
        "that row); every other number was measured by this run."
        + (f" Unless a table says otherwise, our numbers come from the **{split}** split of the store below."
           if results.get("store") else ""), "",
    ]
    if results.get("store"):
        lines += _provenance(results)
    else:
        cfg_hash = (results.get("config_hash") or "")[:16] or "n/a"
        lines += ["## Data", "", "No store: the benchmark synthesises its own 30 s input file; features use the "
                  f"recipe's pipeline config (hash `{cfg_hash}`).", ""]

    models = results.get("models") or []
    if models:
        title = "Ablation study" if kind == "ablation" else "Performance comparison"
        lines += [f"## {title}", "",
                  f"Window level: every 3 s window (50% overlap) scored alone. Clip level: the windows of a "
                  f"clip pooled into one decision. Split: **{split}**.", ""]
        lines += _results_table(models, kind)
        lines += ["", paper.CONTEXT, ""]
        if family is None:
            lines += ["The paper's columns refer to GTZAN and FMA; this run used a different dataset, so "
                      "they are shown for orientation only.", ""]
        lines += ["## Per model", ""]
        lines += _model_sections(models, fig_dir, out_dir, split, written)
    if results.get("cv"):
        lines += _cv_section(results["cv"], fig_dir, out_dir, written)
    if results.get("noise"):
        lines += _noise_section(results["noise"], split, fig_dir, out_dir, written)
    if results.get("latency"):
        lines += _latency_section(results["latency"])
    stages = results.get("stages") or []
    if stages:
        lines += ["## Stages", "", "| Stage | Status | Seconds |", "|---|---|---|"]
        for s in stages:
            status = "skipped (finished earlier, same inputs)" if s["skipped"] else "ran"
            lines.append(f"| {s['name']} | {status} | {s['seconds']:.1f} |")
        lines.append("")
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    logger.info("wrote %s and %d figures", report, len(written))
    return report, written
