"""``pipeline bench gpu`` (``make gpu-check``): the trainer's CUDA path, measured in one command.

It builds a small demo store (or takes one), then on the GPU:

1. trains the DFN with the default :class:`~model.train.TrainConfig` for a
   fixed number of steps on batches already on the device (the GPU's rate,
   not limited by the loader): ``training_windows_per_s``;
2. streams the training split through the trainer's own loader (the
   recommended ``loader_workers`` threads, float16 pinned batches, each copied
   to the GPU and converted there): ``loader_windows_per_s``, and
   ``loader_to_training`` = loader / training (>= 1: the loader keeps the GPU fed);
3. trains the same number of steps fed by that loader, as ``pipeline train``
   does: ``fed_windows_per_s``;
4. saves the model as a checkpoint and times ``pipeline evaluate`` on the
   test split and ``pipeline predict`` (:func:`bench.model.latency`: one
   30 s file end to end, one batch of 32 windows);
5. records peak GPU memory, the device, torch/CUDA/cuDNN versions and the date.

Without CUDA it stops with one line saying so, unless run with
``device="cpu"``, which runs the same steps at tiny size (:data:`CPU_PARAMS`:
a smoke test that ``make test`` runs); the JSON then says ``"figures": "cpu"``.
The defaults (:class:`GpuCheckParams`) fit about 3 minutes on one H200 with
16 cores, store build included.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from bench.model import latency
from model.checkpoint import run_metadata, save_checkpoint
from model.config import TrainConfig
from model.data import normalisation_stats, open_source, split_clips
from model.evaluate import evaluate
from model.networks import build_model
from model.runtime import resolve_device, to_device, torch_threads
from model.train import make_loader, make_streams, train_step
from pipeline.build import build_store
from pipeline.config import AudioConfig, AugmentConfig, PipelineConfig, canonical_hash
from pipeline.datasets import load_manifest
from pipeline.errors import ModelError
from stores.protocol import StoreSource

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GpuCheckParams:
    """Sizes of the check; the defaults fit about 3 minutes on one H200 (16 cores).

    clips_per_genre, clip_seconds : the demo store built when none is given (10 genres).
    variants : augmented variants stored beside the original (None: the pipeline's default four).
    build_workers : Dask worker processes of the build (None: one per core; 0: serial, in process).
    warmup_steps : steps before any clock runs (cuDNN algorithm choice, allocator, kernels).
    train_steps : timed optimisation steps of phases 1 and 3.
    loader_seconds : how long the loader is timed.
    repeats : timed repeats of each prediction latency.
    file_seconds : length of the predicted file.
    predict_batch : windows of the model-only batch latency.
    model_kwargs : DFN builder knobs (empty: the paper's DFN).
    batch_size : training batch (0: the TrainConfig default).
    loader_threads : loader threads (None: the TrainConfig default, the recommended setting).
    """

    clips_per_genre: int = 10
    clip_seconds: float = 30.0
    variants: tuple[str, ...] | None = None
    build_workers: int | None = None
    warmup_steps: int = 20
    train_steps: int = 200
    loader_seconds: float = 10.0
    repeats: int = 10
    file_seconds: float = 30.0
    predict_batch: int = 32
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int = 0
    loader_threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("clips_per_genre", "train_steps", "repeats", "predict_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ModelError(f"gpu check {name}={value!r} must be a positive integer")
        for name in ("warmup_steps", "batch_size"):
            if getattr(self, name) < 0:
                raise ModelError(f"gpu check {name}={getattr(self, name)!r} must be >= 0")
        for name in ("clip_seconds", "loader_seconds", "file_seconds"):
            if not getattr(self, name) > 0:
                raise ModelError(f"gpu check {name}={getattr(self, name)!r} must be a positive number of seconds")
        if self.loader_threads is not None and self.loader_threads < 0:
            raise ModelError(f"gpu check loader_threads={self.loader_threads} must be >= 0")
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        if self.variants is not None:
            object.__setattr__(self, "variants", tuple(self.variants))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


#: The CPU-size run (``--device cpu``): every step of the check, in seconds on 2 cores.
CPU_PARAMS = GpuCheckParams(
    clips_per_genre=3, clip_seconds=4.0, variants=("gain",), build_workers=0, warmup_steps=1, train_steps=3,
    loader_seconds=0.3, repeats=1, file_seconds=4.0, predict_batch=8, batch_size=8, loader_threads=2,
    model_kwargs={"cnn_channels": [8, 16, 16], "gru_hidden": 16, "fusion_dim": 16, "heads": 2, "fc_hidden": 32})


def no_cuda_message() -> str:
    """Why there is no CUDA here, and what to do."""
    build = torch.version.cuda
    why = (f"this torch {torch.__version__} is a CPU-only build: install a CUDA build into the venv "
           f"(the pip command for your CUDA version is on https://pytorch.org/get-started/locally/)"
           if build is None
           else f"torch {torch.__version__} (CUDA {build}) sees no GPU: check nvidia-smi and CUDA_VISIBLE_DEVICES")
    return f"no CUDA device: {why}; or pass --device cpu for the CPU-size run of the check"


def device_info(device: torch.device) -> dict[str, Any]:
    """Device name, torch/CUDA/cuDNN versions, bf16 support, core count and the date (UTC)."""
    info: dict[str, Any] = {
        "device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_cores": os.cpu_count(), "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name, gpu_memory_bytes=int(props.total_memory),
                    gpus=torch.cuda.device_count(), bf16=bool(torch.cuda.is_bf16_supported()),
                    capability=f"{props.major}.{props.minor}")
    else:
        info.update(device_name=platform.processor() or platform.machine(), gpus=0)
    return info


def build_demo_store(out: str | Path, params: GpuCheckParams) -> str:
    """The demo store of ``params`` at ``out/demo-<digest>.zarr`` (built once; a rerun reuses it)."""
    out = Path(out)
    augment = AugmentConfig() if params.variants is None else AugmentConfig(variants=params.variants)
    config = PipelineConfig(audio=AudioConfig(clip_seconds=params.clip_seconds), augment=augment)
    digest = canonical_hash({"clips_per_genre": params.clips_per_genre, "config": config.to_dict()})[:12]
    uri = out / f"demo-{digest}.zarr"
    manifest = load_manifest("demo", out / "audio", clips_per_genre=params.clips_per_genre,
                             clip_seconds=params.clip_seconds)
    # a finished store is found complete and not rebuilt
    build_store(manifest, uri, config=config, workers=params.build_workers, progress=False)
    return str(uri)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_gpu_check(*, device: str = "cuda", store: StoreSource | None = None, out: str | Path = "runs/gpu-check",
                  params: GpuCheckParams | None = None, storage_options: Mapping[str, Any] | None = None,
                  echo: Any = logger.info) -> dict[str, Any]:
    """Run the check (see the module docstring) and return its figures.

    Parameters
    ----------
    device : "cuda", "cuda:N" or "cpu" (the CPU-size run: ``params`` default to :data:`CPU_PARAMS`).
    store : a store URI or open store; default: the demo store of ``params`` built under ``out``.
    out : folder of the demo audio, store, checkpoint and evaluation outputs.
    params : sizes (default: :class:`GpuCheckParams` on CUDA, :data:`CPU_PARAMS` on the CPU).
    echo : where the progress lines go.

    Returns
    -------
    dict : ``figures`` ("cuda" or "cpu"), ``training_windows_per_s``, ``loader_windows_per_s``,
    ``loader_to_training``, ``fed_windows_per_s``, ``evaluate_s``, ``evaluate_windows_per_s``,
    ``predict_file_s``, ``predict_batch_s``, ``peak_gpu_memory_bytes`` (None on the CPU), the
    device facts of :func:`device_info`, per-phase seconds (``phases``), ``params``, ``store``.

    Raises
    ------
    ModelError
        CUDA was asked for and there is none (the message says why and what to do).
    """
    if not str(device).startswith(("cuda", "cpu")):
        raise ModelError(f"device={device!r} must be cuda, cuda:N or cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(no_cuda_message())
    dev = resolve_device(device)
    cpu = dev.type == "cpu"
    params = params or (CPU_PARAMS if cpu else GpuCheckParams())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}
    t_all = time.perf_counter()
    if not cpu:
        torch.cuda.set_device(dev)
        torch.cuda.reset_peak_memory_stats(dev)

    # -- store ----------------------------------------------------------------
    t0 = time.perf_counter()
    if store is None:
        echo(f"building the demo store ({params.clips_per_genre} clips per genre of {params.clip_seconds:g} s) "
             f"under {out}")
        store = build_demo_store(out, params)
    store = open_source(store, storage_options)
    phases["store_s"] = time.perf_counter() - t0

    defaults = TrainConfig()
    cfg = TrainConfig(model="dfn", model_kwargs=params.model_kwargs, device=str(dev), progress=False,
                      batch_size=params.batch_size or defaults.batch_size,
                      loader_workers=defaults.loader_workers if params.loader_threads is None
                      else params.loader_threads)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, n_classes=len(store.labels), feature_bands=store.feature_bands,
                        **cfg.model_kwargs)
    model.set_normalisation(normalisation_stats(store, split_clips(store, "train"), model.features))
    model.to(dev).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_ds, _ = make_streams(store, store, cfg, dev, model.features)
    loader = make_loader(train_ds, cfg, dev)
    epoch = [0]

    def batches() -> Any:
        """The training stream, epoch after epoch, each batch on the device."""
        while True:
            train_ds.set_epoch(epoch[0])
            for x, y in loader:
                yield to_device(x, dev), y.to(dev, non_blocking=True)
            epoch[0] += 1

    with torch_threads(1 if cpu else 0):
        # -- 1. the GPU's training rate, on batches already on it -----------------
        t0 = time.perf_counter()
        feed = batches()
        resident = [next(feed) for _ in range(min(16, max(1, len(train_ds))))]
        feed.close()
        for i in range(params.warmup_steps):
            train_step(model, optimizer, *resident[i % len(resident)], cfg, dev)
        _sync(dev)
        windows, start = 0, time.perf_counter()
        for i in range(params.train_steps):
            x, y = resident[i % len(resident)]
            loss, _ = train_step(model, optimizer, x, y, cfg, dev)
            windows += len(y)
        _sync(dev)
        training_rate = windows / (time.perf_counter() - start)
        loss_value = float(loss)
        del resident
        peak_training = torch.cuda.max_memory_allocated(dev) if not cpu else None
        phases["training_s"] = time.perf_counter() - t0
        echo(f"training: {training_rate:,.0f} windows/s ({params.train_steps} steps of {cfg.batch_size}, "
             f"{'bf16 autocast' if not cpu and cfg.amp else 'float32'}; loss {loss_value:.3f})")

        # -- 2. the loader, as the trainer uses it, into the device ---------------
        t0 = time.perf_counter()
        feed = batches()
        next(feed)  # threads started, buffers allocated
        _sync(dev)
        windows, start = 0, time.perf_counter()
        while time.perf_counter() - start < params.loader_seconds:
            _, y = next(feed)
            windows += len(y)
        _sync(dev)
        loader_rate = windows / (time.perf_counter() - start)

        # -- 3. training fed by the loader, as `pipeline train` runs ---------------
        windows, start = 0, time.perf_counter()
        for _ in range(params.train_steps):
            x, y = next(feed)
            train_step(model, optimizer, x, y, cfg, dev)
            windows += len(y)
        _sync(dev)
        fed_rate = windows / (time.perf_counter() - start)
        feed.close()  # stops the loader threads
        phases["loader_s"] = time.perf_counter() - t0
        echo(f"loader: {loader_rate:,.0f} windows/s with {cfg.loader_workers} loader threads, "
             f"{loader_rate / training_rate:.2f}x training (>= 1: the GPU is fed); "
             f"training fed by the loader {fed_rate:,.0f} windows/s")

        # -- 4. evaluation and prediction with the trained model -------------------
        t0 = time.perf_counter()
        ckpt = out / "checkpoint"
        save_checkpoint({**run_metadata(store, cfg, model.features), "model": model.state_dict()}, ckpt / "best.pt")
        test = "test" if len(split_clips(store, "test")) else "train"
        start = time.perf_counter()
        metrics = evaluate(ckpt, store, out / "eval", split=test, device=str(dev))
        evaluate_s = time.perf_counter() - start
        eval_windows = int(metrics["window"]["n"]) if metrics.get("window") else 0
        predict = latency(checkpoint=ckpt, device=str(dev), repeats=params.repeats,
                          batch_size=params.predict_batch, seconds=params.file_seconds, threads=1)
        phases["evaluate_predict_s"] = time.perf_counter() - t0
        echo(f"evaluate ({test} split, {eval_windows} windows): {evaluate_s:.2f} s; predict: "
             f"{params.file_seconds:g} s file {1000 * predict['file_latency_s']:.0f} ms, batch of "
             f"{params.predict_batch} windows {1000 * predict['batch_latency_s']:.1f} ms")

    phases["total_s"] = time.perf_counter() - t_all
    result = {
        "figures": "cpu" if cpu else "cuda",
        "note": ("CPU figures of the tiny-size run (--device cpu): they check that every step runs, "
                 "they measure no GPU" if cpu else "CUDA figures"),
        **device_info(dev),
        "training_windows_per_s": training_rate, "loader_windows_per_s": loader_rate,
        "loader_to_training": loader_rate / training_rate, "fed_windows_per_s": fed_rate,
        "loader_threads": cfg.loader_workers, "batch_size": cfg.batch_size, "amp": bool(cfg.amp and not cpu),
        "train_steps": params.train_steps, "final_loss": loss_value,
        "evaluate_s": evaluate_s, "evaluate_split": test, "evaluate_windows": eval_windows,
        "evaluate_windows_per_s": eval_windows / evaluate_s if evaluate_s > 0 else None,
        "predict_file_s": predict["file_latency_s"], "predict_file_cpu_s": predict["file_cpu_s"],
        "predict_file_seconds": params.file_seconds, "predict_batch_s": predict["batch_latency_s"],
        "predict_batch": params.predict_batch,
        "peak_gpu_memory_bytes": None if cpu else int(torch.cuda.max_memory_allocated(dev)),
        "peak_gpu_memory_training_bytes": peak_training,
        "peak_gpu_memory_reserved_bytes": None if cpu else int(torch.cuda.max_memory_reserved(dev)),
        "phases": phases, "params": params.to_dict(), "train_config": cfg.to_dict(),
        "store": {"uri": str(store.uri), "clips": int(len(store.clips)), "variants": list(store.variants),
                  "train_windows_per_epoch": train_ds.n_windows()},
    }
    return result
