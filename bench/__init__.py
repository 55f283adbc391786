"""Benchmarks and studies: how fast and how close, measured, never asserted by a test.

Each is run as ``pipeline bench ...`` (:mod:`workflows.cli.bench`):

- :mod:`bench.features`: our extraction of every variant vs a plain librosa reference;
- :mod:`bench.build`: a demo store built on 1 and 2 workers vs the serial per-core limit;
- :mod:`bench.model`: the loader's windows/s and prediction latency;
- :mod:`bench.gpu_check`: the trainer on CUDA (``pipeline bench gpu``);
- :mod:`bench.stretch_study`: the time-stretch study behind the augmentation's method.

This package sits above ``model`` and ``pipeline`` and below ``workflows``:
only the command line imports it, so no library module depends on a benchmark.
"""
