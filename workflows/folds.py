"""Cross-validation folds as train/val/test splits of an unchanged store.

A store built with a fold scheme records each clip's fold (0..k-1) and an
empty split. The trainer and the evaluator select clips by split name; a
:class:`FoldView` is the same store with the split column derived from the
folds of one cross-validation round (test fold k, validation fold k+1 mod
n, training folds the rest), so training, normalisation statistics,
early stopping and evaluation all see that round's roles while the arrays,
config and fingerprint stay the store's own. Augmented variants exist for
every clip of a fold-built store (``augment_splits = ["all"]``), so every
training fold has them.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Mapping

import pandas as pd

from pipeline.errors import ConfigError
from stores.reader import FeatureStore

logger = logging.getLogger(__name__)


class FoldView(FeatureStore):
    """A read-only store whose ``split`` column comes from fold roles.

    Parameters
    ----------
    base : an open :class:`~stores.reader.FeatureStore` with a fold column.
    roles : fold number -> "train", "val" or "test"; clips of other folds get
        split "" (used by no loader).
    """

    def __init__(self, base: FeatureStore, roles: Mapping[int, str]) -> None:
        super().__init__(base.group, base._raw_uri, base._storage_options)
        bad = {r for r in roles.values() if r not in ("train", "val", "test")}
        if bad:
            raise ConfigError(f"fold roles {sorted(bad)} are not splits; use 'train', 'val' or 'test'")
        self.roles = {int(k): str(v) for k, v in roles.items()}
        folds = set(base.clips["fold"].astype(int)) - {-1}
        missing = sorted(set(self.roles) - folds)
        if missing:
            raise ConfigError(
                f"store {base.uri} has no clips in fold(s) {missing} (its folds: {sorted(folds) or 'none'}); "
                "build it with a fold split scheme (e.g. --set dataset.split=folds)"
            )

    def __repr__(self) -> str:
        return f"FoldView({self.uri!r}, roles={self.roles})"

    @functools.cached_property
    def clips(self) -> pd.DataFrame:  # type: ignore[override]
        frame = FeatureStore.clips.func(self).copy()  # the stored table, uncached on the base
        frame["split"] = frame["fold"].astype(int).map(lambda f: self.roles.get(int(f), "")).astype(str)
        return frame


def round_roles(test_fold: int, n_folds: int) -> dict[int, str]:
    """Fold roles of one cross-validation round: test k, validation k+1 (mod n), train the rest."""
    if n_folds < 3 or not 0 <= test_fold < n_folds:
        raise ConfigError(f"test fold {test_fold} of {n_folds} folds: need n_folds >= 3 and 0 <= fold < n_folds")
    val = (test_fold + 1) % n_folds
    return {f: ("test" if f == test_fold else "val" if f == val else "train") for f in range(n_folds)}


def fold_view(store: Any, test_fold: int, n_folds: int) -> FoldView:
    """Open ``store`` (a URI or an open store) as round ``test_fold`` of ``n_folds``."""
    from stores import open_store

    base = store if isinstance(store, FeatureStore) else open_store(str(store))
    return FoldView(base, round_roles(test_fold, n_folds))
