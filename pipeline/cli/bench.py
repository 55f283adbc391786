"""``pipeline bench features|build|loader|predict|gpu``: the performance targets and the GPU check."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("bench", help="benchmarks (features, build, loader, predict, gpu)")
    benches = p.add_subparsers(dest="bench", metavar="BENCH", required=True)

    b = benches.add_parser("features", help="our extraction of all variants vs a plain librosa reference")
    b.add_argument("--clips", type=int, default=2, help="clips of each format (MP3 44.1 kHz stereo, .au 22,050 Hz)")
    b.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    b.set_defaults(func=_features)

    from pipeline.cli import add_storage_option

    b = benches.add_parser("build", help="demo store build on 1 and 2 workers against the serial per-core limit")
    b.add_argument("--clips", type=int, default=200, help="demo clips to build (default 200)")
    b.add_argument("--seconds", type=float, default=None, help="length of each demo clip (default 30 s)")
    b.add_argument("--clips-per-shard", type=int, default=None, help="default: chosen from the clip count")
    b.add_argument("--workers-only", action="store_true", help="skip the serial pass (scale runs)")
    b.add_argument("--worker-counts", type=int, nargs="+", default=[1, 2], metavar="N",
                   help="cluster sizes to build on (default: 1 2)")
    b.add_argument("--scheduler", help="an existing Dask scheduler instead of local clusters")
    b.add_argument("--out", help="folder for the stores (default: a temporary folder)")
    b.add_argument("--root", metavar="URI",
                   help="also build the clips from object storage: they are uploaded under this prefix "
                        "(s3://bucket/prefix), built from there beside the local folder, and removed")
    b.add_argument("--json", metavar="FILE")
    add_storage_option(b)
    b.set_defaults(func=_build)

    b = benches.add_parser("loader", help="windows/s streamed from a store vs raw decompression")
    b.add_argument("--store", required=True)
    b.add_argument("--seconds", type=float, default=10.0)
    b.add_argument("--json", metavar="FILE")
    add_storage_option(b)
    b.set_defaults(func=_loader)

    b = benches.add_parser("predict", help="latency of one 30 s file and of a batch of windows")
    b.add_argument("--checkpoint", help="a trained checkpoint folder (default: an untrained DFN)")
    b.add_argument("--device", default="cpu", help="cpu, cuda, or auto")
    b.add_argument("--json", metavar="FILE")
    b.set_defaults(func=_predict)

    b = benches.add_parser("gpu", help="the trainer on CUDA: training, loader, evaluate and predict figures, "
                                       "peak memory (--device cpu: the same steps at tiny size)")
    b.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for the CPU-size run")
    b.add_argument("--store", help="a store to use (default: build a demo store under --out)")
    b.add_argument("--out", default="runs/gpu-check", help="folder of the demo store, checkpoint and JSON")
    b.add_argument("--json", metavar="FILE", help="where the figures go (default: OUT/gpu-check.json)")
    b.add_argument("--train-steps", type=int, help="timed training steps (default 200; CPU 3)")
    b.add_argument("--clips-per-genre", type=int, help="demo store size (default 10; CPU 3)")
    b.add_argument("--clip-seconds", type=float, help="demo clip length (default 30; CPU 4)")
    b.add_argument("--loader-seconds", type=float, help="how long the loader is timed (default 10)")
    b.add_argument("--loader-threads", type=int, help="loader threads (default: the trainer's default)")
    b.add_argument("--repeats", type=int, help="timed repeats of each prediction latency (default 10)")
    add_storage_option(b)
    b.set_defaults(func=_gpu)


def _features(args: argparse.Namespace) -> int:
    from pipeline.bench import bench_features_cli

    return bench_features_cli(args)


def _build(args: argparse.Namespace) -> int:
    from pipeline.build_bench import bench_build_cli

    return bench_build_cli(args)


def _loader(args: argparse.Namespace) -> int:
    from model.bench import bench_loader_cli

    return bench_loader_cli(args)


def _predict(args: argparse.Namespace) -> int:
    from model.bench import bench_predict_cli

    return bench_predict_cli(args)


def _gpu(args: argparse.Namespace) -> int:
    from model.gpu_check import gpu_check_cli

    return gpu_check_cli(args)
