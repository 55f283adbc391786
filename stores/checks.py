"""Looking at a store as a whole: summarise it, verify it, export it to a zip.

These are the library functions behind ``pipeline info``, ``pipeline verify``
and ``pipeline export``; they return plain dicts (JSON types) so the command
line can print them either as text or as JSON.
"""

from __future__ import annotations

import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from stores.errors import StoreDamageError, StoreError
from stores.failures import count_ends_early, count_failures, describe_failure_counts, describe_skipped
from stores import schema
from stores.reader import FeatureStore, open_store
from stores.uri import READ_ONLY_SCHEMES, is_zip, local_path, redact_uri, scheme_of
from stores.backend_errors import REPAIR_FIX
from stores.integrity import find_damage
from stores.updates import padding_rows
from stores.versions import LEGACY_VERSION, VersionedStore, iter_objects, split_version
from stores.writer import store_fingerprint

logger = logging.getLogger(__name__)


def raw_float32_bytes(store: FeatureStore) -> int:
    """Bytes of every computed clip-variant's valid frames as float32."""
    bands = sum(store.feature_bands.values())
    return int(store.valid_frames.astype(np.int64).sum()) * bands * 4


def store_info(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Summary of a store (finished or not): counts, variants, features, size, provenance."""
    store = open_store(uri, storage_options=storage_options, allow_incomplete=True)
    clips = store.clips
    padding = padding_rows(clips["clip_id"].astype(str).to_numpy())
    ok = clips[clips["status"] == schema.STATUS_OK]
    per_split: dict[str, dict[str, int]] = {}
    for (split, label), n in ok.groupby(["split", "label"]).size().items():
        per_split.setdefault(split or "(none)", {})[label] = int(n)
    features = {}
    for name, bands in store.feature_bands.items():
        arr = store.group[name]
        features[name] = {
            "shape": list(arr.shape), "dims": list(arr.metadata.dimension_names or ()),
            "dtype": str(arr.dtype), "chunks": list(arr.chunks), "shards": list(arr.shards or arr.chunks),
        }
    meta = store.metadata
    computed = int((store.valid_frames > 0).sum())
    nbytes = store.nbytes_stored
    raw = raw_float32_bytes(store)
    return {
        "uri": store.uri,
        "version": store.version,
        "pinned_uri": store.pinned_uri,
        "format": meta.format,
        "schema_version": meta.schema_version,
        "complete": store.complete,
        "fingerprint": store.fingerprint,
        "config_hash": store.config_hash,
        "n_clips": store.n_clips,
        "status": {**{k: int(v) for k, v in clips.loc[~padding, "status"].value_counts().items()},
                   **({"padding rows": int(padding.sum())} if padding.any() else {})},
        "failures": count_failures(clips.loc[clips["status"] == schema.STATUS_FAILED, "reason"].tolist()),
        "ends_early": count_ends_early(ok["reason"].tolist()),
        "skipped": {why: len(paths) for why, paths in meta.dataset.skipped.items()},
        "ok_per_split_and_label": per_split,
        "ok_per_label": {k: int(v) for k, v in ok["label"].value_counts().sort_index().items()},
        "labels": list(store.labels),
        "variants": list(store.variants),
        "clips_per_variant": {v: int((store.valid_frames[:, j] > 0).sum()) for j, v in enumerate(store.variants)},
        "augmented_splits": list(meta.augmented_splits),
        "features": features,
        "max_frames": store.max_frames,
        "window": meta.window.to_attrs(),
        "layout": meta.layout.to_attrs(),
        "nbytes_stored": nbytes,
        "bytes_per_clip_variant": (nbytes / computed) if computed and nbytes >= 0 else None,
        "fraction_of_float32": (nbytes / raw) if raw and nbytes >= 0 else None,
        "dataset": meta.dataset.to_attrs(),
        "provenance": meta.provenance.to_attrs(),
        "finished": meta.finished,
    }


def format_info(info: Mapping[str, Any]) -> str:
    """Human-readable text of :func:`store_info`."""
    lines = [
        f"store        {info['uri']}",
        f"format       {info['format']} v{info['schema_version']}  "
        f"({'complete' if info['complete'] else 'INCOMPLETE: rerun the build to finish it'})",
        f"fingerprint  {info['fingerprint']}",
        f"version      {info['version']}"
        + ("" if info['version'] == LEGACY_VERSION else f"  (pin it: {info['pinned_uri']}; `pipeline log` lists all)"),
        f"dataset      {info['dataset'].get('name')} (split scheme {info['dataset'].get('split_scheme')!r}; "
        f"{info['dataset'].get('source') or 'no source given'})",
        f"clips        {info['n_clips']}: " + ", ".join(f"{n} {k}" for k, n in sorted(info["status"].items())),
    ]
    if info.get("failures"):
        lines.append(f"failures     {describe_failure_counts(info['failures'])}")
    if info.get("ends_early"):
        lines.append(f"ends early   {info['ends_early']} ok clips whose file ends a little before its declared "
                     "length (kept with the length that decodes)")
    skipped = (info.get("dataset") or {}).get("skipped") or {}
    lines += [f"skipped      {describe_skipped(why, paths)[len('skipped '):]}" for why, paths in skipped.items()]
    lines.append("ok clips per split and label:")
    labels = info["labels"]
    width = max(len(x) for x in labels + ["split"]) + 2
    lines.append("  " + "split".ljust(10) + "".join(x.rjust(width) for x in labels) + "total".rjust(8))
    for split, counts in sorted(info["ok_per_split_and_label"].items()):
        lines.append("  " + split.ljust(10) + "".join(str(counts.get(x, 0)).rjust(width) for x in labels)
                     + str(sum(counts.values())).rjust(8))
    lines.append("variants     " + ", ".join(f"{v} ({n} clips)" for v, n in info["clips_per_variant"].items()))
    lines.append("features     (dims, shape, dtype, chunk, shard)")
    for name, f in info["features"].items():
        lines.append(f"  {name:15s} {tuple(f['dims'])} {tuple(f['shape'])} {f['dtype']} "
                     f"chunk {tuple(f['chunks'])} shard {tuple(f['shards'])}")
    w = info["window"] or {}
    lines.append(f"windows      {w.get('window_frames')} frames, hop {w.get('window_hop_frames')} frames "
                 f"({w.get('window_seconds')} s, overlap {w.get('overlap')})")
    size = info["nbytes_stored"]
    if size >= 0:
        per_variant = (info["bytes_per_clip_variant"] or 0) / 1024
        lines.append(f"size         {size / 2**20:.1f} MiB; {per_variant:.1f} KiB per clip-variant; "
                     f"{(info['fraction_of_float32'] or 0):.3f} of raw float32")
    prov = info["provenance"] or {}
    libs = prov.get("libraries", {})
    lines.append(f"provenance   {prov.get('package')} {prov.get('package_version')}, created {prov.get('created')}, "
                 f"finished {info.get('finished')}")
    lines.append("             " + ", ".join(f"{k} {v}" for k, v in libs.items()))
    return "\n".join(lines)


def verify_store(uri: str | Path, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check a store end to end; never raises for a damaged store, reports instead.

    Checks: format and schema version; completeness (flag and every shard's
    digest); array shapes, dtypes and dimension names against the root
    attributes; consistent statuses and valid frame counts; no NaN/Inf in any
    valid frame; every object against its checksums, every shard's digest
    recomputed from the data read back, stray and missing objects, every
    array's metadata (:func:`stores.integrity.find_damage`: all damage in one
    run, by array and shard); the fingerprint recomputed from the digests.

    Returns
    -------
    dict
        ``{"uri", "ok": bool, "checks": [{"name", "ok", "detail"}]}``.
    """
    shown = redact_uri(uri)
    try:
        store = open_store(uri, storage_options=storage_options, allow_incomplete=True)
    except StoreError as exc:
        return _report(shown, [_check("open", False, str(exc))])
    checks = [_check("schema", True, f"{schema.FORMAT_NAME} v{store.metadata.schema_version}")]
    nonfinite: list[str] = []

    def finite(shard: int, blocks: dict[str, np.ndarray], valid: np.ndarray) -> None:
        frames = np.arange(store.max_frames)[None, None, :] < valid[:, :, None]
        for name, block in blocks.items():
            if not np.isfinite(block.transpose(0, 1, 3, 2)[frames]).all():  # (valid clip-variant-frames, bands)
                nonfinite.append(f"{name} in shard {shard}")

    try:
        digests = [str(d) for d in store.column(schema.SHARD_DIGEST)]
    except StoreError:  # a damaged digest object: find_damage names it below
        digests = [""] * len(store.shards)
    built = sum(bool(d) for d in digests)
    finished = store.complete and built == len(digests)
    checks.append(_check("complete", finished, "complete" if finished else
                         f"complete flag {store.complete}; {len(digests) - built} of {len(digests)} shards not built "
                         "(rerun the build to resume)"))
    try:
        shape_problems = _shape_problems(store)
    except Exception:  # noqa: BLE001 - an array's metadata is damaged: find_damage names it below
        shape_problems = []
    else:
        checks.append(_check("shapes", not shape_problems, "; ".join(shape_problems)
                             or f"{len(store.feature_bands)} features, {store.n_clips} clips"))
    if shape_problems:  # the checks below index the arrays by these shapes
        return _report(shown, checks)
    try:
        damage = find_damage(store, on_shard=finite)
    except StoreError as exc:  # the store cannot be reached any more (network, credentials): not damage
        return _report(shown, [*checks, _check("read", False, str(exc))])
    try:
        column_problems = _column_problems(store)
        status = store.clips["status"].to_numpy()
        checks.append(_check("columns", not column_problems, "; ".join(column_problems) or
                             f"{int((status == schema.STATUS_OK).sum())} ok, "
                             f"{int((status == schema.STATUS_FAILED).sum())} failed"))
    except StoreError:  # a damaged column: named by find_damage
        pass
    checks.append(_check("finite", not nonfinite, "; ".join(nonfinite[:10]) or "no NaN/Inf in valid frames"))
    shards = sorted({d.shard for d in damage if d.shard >= 0})
    checks.append(_check(
        "digests", not damage,
        f"{len(damage)} damaged: shards {shards}, {len(damage) - sum(d.shard >= 0 for d in damage)} other; "
        + REPAIR_FIX.format(uri=shown) if damage else
        f"{built} shards match",
        items=[d.describe() for d in damage]))
    if finished and not damage:
        matches = store_fingerprint(store.config_hash, store.metadata.clips_hash, digests) \
            == store.metadata.fingerprint
        checks.append(_check("fingerprint", matches, "matches the shard digests" if matches else
                             "the root fingerprint does not match the shard digests"))
    return _report(shown, checks)


def _check(name: str, ok: bool, detail: str = "", items: list[str] | None = None) -> dict[str, Any]:
    """One entry of :func:`verify_store`'s ``checks`` (``items``: one line per finding, e.g. per damaged object)."""
    entry: dict[str, Any] = {"name": name, "ok": bool(ok), "detail": detail}
    if items:
        entry["items"] = list(items)
    return entry


def _report(shown_uri: str, checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"uri": shown_uri, "ok": all(c["ok"] for c in checks), "checks": checks}


def _shape_problems(store: FeatureStore) -> list[str]:
    """Feature arrays, per-clip columns and valid_frames whose shape (dtype, dims) the attributes contradict."""
    g = store.group
    n, nv, mf = store.n_clips, len(store.variants), store.max_frames
    problems = []
    for name, bands in store.feature_bands.items():
        arr = g[name]
        want = (n, nv, bands, mf)
        dims = ("clip", "variant", schema.feature_dim(name), "frame")
        if tuple(arr.shape) != want or str(arr.dtype) != schema.FEATURE_DTYPE \
                or tuple(arr.metadata.dimension_names or ()) != dims:
            problems.append(f"{name}: {tuple(arr.shape)} {arr.dtype} {arr.metadata.dimension_names}, "
                            f"expected {want} {schema.FEATURE_DTYPE} {dims}")
    for name in (*schema.CLIP_COLUMNS, *store.metadata.aug_arrays()):
        if tuple(g[name].shape) != (n,):
            problems.append(f"{name}: shape {tuple(g[name].shape)}, expected ({n},)")
    if tuple(g[schema.VALID_FRAMES].shape) != (n, nv):
        problems.append(f"valid_frames: shape {tuple(g[schema.VALID_FRAMES].shape)}, expected ({n}, {nv})")
    return problems


def _column_problems(store: FeatureStore) -> list[str]:
    """Statuses, reasons and valid frame counts that do not agree with each other."""
    # the raw column: the reader's own check of ok clips without frames would stop here, not report
    clips, valid, mf = store.clips, np.asarray(store.column(schema.VALID_FRAMES)), store.max_frames
    status = clips["status"].to_numpy()
    problems = []
    bad_status = sorted(set(status) - {schema.STATUS_OK, schema.STATUS_FAILED, schema.STATUS_PENDING})
    if bad_status:
        problems.append(f"unknown status values {bad_status}")
    if (valid < 0).any() or (valid > mf).any():
        problems.append(f"valid_frames outside 0..{mf}")
    is_ok = status == schema.STATUS_OK
    if (valid[is_ok, 0] <= 0).any():
        problems.append(f"{int((valid[is_ok, 0] <= 0).sum())} ok clips without original frames")
    if (valid[~is_ok] != 0).any():
        problems.append("failed/pending clips with stored frames")
    if (clips.loc[status == schema.STATUS_FAILED, "reason"] == "").any():
        problems.append("failed clips without a reason")
    return problems


def format_verify(report: Mapping[str, Any]) -> str:
    lines = [f"verify {report['uri']}"]
    for c in report["checks"]:
        lines.append(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['name']:12s} {c['detail']}")
        lines += [f"      {item}" for item in c.get("items", ())]
    lines.append("OK" if report["ok"] else "FAILED")
    return "\n".join(lines)


def export_store(uri: str | Path, out: str | Path, *, storage_options: Mapping[str, Any] | None = None,
                 overwrite: bool = False) -> Path:
    """Copy a finished store into one zip file that :func:`open_store` reads directly.

    Members are stored uncompressed (the chunks are compressed already), so
    a reader seeks straight to any shard.

    Raises
    ------
    StoreIncompleteError
        The store's build has not finished.
    StoreError
        ``out`` is not a .zip path, exists (without ``overwrite``), or the
        source cannot be listed (HTTP).
    """
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise StoreError(f"export target {out} must end in .zip")
    if out.exists() and not overwrite:
        raise StoreError(f"export target {out} exists; remove it or choose another name")
    source = open_store(uri, storage_options=storage_options)  # refuses unfinished stores
    damage = find_damage(source)  # every object checked: an export never ships damaged bytes
    if damage:
        raise StoreDamageError(f"cannot export {source.uri}: {len(damage)} damaged object(s), first "
                               f"{damage[0].describe()}; " + REPAIR_FIX.format(uri=source.uri),
                               array=damage[0].array, shard=damage[0].shard, problem=damage[0].problem)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    if is_zip(uri) and split_version(uri)[1] is None:
        shutil.copyfile(local_path(uri), tmp)
    else:
        # The version's logical keys (a versioned store holds every version's objects under one
        # location): what is written is plain Zarr that zarr and xarray open without this package.
        zarr_store = source.group.store
        if not isinstance(zarr_store, VersionedStore) and scheme_of(uri) in READ_ONLY_SCHEMES:
            raise StoreError(f"cannot export {source.uri}: HTTP cannot list a store's objects; "
                             "export from the original location")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, data in iter_objects(zarr_store):
                zf.writestr(key, data)
    os.replace(tmp, out)
    exported = open_store(out)
    if exported.fingerprint != source.fingerprint:
        raise StoreError(f"the exported {out} does not reproduce {source.uri} (fingerprints differ)")
    logger.info("exported %s to %s (%d bytes)", source.uri, out, out.stat().st_size)
    return out
