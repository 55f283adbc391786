"""The report renderer: sections, paper columns, figures, honest labels."""

from __future__ import annotations

import pytest

from workflows.report import render_report

LABELS = ["a", "b", "c"]


def _model(name, acc):
    level = {"accuracy": acc, "macro_f1": acc - 0.05, "macro_precision": acc - 0.02, "macro_recall": acc - 0.03}
    return {"name": name, "description": f"{name} model", "split": "test", "window": dict(level),
            "clip": {**level, "accuracy": acc + 0.05}, "labels": LABELS,
            "confusion": [[3, 1, 0], [0, 4, 0], [1, 0, 3]],
            "curves": [{"epoch": 1, "train_loss": 1.1, "val_loss": 1.0, "val_accuracy": 0.4},
                       {"epoch": 2, "train_loss": 0.8, "val_loss": 0.9, "val_accuracy": 0.6}],
            "train_seconds": 12.0}


def _results(dataset="demo", kind="comparison", **extra):
    return {
        "recipe": {"name": "paper-comparison", "description": "desc"}, "kind": kind, "split": "test",
        "dataset": {"name": dataset, "split_scheme": "fault-filtered" if dataset == "gtzan" else "random",
                    "clips": {"train": 10, "val": 3, "test": 4}, "labels": LABELS},
        "store": {"uri": "runs/stores/x.zarr", "fingerprint": "f" * 64, "config_hash": "c" * 64},
        "stages": [{"name": "build", "skipped": True, "seconds": 3.0}],
        **extra,
    }


def test_comparison_report_has_tables_paper_columns_and_figures(tmp_path):
    results = _results(models=[_model("svm-mfcc", 0.5), _model("dfn", 0.7)])
    report, figures = render_report(results, tmp_path)
    text = report.read_text()
    for section in ("## Data", "## Performance comparison", "## Per model", "## Stages"):
        assert section in text
    # Our numbers (percent) and the paper's, labelled as the paper's.
    assert "| Proposed DFN (`dfn`) | 70.0 | 75.0 | 65.0 | 65.0 | 93.6 | 89.1 |" in text
    assert "| SVM + MFCC (`svm-mfcc`) | 50.0 | 55.0 | 45.0 | 45.0 | n/a | n/a |" in text
    assert "Paper: acc. GTZAN" in text
    assert "synthetic audio" in text and "f" * 64 in text and "**test**" in text
    names = sorted(p.name for p in figures)
    assert names == ["confusion-dfn.png", "confusion-svm-mfcc.png", "curves-dfn.png", "curves-svm-mfcc.png"]
    for p in figures:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](figures/{p.name})" in text


def test_ablation_uses_the_ablation_rows(tmp_path):
    results = _results(kind="ablation", models=[_model("cnn-mel", 0.4), _model("dfn", 0.6)])
    text = render_report(results, tmp_path)[0].read_text()
    assert "## Ablation study" in text
    assert "CNN + mel only" in text and "Full model (attention fusion)" in text


def test_gtzan_report_states_the_split_and_no_synthetic_caveat(tmp_path):
    text = render_report(_results("gtzan", models=[_model("dfn", 0.7)]), tmp_path)[0].read_text()
    assert "fault-filtered" in text and "synthetic" not in text


def test_cross_validation_and_noise_sections_and_plots(tmp_path):
    fold = lambda k, a: {"fold": k, "window": {"accuracy": a, "macro_f1": a}, "clip": {"accuracy": a, "macro_f1": a}}  # noqa: E731
    cv = {"dfn": {"folds": [fold(0, 0.6), fold(1, 0.8)],
                  "mean": {"window": {"accuracy": 0.7, "macro_f1": 0.7}, "clip": {"accuracy": 0.7, "macro_f1": 0.7}},
                  "std": {"window": {"accuracy": 0.1, "macro_f1": 0.1}, "clip": {"accuracy": 0.1, "macro_f1": 0.1}}}}
    noise = {"dfn": [{"snr_db": None, "clip_accuracy": 0.9, "window_accuracy": 0.8, "clips": 4},
                     {"snr_db": 20.0, "clip_accuracy": 0.75, "window_accuracy": 0.7, "clips": 4},
                     {"snr_db": 5.0, "clip_accuracy": 0.5, "window_accuracy": 0.4, "clips": 4}]}
    report, figures = render_report(_results(cv=cv, noise=noise), tmp_path)
    text = report.read_text()
    assert "## Cross-validation" in text and "70.0 ± 10.0" in text
    assert "## Robustness to noise" in text and "| `dfn` | 90.0 | 75.0 | 50.0 |" in text
    assert {p.name for p in figures} == {"cross-validation.png", "noise.png"}


def test_latency_section_marks_absent_devices(tmp_path):
    latency = {"dfn": {"cpu": {"file_latency_s": 0.25, "batch_latency_s": 0.01, "batch_size": 32, "threads": 1},
                       "cuda": {"absent": "no CUDA device on this machine"}}}
    text = render_report(_results(latency=latency), tmp_path)[0].read_text()
    assert "| `dfn` | cpu | 250.0 | 10.0 | 32 | 1 |" in text
    assert "absent: no CUDA device" in text


@pytest.mark.parametrize("value", [None, float("nan")])
def test_missing_metric_prints_na(tmp_path, value):
    m = _model("cnn", 0.5)
    m["clip"]["macro_f1"] = value
    text = render_report(_results(models=[m]), tmp_path)[0].read_text()
    assert "| 50.0 | 55.0 | 45.0 | n/a |" in text


def test_cross_validation_of_a_clip_only_model_prints_na_without_std(tmp_path):
    level = {"accuracy": 0.5, "macro_f1": 0.4}
    none = {"accuracy": None, "macro_f1": None}
    cv = {"svm-mfcc": {"folds": [{"fold": 0, "window": none, "clip": level}],
                       "mean": {"window": none, "clip": level}, "std": {"window": none, "clip": {"accuracy": 0.0,
                                                                                                 "macro_f1": 0.0}}}}
    text = render_report(_results(cv=cv), tmp_path)[0].read_text()
    assert "| `svm-mfcc` | 1 | n/a | 50.0 ± 0.0 | n/a | 40.0 ± 0.0 |" in text
