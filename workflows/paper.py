"""What the paper published, kept apart from anything we measure.

Paper: "Harmonic Feature Extraction and Deep Fusion Networks for Music Genre
Classification". Its headline claims are 93.6% accuracy on GTZAN and 89.1%
on FMA for the dual-branch fusion network. Those two figures are the only
published numbers recorded here: for every other row of its tables we do not
hold a figure we can vouch for, so the report prints "n/a" rather than a
guess. Add a number here only together with where in the paper it stands.
"""

from __future__ import annotations

from typing import Mapping

PAPER_TITLE = "Harmonic Feature Extraction and Deep Fusion Networks for Music Genre Classification"

#: (model preset, dataset family) -> metric -> percent, as published.
#: Dataset families: "gtzan", "fma". Source: the paper's abstract/headline.
PUBLISHED: Mapping[tuple[str, str], Mapping[str, float]] = {
    ("dfn", "gtzan"): {"accuracy": 93.6},
    ("dfn", "fma"): {"accuracy": 89.1},
}

#: Row labels in the paper's tables, by preset name.
COMPARISON_ROWS: Mapping[str, str] = {
    "svm-mfcc": "SVM + MFCC",
    "cnn": "CNN (mel)",
    "crnn": "CRNN (CNN + Bi-GRU, mel)",
    "attention-cnn": "Attention-CNN",
    "dfn": "Proposed DFN",
}
ABLATION_ROWS: Mapping[str, str] = {
    "cnn-mel": "CNN + mel only",
    "cnn-bigru-mel": "CNN + Bi-GRU on mel (no HPSS, no CENS)",
    "cnn-bigru-hpss-concat": "CNN + Bi-GRU + HPSS/CENS, concatenation (no attention)",
    "dfn": "Full model (attention fusion)",
}

#: Published context for honest comparison (from the project's DESIGN notes,
#: not from the paper): artist-aware splits give much lower numbers.
CONTEXT = (
    "For context (other publications, not the paper): on GTZAN's artist-aware "
    "fault-filtered split, published accuracies range from about 53% (MFCC + SVM) "
    "to about 82%; figures above 90% on GTZAN come from random splits, where "
    "windows or near-duplicate clips of one artist fall on both sides. On "
    "FMA-medium (16 genres, official split) the dataset authors' SVM baselines "
    "reach about 63%."
)


def dataset_family(dataset: str) -> str | None:
    """"gtzan" / "fma" for the paper's datasets, None for ours (demo, folder)."""
    if dataset == "gtzan":
        return "gtzan"
    if dataset.startswith("fma"):
        return "fma"
    return None


def published(model: str, family: str, metric: str = "accuracy") -> float | None:
    """The paper's figure in percent, or None when we do not hold one."""
    return PUBLISHED.get((model, family), {}).get(metric)


def row_label(model: str, kind: str) -> str:
    """The paper's row label for ``model`` in the table of ``kind``."""
    table = ABLATION_ROWS if kind == "ablation" else COMPARISON_ROWS
    return table.get(model, COMPARISON_ROWS.get(model, ABLATION_ROWS.get(model, model)))
