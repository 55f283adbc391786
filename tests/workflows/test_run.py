"""A tiny end-to-end run of the recipes on a small demo store, and the rerun that skips.

One small store (10 genres x 3 clips of 4 s, no augmented variants, 64 mel
bands at hop 1024) is built once per module; trainings are one epoch of the
smallest networks, so the whole file stays well under a minute.
"""

from __future__ import annotations

import json

import pytest

from workflows.recipe import load_recipe
from workflows.runner import run_recipe

TINY = [
    "dataset.demo.clips_per_genre=3", "dataset.demo.clip_seconds=4.0",
    "pipeline.features.n_mels=64", "pipeline.features.hop_length=1024",
    "pipeline.augment.variants=[]", "build.workers=0",
    "train.epochs=1", "train.batch_size=16", "train.lr=1e-3",
]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("wf")
    return {"audio": root / "audio", "stores": root / "stores", "root": root}


def _recipe(name, dirs, *extra):
    return load_recipe(name, [*TINY, f"dataset.root='{dirs['audio']}'", *extra])


@pytest.fixture(scope="module")
def first_run(dirs):
    lines: list[str] = []
    recipe = _recipe("paper-comparison", dirs, 'train.models=["svm-mfcc", "cnn-mel"]')
    result = run_recipe(recipe, dirs["root"] / "cmp", store_dir=dirs["stores"], echo=lines.append)
    return result, lines


def test_run_writes_a_report_with_the_expected_sections_and_figures(first_run):
    result, lines = first_run
    text = result.report.read_text()
    for section in ("## Data", "## Performance comparison", "## Per model", "## Stages"):
        assert section in text
    assert "Paper: acc. GTZAN" in text and "| n/a | n/a |" in text
    assert result.results["store"]["fingerprint"] in text
    assert "random" in text  # the split that produced the numbers
    names = {p.name for p in result.figures}
    assert {"confusion-svm-mfcc.png", "confusion-cnn-mel.png", "curves-cnn-mel.png"} <= names
    for p in result.figures:
        assert p.is_file() and p.stat().st_size > 1000
        assert f"figures/{p.name}" in text
    # Every stage ran the first time, and the numbers are real fractions.
    assert not any(s.skipped for s in result.stages)
    for m in result.results["models"]:
        assert 0.0 <= m["clip"]["accuracy"] <= 1.0
        assert sum(map(sum, m["confusion"])) == result.results["dataset"]["clips"]["test"]
    assert json.loads((result.out / "results.json").read_text())["kind"] == "comparison"
    assert any("[run ] build" in line for line in lines)


def test_rerun_skips_every_finished_stage(first_run, dirs):
    result, _ = first_run
    lines: list[str] = []
    recipe = _recipe("paper-comparison", dirs, 'train.models=["svm-mfcc", "cnn-mel"]')
    again = run_recipe(recipe, result.out, store_dir=dirs["stores"], echo=lines.append)
    assert all(s.skipped for s in again.stages)
    assert again.results["models"] == result.results["models"]
    assert again.report.read_text().count("skipped (finished earlier") == len(again.stages)


def test_changed_training_setting_reruns_only_what_depends_on_it(first_run, dirs):
    result, _ = first_run
    recipe = _recipe("paper-comparison", dirs, 'train.models=["svm-mfcc", "cnn-mel"]', "train.seed=1")
    again = run_recipe(recipe, result.out, store_dir=dirs["stores"], echo=lambda s: None)
    status = {s.name: s.skipped for s in again.stages}
    assert status["build"] is True
    assert status["train cnn-mel"] is False and status["evaluate cnn-mel on test split"] is False


def test_noise_recipe_scores_clean_and_noisy_test_clips(first_run, dirs):
    recipe = _recipe("noise-robustness", dirs, 'train.models=["cnn-mel"]', "noise.snr_db=[20, 0]")
    result = run_recipe(recipe, dirs["root"] / "noise", store_dir=dirs["stores"], echo=lambda s: None)
    # Same data and config as the comparison run: its store is reused, not rebuilt.
    assert result.results["store"]["uri"] == first_run[0].results["store"]["uri"]
    rows = result.results["noise"]["cnn-mel"]
    assert [r["snr_db"] for r in rows] == [None, 20.0, 0.0]
    assert all(r["clips"] == result.results["dataset"]["clips"]["test"] for r in rows)
    text = result.report.read_text()
    assert "## Robustness to noise" in text and "noise.png" in {p.name for p in result.figures}


def test_cross_validation_reports_mean_and_std_over_folds(dirs):
    recipe = _recipe("cross-validation", dirs, 'train.models=["svm-mfcc"]', "cv.folds=3")
    result = run_recipe(recipe, dirs["root"] / "cv", store_dir=dirs["stores"], echo=lambda s: None)
    cv = result.results["cv"]["svm-mfcc"]
    assert [f["fold"] for f in cv["folds"]] == [0, 1, 2]
    accs = [f["clip"]["accuracy"] for f in cv["folds"]]
    assert cv["mean"]["clip"]["accuracy"] == pytest.approx(sum(accs) / 3)
    assert result.results["dataset"]["split_scheme"] == "artist-folds"
    text = result.report.read_text()
    assert "## Cross-validation" in text and "cross-validation.png" in {p.name for p in result.figures}


def test_latency_recipe_measures_cpu_and_marks_absent_cuda(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    recipe = load_recipe("latency", ['train.models=["cnn-mel"]', "latency.repeats=1",
                                     "pipeline.features.n_mels=64", "pipeline.features.hop_length=1024"])
    result = run_recipe(recipe, tmp_path / "lat", echo=lambda s: None)
    cpu = result.results["latency"]["cnn-mel"]["cpu"]
    assert cpu["file_latency_s"] > 0 and cpu["batch_latency_s"] > 0
    assert "absent" in result.results["latency"]["cnn-mel"]["cuda"]
    assert "## Inference latency" in result.report.read_text()


def test_latency_rejects_fitted_models(tmp_path):
    from pipeline.errors import ConfigError

    recipe = load_recipe("latency", ['train.models=["svm-mfcc"]'])
    with pytest.raises(ConfigError, match="svm-mfcc"):
        run_recipe(recipe, tmp_path / "lat", echo=lambda s: None)


def test_demo_prints_report_headline_and_store_info(first_run, dirs):
    from workflows.demo import run_demo

    lines: list[str] = []
    result = run_demo(dirs["root"] / "demo", echo=lines.append,
                      overrides=[*TINY, f"dataset.root='{dirs['audio']}'", 'train.models=["svm-mfcc"]'])
    text = "\n".join(lines)
    # Same data and config as the comparison run: the store is shared.
    assert result.results["store"]["uri"] == first_run[0].results["store"]["uri"]
    assert f"report: {result.report.resolve()}" in text
    assert "svm-mfcc" in text and "clip acc" in text and "(test split)" in text
    assert f"$ pipeline info {result.results['store']['uri']}" in text
    assert "fingerprint" in text and result.results["store"]["fingerprint"] in text
    # The last line is a predict command that works as printed.
    command = lines[-1]
    assert command.startswith("$ pipeline predict --checkpoint ") and "svm-mfcc" in command
    import shlex

    from workflows.cli import main

    assert main(shlex.split(command)[2:]) == 0


def test_cli_lists_recipes_and_rejects_bad_keys(capsys):
    from workflows.cli import main

    assert main(["run", "--list"]) == 0
    assert "paper-ablation" in capsys.readouterr().out
    assert main(["run", "paper-comparison", "--set", "train.epoch=3"]) == 2
    assert "valid keys: amp, batch_size" in capsys.readouterr().err
    assert main(["run", "paper-comparison", "--set", 'train.models=["vgg"]']) == 2
    assert "valid models: dfn" in capsys.readouterr().err
