"""docker-compose.yml, docker/compose.local.yml and the Dockerfile, checked by the real tools.

The compose files are resolved by the compose command itself
(``docker-compose config``, or ``docker compose config`` where only the v2
plugin exists), so interpolation, merging of the override and validation
are Compose's own; these tests skip, saying so, where neither exists. The
shell commands of the one-shot services are expanded by a real ``sh`` with
the service's resolved environment, and every resulting command line is
parsed by the argument parser it would meet: ours (found through the
``pipeline`` console script's entry point), the installed ``dask``
command's (its click commands) or ``hfs-upload``'s (docker/upload.py).

The stack itself, built and run: tests/compose/test_stack.py (``make test-compose``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
LOCAL = REPO / "docker" / "compose.local.yml"
DOCKERFILE = REPO / "Dockerfile"
#: Variables the compose files read; cleared so the defaults are what is tested.
COMPOSE_VARS = ("DATASET", "AUDIO_ROOT", "BUILD_ARGS", "TRAIN_ARGS", "WORKER_MEMORY", "S3_ACCESS_KEY",
                "S3_SECRET_KEY", "SCHEDULER_PORT", "DASHBOARD_PORT", "S3_PORT", "S3_CONSOLE_PORT")
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")


def compose_command() -> list[str] | None:
    """The compose CLI of this machine: v1 ``docker-compose`` or the v2 ``docker compose`` plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def unescape(value: object) -> object:
    """``config`` prints a literal ``$`` as ``$$`` (its own escape); give the value containers get."""
    if isinstance(value, dict):
        return {k: unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape(v) for v in value]
    return value.replace("$$", "$") if isinstance(value, str) else value


@functools.lru_cache(maxsize=None)
def _resolved(files: tuple[Path, ...], env_items: tuple[tuple[str, str], ...]) -> dict:
    tool = compose_command()
    if tool is None:
        pytest.skip("no compose command (docker-compose, or docker with the compose plugin): "
                    "apt-get install docker-compose (Debian) to validate the compose files")
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARS and not k.startswith("COMPOSE_")}
    env.update(env_items)
    args = [*tool, "--project-directory", str(REPO)] if tool == ["docker", "compose"] else [*tool]
    for f in files:
        args += ["-f", str(f)]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 0, f"{' '.join(args)} config rejects the file:\n{result.stderr}"
    return unescape(yaml.safe_load(result.stdout))


def resolved(*files: Path, **env: str) -> dict:
    """The compose configuration as the compose command resolves it (interpolated, merged, validated)."""
    return _resolved(tuple(files or (COMPOSE,)), tuple(sorted(env.items())))


@pytest.fixture(scope="module", params=[{}, {"DATASET": "gtzan", "AUDIO_ROOT": "s3://team-data/gtzan",
                                              "WORKER_MEMORY": "6GiB"}], ids=["defaults", "overridden"])
def config(request) -> dict:
    return resolved(**request.param)


@pytest.fixture(scope="module")
def services(config) -> dict:
    return config["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the v2 tool may print KEY=VALUE lists
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def ports(service: dict) -> dict[int, int]:
    """Container port -> published host port."""
    out = {}
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out[int(p["target"])] = int(p["published"])
        else:
            host, container = str(p).rsplit(":", 1)[-2:] if str(p).count(":") else (p, p)
            out[int(container)] = int(str(host).rsplit(":", 1)[-1])
    return out


def executed(service: dict, tmp_path: Path) -> list[list[str]]:
    """The programs a service's command runs, as argv lists, the way its container would run them.

    Exec-form commands are returned as they are; ``sh -c SCRIPT`` is run by a
    real ``sh`` with the service's environment, every program on its PATH
    replaced by a recorder that writes its argv.
    """
    argv = service["command"]
    if argv[:2] != ["sh", "-c"]:
        return [argv]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "argv.jsonl"
    log.unlink(missing_ok=True)
    recorder = (f"#!{sys.executable}\nimport json, os, sys\n"
                f"open({str(log)!r}, 'a').write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + '\\n')\n")
    for name in ("pipeline", "hfs-upload", "dask", "python", "python3"):
        (bin_dir / name).write_text(recorder)
        (bin_dir / name).chmod(0o755)
    env = {**environment(service), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def only_run(service: dict, tmp_path: Path) -> list[str]:
    runs = executed(service, tmp_path)
    assert len(runs) == 1, f"expected one program, got {runs}"
    return runs[0]


def dask_command(name: str):
    """The click command behind ``dask NAME`` in this installation."""
    for ep in entry_points(group="dask_cli"):
        command = ep.load()
        if command.name == name or ep.name == name:
            return command
    raise LookupError(f"`dask {name}` is not a command of the installed dask")


def parse_dask(argv: list[str]) -> dict:
    assert argv[0] == "dask", argv
    command = dask_command(argv[1])
    # make_context parses (and validates types of) the options without running
    return command.make_context(f"dask {argv[1]}", list(argv[2:])).params


def pipeline_parser():
    """Our CLI's parser, from the module the installed ``pipeline`` console script runs."""
    (ep,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "pipeline"]
    module = importlib.import_module(ep.module)
    if not hasattr(module, "make_parser"):
        pytest.skip(f"{ep.module} (the `pipeline` entry point) has no make_parser() to check commands with")
    return module.make_parser()


def parse_pipeline(argv: list[str]):
    assert argv[0] == "pipeline", argv
    parser = pipeline_parser()
    choices = parser._subparsers._group_actions[0].choices  # the COMMAND sub-parsers
    if argv[1] not in choices:
        pytest.fail(f"`pipeline {argv[1]}` is not a command of our CLI (commands: {sorted(choices)})")
    try:
        return parser.parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"our CLI rejects {' '.join(argv)} (exit {exc.code})")


@functools.lru_cache(maxsize=None)
def upload_module():
    spec = importlib.util.spec_from_file_location("hfs_upload", REPO / "docker" / "upload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_upload(argv: list[str]):
    assert argv[0] == "hfs-upload", argv
    try:
        return upload_module().make_parser().parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"hfs-upload rejects {' '.join(argv)} (exit {exc.code})")


def test_the_command_checks_reject_what_the_real_clis_reject(tmp_path):
    import click

    with pytest.raises(click.UsageError):
        parse_dask(["dask", "worker", "tcp://scheduler:8786", "--nthreads", "one"])
    with pytest.raises(click.UsageError):
        parse_dask(["dask", "scheduler", "--no-such-option"])
    with pytest.raises(LookupError):
        dask_command("scheduler-legacy")
    with pytest.raises(pytest.fail.Exception):
        parse_pipeline(["pipeline", "build", "--out", "s3://b/x.zarr"])  # --dataset missing
    with pytest.raises(pytest.fail.Exception):
        parse_upload(["hfs-upload", "demo"])  # no destination
    # the shell expansion sees the service's environment, word splitting included
    service = {"command": ["sh", "-c", 'exec pipeline info "$$STORE" $$EXTRA'.replace("$$", "$")],
               "environment": {"STORE": "s3://b/x y.zarr", "EXTRA": "--json"}}
    assert executed(service, tmp_path) == [["pipeline", "info", "s3://b/x y.zarr", "--json"]]


def test_the_compose_tool_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("services:\n", "services:\n  bad:\n    depends_on: 7\n", 1))
    tool = compose_command()
    if tool is None:
        pytest.skip("no compose command (apt-get install docker-compose)")
    result = subprocess.run([*tool, "-f", str(broken), "config", "-q"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0


def test_expected_services(services):
    assert set(services) >= {"scheduler", "worker", "s3", "create-buckets", "upload-demo", "build", "trainer"}


def test_scheduler_is_a_real_dask_scheduler_with_dashboard(services):
    argv = services["scheduler"]["command"]
    params = parse_dask(argv)
    assert int(params["port"]) == 8786
    dashboard_port = int(params["dashboard_address"].rsplit(":", 1)[1])
    assert {8786, dashboard_port} <= set(ports(services["scheduler"]))


def test_host_ports_follow_the_environment():
    published = ports(resolved(DASHBOARD_PORT="18787", SCHEDULER_PORT="18786")["services"]["scheduler"])
    assert published == {8786: 18786, 8787: 18787}
    assert ports(resolved(S3_PORT="19000")["services"]["s3"])[9000] == 19000


def test_worker_is_a_real_dask_worker_and_scalable_without_audio(services):
    worker = services["worker"]
    params = parse_dask(worker["command"])
    assert params["nthreads"] == 1
    assert params["memory_limit"] not in (None, "auto", "0")
    scheduler = urlsplit(params["scheduler"])
    assert scheduler.hostname == "scheduler"
    assert scheduler.port == int(parse_dask(services["scheduler"]["command"])["port"])
    # --scale worker=N needs no fixed name and no published host port
    assert "container_name" not in worker and "ports" not in worker
    assert worker["deploy"]["replicas"] == 2
    # no shared filesystem: the workers fetch the audio from the bucket themselves
    assert not worker.get("volumes")
    env = environment(worker)
    assert set(S3_KEYS) <= set(env)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        assert env[var] == "1"


def test_worker_memory_limit_follows_the_environment():
    params = parse_dask(resolved(WORKER_MEMORY="6GiB")["services"]["worker"]["command"])
    assert params["memory_limit"] == "6GiB"


def created_buckets(services: dict, tmp_path: Path) -> set[str]:
    args = parse_upload(only_run(services["create-buckets"], tmp_path))
    assert args.command == "buckets"
    return {urlsplit(uri).netloc for uri in args.uris}


def test_build_reads_the_bucket_on_the_cluster_into_the_bucket(config, services, tmp_path):
    build = services["build"]
    args = parse_pipeline(only_run(build, tmp_path))
    assert args.command == "build"
    assert (urlsplit(args.scheduler).hostname, urlsplit(args.scheduler).port) == ("scheduler", 8786)
    root, out = urlsplit(args.root), urlsplit(args.out)
    assert root.scheme == out.scheme == "s3"
    assert args.dataset == environment(build)["DATASET"]
    assert out.path == f"/{args.dataset}.zarr"
    buckets = created_buckets(services, tmp_path)
    assert out.netloc in buckets
    if args.dataset == "demo":
        assert root.netloc in buckets
    else:
        assert args.root == "s3://team-data/gtzan"  # the user's AUDIO_ROOT
    assert not build.get("volumes"), "the build reads the collection from the bucket, no volume"
    assert build["depends_on"]["upload-demo"]["condition"] == "service_completed_successfully"
    assert services["upload-demo"]["depends_on"]["create-buckets"]["condition"] == "service_completed_successfully"
    assert services["create-buckets"]["depends_on"]["s3"]["condition"] == "service_healthy"


def test_build_args_reach_pipeline_build(tmp_path):
    build = resolved(BUILD_ARGS="--limit 40 --clips-per-shard 8")["services"]["build"]
    args = parse_pipeline(only_run(build, tmp_path))
    assert (args.limit, args.clips_per_shard) == (40, 8)


def test_upload_demo_puts_the_demo_where_the_build_reads_it(services, tmp_path):
    runs = executed(services["upload-demo"], tmp_path)
    build = parse_pipeline(only_run(services["build"], tmp_path))
    if build.dataset == "demo":
        assert len(runs) == 1
        args = parse_upload(runs[0])
        assert (args.command, args.dest) == ("demo", build.root)
    else:
        assert runs == [], "upload-demo must not upload the demo for another dataset"


def test_trainer_reads_the_store_the_build_writes_on_a_gpu(services, tmp_path):
    build_args = parse_pipeline(only_run(services["build"], tmp_path))
    trainer = services["trainer"]
    args = parse_pipeline(only_run(trainer, tmp_path))
    assert args.command == "train"
    assert args.store == build_args.out
    assert args.out.startswith("/runs/")
    assert any(v["target"] == "/runs" if isinstance(v, dict) else v.split(":")[1] == "/runs"
               for v in trainer["volumes"])
    devices = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) for d in devices)
    assert trainer["depends_on"]["build"]["condition"] == "service_completed_successfully"
    with_args = parse_pipeline(only_run(resolved(TRAIN_ARGS="--epochs 1 --device cpu")["services"]["trainer"], tmp_path))
    assert (with_args.epochs, with_args.device) == (1, "cpu")


def test_s3_settings_agree_across_services(services):
    users = ("worker", "create-buckets", "upload-demo", "build", "trainer")
    envs = [environment(services[name]) for name in users]
    for key in S3_KEYS:
        values = {env.get(key) for env in envs}
        assert len(values) == 1 and None not in values, f"{key} differs across {users}: {values}"
    minio = environment(services["s3"])
    assert minio["MINIO_ROOT_USER"] == envs[0]["AWS_ACCESS_KEY_ID"]
    assert minio["MINIO_ROOT_PASSWORD"] == envs[0]["AWS_SECRET_ACCESS_KEY"]
    endpoint = urlsplit(envs[0]["AWS_ENDPOINT_URL"])
    assert endpoint.hostname == "s3"
    assert endpoint.port in ports(services["s3"])
    # credentials travel in the environment only, never on a command line
    secret = envs[0]["AWS_SECRET_ACCESS_KEY"]
    for name, service in services.items():
        assert secret not in " ".join(service.get("command") or []), name


def test_project_images_are_built_from_our_dockerfile(services):
    cluster = ("scheduler", "worker", "create-buckets", "upload-demo", "build")
    # client, scheduler and workers must run the same `distributed` version
    assert len({services[name]["image"] for name in cluster}) == 1
    built = {name: s for name, s in services.items() if isinstance(s.get("build"), dict)}
    assert {"scheduler", "trainer"} <= set(built)
    for name, service in built.items():
        context = Path(service["build"].get("context", REPO))
        assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name


def dockerfile_args(path: Path) -> dict[str, str | None]:
    found = {}
    for name, default in re.findall(r"^ARG (\w+)(?:=(.*))?$", path.read_text(), re.M):
        found[name] = default.strip('"') if default else None
    return found


def test_dockerfile_defaults_to_the_public_python_image_and_installs_the_project():
    text = DOCKERFILE.read_text()
    args = dockerfile_args(DOCKERFILE)
    assert args["BASE_IMAGE"] == "python:3.11-slim"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS runtime", text, re.M)
    assert "libsndfile1" in text
    assert re.search(r'pip install "\.\[s3', text)
    for package in ("pipeline", "stores", "model", "workflows"):
        assert f"COPY {package} ./{package}" in text, package
    # every package the project ships is copied into the image
    shipped = {p.split("*")[0] for p in __import__("tomllib").loads((REPO / "pyproject.toml").read_text())
               ["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert shipped <= {m for m in re.findall(r"^COPY (\w+) \./\1$", text, re.M)}
    trainer_args = set(resolved()["services"]["trainer"]["build"].get("args", {}))
    assert trainer_args <= set(args)


def test_dockerignore_keeps_local_state_out():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "*.zarr"} <= set(ignored)
    assert not any(pattern.startswith("docker") for pattern in ignored), "the Dockerfile copies docker/"


# --- docker/compose.local.yml: this machine's override -------------------------------------------


@pytest.fixture(scope="module")
def local_services() -> dict:
    return resolved(COMPOSE, LOCAL)["services"]


def test_local_override_is_accepted_and_builds_on_the_local_base(local_services):
    build = local_services["scheduler"]["build"]
    args = build["args"]
    assert args["BASE_IMAGE"] == "hfs-debian:bookworm"
    assert set(args) <= set(dockerfile_args(DOCKERFILE))
    s3 = local_services["s3"]
    ceph = Path(s3["build"]["context"])
    assert (ceph / "Dockerfile").is_file() and (ceph / "entrypoint.sh").is_file()
    assert s3["build"]["args"]["BASE_IMAGE"] == args["BASE_IMAGE"]
    assert s3["command"] == [], "MinIO's `server /data` must not reach the Ceph entrypoint"
    env = environment(s3)
    worker = environment(local_services["worker"])
    assert (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]) == (worker["AWS_ACCESS_KEY_ID"], worker["AWS_SECRET_ACCESS_KEY"])
    assert int(env["S3_PORT"]) == urlsplit(worker["AWS_ENDPOINT_URL"]).port
    assert any("127.0.0.1:9000" in part for part in s3["healthcheck"]["test"])


def test_local_trainer_is_the_trainer_on_cpu(local_services, tmp_path):
    gpu, cpu = local_services["trainer"], local_services["trainer-cpu"]
    assert gpu["profiles"] == ["gpu"], "the GPU trainer must be off on a machine without a GPU"
    assert "deploy" not in cpu
    assert executed(cpu, tmp_path) == executed(gpu, tmp_path)
    assert environment(cpu) == environment(gpu)
    assert cpu["volumes"] == gpu["volumes"]
    assert cpu["depends_on"] == gpu["depends_on"]
    assert cpu["image"] == local_services["worker"]["image"]


# --- hfs-upload (docker/upload.py) against the loopback S3 server -------------------------------


@pytest.mark.s3
def test_hfs_upload_makes_buckets_and_uploads_a_folder_once(s3_server, tmp_path):
    bucket = f"hfs-upload-{os.getpid()}"
    tree = tmp_path / "collection"
    for rel, data in {"pop/a.wav": b"a" * 10, "jazz/b.wav": b"b" * 20, "demo.json": b"{}"}.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    env = {**os.environ, **s3_server.env()}

    def upload(*args: str) -> str:
        result = subprocess.run([sys.executable, str(REPO / "docker" / "upload.py"), *args], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stderr

    assert f"created bucket s3://{bucket}" in upload("buckets", f"s3://{bucket}")
    assert f"bucket s3://{bucket} exists" in upload("buckets", f"s3://{bucket}")
    assert "3 files sent, 0 already there" in upload("folder", str(tree), f"s3://{bucket}/set")
    fs = s3_server.filesystem()
    assert sorted(fs.find(f"{bucket}/set")) == [f"{bucket}/set/{rel}" for rel in ("demo.json", "jazz/b.wav", "pop/a.wav")]
    assert fs.cat(f"{bucket}/set/jazz/b.wav") == b"b" * 20
    (tree / "pop" / "a.wav").write_bytes(b"changed, longer")
    assert "1 files sent, 2 already there" in upload("folder", str(tree), f"s3://{bucket}/set")
    assert fs.cat(f"{bucket}/set/pop/a.wav") == b"changed, longer"
    fs.rm(bucket, recursive=True)
