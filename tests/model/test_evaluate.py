"""Evaluation outputs, prediction on a synthetic file, the SVM baseline, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from model.evaluate import evaluate
from model.predict import predict_files
from model.train import train
from workflows.cli import main
from pipeline.errors import ConfigMismatchError
from tests.model.fakes import FakeStore

TINY = {"cnn_channels": [4, 8, 8], "gru_hidden": 8, "fusion_dim": 8, "heads": 2, "fc_hidden": 16}


@pytest.fixture(scope="module")
def store():
    return FakeStore()


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train(store, "dfn", out, model_kwargs=TINY, epochs=2, lr=3e-3, batch_size=8, loader_workers=0, progress=False)
    return out


def test_evaluate_writes_named_outputs(store, trained, tmp_path):
    metrics = evaluate(trained, store, tmp_path, split="test", device="cpu")
    for name in ("metrics.json", "confusion_clip.csv", "confusion_window.csv", "confusion_clip.png",
                 "predictions.csv"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["split"] == "test" and saved["store"] == {"uri": store.uri, "fingerprint": store.fingerprint}
    n_test = len(store.select(split="test"))
    assert saved["clip"]["n"] == n_test and saved["window"]["n"] == 2 * n_test
    assert np.asarray(saved["clip"]["confusion"]).sum() == n_test
    assert set(saved["clip"]["per_class"]) == set(store.labels)
    for level in ("window", "clip"):
        assert 0.0 <= saved[level]["accuracy"] <= 1.0 and 0.0 <= saved[level]["macro_f1"] <= 1.0
    csv_text = (tmp_path / "confusion_clip.csv").read_text()
    assert store.uri in csv_text and "test" in csv_text
    assert (tmp_path / "confusion_clip.png").read_bytes()[:4] == b"\x89PNG"
    assert metrics["clip"]["accuracy"] == saved["clip"]["accuracy"]


def test_evaluate_refuses_other_features(trained):
    from pipeline.config import AudioConfig
    from tests.model.fakes import tiny_config
    import dataclasses

    other = FakeStore(config=dataclasses.replace(tiny_config(), audio=AudioConfig(clip_seconds=6.0,
                                                                                 sample_rate=16000)))
    with pytest.raises(ConfigMismatchError, match="sample_rate"):
        evaluate(trained, other, None, split="test")


def tone(path, seconds=6.0, sr=22050, f0=220.0):
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    y = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal(len(t))
    sf.write(path, y.astype(np.float32), sr)
    return path


def test_predict_on_a_synthetic_file(trained, tmp_path, capsys):
    wav = tone(tmp_path / "song.wav")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVE")
    results = predict_files(trained, [wav, broken], top=2)
    assert results[0]["file"] == str(wav) and len(results[0]["top"]) == 2
    probs = [t["probability"] for t in results[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert "error" in results[1]
    assert main(["predict", "--checkpoint", str(trained), str(wav), "--json", "--top", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {t["label"] for t in out[0]["top"]} == {"blues", "jazz", "rock"}


def test_predict_answers_for_every_file_it_can(trained, tmp_path, capsys, monkeypatch):
    """One undecodable file and one that trips a bug of ours: the good files still get their answers."""
    from model.predict import Predictor

    good = [tone(tmp_path / "a.wav"), tone(tmp_path / "b.wav", f0=330.0)]
    riff_vorbis = tmp_path / "riff.ogg"
    riff_vorbis.write_bytes(b"RIFF\x00\x01\x00\x00WAVEfmt " + (18).to_bytes(4, "little")
                            + bytes.fromhex("4f67") + bytes(16) + b"data" + bytes(4) + bytes(200))
    buggy = tone(tmp_path / "buggy.wav")
    features = Predictor.features

    def features_with_a_bug(self, path):
        if str(path).endswith("buggy.wav"):
            raise KeyError("mel")
        return features(self, path)

    monkeypatch.setattr(Predictor, "features", features_with_a_bug)
    results = predict_files(trained, [good[0], riff_vorbis, buggy, good[1]], top=2)
    assert [("top" in r) for r in results] == [True, False, False, True]
    assert results[1]["category"] == "not audio" and results[1]["file"] == str(riff_vorbis)
    assert results[1]["error"].startswith("not audio: ") and "RIFF" in results[1]["error"]
    assert results[2]["category"] == "internal error" and "KeyError" in results[2]["error"]
    assert main(["predict", "--checkpoint", str(trained), str(good[0]), str(riff_vorbis), str(good[1])]) == 1
    captured = capsys.readouterr()
    assert captured.out.count(": ") == 2 and str(good[1]) in captured.out
    assert f"{riff_vorbis}: error: " in captured.err and "Traceback" not in captured.err
    assert main(["predict", "--checkpoint", str(trained), str(good[0]), str(riff_vorbis), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert "top" in doc[0] and doc[1]["category"] == "not audio"


def test_svm_baseline(store, tmp_path):
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from model.svm import clip_statistics, load_svm, svm_scores_of
    from model.checkpoint import load_checkpoint

    train(store, "svm-mfcc", tmp_path / "svm", model_kwargs={"C": 1.0}, loader_workers=0)
    state = load_checkpoint(tmp_path / "svm")
    svm = load_svm(state)
    # our array-based prediction equals scikit-learn's on the same data
    stats, owners = clip_statistics(store, store.select(split="train"), "all")
    y = np.asarray(store.clips.label_index)[owners]
    scaler = StandardScaler().fit(stats)
    svc = SVC(C=1.0, gamma="scale").fit(scaler.transform(stats), y)
    test_stats, _ = clip_statistics(store, store.select(), "original")
    np.testing.assert_array_equal(svm_scores_of(svm, test_stats).argmax(1), svc.predict(scaler.transform(test_stats)))
    metrics = evaluate(tmp_path / "svm", store, tmp_path / "eval", split="test")
    assert metrics["window"] is None and metrics["clip"]["accuracy"] > 0.5  # 3 separable genres


def test_cli_train_and_evaluate(store, tmp_path, monkeypatch, capsys):
    # the CLI opens URIs; route this one to the fake store
    import model.data

    real = model.data.open_source
    monkeypatch.setattr(model.data, "open_source", lambda src, opts=None: store if src == "fake://s" else real(src, opts))
    import model.train, model.evaluate
    monkeypatch.setattr(model.train, "open_source", model.data.open_source)
    monkeypatch.setattr(model.evaluate, "open_source", model.data.open_source)
    out = tmp_path / "run"
    args = ["train", "--store", "fake://s", "--model", "cnn-mel", "--out", str(out), "--epochs", "1",
            "--loader-workers", "0", "--no-progress", "--model-arg", "cnn_channels=[4,4,4]", "--model-arg", "fc_hidden=8"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epochs"] == 1
    assert main(args) == 2  # exists: refused without --resume
    assert "--resume" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(out), "--store", "fake://s", "--device", "cpu"]) == 0
    assert (out / "eval-test" / "metrics.json").is_file()
