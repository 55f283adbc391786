"""``pipeline bench features|build|update|loader|predict|gpu|stretch``: the performance targets, the GPU check
and the time-stretch study (the benchmarks themselves live in :mod:`bench`)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

from workflows.cli.options import add_storage_option, parse_storage_options


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("bench", help="benchmarks (features, build, update, loader, predict, gpu, stretch)")
    benches = p.add_subparsers(dest="bench", metavar="BENCH", required=True)

    b = benches.add_parser("features", help="our extraction of all variants vs a plain librosa reference")
    b.add_argument("--clips", type=int, default=2, help="clips of each format (MP3 44.1 kHz stereo, .au 22,050 Hz)")
    b.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    b.set_defaults(func=_features)

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

    b = benches.add_parser("update", help="build --update of N new clips vs building them alone; a no-op update; "
                                          "the loader on a versioned store vs the same files unversioned")
    b.add_argument("--base", type=int, default=200, help="demo clips in the store before the update (default 200)")
    b.add_argument("--new", type=int, default=20, help="demo clips the update adds (default 20)")
    b.add_argument("--seconds", type=float, default=4.0, help="length of each demo clip (default 4 s)")
    b.add_argument("--workers", type=int, default=0, help="0: serial, in this process (default); N: a LocalCluster")
    b.add_argument("--repeats", type=int, default=2, help="timed (alone, update) pairs, alternating order")
    b.add_argument("--loader-seconds", type=float, default=4.0, help="each of the 6 alternated timings of the training stream per store (0: skip the loader)")
    b.add_argument("--noop-clips", type=int, default=0, metavar="N",
                   help="instead: a no-op --update of a store of N short clips (the goal's size: 25000), timed as "
                        "the command in a fresh process (about 1 GB of files and 10 minutes of setup on 2 cores)")
    b.add_argument("--noop-folder", metavar="PATH", help="keep the no-op bench's files and store there (a rerun "
                                                          "reuses them; default: a temporary folder)")
    b.add_argument("--json", metavar="FILE")
    b.set_defaults(func=_update)

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

    b = benches.add_parser("stretch", help="the time-stretch study: phase vocoders and WSOLA, speed and quality "
                                           "against exact re-synthesis")
    b.add_argument("--seconds", type=float, default=30.0, help="length of the synthetic music (default 30 s)")
    b.add_argument("--voices", type=int, default=1, help="independent scores mixed (4: dense polyphony)")
    b.add_argument("--repeats", type=int, default=3, help="timings: the minimum CPU time of this many runs")
    b.add_argument("--json", metavar="FILE")
    b.set_defaults(func=_stretch)


def _features(args: argparse.Namespace) -> int:
    from bench.features import bench_features, format_report  # librosa, for the reference: loaded on use

    result = bench_features(int(args.clips))
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from bench.build import format_figures, run_bench  # dask: loaded on use

    figures = run_bench(args.clips, seconds=args.seconds, scheduler=args.scheduler, out=args.out,
                        clips_per_shard=args.clips_per_shard, serial=not args.workers_only,
                        worker_counts=tuple(args.worker_counts), source_root=args.root,
                        source_options=parse_storage_options(args.storage_option))
    print(format_figures(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


def _update(args: argparse.Namespace) -> int:
    from bench.update import format_update_figures, run_update_bench  # dask: loaded on use

    if args.noop_clips:
        from bench.update import format_noop_figures, run_noop_bench

        with contextlib.ExitStack() as stack:
            folder = args.noop_folder or stack.enter_context(tempfile.TemporaryDirectory(prefix="update-bench-"))
            figures = run_noop_bench(folder, args.noop_clips, workers=args.workers or 2, repeats=max(args.repeats, 3))
        print(format_noop_figures(figures))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
        return 0
    with tempfile.TemporaryDirectory(prefix="update-bench-") as folder:
        figures = run_update_bench(folder, args.base, args.new, seconds=args.seconds, workers=args.workers,
                                   repeats=args.repeats)
        if args.loader_seconds > 0:
            from bench.model import stream_rates  # torch: loaded on use

            # alternated, 6 measurements each: the machine's speed drifts as much as the difference
            rates = stream_rates({"plain": figures["plain_uri"], "versioned": figures["store_uri"]},
                                 seconds=args.loader_seconds)
            figures["loader_runs_windows_per_s"] = rates
            figures["loader_versioned_windows_per_s"] = statistics.median(rates["versioned"])
            figures["loader_plain_windows_per_s"] = statistics.median(rates["plain"])
            figures["loader_ratio"] = figures["loader_versioned_windows_per_s"] / figures["loader_plain_windows_per_s"]
    print(format_update_figures(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


def _loader(args: argparse.Namespace) -> int:
    from bench.model import bench_loader  # torch: loaded on use

    result = bench_loader(args.store, seconds=args.seconds, storage_options=parse_storage_options(args.storage_option))
    print(f"loader {result['windows_per_s']:,.0f} windows/s (target >= 5,000); raw read "
          f"{result['raw_windows_per_s']:,.0f} windows/s; ratio {result['ratio']:.0%} (target >= 50%); "
          f"{result['loader_threads']} loader threads {result['threaded_windows_per_s']:,.0f} windows/s; "
          f"raw read through zarr-python {result['zarr_raw_windows_per_s']:,.0f} windows/s; "
          f"per CPU second: loader {result['windows_per_cpu_s']:,.0f}, raw {result['raw_windows_per_cpu_s']:,.0f}, "
          f"float16 batches {result['float16_windows_per_cpu_s']:,.0f}; "
          f"read checks (per-chunk CRC32C) cost {result['read_check_cost']:.1%} (target < 5%): loader with them "
          + ", ".join(f"{r:,.0f}" for r in result["checked_windows_per_cpu_s"]) + ", without "
          + ", ".join(f"{r:,.0f}" for r in result["unchecked_windows_per_cpu_s"]) + " windows per CPU second, "
          "alternately")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    import torch  # loaded on use: the other commands start without it

    from bench.model import latency  # torch: loaded on use

    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    results = {}
    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            results[device] = {"absent": "no CUDA device on this machine"}
            continue
        r = latency(checkpoint=args.checkpoint, device=device)
        results[device] = r
        batch = "n/a" if r["batch_latency_s"] is None else f"{1000 * r['batch_latency_s']:.1f} ms"
        print(f"{device}: 30 s file {1000 * r['file_latency_s']:.0f} ms wall, {1000 * r['file_cpu_s']:.0f} ms CPU "
              f"(target < 500 ms on one core); "
              f"batch of {r['batch_size']} windows {batch}")
    first = next(v for v in results.values() if "absent" not in v)
    out = {"file_latency_s": first["file_latency_s"], "batch_latency_s": first["batch_latency_s"],
           "devices": results}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


def _gpu(args: argparse.Namespace) -> int:
    """``pipeline bench gpu``: run the check, print the figures, write the JSON."""
    from bench.gpu_check import CPU_PARAMS, GpuCheckParams, run_gpu_check  # torch: loaded on use

    base = CPU_PARAMS if args.device == "cpu" else GpuCheckParams()
    overrides = {name: getattr(args, name) for name in ("train_steps", "clips_per_genre", "clip_seconds",
                                                        "loader_seconds", "loader_threads", "repeats")
                 if getattr(args, name, None) is not None}
    params = dataclasses.replace(base, **overrides)
    result = run_gpu_check(device=args.device, store=args.store, out=args.out, params=params,
                           storage_options=parse_storage_options(args.storage_option), echo=print)
    path = Path(args.json) if args.json else Path(args.out) / "gpu-check.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    peak = result["peak_gpu_memory_bytes"]
    print(f"{result['figures'].upper()} figures on {result['device_name']} (torch {result['torch']}, "
          f"CUDA {result['cuda']}): training {result['training_windows_per_s']:,.0f} windows/s, loader "
          f"{result['loader_to_training']:.2f}x that, peak GPU memory "
          f"{'n/a' if peak is None else f'{peak / 2**30:.2f} GiB'}; {result['phases']['total_s']:.0f} s in all; "
          f"written to {path}")
    return 0


def _stretch(args: argparse.Namespace) -> int:
    from bench.stretch_study import compare_stretch_methods, format_table  # librosa, the reference: loaded on use

    results = compare_stretch_methods(args.seconds, voices=args.voices, repeats=args.repeats)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0
