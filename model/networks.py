"""Networks: the dual-branch deep fusion network (DFN), its ablations and the baselines.

Every network takes a dict of feature name -> float32 tensor
``[shape=(batch, bands, frames)]`` (one 3 s window per row, already
standardised by :class:`GenreClassifier`) and returns logits
``[shape=(batch, n_classes)]``. Softmax is applied only at inference; training
uses cross-entropy on the logits.

One builder per architecture exposes every knob; :data:`PRESETS` names the
paper's configurations (``dfn``), its ablations and the neural baselines, each
a call of a builder with fixed arguments. The SVM baseline (``svm-mfcc``) is
not a torch module and lives in :mod:`model.svm`. These two are the model
registry: :func:`model_names` (what ``pipeline train --help`` lists) and
:func:`build_model` (whose error for an unknown name lists the valid ones)
read them. Networks take their inputs by feature name (the registry of
:data:`pipeline.config.FEATURES`), checked against the store's features.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from pipeline.errors import ModelError

logger = logging.getLogger(__name__)

Features = Mapping[str, torch.Tensor]


# ---------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------
class ConvStack(nn.Module):
    """Convolutional blocks: 3x3 conv -> batch norm -> ReLU -> max pooling.

    Input ``[shape=(batch, 1, rows, frames)]``; output
    ``[shape=(batch, channels[-1], rows', frames')]`` where each block divides
    rows and frames by its pool size (floor).
    """

    def __init__(self, channels: Sequence[int], pools: Sequence[tuple[int, int]] | None = None,
                 in_channels: int = 1) -> None:
        super().__init__()
        pools = list(pools) if pools is not None else [(2, 2)] * len(channels)
        if len(pools) != len(channels):
            raise ModelError(f"pools={pools!r} must give one (rows, frames) pool per conv block "
                             f"({len(channels)} blocks)")
        blocks: list[nn.Module] = []
        prev = in_channels
        for width, pool in zip(channels, pools):
            blocks += [nn.Conv2d(prev, width, kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(tuple(pool))]
            prev = width
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last runs the 3x3 convolutions about 1.7x faster on CPU
        # (oneDNN) and suits tensor cores under bf16 autocast on GPU.
        return self.blocks(x.contiguous(memory_format=torch.channels_last))


class CNNEncoder(nn.Module):
    """Conv blocks + global average pooling: ``(batch, rows, frames)`` -> ``(batch, channels[-1])``."""

    def __init__(self, channels: Sequence[int], pools: Sequence[tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.stack = ConvStack(channels, pools)
        self.out_dim = self.stack.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack(x.unsqueeze(1)).mean(dim=(2, 3))


class BiGRUEncoder(nn.Module):
    """Bidirectional GRU over frames: ``(batch, dims, frames)`` -> ``(batch, 2 * hidden)``.

    The embedding is the last layer's final hidden state of both directions
    (the forward one has read the whole window left to right, the backward one
    right to left).
    """

    def __init__(self, input_size: int, hidden: int = 128, layers: int = 1, dropout: float = 0.3) -> None:
        super().__init__()
        # nn.GRU's dropout acts between layers only; the output dropout below
        # regularises the single-layer case too.
        self.gru = nn.GRU(input_size, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h_n = self.gru(x.transpose(1, 2))  # h_n: (layers * 2, batch, hidden)
        return self.dropout(torch.cat([h_n[-2], h_n[-1]], dim=1))


class AttentionFusion(nn.Module):
    """Two embeddings -> two tokens of width ``dim`` -> multi-head self-attention -> layer norm.

    Each token attends to itself and the other branch, so the fused
    representation weighs the timbral (CNN) and temporal/harmonic (Bi-GRU)
    evidence per example. A residual connection keeps each branch's own
    information when attention is not useful. Output: both tokens
    concatenated, ``(batch, 2 * dim)``.
    """

    def __init__(self, dims: Sequence[int], dim: int = 128, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ModelError(f"fusion_dim={dim} must be divisible by heads={heads}")
        self.proj = nn.ModuleList(nn.Linear(d, dim) for d in dims)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim * len(dims)

    def forward(self, embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
        tokens = torch.stack([p(e) for p, e in zip(self.proj, embeddings)], dim=1)  # (B, n, dim)
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return self.norm(tokens + attended).flatten(1)


class ConcatFusion(nn.Module):
    """The ablation of :class:`AttentionFusion`: the same projections, concatenated, no attention."""

    def __init__(self, dims: Sequence[int], dim: int = 128) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(d, dim) for d in dims)
        self.out_dim = dim * len(dims)

    def forward(self, embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([torch.relu(p(e)) for p, e in zip(self.proj, embeddings)], dim=1)


def classifier_head(in_dim: int, n_classes: int, hidden: int = 128, dropout: float = 0.4) -> nn.Sequential:
    """FC ``hidden`` + ReLU + dropout -> logits (the paper's classifier)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, n_classes))


def _stack_rows(x: Features, names: Sequence[str]) -> torch.Tensor:
    """Concatenate features along the band axis: ``(batch, sum(bands), frames)``."""
    return x[names[0]] if len(names) == 1 else torch.cat([x[n] for n in names], dim=1)


def _check_features(feature_bands: Mapping[str, int], names: Sequence[str], role: str) -> int:
    missing = [n for n in names if n not in feature_bands]
    if missing:
        raise ModelError(f"{role} needs feature(s) {missing} but the store has only {sorted(feature_bands)}; "
                         f"rebuild the store with those features or choose another model")
    return sum(int(feature_bands[n]) for n in names)


# ---------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------
class FusionNet(nn.Module):
    """The dual-branch deep fusion network and its ablations.

    CNN branch: the features in ``cnn_features`` are standardised per band
    and stacked along the frequency axis into one image (DFN: 128 mel rows on
    top of 13 MFCC rows = 141 rows x 130 frames), then 3x3 conv blocks and
    global average pooling. Why stacking rather than a second channel or a
    second stem: mel and MFCC have different band counts (a channel would need
    MFCC interpolated to 128 fake "bands" whose neighbours are not
    neighbouring frequencies), their frames align one to one (same STFT hop),
    and after per-band standardisation both are on the same scale; a 3x3
    kernel mixes the two blocks only at their seam, while the pooled,
    globally averaged feature maps let later layers combine the timbre summary
    (MFCC) with the spectral detail (mel) at no extra parameters.

    Bi-GRU branch: the per-frame vector of ``gru_features`` (DFN: harmonic
    mel 64 + percussive mel 64 + CENS 12 = 140 dims) read as a sequence.

    Fusion ``"attention"`` (:class:`AttentionFusion`), ``"concat"``
    (:class:`ConcatFusion`), or no second branch at all (``gru_features``
    empty: the CNN embedding goes straight to the classifier).
    """

    def __init__(self, *, n_classes: int, feature_bands: Mapping[str, int],
                 cnn_features: Sequence[str] = ("mel", "mfcc"),
                 gru_features: Sequence[str] = ("harmonic_mel", "percussive_mel", "cens"),
                 cnn_channels: Sequence[int] = (32, 64, 128),
                 gru_hidden: int = 128, gru_layers: int = 1, gru_dropout: float = 0.3,
                 fusion: str = "attention", fusion_dim: int = 128, heads: int = 4,
                 attention_dropout: float = 0.1, fc_hidden: int = 128, dropout: float = 0.4) -> None:
        super().__init__()
        if not cnn_features:
            raise ModelError("cnn_features must name at least one feature")
        if fusion not in ("attention", "concat"):
            raise ModelError(f"fusion={fusion!r} is not one of 'attention', 'concat'")
        self.cnn_features = tuple(cnn_features)
        self.gru_features = tuple(gru_features)
        self.features = tuple(dict.fromkeys(self.cnn_features + self.gru_features))
        _check_features(feature_bands, self.cnn_features, "the CNN branch")
        self.cnn = CNNEncoder(cnn_channels)
        if self.gru_features:
            gru_in = _check_features(feature_bands, self.gru_features, "the Bi-GRU branch")
            self.gru: BiGRUEncoder | None = BiGRUEncoder(gru_in, gru_hidden, gru_layers, gru_dropout)
            dims = (self.cnn.out_dim, self.gru.out_dim)
            self.fusion: nn.Module | None = (AttentionFusion(dims, fusion_dim, heads, attention_dropout)
                                             if fusion == "attention" else ConcatFusion(dims, fusion_dim))
            head_in = self.fusion.out_dim
        else:
            self.gru, self.fusion = None, None
            head_in = self.cnn.out_dim
        self.head = classifier_head(head_in, n_classes, fc_hidden, dropout)

    def forward(self, x: Features) -> torch.Tensor:
        embedding = self.cnn(_stack_rows(x, self.cnn_features))
        if self.gru is not None:
            embedding = self.fusion([embedding, self.gru(_stack_rows(x, self.gru_features))])
        return self.head(embedding)


class CRNN(nn.Module):
    """Convolutional recurrent network (CNN front end, Bi-GRU over its time axis) on the mel.

    Unlike the DFN's parallel branches, the GRU here reads the CNN's feature
    map: after the conv blocks (pooling frequency harder than time) each
    remaining frame is a vector of ``channels[-1] * rows'`` values.
    """

    def __init__(self, *, n_classes: int, feature_bands: Mapping[str, int], features: Sequence[str] = ("mel",),
                 cnn_channels: Sequence[int] = (32, 64, 128),
                 pools: Sequence[tuple[int, int]] = ((2, 2), (4, 2), (4, 2)),
                 gru_hidden: int = 128, gru_layers: int = 1, gru_dropout: float = 0.3,
                 fc_hidden: int = 128, dropout: float = 0.4) -> None:
        super().__init__()
        self.features = tuple(features)
        rows = _check_features(feature_bands, self.features, "the CRNN")
        self.stack = ConvStack(cnn_channels, pools)
        for pool in pools:
            rows //= pool[0]
        if rows < 1:
            raise ModelError(f"pools={pools!r} reduce the {self.features} rows below one; pool less in frequency")
        self.gru = BiGRUEncoder(self.stack.out_channels * rows, gru_hidden, gru_layers, gru_dropout)
        self.head = classifier_head(self.gru.out_dim, n_classes, fc_hidden, dropout)

    def forward(self, x: Features) -> torch.Tensor:
        maps = self.stack(_stack_rows(x, self.features).unsqueeze(1))  # (B, C, F', T')
        return self.head(self.gru(maps.flatten(1, 2)))


class AttentionCNN(nn.Module):
    """A CNN on the mel with attention over frequency bands.

    After the conv blocks each of the ``rows'`` frequency bands is described
    by its time-averaged channel vector; a learned score per band gives
    softmax weights, and the weighted sum of band vectors (which bands matter
    for this example) feeds the classifier.
    """

    def __init__(self, *, n_classes: int, feature_bands: Mapping[str, int], features: Sequence[str] = ("mel",),
                 cnn_channels: Sequence[int] = (32, 64, 128), attention_hidden: int = 64,
                 fc_hidden: int = 128, dropout: float = 0.4) -> None:
        super().__init__()
        self.features = tuple(features)
        _check_features(feature_bands, self.features, "the attention-CNN")
        self.stack = ConvStack(cnn_channels)
        c = self.stack.out_channels
        self.score = nn.Sequential(nn.Linear(c, attention_hidden), nn.Tanh(), nn.Linear(attention_hidden, 1))
        self.head = classifier_head(c, n_classes, fc_hidden, dropout)

    def forward(self, x: Features) -> torch.Tensor:
        maps = self.stack(_stack_rows(x, self.features).unsqueeze(1))  # (B, C, F', T')
        bands = maps.mean(dim=3).transpose(1, 2)  # (B, F', C)
        weights = torch.softmax(self.score(bands), dim=1)  # (B, F', 1)
        return self.head((weights * bands).sum(dim=1))


class GenreClassifier(nn.Module):
    """Per-band standardisation (train-split statistics, saved as buffers) + a network.

    ``forward(inputs)`` takes raw store features (name -> ``(batch, bands,
    frames)``) and returns logits; the statistics travel in ``state_dict`` so
    a checkpoint carries them and predict/evaluate normalise exactly as
    training did.
    """

    def __init__(self, net: nn.Module, feature_bands: Mapping[str, int]) -> None:
        super().__init__()
        self.net = net
        self.features: tuple[str, ...] = tuple(net.features)
        for name in self.features:
            bands = int(feature_bands[name])
            self.register_buffer(f"mean_{name}", torch.zeros(bands, 1))
            self.register_buffer(f"std_{name}", torch.ones(bands, 1))

    def set_normalisation(self, stats: Mapping[str, tuple[Any, Any]]) -> None:
        """``stats[name] = (mean, std)``, each ``(bands,)``; std is floored at 1e-5."""
        for name in self.features:
            mean, std = stats[name]
            getattr(self, f"mean_{name}").copy_(torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1))
            getattr(self, f"std_{name}").copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-5)
                                               .reshape(-1, 1))

    def forward(self, inputs: Features) -> torch.Tensor:
        x = {n: (inputs[n] - getattr(self, f"mean_{n}")) / getattr(self, f"std_{n}") for n in self.features}
        return self.net(x)


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Preset:
    """A named configuration: builder + fixed keyword arguments + what it is."""

    builder: Callable[..., nn.Module]
    kwargs: Mapping[str, Any]
    description: str


PRESETS: dict[str, Preset] = {
    "dfn": Preset(FusionNet, {}, "dual-branch fusion: CNN(mel+MFCC) + Bi-GRU(harmonic/percussive mel + CENS), "
                                 "attention fusion (the paper's full model)"),
    "cnn-mel": Preset(FusionNet, {"cnn_features": ("mel",), "gru_features": ()},
                      "ablation: the DFN's CNN branch on the mel only"),
    "cnn-bigru-mel": Preset(FusionNet, {"cnn_features": ("mel",), "gru_features": ("mel",), "fusion": "concat"},
                            "ablation: CNN + Bi-GRU, both on the mel (no HPSS, no CENS, no attention)"),
    "cnn-bigru-hpss-concat": Preset(FusionNet, {"fusion": "concat"},
                                    "ablation: the DFN's features and branches, concatenation instead of attention"),
    "cnn": Preset(FusionNet, {"cnn_features": ("mel",), "gru_features": (), "cnn_channels": (32, 64, 128, 256)},
                  "baseline: a 4-block CNN on the mel"),
    "crnn": Preset(CRNN, {}, "baseline: CNN front end + Bi-GRU over its time axis, on the mel"),
    "attention-cnn": Preset(AttentionCNN, {}, "baseline: CNN on the mel with attention over frequency bands"),
}

#: Models that are not torch networks (fitted by :mod:`model.svm`).
NON_NEURAL: dict[str, str] = {"svm-mfcc": "baseline: RBF SVM on per-clip MFCC mean/std statistics"}


def model_names() -> tuple[str, ...]:
    """Every valid ``--model`` name."""
    return (*PRESETS, *NON_NEURAL)


def build_model(name: str, *, n_classes: int, feature_bands: Mapping[str, int],
                **overrides: Any) -> GenreClassifier:
    """Build the preset ``name`` (with knob ``overrides``) wrapped in :class:`GenreClassifier`.

    Raises
    ------
    ModelError
        Unknown name (the message lists the valid ones), or a knob the builder
        does not have.
    """
    if name not in PRESETS:
        hint = " (not a torch network; see model.svm)" if name in NON_NEURAL else ""
        raise ModelError(f"unknown model {name!r}{hint}; valid torch models: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    kwargs = {**preset.kwargs, **overrides}
    try:
        net = preset.builder(n_classes=n_classes, feature_bands=dict(feature_bands), **kwargs)
    except TypeError as exc:
        raise ModelError(f"model {name!r} rejected its arguments {sorted(overrides)}: {exc}") from exc
    n_params = sum(p.numel() for p in net.parameters())
    logger.info("built %s: %d parameters, features %s", name, n_params, net.features)
    return GenreClassifier(net, feature_bands)
