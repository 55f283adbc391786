"""The docker-compose stack built and run for real (marker ``compose``: ``make test-compose``).

What a team gets from ``docker compose up``, on this machine: dockerd is
started when none runs (root, Debian's docker.io), the Debian base, the
project image and the Ceph RGW image are built (docker/debian-base.sh,
docker/prepare-local.sh, ``docker-compose build``), and the stack comes up
with docker/compose.local.yml. Then, in order: two workers register with
the scheduler; the dashboard answers on its host port; the one-shot build
writes the demo store into the bucket from audio in the bucket; ``pipeline
verify`` passes on it from the host; the trainer trains one epoch from the
bucket and leaves a checkpoint of that store in its volume. Containers,
networks and volumes of the stack are removed at the end, also on failure
(the images are kept: a rerun reuses them).

Durations are written to ``$HFS_COMPOSE_TIMINGS`` (default
``runs/compose-timings.json``) and printed. ``HFS_COMPOSE_FRESH=1`` removes
the images first, to measure a build from nothing.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.compose, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
FILES = ["-f", str(REPO / "docker-compose.yml"), "-f", str(REPO / "docker" / "compose.local.yml")]
BASE_IMAGE = "hfs-debian:bookworm"
IMAGES = ("harmonic-feature-store:latest", "hfs-ceph-rgw:latest", BASE_IMAGE)
BIN = Path(sys.prefix) / "bin"
#: A small run: 40 of the 300 demo clips, one epoch on the CPU.
BUILD_ARGS = "--limit 40"
TRAIN_ARGS = "--epochs 1 --device cpu --no-progress"
STORE = "s3://features/demo.zarr"
AUDIO = "s3://audio/demo"
COMPOSE_VARS = ("DATASET", "AUDIO_ROOT", "BUILD_ARGS", "TRAIN_ARGS", "WORKER_MEMORY", "S3_ACCESS_KEY",
                "S3_SECRET_KEY", "SCHEDULER_PORT", "DASHBOARD_PORT", "S3_PORT", "S3_CONSOLE_PORT")


def run(args: list[str], *, timeout: float, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    logger.info("$ %s", " ".join(args))
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def docker_ready() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check, *, timeout: float, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def http_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def timings():
    found: dict[str, float] = {}
    yield found
    target = Path(os.environ.get("HFS_COMPOSE_TIMINGS", REPO / "runs" / "compose-timings.json"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(found, indent=1) + "\n")
    print(f"\ncompose test durations (s), also in {target}: {json.dumps(found)}")


@pytest.fixture(scope="module")
def engine():
    """A running Docker engine: the one there is, or a dockerd started (and stopped) here."""
    if shutil.which("docker-compose") is None or shutil.which("docker") is None:
        pytest.skip("no docker / docker-compose: apt-get install docker.io docker-compose debootstrap "
                    "(Debian, as root), then make test-compose")
    if docker_ready():
        yield
        return
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        pytest.skip("no Docker engine runs, and this user cannot start dockerd (needs root and docker.io)")
    log = open(Path(tempfile.gettempdir()) / "hfs-dockerd.log", "ab")
    daemon = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("dockerd answering (log: /tmp/hfs-dockerd.log)",
                 lambda: daemon.poll() is None and docker_ready(), timeout=90)
        yield
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()


@pytest.fixture(scope="module")
def images(engine, timings):
    """The Debian base, the project image and the Ceph RGW image, built as make test-compose builds them."""
    if os.environ.get("HFS_COMPOSE_FRESH") == "1":
        for image in IMAGES:
            run(["docker", "image", "rm", "-f", image], timeout=300, check=False)
        run(["docker", "builder", "prune", "-a", "-f"], timeout=300, check=False)
        run(["docker", "image", "prune", "-f"], timeout=300, check=False)
    t0 = time.monotonic()
    run(["bash", "docker/debian-base.sh", BASE_IMAGE], timeout=900)
    timings["debian_base_image_s"] = round(time.monotonic() - t0, 1)
    run(["bash", "docker/prepare-local.sh", sys.prefix], timeout=300)
    for service, key in (("scheduler", "project_image_s"), ("s3", "ceph_rgw_image_s")):
        t0 = time.monotonic()
        run(["docker-compose", *FILES, "build", service], timeout=3000)
        timings[key] = round(time.monotonic() - t0, 1)
    for image in IMAGES:
        assert run(["docker", "image", "inspect", image], timeout=60, check=False).returncode == 0, image


class Stack:
    def __init__(self, project: str, env: dict[str, str], ports: dict[str, int]) -> None:
        self.project, self.env, self.ports = project, env, ports
        self.up: subprocess.Popen | None = None
        self.identity: dict = {}
        self.t0 = time.monotonic()

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        return run(["docker-compose", "-p", self.project, *FILES, *args], timeout=timeout, env=self.env, check=check)

    def container(self, service: str) -> str:
        ids = self.compose("ps", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: expected one container, got {ids}"
        return ids[0]

    def state(self, service: str) -> tuple[str, int]:
        out = run(["docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", self.container(service)],
                  timeout=60).stdout.split()
        return out[0], int(out[1])

    def health(self, service: str) -> str | None:
        try:
            container = self.container(service)
        except AssertionError:
            return None
        return run(["docker", "inspect", "-f", "{{.State.Health.Status}}", container], timeout=60,
                   check=False).stdout.strip()

    def finished(self, service: str, timeout: float) -> int:
        """Wait for a one-shot service to exit; its exit code."""
        def done():
            try:
                status, code = self.state(service)
            except AssertionError:  # not created yet: its dependencies are still running
                return None
            return (code,) if status == "exited" else None
        return wait_for(f"{service} finished", done, timeout=timeout, every=3)[0]

    def host_env(self) -> dict[str, str]:
        """The environment of a host process that talks to the stack's object store."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=self.env["S3_ACCESS_KEY"], AWS_SECRET_ACCESS_KEY=self.env["S3_SECRET_KEY"],
                   AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.ports['S3_PORT']}", AWS_DEFAULT_REGION="us-east-1")
        return env

    def filesystem(self):
        import s3fs

        env = self.host_env()
        return s3fs.S3FileSystem(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"],
                                 client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]}, skip_instance_cache=True)


@pytest.fixture(scope="module")
def stack(images, timings, tmp_path_factory):
    """`docker-compose up -d` of the whole stack; torn down with its volumes at the end, whatever happened."""
    project = f"hfstest{os.getpid()}"
    ports = {name: free_port() for name in ("SCHEDULER_PORT", "DASHBOARD_PORT", "S3_PORT", "S3_CONSOLE_PORT")}
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARS and not k.startswith("COMPOSE_")}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(S3_ACCESS_KEY=f"hfs-test-{secrets.token_hex(4)}", S3_SECRET_KEY=secrets.token_hex(16),
               BUILD_ARGS=BUILD_ARGS, TRAIN_ARGS=TRAIN_ARGS)
    s = Stack(project, env, ports)
    logs = tmp_path_factory.mktemp("compose") / "up.log"
    t0 = time.monotonic()
    try:
        with open(logs, "w") as fh:
            # up -d returns once the trainer has been started (it waits for each one-shot's success)
            s.up = subprocess.Popen(["docker-compose", "-p", project, *FILES, "up", "-d", "--no-build"],
                                    stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env)
            dashboard = f"http://127.0.0.1:{ports['DASHBOARD_PORT']}/json/identity.json"
            s.identity = wait_for("two workers registered with the scheduler",
                                  lambda: (i := http_json(dashboard)) and len(i.get("workers", {})) >= 2 and i,
                                  timeout=600)
            timings["workers_registered_s"] = round(time.monotonic() - t0, 1)
            wait_for("the object store healthy", lambda: s.health("s3") == "healthy", timeout=600)
            timings["stack_up_s"] = round(time.monotonic() - t0, 1)  # scheduler + 2 workers + s3 healthy
            s.t0 = t0
            yield s
    finally:
        if s.up is not None and s.up.poll() is None:
            s.up.terminate()
            s.up.wait(timeout=60)
        out = s.compose("logs", "--no-color", "--tail", "40", timeout=120, check=False).stdout
        logger.info("stack logs (last lines per service):\n%s\n%s", out, logs.read_text()[-3000:])
        t1 = time.monotonic()
        s.compose("down", "-v", "--remove-orphans", "-t", "10", timeout=600, check=False)
        timings["down_s"] = round(time.monotonic() - t1, 1)
        left = run(["docker", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                   timeout=60, check=False).stdout.split()
        assert not left, f"containers of {project} left behind: {left}"


def test_two_workers_register_with_the_scheduler(stack):
    workers = stack.identity["workers"]
    assert len(workers) == 2
    assert all(w["nthreads"] == 1 for w in workers.values())
    # they are the two `worker` containers, not something else on the machine
    ids = stack.compose("ps", "-q", "worker").stdout.split()
    hosts = {run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", i],
                 timeout=60).stdout.strip() for i in ids}
    assert {w["host"] for w in workers.values()} == hosts


def test_dashboard_answers_on_its_port(stack):
    url = f"http://127.0.0.1:{stack.ports['DASHBOARD_PORT']}/status"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert b"Dask" in response.read()


def test_build_writes_the_demo_store_into_the_bucket_from_the_bucket(stack, timings):
    assert stack.finished("upload-demo", timeout=900) == 0
    assert stack.finished("build", timeout=1800) == 0, stack.compose("logs", "--no-color", "build").stdout[-3000:]
    timings["up_to_store_built_s"] = round(time.monotonic() - stack.t0, 1)
    fs = stack.filesystem()
    assert fs.exists(f"{AUDIO}/demo.json")
    assert len(fs.find(AUDIO)) == 301  # 300 clips and the marker
    assert fs.exists(f"{STORE}/zarr.json")
    # the workers had no audio of their own: no volume at all on them
    mounts = run(["docker", "inspect", "-f", "{{len .Mounts}}", stack.container("build")], timeout=60).stdout
    assert mounts.strip() == "0"


@pytest.fixture(scope="module")
def store_info(stack):
    result = run([str(BIN / "pipeline"), "info", "--json", STORE], timeout=300, env=stack.host_env())
    return json.loads(result.stdout)


def test_pipeline_verify_from_the_host_passes(stack, store_info):
    result = run([str(BIN / "pipeline"), "verify", STORE], timeout=600, env=stack.host_env(), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "40" in json.dumps(store_info), "the store should hold the 40 clips of --limit 40"
    # no credential of the stack in the store
    fs = stack.filesystem()
    secret = stack.env["S3_SECRET_KEY"].encode()
    for path in fs.find(STORE):
        if "/c/" not in path:  # metadata objects, not chunk data
            assert secret not in fs.cat(path), path


def test_trainer_trains_one_epoch_from_the_bucket(stack, store_info, timings, tmp_path):
    import torch

    assert stack.finished("trainer-cpu", timeout=1800) == 0, stack.compose("logs", "--no-color", "trainer-cpu").stdout[-3000:]
    timings["up_to_trained_s"] = round(time.monotonic() - stack.t0, 1)
    assert stack.up.wait(timeout=120) == 0
    run(["docker", "cp", f"{stack.container('trainer-cpu')}:/runs/demo", str(tmp_path / "run")], timeout=300)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1]
    assert metrics[0]["store"] == STORE
    state = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["store"]["uri"] == STORE
    assert state["epoch"] == 0 and state["model"]
    assert state["store"]["fingerprint"] in json.dumps(store_info), "trained on another store than the one built"
