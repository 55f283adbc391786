"""Benchmarks of the trainer side: the window loader and prediction latency.

``pipeline bench loader --store URI``: windows per second that one loader
process (no DataLoader workers) streams into ready float32 batches from the
store's train split, and, over the same shards, the raw rate of reading
(decompressing) them in a tight loop into reused buffers, counted in the
windows they hold; also the raw rate through zarr-python, for reference.
Targets: >= 5,000 windows/s, and >= 50% of the raw rate.

``pipeline bench predict``: end-to-end latency of one 30 s file (decode +
features of the original variant + windows + model) with one CPU thread, and
model-only latency of one batch of windows; on CUDA too where present.
Target: a 30 s file in under 0.5 s on one CPU core.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf
import torch

from model.checkpoint import feature_hash
from model.config import TrainConfig
from model.data import ThreadedLoader, WindowStream, open_source, split_clips, window_counts
from model.networks import build_model
from model.predict import Predictor
from model.runtime import autocast, torch_threads
from pipeline.config import PipelineConfig
from pipeline.errors import ModelError
from stores.protocol import ReadableStore, StoreSource

logger = logging.getLogger(__name__)


def bench_loader(store: StoreSource, *, seconds: float = 10.0, batch_size: int = 32,
                 features: tuple[str, ...] | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Loader rate and raw read rate in windows/s (each measured for about ``seconds``).

    ``features`` defaults to every feature of the store (what the full DFN reads).

    Returns
    -------
    dict : ``windows_per_s``, ``raw_windows_per_s``, ``ratio``, ``batches``, ``windows``,
    ``windows_per_cpu_s`` and ``raw_windows_per_cpu_s`` (per second of this
    process's CPU time), ``zarr_raw_windows_per_s`` (the raw reads through
    zarr-python instead of :mod:`stores.shards`, for reference),
    ``checked_windows_per_cpu_s`` / ``unchecked_windows_per_cpu_s`` (the float32 loader with and
    without the per-chunk CRC32C read checks, in alternating pairs) and ``read_check_cost`` (1 - the median of
    the pairs' ratios),
    ``float16_windows_per_s`` / ``float16_windows_per_cpu_s``
    (batches left in float16, as streamed to a GPU), ``threaded_windows_per_s``
    (float32 batches from ``loader_threads`` threads, the trainer's default), ``shards``, ``batch_size``,
    ``features``, ``store``.
    """
    store = open_source(store, storage_options)
    features = tuple(store.feature_bands) if features is None else \
        tuple(f for f in features if f in store.feature_bands)
    split = "train" if len(split_clips(store, "train")) else None

    def stream(**options: Any) -> WindowStream:
        return WindowStream(store, split=split, variants="all", features=features, batch_size=batch_size, **options)

    per_shard = [(shard, len(rows)) for shard, rows in stream(shuffle=False).plan()]
    if not per_shard:
        raise ModelError(f"store {store.uri} holds no windows to benchmark (no ok clips)")

    # One loader process = one DataLoader worker, where torch runs one thread.
    with torch_threads(1):
        return _measure(store, stream, per_shard, features, seconds, batch_size)


def _time_stream(ds: WindowStream, seconds: float, *, threads: int = 0) -> tuple[float, float, int, int]:
    """Stream ``ds`` epoch after epoch (through ``threads`` loader threads) for about ``seconds``:
    windows per second, windows per CPU second of this process, windows, batches."""
    loader = ThreadedLoader(ds, threads=threads)
    windows, batches, epoch, t0, c0 = 0, 0, 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        ds.set_epoch(epoch)
        for _, labels in loader:
            windows += len(labels)
            batches += 1
            if time.perf_counter() - t0 >= seconds:
                break
        epoch += 1
    return (windows / (time.perf_counter() - t0), windows / max(1e-9, time.process_time() - c0),
            windows, batches)


#: Alternating pairs (without, with) of the read-check comparison, each of half the measuring time.
READ_CHECK_PAIRS = 4


def _measure(store: ReadableStore, make_stream: Any, per_shard: list[tuple[int, int]], features: tuple[str, ...],
             seconds: float, batch_size: int) -> dict[str, Any]:
    # raw: whole shards read (decompressed) in a tight loop into reused
    # buffers, as the loader does, nothing else
    biggest = max(stop - start for start, stop in store.shards)
    buffers = {name: np.zeros((biggest, len(store.variants), store.feature_bands[name], store.max_frames),
                              dtype=np.float16) for name in features}

    def read_rate(engine: str) -> tuple[float, float]:
        windows, t0, c0, k = 0, time.perf_counter(), time.process_time(), 0
        while time.perf_counter() - t0 < seconds:
            shard, n = per_shard[k % len(per_shard)]
            start, stop = store.shards[shard]
            store.read_shard(shard, features=features, engine=engine,
                             out={name: b[:stop - start] for name, b in buffers.items()})
            windows += n
            k += 1
        return windows / (time.perf_counter() - t0), windows / max(1e-9, time.process_time() - c0)

    raw_rate, raw_cpu_rate = read_rate("auto")
    # for reference: the same reads through zarr-python's generic path
    zarr_rate, _ = read_rate("zarr")

    # loader: the training stream, epoch after epoch, in this process; float32
    # batches (CPU training) and float16 ones (what a CUDA run streams); then
    # the trainer's default: loader_threads threads of one process
    def stream(dtype: str, threads: int = 0, seconds: float = seconds) -> tuple[float, float, int, int]:
        return _time_stream(make_stream(dtype=dtype), seconds, threads=threads)

    rate, cpu_rate, windows, batches = stream("float32")
    # what the per-chunk CRC32C read checks cost: the same float32 stream without them, then with
    # them again, alternately in this run (a shared machine's load drifts between runs)
    # (per CPU second of this process: wall-clock rates on a shared machine move with the other processes)
    checked, unchecked = [], []
    for _ in range(READ_CHECK_PAIRS):
        for enabled in (False, True):
            store.set_chunk_checks(enabled)
            (checked if enabled else unchecked).append(stream("float32", seconds=seconds / 2)[1])
    store.set_chunk_checks(True)
    rate16, cpu_rate16, _, _ = stream("float16")
    loader_threads = TrainConfig().loader_workers
    threaded_rate, _, _, _ = stream("float32", threads=loader_threads)
    # The CPU-time rates say what one core does when the machine is shared
    # (wall-clock rates drop with every other process on the cores).
    return {"windows_per_s": rate, "raw_windows_per_s": raw_rate, "ratio": rate / raw_rate,
            "windows_per_cpu_s": cpu_rate, "raw_windows_per_cpu_s": raw_cpu_rate,
            "zarr_raw_windows_per_s": zarr_rate,
            "checked_windows_per_cpu_s": checked, "unchecked_windows_per_cpu_s": unchecked,
            "read_check_cost": 1 - float(np.median(np.divide(checked, unchecked))),
            "float16_windows_per_s": rate16, "float16_windows_per_cpu_s": cpu_rate16,
            "threaded_windows_per_s": threaded_rate, "loader_threads": loader_threads, "batches": batches,
            "windows": windows, "shards": len(per_shard), "batch_size": batch_size, "features": list(features),
            "store": str(store.uri)}


def _synthetic_file(folder: Path, seconds: float, sr: int) -> Path:
    """A 30 s test signal: chords, clicks and noise, 16-bit WAV."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    y = y + 0.5 * (rng.random(len(t)) < 4 / sr) + 0.02 * rng.standard_normal(len(t))
    path = folder / "bench-30s.wav"
    sf.write(path, (0.5 * y / np.abs(y).max()).astype(np.float32), sr, subtype="PCM_16")
    return path


def _untrained_state(name: str, config: Any) -> dict[str, Any]:
    """A checkpoint dict of an untrained network (latency does not depend on the weights)."""
    labels = [f"genre{i}" for i in range(10)]
    model = build_model(name, n_classes=len(labels), feature_bands=config.features.feature_bands())
    return {"model_name": name, "model_kwargs": {}, "labels": labels, "pipeline_config": config.to_dict(),
            "feature_hash": feature_hash(config), "model": model.state_dict(), "store": {"uri": "", "fingerprint": ""}}


def latency(name: str = "dfn", *, checkpoint: str | Path | None = None, device: str = "cpu", config: Any = None,
            repeats: int = 5, batch_size: int = 32, seconds: float = 30.0, threads: int | None = 1) -> dict[str, Any]:
    """Median end-to-end latency of one ``seconds`` file and model-only latency of one batch.

    Parameters
    ----------
    name : model preset used when ``checkpoint`` is None (an untrained network).
    checkpoint : a trained checkpoint folder (its model and pipeline config are used).
    device : "cpu" or "cuda".
    config : pipeline config of the untrained model (default: the defaults).
    threads : torch intra-op threads during the measurement on CPU (1 = one core).

    Returns
    -------
    dict : ``file_latency_s`` (wall), ``file_cpu_s`` (CPU time), ``batch_latency_s``, ``batch_size``,
    ``windows_per_file``, ``device``,
    ``model``, ``threads``, ``repeats``.
    """
    if checkpoint is not None:
        predictor = Predictor(checkpoint, device=device)
    else:
        predictor = Predictor(_untrained_state(name, config or PipelineConfig()), device=device)
    if predictor.model is None:
        name = predictor.state["model_name"]
    dev = predictor.device
    with torch_threads(threads if dev.type == "cpu" else 0):
        with tempfile.TemporaryDirectory() as tmp:
            path = _synthetic_file(Path(tmp), seconds, predictor.config.audio.sample_rate)
            predictor.predict(path)  # warm-up: filterbanks, kernels, allocator
            file_times, file_cpu = [], []
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                predictor.predict(path)
                file_times.append(time.perf_counter() - t0)
                file_cpu.append(time.process_time() - c0)
            feats = predictor.features(path)
        frames = next(iter(feats.values())).shape[-1]
        cfg = predictor.config
        n_windows = int(window_counts(np.array([frames]), cfg.window_frames, cfg.window_hop_frames)[0])
        batch_times: list[float] = []
        if predictor.model is not None:
            model = predictor.model
            bands = cfg.features.feature_bands()
            x = {n: torch.randn(batch_size, bands[n], cfg.window_frames, device=dev) for n in model.features}
            with torch.no_grad():
                for i in range(repeats + 2):
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    t0 = time.perf_counter()
                    with autocast(dev):
                        model(x)
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    if i >= 2:
                        batch_times.append(time.perf_counter() - t0)
    # file_cpu_s: CPU seconds of this process per file; on a shared machine it
    # is the better estimate of the one-core latency than the wall clock.
    return {"file_latency_s": statistics.median(file_times), "file_cpu_s": statistics.median(file_cpu),
            "batch_latency_s": statistics.median(batch_times) if batch_times else None,
            "batch_size": batch_size, "windows_per_file": n_windows, "file_seconds": seconds,
            "device": str(dev), "model": predictor.state["model_name"], "threads": threads if dev.type == "cpu" else None,
            "repeats": repeats}


def stream_rates(uris: Mapping[str, StoreSource], *, seconds: float = 4.0, rounds: int = 3) -> dict[str, list[float]]:
    """Windows/s of the float32 training stream (every feature and variant of the train split, one
    thread) of each store in ``uris``, measured ``2 * rounds`` times each in alternating order
    (a, b, b, a, ...): the comparison ``pipeline bench update`` makes of a versioned store and the
    same files unversioned, where a shared machine's drift is as large as the difference."""
    names = list(uris)
    order = [*names, *reversed(names)] * rounds
    rates: dict[str, list[float]] = {name: [] for name in names}
    with torch_threads(1):
        for name in order:
            store = open_source(uris[name], None)
            split = "train" if len(split_clips(store, "train")) else None
            ds = WindowStream(store, split=split, variants="all", features=tuple(store.feature_bands), batch_size=32)
            rates[name].append(_time_stream(ds, seconds)[0])
    return rates
