"""Shapes and gradients of every network; the registry."""

from __future__ import annotations

import pytest
import torch

from model.networks import PRESETS, build_model, model_names
from pipeline.config import FeatureConfig
from pipeline.errors import ModelError

BANDS = FeatureConfig().feature_bands()
TINY = {
    "dfn": dict(cnn_channels=(4, 8, 8), gru_hidden=8, fusion_dim=8, heads=2, fc_hidden=16),
    "cnn-mel": dict(cnn_channels=(4, 8, 8), fc_hidden=16),
    "cnn-bigru-mel": dict(cnn_channels=(4, 8, 8), gru_hidden=8, fusion_dim=8, fc_hidden=16),
    "cnn-bigru-hpss-concat": dict(cnn_channels=(4, 8, 8), gru_hidden=8, fusion_dim=8, fc_hidden=16),
    "cnn": dict(cnn_channels=(4, 4, 8, 8), fc_hidden=16),
    "crnn": dict(cnn_channels=(4, 8, 8), gru_hidden=8, fc_hidden=16),
    "attention-cnn": dict(cnn_channels=(4, 8, 8), attention_hidden=8, fc_hidden=16),
}


def batch(n=3, frames=130):
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(n, b, frames, generator=g) * 10 - 30 for k, b in BANDS.items()}


def test_every_preset_has_tiny_knobs():
    assert set(TINY) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = build_model(name, n_classes=5, feature_bands=BANDS, **TINY[name])
    x = batch()
    logits = model(x)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 4])).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for pname, p in trainable:
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    # the network uses only the features it declares
    used = {k: v for k, v in x.items() if k in model.features}
    model.eval()
    torch.testing.assert_close(model(used), model(x))


def test_full_size_dfn_matches_the_paper_shape():
    model = build_model("dfn", n_classes=10, feature_bands=BANDS)
    net = model.net
    assert net.cnn_features == ("mel", "mfcc") and net.gru_features == ("harmonic_mel", "percussive_mel", "cens")
    assert net.gru.gru.hidden_size == 128 and net.gru.gru.bidirectional
    assert net.head[0].out_features == 128 and net.head[2].p == 0.4
    model.eval()
    assert model(batch(2)).shape == (2, 10)


def test_normalisation_is_applied_and_saved():
    model = build_model("cnn-mel", n_classes=2, feature_bands=BANDS, **TINY["cnn-mel"])
    model.set_normalisation({"mel": (torch.full((128,), -30.0), torch.full((128,), 10.0))})
    state = model.state_dict()
    assert torch.equal(state["mean_mel"], torch.full((128, 1), -30.0))


def test_unknown_model_lists_valid_names():
    with pytest.raises(ModelError, match="dfn"):
        build_model("resnet", n_classes=2, feature_bands=BANDS)
    assert "svm-mfcc" in model_names()


def test_bad_knob_is_a_model_error():
    with pytest.raises(ModelError, match="heads"):
        build_model("dfn", n_classes=2, feature_bands=BANDS, fusion_dim=10, heads=4)
    with pytest.raises(ModelError, match="rejected"):
        build_model("dfn", n_classes=2, feature_bands=BANDS, nonsense=1)
