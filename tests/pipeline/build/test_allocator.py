"""The allocator trap of Dask workers (MALLOC_TRIM_THRESHOLD_ freezes glibc's mmap
threshold) is undone in every process that extracts features."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.build.allocator import MALLOC_TUNABLE_ENV, nanny_environ_without_tunables
from stores.schema import DEFAULT_CLIPS_PER_SHARD, auto_clips_per_shard

#: Allocates a 10 MB array and prints how many blocks glibc mmapped for it (mallinfo2().hblks).
PROBE = r"""
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tune":
    from pipeline.build.allocator import tune_allocator
    print(tune_allocator())
else:
    print("untouched")
import numpy as np
for _ in range(3):  # the dynamic threshold rises after the first large free
    before = libc.mallinfo2().hblks
    a = np.ones(10_000_000 // 8)
    during = libc.mallinfo2().hblks
    del a
print(during - before)
"""


def _probe(tune: bool, env: dict) -> tuple[str, int]:
    run = subprocess.run([sys.executable, "-c", PROBE, "tune" if tune else "plain"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    what, mmapped = run.stdout.split()
    return what, int(mmapped)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_dask_malloc_setting_mmaps_every_large_array_and_tuning_undoes_it():
    clean = {k: v for k, v in os.environ.items() if k not in MALLOC_TUNABLE_ENV}
    trapped = {**clean, "MALLOC_TRIM_THRESHOLD_": "65536"}
    assert _probe(False, clean) == ("untouched", 0)       # glibc adapts: heap, not mmap
    assert _probe(False, trapped) == ("untouched", 1)     # the trap: one mmap per large array
    assert _probe(True, trapped) == ("tuned", 0)          # undone
    assert _probe(True, clean) == ("tuned", 0)            # set in a plain process too


#: A working set of 4 x 8 MB allocated and freed four times; prints the page faults of each of the last two rounds.
FAULT_PROBE = r"""
import resource, sys
if sys.argv[1] == "tune":
    from pipeline.build.allocator import tune_allocator
    tune_allocator()
import numpy as np
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for round in range(4):
    if round == 2:
        before = faults()
    arrays = [np.ones(1_000_000) for _ in range(4)]
    del arrays
print((faults() - before) // 2)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_tuned_process_keeps_a_freed_working_set_where_a_plain_one_faults_it_in_again():
    """Like the temporaries of one variant's features: a plain process gives them back to the OS
    (glibc trims a free heap top above twice the largest freed block) and faults them in again."""
    clean = {k: v for k, v in os.environ.items() if k not in MALLOC_TUNABLE_ENV}

    def faults_per_round(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", FAULT_PROBE, mode], capture_output=True, text=True,
                             env=clean, timeout=120)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    assert faults_per_round("plain") > 1000       # 8 MB of 4 KiB pages (at least) faulted in per round
    assert faults_per_round("tune") < 100


def test_nanny_environment_loses_only_the_malloc_tunables():
    env = {"MALLOC_TRIM_THRESHOLD_": 65536, "OMP_NUM_THREADS": 1, "MALLOC_TOP_PAD_": 1}
    assert nanny_environ_without_tunables(env) == {"OMP_NUM_THREADS": 1}


@pytest.mark.parametrize("n_clips, expected", [(1, 1), (17, 1), (32, 1), (33, 2), (100, 4), (200, 7),
                                               (511, 16), (25_000, DEFAULT_CLIPS_PER_SHARD)])
def test_small_collections_get_small_shards(n_clips, expected):
    assert auto_clips_per_shard(n_clips) == expected


@pytest.mark.slow
def test_local_cluster_workers_run_without_the_malloc_trap_and_all_get_shards(tmp_path):
    """17 clips on 2 workers: both workers build shards, and neither has Dask's malloc variable."""
    import distributed

    from pipeline.build import build_store, dask_client
    from stores import open_store
    from tests.integration.helpers import synthetic_manifest, tiny_config

    manifest = synthetic_manifest(tmp_path / "audio", 17, seconds=4.0)
    with dask_client(2, None) as client:
        env = client.run(lambda: {k: os.environ.get(k) for k in MALLOC_TUNABLE_ENV})
        assert len(env) == 2 and all(v is None for e in env.values() for v in e.values()), env
        with distributed.get_task_stream(client) as stream:
            build_store(manifest, tmp_path / "s.zarr", config=tiny_config(variants=("gain",)), scheduler=client,
                        progress=False)
        tasks = [r for r in stream.data if str(r["key"]).startswith("shard-")]
    assert open_store(tmp_path / "s.zarr").clips_per_shard == 1
    per_worker = {}
    for record in tasks:
        per_worker[record["worker"]] = per_worker.get(record["worker"], 0) + 1
    # Both workers build several shards (17 one-clip shards; before, a 16-clip and a 1-clip shard left one
    # worker nearly idle). Not an even split: on a loaded machine one worker may take 14 of the 17.
    assert len(per_worker) == 2 and min(per_worker.values()) >= 2, per_worker
