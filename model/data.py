"""Streaming 3 s windows out of a feature store into PyTorch.

The store holds clip-level frame sequences (``clip x variant x bands x
frames``, float16); a window is a slice of ``store.window_frames`` frames
starting every ``store.window_hop_frames`` frames within a clip-variant's
valid frames. :class:`WindowStream` decodes whole shards into buffers it
reuses (:mod:`stores.shards`), shuffles the windows of several shards, and
copies each batch's windows out with one compiled gather per feature
(:mod:`model.gather`), yielding ready batches, so the DataLoader runs with
``batch_size=None``.

Which windows a loader may see is decided here, once: training uses every
stored variant of the train split's clips; validation and test use the
original variant only. Clips never cross splits because selection is by the
store's per-clip split column.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from model.gather import gather_into
from pipeline.errors import ModelError
from stores import open_store
from stores.protocol import ReadableStore, StoreSource
from stores.schema import DEFAULT_CLIPS_PER_SHARD

logger = logging.getLogger(__name__)

Batch = tuple[dict[str, torch.Tensor], torch.Tensor]


def open_source(source: StoreSource, storage_options: Mapping[str, Any] | None = None) -> ReadableStore:
    """A store object from a URI (via ``stores.open_store``) or an already open store (returned as is)."""
    if isinstance(source, (str, os.PathLike)):
        return open_store(str(source), storage_options=dict(storage_options or {}))
    return source


def window_counts(valid_frames: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Windows per clip-variant: ``1 + (n - window) // hop`` for ``n >= window``.

    A clip-variant with fewer valid frames than one window but more than zero
    still yields one window (its tail is the store's padding); zero valid
    frames (absent variant) yields none.
    """
    n = np.asarray(valid_frames, dtype=np.int64)
    full = 1 + (n - window) // hop
    return np.where(n >= window, full, np.where(n > 0, 1, 0)).astype(np.int64)


def window_index(valid_frames: np.ndarray, clips: np.ndarray, variants: Sequence[int],
                 window: int, hop: int) -> np.ndarray:
    """Every window of the given clips and variants.

    Parameters
    ----------
    valid_frames : int [shape=(n_clips, n_variants)]
        The store's valid frame counts.
    clips : int [shape=(k,)]
        Clip indices (rows of ``valid_frames``).
    variants : sequence of int
        Variant columns to use.

    Returns
    -------
    np.ndarray, int64 [shape=(n_windows, 3)]
        Rows ``(clip, variant, start_frame)``, clip-major, in start order.
    """
    clips = np.asarray(clips, dtype=np.int64)
    variants = np.asarray(variants, dtype=np.int64)
    cc = np.repeat(clips, len(variants))
    vv = np.tile(variants, len(clips))
    counts = window_counts(valid_frames[cc, vv], window, hop) if len(cc) else np.zeros(0, np.int64)
    total = int(counts.sum())
    first = np.repeat(np.cumsum(counts) - counts, counts)
    starts = (np.arange(total, dtype=np.int64) - first) * hop
    return np.stack([np.repeat(cc, counts), np.repeat(vv, counts), starts], axis=1)


def split_clips(store: ReadableStore, split: str | None, clips: np.ndarray | None = None,
                folds: Sequence[int] | None = None) -> np.ndarray:
    """Indices of the ``ok`` clips of ``split`` (or of ``folds`` when given), optionally within ``clips``."""
    if folds:
        selected = np.asarray(store.select(fold=tuple(int(f) for f in folds)), dtype=np.int64)
    else:
        selected = np.asarray(store.select(split=split), dtype=np.int64)
    if clips is not None:
        outside = np.setdiff1d(np.asarray(clips, dtype=np.int64), selected)
        if len(outside):
            where = f"folds {list(folds)}" if folds else f"split {split!r}"
            raise ModelError(f"clips {outside[:5].tolist()} of store {store.uri} are not ok clips of {where}; "
                             f"pass only indices from store.select(...)")
        selected = np.intersect1d(selected, clips)
    return selected


def split_variants(store: ReadableStore, variants: str) -> list[int]:
    """Variant columns to read: ``"all"`` (training) or ``"original"`` (validation, test)."""
    if variants == "all":
        return list(range(len(store.variants)))
    if variants == "original":
        return [0]
    raise ModelError(f"variants={variants!r} must be 'all' or 'original'")


def gather_windows(arrays: Mapping[str, np.ndarray], rows: np.ndarray, window: int) -> dict[str, np.ndarray]:
    """Cut float32 windows out of one shard's arrays.

    Parameters
    ----------
    arrays : name -> [shape=(clips_in_shard, n_variants, bands, frames)] (any float dtype)
    rows : int [shape=(n, 3)]
        ``(clip_in_shard, variant, start_frame)`` per window.

    Returns
    -------
    name -> float32 [shape=(n, bands, window)]

    Stored float16 arrays go through :func:`model.gather.gather_into` (one
    pass, converting on the way); others through one fancy-indexing gather
    over a strided view.
    """
    result = {}
    for name, arr in arrays.items():
        if arr.dtype == np.float16 and arr.flags.c_contiguous:
            result[name] = np.empty((len(rows), arr.shape[2], window), np.float32)
            gather_into({name: arr}, rows, window, result)
            continue
        view = np.lib.stride_tricks.sliding_window_view(arr, window, axis=-1)  # (C, V, B, F-W+1, W)
        taken = view[rows[:, 0], rows[:, 1], :, rows[:, 2]]  # advanced dims first: (n, B, W)
        result[name] = taken.astype(np.float32, copy=False)
    return result


def clips_by_shard(store: ReadableStore, clips: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(shard, its first clip index, the given clips it holds, ascending)`` for each shard holding any."""
    clips = np.sort(np.asarray(clips, dtype=np.int64))
    for shard, (start, stop) in enumerate(store.shards):
        mine = clips[(clips >= start) & (clips < stop)]
        if len(mine):
            yield shard, start, mine


def _shard_stops(shards: Sequence[tuple[int, int]]) -> np.ndarray:
    """End clip index of each shard: ``searchsorted`` over it maps a clip to its shard."""
    return np.asarray([stop for _, stop in shards], dtype=np.int64)


class WindowStream(IterableDataset):
    """Batches of 3 s windows streamed from a store, shards divided among workers and ranks.

    Parameters
    ----------
    source : str or store
        A store URI (opened lazily inside each worker process, so no fsspec
        client crosses a fork) or an open store object (tests).
    split : {"train", "val", "test"}
    folds : select clips by cross-validation fold instead of by split.
    variants : "all" (every stored variant) or "original"; default "all" for
        the train split, "original" for any other selection.
    features : names of the features to read (only those are decompressed).
    batch_size : windows per batch.
    shuffle : shuffle shard order and windows (seeded by ``seed`` and the epoch).
    buffer_shards : shards of 16 clips held in memory at once; windows are
        shuffled across them. A store with smaller shards (a small collection's
        build makes them) is read that many more shards at a time, so the
        shuffle always mixes the same number of clips. Each stream (each loader thread or worker) keeps their decode
        buffers for its lifetime: ~64 MB per shard of 16 clips x 5 variants of 30 s.
    clips : restrict to these clip indices (must be ``ok`` clips of ``split``).
    rank, world_size : DDP position; ``None`` reads ``torch.distributed`` when initialised.
    drop_last : drop each worker's final partial batch.
    with_keys : also yield the ``(clip, variant, start)`` rows of each batch (tests, evaluation).
    dtype : "float32", or "float16" to yield the stored half precision (half the
        bytes through pinned memory and PCIe; the trainer converts on the GPU).
    pin_memory : allocate batches in pinned (page-locked) memory, for
        asynchronous copies to CUDA (needs CUDA; with :class:`ThreadedLoader`,
        where no DataLoader pins them).

    Shards are decoded into float16 buffers allocated once per process
    (``buffer_shards`` shards of every feature) and windows are converted to
    float32 while being copied into each batch, so a window costs one decode
    and one copy (measured: ~27 us and ~13 us of one core).

    Yields
    ------
    (features, labels) or (features, labels, keys): features name -> float32
    ``(batch, bands, window_frames)``, labels int64 ``(batch,)``, keys int64 ``(batch, 3)``.
    """

    def __init__(self, source: StoreSource, *, split: str | None = "train", features: Sequence[str],
                 folds: Sequence[int] | None = None, variants: str | None = None, batch_size: int = 32,
                 shuffle: bool = True, buffer_shards: int = 4, seed: int = 0, clips: np.ndarray | None = None,
                 storage_options: Mapping[str, Any] | None = None, rank: int | None = None,
                 world_size: int | None = None, drop_last: bool = False, with_keys: bool = False,
                 dtype: str = "float32", pin_memory: bool = False) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ModelError(f"batch_size={batch_size} must be a positive integer")
        if buffer_shards <= 0:
            raise ModelError(f"buffer_shards={buffer_shards} must be a positive integer")
        self.source = source
        self.storage_options = dict(storage_options or {})
        self.split = split
        self.folds = tuple(int(f) for f in folds) if folds else None
        self.variants = variants or ("all" if split == "train" and not folds else "original")
        if self.variants not in ("all", "original"):
            raise ModelError(f"variants={variants!r} must be 'all' or 'original'")
        self.features = tuple(features)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.buffer_shards = buffer_shards
        self.seed = seed
        self.clips = None if clips is None else np.asarray(clips, dtype=np.int64)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.with_keys = with_keys
        if dtype not in ("float32", "float16"):
            raise ModelError(f"dtype={dtype!r} must be 'float32' or 'float16'")
        self.dtype = dtype
        self.epoch = 0
        self._iterations = 0
        self._store: ReadableStore | None = None
        self._store_pid: int | None = None
        self._buffers: dict[str, np.ndarray] | None = None
        self._slot: tuple[int, int] | None = None  # (thread, threads) inside a ThreadedLoader
        self.pin_memory = pin_memory

    # -- process-local store ---------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(self.source, (str, os.PathLike)):
            # Never ship an open store (and its fsspec/async clients) to a worker.
            state["_store"], state["_store_pid"] = None, None
        state["_buffers"] = None  # per-process decode buffers, hundreds of MB; never pickled
        return state

    @property
    def store(self) -> ReadableStore:
        if self._store is None or self._store_pid != os.getpid():
            self._store = open_source(self.source, self.storage_options)
            self._store_pid = os.getpid()
            if isinstance(self.source, (str, os.PathLike)):
                # Workers opened later read the version this process chose, not a newer one an
                # update committed in between (stores.versions).
                self.source = getattr(self._store, "pinned_uri", self.source)
        return self._store

    def set_epoch(self, epoch: int) -> None:
        """Reseed shuffling for ``epoch``; call before each epoch.

        Persistent DataLoader workers hold their own copy of the dataset and
        never see this call; each copy counts its ``__iter__`` calls instead
        (one per epoch), starting from the epoch it was created at, so they
        agree with the main process.
        """
        self.epoch = int(epoch)
        self._iterations = 0

    def next_epoch(self) -> int:
        """Count one iteration and return the epoch it covers: the set one plus the iterations since.

        Iterating the stream calls it; a loader that iterates copies of the
        stream (:class:`ThreadedLoader`) calls it once per epoch instead.
        """
        self._iterations += 1
        return self.epoch + self._iterations - 1

    def thread_copy(self, slot: int, threads: int) -> "WindowStream":
        """The stream as thread ``slot`` of ``threads`` reads it: the same open store and
        settings, its own share of the shards and its own decode buffers."""
        clone = object.__new__(type(self))  # not copy.copy: __getstate__ drops the open store
        clone.__dict__.update(self.__dict__, _buffers=None, _slot=(slot, threads))
        return clone

    # -- planning ----------------------------------------------------------
    def _position(self) -> tuple[int, int]:
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            else:
                rank, world = 0, 1
        info = get_worker_info()
        if self._slot is not None:  # a thread of a ThreadedLoader
            worker, n_workers = self._slot
        else:
            n_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return rank * n_workers + worker, world * n_workers

    def plan(self, epoch: int | None = None) -> list[tuple[int, np.ndarray]]:
        """All ``(shard, windows)`` of ``epoch`` (default: the set one) in reading order, before division.

        ``windows`` are rows ``(clip, variant, start)`` of that shard's clips.
        """
        store = self.store
        clips = split_clips(store, self.split, self.clips, self.folds)
        rows = window_index(np.asarray(store.valid_frames), clips, split_variants(store, self.variants),
                            store.window_frames, store.window_hop_frames)
        shards = list(store.shards)
        stops = _shard_stops(shards)
        shard_of_row = np.searchsorted(stops, rows[:, 0], side="right")
        order = np.arange(len(shards))
        if self.shuffle:
            epoch = self.epoch if epoch is None else epoch
            order = np.random.default_rng([self.seed, epoch]).permutation(len(shards))
        plan = []
        for s in order:
            mine = rows[shard_of_row == s]
            if len(mine):
                plan.append((int(s), mine))
        return plan

    def __len__(self) -> int:
        """Batches per epoch over all workers of this rank (upper bound under ``drop_last=False``)."""
        world = self._position()[1]
        return math.ceil(self.n_windows() / max(1, world) / self.batch_size)

    def n_windows(self) -> int:
        """Windows of one epoch, all workers and ranks together."""
        return sum(len(r) for _, r in self.plan())

    # -- iteration ---------------------------------------------------------
    def _group_shards(self, store) -> int:
        """Shards read and shuffled together: ``buffer_shards`` shards' worth of 16-clip shards."""
        per_shard = max(1, max(stop - start for start, stop in store.shards))
        return max(self.buffer_shards, -(-self.buffer_shards * DEFAULT_CLIPS_PER_SHARD // per_shard))

    def _read_group(self, store: ReadableStore, group: list[tuple[int, np.ndarray]]
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Decode a group of shards into this stream's reused group buffers.

        Returns the buffers (name -> ``(clips, n_variants, bands, frames)``,
        float16; the group's shards one after another) and the group's window
        rows ``(clip_in_buffer, variant, start, clip)``. Only the variants this
        stream reads are decoded; the buffers' other slots hold stale data no
        row points at.
        """
        if self._buffers is None:
            capacity = self._group_shards(store) * max(stop - start for start, stop in store.shards)
            n_variants, frames = len(store.variants), int(store.max_frames)
            # Allocated once per stream (per loader thread or worker) and kept: ~64 MB per shard of
            # 16 clips x 5 variants of 30 s. np.zeros maps pages lazily, so memory is committed as decoded.
            self._buffers = {name: np.zeros((capacity, n_variants, int(store.feature_bands[name]), frames),
                                            dtype=np.float16) for name in self.features}
        variants = split_variants(store, self.variants)
        pool, offset = [], 0
        for shard, rows in group:
            start, stop = store.shards[shard]
            views = {name: buf[offset:offset + stop - start] for name, buf in self._buffers.items()}
            store.read_shard(shard, features=self.features, variants=variants, out=views)
            pool.append(np.column_stack([rows[:, 0] - start + offset, rows[:, 1], rows[:, 2], rows[:, 0]]))
            offset += stop - start
        return self._buffers, np.concatenate(pool)

    def _new_batch(self, store: ReadableStore) -> dict[str, torch.Tensor]:
        """Empty batch tensors, all features in one storage; in shared memory inside a DataLoader worker.

        A worker's batch crosses to the training process through shared
        memory: allocated there from the start, it is not copied on the way
        (torch copies any other tensor into a new segment first), and one
        storage for all features makes one segment per batch, not five.
        """
        shapes = {name: (self.batch_size, int(store.feature_bands[name]), store.window_frames)
                  for name in self.features}
        sizes = [math.prod(shape) for shape in shapes.values()]
        storage = torch.empty(sum(sizes), dtype=getattr(torch, self.dtype), pin_memory=self.pin_memory)
        if get_worker_info() is not None:
            storage.share_memory_()
        parts = torch.split(storage, sizes)
        return {name: part.view(shape) for (name, shape), part in zip(shapes.items(), parts)}

    def __iter__(self) -> Iterator[Any]:
        store = self.store
        me, n = self._position()
        epoch = self.next_epoch()
        plan = self.plan(epoch)[me::n]
        rng = np.random.default_rng([self.seed, epoch, me])
        labels_all = np.asarray(store.clips["label_index"], dtype=np.int64)
        window = store.window_frames
        batch: dict[str, torch.Tensor] | None = None
        keys = np.empty((self.batch_size, 3), np.int64)  # (clip, variant, start) of each batch position
        filled = 0
        group = self._group_shards(store)
        for g in range(0, len(plan), group):
            buffers, pool = self._read_group(store, plan[g:g + group])
            if self.shuffle:
                pool = pool[rng.permutation(len(pool))]
            pos = 0
            while pos < len(pool):
                if batch is None:
                    batch, keys, filled = self._new_batch(store), np.empty_like(keys), 0
                # a batch may take windows from two groups: each is gathered before its group's buffers are reused
                take = pool[pos:pos + self.batch_size - filled]
                gather_into(buffers, take[:, :3], window, {name: t.numpy() for name, t in batch.items()},
                            positions=np.arange(filled, filled + len(take)))
                keys[filled:filled + len(take)] = take[:, [3, 1, 2]]
                filled += len(take)
                pos += len(take)
                if filled == self.batch_size:
                    yield self._emit(batch, keys, labels_all)
                    batch = None
        if batch is not None and filled and not self.drop_last:
            yield self._emit({k: v[:filled] for k, v in batch.items()}, keys[:filled], labels_all)

    def _emit(self, x: dict[str, torch.Tensor], keys: np.ndarray, labels_all: np.ndarray) -> Any:
        y = torch.from_numpy(labels_all[keys[:, 0]])
        if self.pin_memory:  # the labels' copy to the GPU is asynchronous too
            y = y.pin_memory()
        if self.with_keys:
            return x, y, torch.from_numpy(keys)
        return x, y


class ThreadedLoader:
    """Batches of a :class:`WindowStream` produced by threads of this process, in a fixed order.

    The loader's work is decoding (Blosc, in C) and gathering (a compiled
    kernel), both without the GIL, so threads run it in parallel without the
    cost of DataLoader worker processes: a worker's batch must cross into
    the training process through a new shared-memory segment, and faulting
    in those fresh pages cost ~80 us per window here, three times the
    loading itself (measured on 2 cores, 100 clips of 30 s: 2 worker
    processes 7,200 windows/s, 2 threads 29,900).

    Thread ``i`` of ``threads`` reads the shards a DataLoader worker ``i``
    would, and batches are taken from the threads in turn, skipping finished
    ones, as a DataLoader does with its workers: the batch order depends only
    on the seed, the epoch and ``threads``, and equals a DataLoader's with
    ``num_workers=threads``. ``threads=0`` iterates in the calling thread.

    Parameters
    ----------
    stream : WindowStream
        Its ``set_epoch`` applies, as with a DataLoader.
    threads : loader threads.
    prefetch : batches each thread may have ready ahead of the consumer.
    """

    def __init__(self, stream: WindowStream, threads: int = 2, prefetch: int = 4) -> None:
        if threads < 0 or prefetch <= 0:
            raise ModelError(f"threads={threads} must be >= 0 and prefetch={prefetch} positive")
        self.stream = stream
        self.threads = threads
        self.prefetch = prefetch
        self._copies: list[WindowStream] = []

    def __len__(self) -> int:
        return len(self.stream)

    def __iter__(self) -> Iterator[Any]:
        if self.threads == 0:
            yield from self.stream
            return
        stream = self.stream
        epoch = stream.next_epoch()  # as iterating the stream itself would
        if not self._copies:  # one copy per thread, kept across epochs with its decode buffers
            stream.store  # opened once, here, and shared by the copies  # noqa: B018
            self._copies = [stream.thread_copy(i, self.threads) for i in range(self.threads)]
        queues = [queue.Queue(maxsize=self.prefetch) for _ in range(self.threads)]
        stop = threading.Event()
        # The CUDA device is per thread: pinning threads must use the trainer's GPU, as DataLoader's
        # pin-memory thread does, or every DDP rank would open a context on GPU 0.
        device = torch.cuda.current_device() if stream.pin_memory and torch.cuda.is_available() else None
        workers = [threading.Thread(target=self._produce, args=(copy, epoch, q, stop, device), daemon=True,
                                    name=f"window-loader-{i}") for i, (copy, q) in enumerate(zip(self._copies, queues))]
        for w in workers:
            w.start()
        try:
            live = list(range(self.threads))
            while live:
                for i in list(live):
                    item = queues[i].get()
                    if item is _DONE:
                        live.remove(i)
                    elif isinstance(item, _Failure):
                        raise item.error
                    else:
                        yield item
        finally:
            stop.set()  # the consumer stopped early or failed: every thread returns at its next put
            for w in workers:
                w.join()

    @staticmethod
    def _produce(copy: WindowStream, epoch: int, out: "queue.Queue[Any]", stop: threading.Event,
                 device: int | None = None) -> None:
        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            if device is not None:
                torch.cuda.set_device(device)
            copy.set_epoch(epoch)
            for batch in copy:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failure(exc))


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def iter_clip_windows(store: ReadableStore, clips: np.ndarray, features: Sequence[str]
                      ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Every window of each clip's original variant, clip by clip, reading whole shards.

    Yields
    ------
    (clip_index, name -> float32 [shape=(n_windows, bands, window_frames)])
    """
    window, hop = store.window_frames, store.window_hop_frames
    valid = np.asarray(store.valid_frames)
    for shard, start, mine in clips_by_shard(store, clips):
        arrays = store.read_shard(shard, features=tuple(features), variants=[0])
        for clip in mine:
            rows = window_index(valid, np.array([clip]), [0], window, hop)
            if not len(rows):
                continue
            rows[:, 0] -= start
            yield int(clip), gather_windows(arrays, rows, window)


def normalisation_stats(store: ReadableStore, clips: np.ndarray, features: Sequence[str]
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-band mean and standard deviation over the valid frames of the clips' original variant.

    Accumulated in float64 shard by shard (sum and sum of squares).

    Returns
    -------
    name -> (mean, std), each float32 [shape=(bands,)]
    """
    if not len(clips):
        raise ModelError(f"store {store.uri} has no ok clips to compute normalisation statistics from; "
                         f"check its split column (pipeline info {store.uri})")
    valid = np.asarray(store.valid_frames)[:, 0].astype(np.int64)
    sums = {n: np.zeros(int(store.feature_bands[n])) for n in features}
    squares = {n: np.zeros(int(store.feature_bands[n])) for n in features}
    count = 0
    for shard, start, mine in clips_by_shard(store, clips):
        arrays = store.read_shard(shard, features=tuple(features), variants=[0])
        mask = np.arange(int(store.max_frames))[None, :] < valid[mine][:, None]  # (k, frames)
        for name, arr in arrays.items():
            x = arr[mine - start, 0].astype(np.float64) * mask[:, None, :]  # (k, bands, frames)
            sums[name] += x.sum(axis=(0, 2))
            squares[name] += (x * x).sum(axis=(0, 2))
        count += int(np.minimum(valid[mine], int(store.max_frames)).sum())
    stats = {}
    for name in features:
        mean = sums[name] / count
        var = np.maximum(squares[name] / count - mean * mean, 0.0)
        stats[name] = (mean.astype(np.float32), np.sqrt(var).astype(np.float32))
    return stats
