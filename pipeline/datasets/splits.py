"""Seeded, stratified split and fold assignment shared by the adapters.

Every function here is pure: it takes labels (and groups) in manifest order
and a seed, and returns per-clip split names or fold numbers in the same
order. The same inputs give the same output on every machine, so a manifest
(and the store built from it) is reproducible from the dataset alone.

Splits are made over whole clips; the trainer cuts 3 s windows only after a
clip has its split, so windows of one clip never land on both sides.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

#: Default (val, test) fractions of the random train/val/test splits: 60/20/20.
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_TEST_FRACTION = 0.2
#: Default number of cross-validation folds.
DEFAULT_N_FOLDS = 10


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise :class:`ConfigError` unless both fractions are in [0, 1) and leave a train part."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ConfigError(f"{name}={value!r} must be a number in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction={val_fraction} + test_fraction={test_fraction} must be < 1 "
            "so that the train split is not empty"
        )


def check_seed(seed: object) -> int:
    """A split seed must be a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer")
    return int(seed)


def check_n_folds(n_folds: object) -> int:
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ConfigError(f"n_folds={n_folds!r} must be an integer >= 2")
    return int(n_folds)


def _shuffled_classes(labels: list[str], seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """``(label, clip indices of that label)`` per sorted label, the indices shuffled.

    One generator per class, seeded with (``seed``, label position): adding
    clips to one class leaves the order of every other class unchanged.
    """
    for k, label in enumerate(sorted(set(labels))):
        members = np.array([i for i, lab in enumerate(labels) if lab == label])
        rng = np.random.default_rng([seed, k])
        yield label, members[rng.permutation(len(members))]


def _own_groups(groups: Sequence[str]) -> list[str]:
    """``groups`` with every "" (unknown) replaced by a group of its own clip."""
    return [g if g else f"\x00clip{i}" for i, g in enumerate(groups)]


def stratified_split(labels: Sequence[str], *, seed: int = 0,
                     val_fraction: float = DEFAULT_VAL_FRACTION,
                     test_fraction: float = DEFAULT_TEST_FRACTION) -> list[str]:
    """Assign each clip to "train", "val" or "test", class by class.

    Within every label the clips are shuffled with a generator seeded by
    (``seed``, label position), then the first ``round(n * test_fraction)``
    go to test, the next ``round(n * val_fraction)`` to val and the rest to
    train. Classes of one or two clips keep at least one clip in train.

    Parameters
    ----------
    labels : sequence of str [shape=(n_clips,)]
        Label of every clip, in manifest order.
    seed : int
        Seed of the shuffles.
    val_fraction, test_fraction : float
        Share of each class in val and test.

    Returns
    -------
    list of str [shape=(n_clips,)]
        Split name of every clip, in the order of ``labels``.
    """
    check_fractions(val_fraction, test_fraction)
    seed = check_seed(seed)
    labels = list(labels)
    out = ["train"] * len(labels)
    for _, members in _shuffled_classes(labels, seed):
        n = len(members)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        if n_test + n_val >= n:
            # Keep one clip to train on; take it from the larger held-out part.
            excess = n_test + n_val - (n - 1)
            take_val = min(n_val, excess)
            n_val -= take_val
            n_test -= excess - take_val
        for i in members[:n_test]:
            out[i] = "test"
        for i in members[n_test:n_test + n_val]:
            out[i] = "val"
    return out


def stratified_folds(labels: Sequence[str], *, n_folds: int = DEFAULT_N_FOLDS, seed: int = 0) -> list[int]:
    """Assign each clip a fold 0..n_folds-1 with every class spread evenly.

    Within each label the shuffled clips are dealt round-robin to the folds,
    starting where the previous class stopped, so fold sizes differ by at most
    one clip overall and a class of ``m`` clips has ``floor(m / n_folds)`` or
    one more in every fold.

    Parameters
    ----------
    labels : sequence of str [shape=(n_clips,)]
    n_folds : int
        Number of folds (>= 2).
    seed : int
        Seed of the shuffles.

    Returns
    -------
    list of int [shape=(n_clips,)]
        Fold of every clip, in the order of ``labels``.
    """
    n_folds = check_n_folds(n_folds)
    seed = check_seed(seed)
    labels = list(labels)
    out = [-1] * len(labels)
    start = 0
    for label, members in _shuffled_classes(labels, seed):
        if len(members) < n_folds:
            logger.warning("label %r has %d clips, fewer than n_folds=%d: some folds have none of it",
                           label, len(members), n_folds)
        for j, i in enumerate(members):
            out[i] = (start + j) % n_folds
        start = (start + len(members)) % n_folds
    return out


def grouped_folds(labels: Sequence[str], groups: Sequence[str], *, n_folds: int = DEFAULT_N_FOLDS,
                  seed: int = 0) -> list[int]:
    """Folds that keep every group (artist) in one fold, stratified by label.

    Uses :class:`sklearn.model_selection.StratifiedGroupKFold` with a seeded
    shuffle. Clips whose group is "" are each treated as their own group.

    Parameters
    ----------
    labels, groups : sequences of str [shape=(n_clips,)]
    n_folds : int
    seed : int

    Returns
    -------
    list of int [shape=(n_clips,)]
    """
    from sklearn.model_selection import StratifiedGroupKFold  # scikit-learn: only the folds scheme needs it

    n_folds = check_n_folds(n_folds)
    seed = check_seed(seed)
    labels = list(labels)
    groups = _own_groups(groups)
    n_groups = len(set(groups))
    if n_groups < n_folds:
        raise ConfigError(
            f"n_folds={n_folds} exceeds the {n_groups} distinct groups (artists); lower n_folds"
        )
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    out = [-1] * len(labels)
    # y must be numeric for some sklearn versions' bincount logic.
    names = sorted(set(labels))
    y = np.array([names.index(lab) for lab in labels])
    _, group_codes = np.unique(np.array(groups), return_inverse=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parts = list(splitter.split(np.zeros(len(y)), y, group_codes))
    for w in caught:
        # e.g. "the least populated class has only 2 members": worth knowing, not fatal.
        logger.warning("grouped folds: %s", w.message)
    for fold, (_, test_idx) in enumerate(parts):
        for i in test_idx:
            out[i] = fold
    return out


def grouped_split(labels: Sequence[str], groups: Sequence[str], *, seed: int = 0,
                  val_fraction: float = DEFAULT_VAL_FRACTION,
                  test_fraction: float = DEFAULT_TEST_FRACTION) -> list[str]:
    """Train/val/test with no group (artist) on two sides, stratified by label.

    The clips are cut into ``round(1 / min(fraction))`` artist-grouped folds
    (at least 3); whole folds are then given to test and val until each holds
    about its fraction, and the rest is train. The fractions are therefore
    approximate: they move in steps of one fold and with group sizes.

    Parameters
    ----------
    labels, groups : sequences of str [shape=(n_clips,)]
    seed, val_fraction, test_fraction : as in :func:`stratified_split`

    Returns
    -------
    list of str [shape=(n_clips,)]
    """
    check_fractions(val_fraction, test_fraction)
    positive = [f for f in (val_fraction, test_fraction) if f > 0]
    n_folds = max(3, int(round(1.0 / min(positive)))) if positive else 3
    n_groups = len(set(_own_groups(groups)))
    n_folds = min(n_folds, n_groups)
    folds = grouped_folds(labels, groups, n_folds=n_folds, seed=seed)
    n_test = int(round(test_fraction * n_folds))
    n_val = int(round(val_fraction * n_folds))
    if test_fraction > 0:
        n_test = max(1, n_test)
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n_test + n_val >= n_folds:
        raise ConfigError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training "
            f"artists among {n_groups} groups; lower the fractions"
        )
    names = ["test"] * n_test + ["val"] * n_val + ["train"] * (n_folds - n_test - n_val)
    return [names[f] for f in folds]


#: Scheme names understood by :func:`assign_scheme`.
GENERIC_SCHEMES: tuple[str, ...] = ("random", "folds", "artist", "artist-folds")


def assign_scheme(scheme: str, labels: Sequence[str], groups: Sequence[str] | None = None, *,
                  seed: int = 0, val_fraction: float = DEFAULT_VAL_FRACTION,
                  test_fraction: float = DEFAULT_TEST_FRACTION,
                  n_folds: int = DEFAULT_N_FOLDS) -> tuple[list[str], list[int], int]:
    """Split names, fold numbers and fold count of one generic scheme.

    Schemes
    -------
    "random"       stratified train/val/test (:func:`stratified_split`), no folds.
    "folds"        ``n_folds`` stratified folds (:func:`stratified_folds`), split "".
    "artist"       artist-disjoint stratified train/val/test (:func:`grouped_split`).
    "artist-folds" artist-grouped stratified folds (:func:`grouped_folds`), split "".

    Returns
    -------
    splits : list of str [shape=(n_clips,)]
    folds : list of int [shape=(n_clips,)]  (-1 without folds)
    n_folds : int  (0 without folds)
    """
    n = len(labels)
    groups = list(groups) if groups is not None else [""] * n
    if scheme == "random":
        return stratified_split(labels, seed=seed, val_fraction=val_fraction,
                                test_fraction=test_fraction), [-1] * n, 0
    if scheme == "folds":
        return [""] * n, stratified_folds(labels, n_folds=n_folds, seed=seed), check_n_folds(n_folds)
    if scheme == "artist":
        return grouped_split(labels, groups, seed=seed, val_fraction=val_fraction,
                             test_fraction=test_fraction), [-1] * n, 0
    if scheme == "artist-folds":
        return [""] * n, grouped_folds(labels, groups, n_folds=n_folds, seed=seed), check_n_folds(n_folds)
    raise ConfigError(f"unknown split scheme {scheme!r}; valid: {', '.join(GENERIC_SCHEMES)}")
