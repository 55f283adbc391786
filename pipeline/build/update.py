"""Which clips an update adds to a store, and the splits and folds they get.

``pipeline build ... --out STORE --update`` over a grown collection adds only
the clips the store does not hold. Existing clips never change split or fold
(the store's columns win over whatever the manifest says now). New clips get
theirs:

- by the dataset's own rule when the scheme is a fixed one (FMA's official
  split per track, GTZAN's fault-filtered lists): the manifest's value;
- for the seeded generic schemes (:data:`pipeline.datasets.splits.GENERIC_SCHEMES`),
  whose assignment depends on the whole collection and would reshuffle it,
  by :func:`assign_new_clips`: a clip of an artist (group) already placed
  goes where that artist is (artist-disjointness holds), any other clip goes
  to the split/fold that is furthest below its share among the stored clips
  of the same label (the fractions stay close).

Clips the store holds whose files are gone stay in the store and are
reported (:attr:`Growth.vanished`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Mapping, Sequence

import pandas as pd

from pipeline.config import AUGMENTATIONS, FEATURES, PipelineConfig
from pipeline.datasets.base import ClipRecord, Manifest
from pipeline.datasets.splits import GENERIC_SCHEMES
from pipeline.errors import ConfigMismatchError
from stores.errors import StoreDamageError
from stores.reader import open_store
from stores.updates import (add_features, appended_features, appended_variants, check_same_config, extend_store,
                            grow_store, newest_writer, open_existing, padding_rows)


@dataclasses.dataclass(frozen=True)
class Growth:
    """What an update adds.

    new : the manifest's clips the store does not hold, with their split and fold decided.
    vanished : ids of stored clips the collection no longer has (they stay in the store).
    """

    new: tuple[ClipRecord, ...]
    vanished: tuple[str, ...]


def plan_growth(manifest: Manifest, stored: pd.DataFrame, *, split_scheme: str) -> Growth:
    """The clips of ``manifest`` that ``stored`` (the store's clip table, padding left out) lacks.

    Parameters
    ----------
    manifest : the collection as it is now.
    stored : columns clip_id, label, split, fold, group of the stored clips.
    split_scheme : the scheme the store was built with (its ``dataset.split_scheme``).
    """
    stored_ids = set(stored["clip_id"].astype(str))
    current_ids = {c.clip_id for c in manifest.clips}
    new = [c for c in manifest.clips if c.clip_id not in stored_ids]
    vanished = tuple(sorted(stored_ids - current_ids))
    if split_scheme in GENERIC_SCHEMES:
        new = assign_new_clips(stored, new)
    return Growth(tuple(new), vanished)


def assign_new_clips(stored: pd.DataFrame, new: Sequence[ClipRecord]) -> list[ClipRecord]:
    """``new`` with the split and fold that keep the stored assignment (see the module docstring).

    Deterministic: clips are placed in the order of a SHA-256 of their ids,
    so the same collection always gets the same assignment.
    """
    if not new:
        return []
    cells = sorted({(str(s), int(f)) for s, f in zip(stored["split"], stored["fold"])})
    if not cells:
        return list(new)
    by_group = {str(g): (str(s), int(f)) for g, s, f in zip(stored["group"], stored["split"], stored["fold"]) if g}
    counts: dict[str, dict[tuple[str, int], int]] = {}
    for label, s, f in zip(stored["label"], stored["split"], stored["fold"]):
        per_label = counts.setdefault(str(label), dict.fromkeys(cells, 0))
        per_label[(str(s), int(f))] += 1
    overall = dict.fromkeys(cells, 0)
    for per_label in counts.values():
        for cell, n in per_label.items():
            overall[cell] += n
    total = sum(overall.values())
    share = {cell: n / total for cell, n in overall.items()}

    placed: dict[str, tuple[str, int]] = {}
    for clip in sorted(new, key=lambda c: hashlib.sha256(c.clip_id.encode()).hexdigest()):
        if clip.group and clip.group in by_group:
            cell = by_group[clip.group]
        else:
            per_label = counts.setdefault(clip.label, dict.fromkeys(cells, 0))
            after = sum(per_label.values()) + 1
            # the cell furthest below its share of this label's clips (ties: the stored order of cells)
            cell = max(cells, key=lambda c: (share[c] * after - per_label[c], -cells.index(c)))
            if clip.group:
                by_group[clip.group] = cell
        counts.setdefault(clip.label, dict.fromkeys(cells, 0))[cell] += 1
        placed[clip.clip_id] = cell
    return [dataclasses.replace(c, split=placed[c.clip_id][0], fold=placed[c.clip_id][1]) for c in new]


def aug_param_names(variants: Sequence[str]) -> dict[str, list[str]]:
    """Variant -> the parameter names it draws (from the augmentation registry), as the store records them."""
    return {v: sorted(AUGMENTATIONS[v].param_names) for v in variants}


def growth_of(manifest: Manifest, uri: str, storage_options: Mapping[str, Any], *, update: bool) -> Growth | None:
    """What ``pipeline build --update`` would add to the store at ``uri``; None when there is no store.

    Raises
    ------
    ConfigMismatchError
        The collection has clips the store lacks and ``update`` is False
        (the message gives their number and the flag that adds them).
    """
    try:
        store = open_existing(uri, storage_options=storage_options)
        if store is None:
            return None
        table = store.static_clips  # the split rule reads these; the outcome columns are one object per shard
    except StoreDamageError:
        # Damaged per-clip columns (a missing status object, a changed clip_id chunk): which clips the store
        # holds cannot be read, so no growth can be planned. The rerun goes to create_store, which compares the
        # collection's clip list with the hash the store's root records: the same list is a repair of the
        # damaged objects (one new version), another list is refused there, naming the difference.
        return None
    table = table[~padding_rows(table["clip_id"].astype(str).to_numpy())]
    growth = plan_growth(manifest, table, split_scheme=store.metadata.dataset.split_scheme)
    if update:
        return growth
    if growth.new and store.complete:
        raise ConfigMismatchError(
            f"the collection has {len(growth.new):,} clips that {store.uri} does not hold "
            f"({len(table):,} stored): pass --update to add them as a new version (existing shards stay as they "
            "are), or --overwrite to rebuild everything"
        )
    return None


def start_growth(uri: str, growth: Growth, manifest: Manifest, config: PipelineConfig,
                 storage_options: Mapping[str, Any]) -> tuple[Any, dict[int, ClipRecord]]:
    """Start (or resume) the update that adds ``growth.new``: the writer and, per clip index
    of the grown store, the new clip stored there."""
    from pipeline.build import store_order  # the one definition of the clips' order in a store (plan imports us)

    labels = list(open_store(uri, storage_options=storage_options).labels)
    unknown = sorted({c.label for c in growth.new} - set(labels))
    if unknown:
        raise ConfigMismatchError(f"new clips have labels {unknown} that {uri} does not have ({labels}): an update "
                                  "cannot add labels (the label axis of trained models would change); build a new store")
    new = store_order(dataclasses.replace(manifest, clips=growth.new)).clips
    columns = {"clip_id": [c.clip_id for c in new], "label": [c.label for c in new],
               "label_index": [labels.index(c.label) for c in new], "split": [c.split for c in new],
               "fold": [c.fold for c in new], "group": [c.group for c in new], "source": [c.path for c in new]}
    writer = grow_store(uri, config=config, clips=columns, storage_options=storage_options)
    first = writer.layout.n_clips - len(new)
    return writer, {first + k: clip for k, clip in enumerate(new)}


def open_newest(uri: str, storage_options: Mapping[str, Any], config: PipelineConfig) -> Any:
    """A writer on the newest version of ``uri`` that has nothing to do (an update that adds nothing).

    Raises
    ------
    ConfigMismatchError
        ``config`` is not the store's: the update would change features, which it cannot.
    """
    writer = newest_writer(uri, storage_options=storage_options)
    check_same_config(writer.metadata, config, writer.uri)
    return writer


@dataclasses.dataclass(frozen=True)
class Extension:
    """An update that extends every stored clip: new augmentation variants or new features.

    writer : the update's writer (its transaction).
    clips : clip index -> the stored clip there.
    variants : clip index -> the variants computed for it: the new ones (a
        variant extension) or the ones it has stored (a feature extension);
        () for a clip that gets nothing (it is not decoded at all).
    added_variants, added_features : what the update adds (one of them is empty).
    """

    writer: Any
    clips: dict[int, ClipRecord]
    variants: dict[int, tuple[str, ...]]
    added_variants: tuple[str, ...] = ()
    added_features: tuple[str, ...] = ()


def added_features_of(metadata: Any, config: PipelineConfig) -> tuple[str, ...]:
    """The optional features ``config`` appends to the store's (see :func:`stores.updates.appended_features`)."""
    stored = set(metadata.features)
    new = [name for name in config.features.feature_names() if name not in stored]
    free = ["features.extra", *(f"features.{p}" for name in new for p in FEATURES[name].params)]
    return appended_features(metadata, config, free)


def start_extension(uri: str, config: PipelineConfig, storage_options: Mapping[str, Any]) -> Extension | None:
    """Start (or resume) the update that adds ``config``'s new augmentation variants or new
    features to the store at ``uri``; None when ``config`` adds neither.

    A variant extension decodes the ok clips of the augmented splits and
    computes only the new variants (all features); a feature extension decodes
    every ok clip and computes only the new features, of each variant the
    clip has stored (the same augmentation parameters are drawn again from
    the seed, so the variant signals are the stored ones). A config that
    appends both is neither (each check holds every other setting to the
    store's): :func:`open_newest` refuses it, naming the way.
    """
    store = open_store(uri, storage_options=storage_options)
    variants_added = appended_variants(store.metadata, config)
    features_added = added_features_of(store.metadata, config)
    if not variants_added and not features_added:
        return None
    clips = {i: ClipRecord(str(row.clip_id), str(row.source), str(row.label), str(row.split), int(row.fold),
                           str(row.group)) for i, row in enumerate(store.clips.itertuples())}
    ok = (store.clips["status"] == "ok").to_numpy()
    if variants_added:
        augmented = store.metadata.augmented_splits
        variants = {i: tuple(variants_added) if ok[i] and ("all" in augmented or clip.split in augmented) else ()
                    for i, clip in clips.items()}
        writer = extend_store(uri, config=config, storage_options=storage_options,
                              aug_params=aug_param_names(variants_added), n_augmented=sum(map(bool, variants.values())))
        return Extension(writer, clips, variants, added_variants=tuple(variants_added))
    stored_variants = store.valid_frames > 0  # [clip, variant]: what each clip has
    variants = {i: tuple(v for j, v in enumerate(store.variants) if ok[i] and stored_variants[i, j]) for i in clips}
    writer = add_features(uri, config=config, added=features_added, storage_options=storage_options)
    return Extension(writer, clips, variants, added_features=tuple(features_added))
