"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The compose file is parsed with PyYAML and interpolated as Compose does
(``${VAR:-default}``, ``$$``); every service command is parsed by the real
argument parser it would meet: ours (``pipeline.cli.make_parser``) or the
installed ``dask`` command's (its click commands, found through the same
entry points the ``dask`` executable uses).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from pipeline.cli import make_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
_VAR = re.compile(r"\$\$|\$\{(?P<braced>[^}]*)\}|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: object, env: dict[str, str]) -> object:
    """Compose-style variable substitution over a parsed YAML tree."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("plain"):
            return env.get(match.group("plain"), "")
        expr = match.group("braced")
        name, op, default = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:-|-|:\?|\?)?(.*)", expr).groups()
        if op in (":-",):
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        if op in (":?", "?"):
            if not env.get(name):
                raise KeyError(f"compose variable {name} is required: {default}")
            return env[name]
        return env.get(name, "")

    return _VAR.sub(substitute, value)


def load_compose(env: dict[str, str] | None = None) -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env or {})


@pytest.fixture(scope="module", params=[{}, {"DATASET": "gtzan", "WORKER_MEMORY": "6GiB"}],
                ids=["defaults", "overridden"])
def compose(request) -> dict:
    return load_compose(request.param)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


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


def parse_pipeline(argv: list[str]):
    assert argv[0] == "pipeline", argv
    parser = make_parser()
    choices = parser._subparsers._group_actions[0].choices  # the COMMAND sub-parsers
    if argv[1] not in choices:
        pytest.fail(f"`pipeline {argv[1]}` is not a command of our CLI (commands: {sorted(choices)})")
    try:
        return parser.parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"our CLI rejects {' '.join(argv)} (exit {exc.code})")


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_command_checks_reject_what_the_real_clis_reject():
    import click

    with pytest.raises(click.UsageError):
        parse_dask(["dask", "worker", "tcp://scheduler:8786", "--nthreads", "one"])
    with pytest.raises(click.UsageError):
        parse_dask(["dask", "scheduler", "--no-such-option"])
    with pytest.raises(LookupError):
        dask_command("scheduler-legacy")
    with pytest.raises(pytest.fail.Exception):
        parse_pipeline(["pipeline", "build", "--out", "s3://b/x.zarr"])  # --dataset missing


def test_expected_services(services):
    assert set(services) >= {"scheduler", "worker", "minio", "create-bucket", "build", "trainer"}


def test_commands_are_exec_form_lists(services):
    # exec form: no shell re-splitting of values like the memory limit
    for name, service in services.items():
        if "command" in service:
            assert isinstance(service["command"], list), f"{name}: command must be a list"
            assert all(isinstance(arg, str) for arg in service["command"]), name


def test_scheduler_is_a_real_dask_scheduler_with_dashboard(services):
    argv = services["scheduler"]["command"]
    params = parse_dask(argv)
    assert int(params["port"]) == 8786
    dashboard_port = params["dashboard_address"].rsplit(":", 1)[1]
    published = {p.split(":")[-1] for p in services["scheduler"]["ports"]}
    assert {"8786", dashboard_port} <= published


def test_worker_is_a_real_dask_worker_and_scalable(services):
    worker = services["worker"]
    params = parse_dask(worker["command"])
    assert params["nthreads"] == 1
    assert params["memory_limit"] not in (None, "auto", "0")
    scheduler = urlsplit(params["scheduler"])
    assert scheduler.hostname == "scheduler"
    assert scheduler.port == int(parse_dask(services["scheduler"]["command"])["port"])
    # --scale worker=N needs no fixed name and no published host port
    assert "container_name" not in worker and "ports" not in worker
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        assert worker["environment"][var] == "1"


def test_worker_memory_limit_follows_the_environment():
    params = parse_dask(load_compose({"WORKER_MEMORY": "6GiB"})["services"]["worker"]["command"])
    assert params["memory_limit"] == "6GiB"


def test_build_is_a_real_pipeline_build_on_the_cluster_into_the_bucket(services):
    build = services["build"]
    args = parse_pipeline(build["command"])
    assert args.command == "build"
    scheduler = urlsplit(args.scheduler)
    assert (scheduler.hostname, scheduler.port) == ("scheduler", 8786)
    out = urlsplit(args.out)
    assert out.scheme == "s3"
    assert out.netloc == created_bucket(services)
    # the build's dataset root is on a volume that the workers mount at the same path
    root_volume = volume_holding(build, args.root)
    assert root_volume is not None, f"--root {args.root} is on no volume of the build service"
    assert volume_holding(services["worker"], args.root) == root_volume
    assert build["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"


def test_trainer_reads_the_store_the_build_writes_on_a_gpu(services):
    build_args = parse_pipeline(services["build"]["command"])
    trainer = services["trainer"]
    args = parse_pipeline(trainer["command"])
    assert args.command == "train"
    assert args.store == build_args.out
    devices = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) for d in devices)
    assert trainer["depends_on"]["build"]["condition"] == "service_completed_successfully"


def test_s3_settings_agree_across_services(services):
    users = [name for name in ("worker", "build", "trainer", "create-bucket")]
    envs = [services[name]["environment"] for name in users]
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")
    for key in keys:
        values = {env.get(key) for env in envs}
        assert len(values) == 1 and None not in values, f"{key} differs across {users}: {values}"
    minio = services["minio"]
    assert minio["environment"]["MINIO_ROOT_USER"] == envs[0]["AWS_ACCESS_KEY_ID"]
    assert minio["environment"]["MINIO_ROOT_PASSWORD"] == envs[0]["AWS_SECRET_ACCESS_KEY"]
    endpoint = urlsplit(envs[0]["AWS_ENDPOINT_URL"])
    assert endpoint.hostname == "minio"
    assert str(endpoint.port) in {p.split(":")[-1] for p in minio["ports"]}
    # credentials travel in the environment only, never on a command line
    secret = envs[0]["AWS_SECRET_ACCESS_KEY"]
    for name, service in services.items():
        assert secret not in " ".join(service.get("command", [])), name


def test_project_images_are_built_from_our_dockerfile(services):
    cluster_images = {services[name]["image"] for name in ("scheduler", "worker", "build")}
    # client, scheduler and workers must run the same `distributed` version
    assert len(cluster_images) == 1
    built = {name: s for name, s in services.items() if "build" in s and isinstance(s["build"], dict)}
    assert {"scheduler", "trainer"} <= set(built)
    for name, service in built.items():
        context = REPO / service["build"].get("context", ".")
        assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
    assert services["scheduler"]["image"] in cluster_images


def test_dockerfile_installs_the_project_on_python_311():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "libsndfile1" in text
    assert re.search(r"pip install .*\"\.\[s3", text)
    for package in ("pipeline", "stores", "model", "workflows"):
        assert f"COPY {package} ./{package}" in text, package
    build_args = set(re.findall(r"^ARG (\w+)", text, re.M))
    trainer_args = set(load_compose()["services"]["trainer"]["build"].get("args", {}))
    assert trainer_args <= build_args


def test_dockerignore_keeps_local_state_out():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "*.zarr"} <= set(ignored)


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_accepts_the_file():
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def created_bucket(services: dict) -> str:
    """The bucket name the one-shot ``mc mb`` job creates."""
    script = " ".join(services["create-bucket"]["command"])
    match = re.search(r"mc mb (?:--ignore-existing )?\w+/([a-z0-9.-]+)", script)
    assert match, f"no `mc mb` in create-bucket's command: {script}"
    return match.group(1)


def volume_holding(service: dict, path: str) -> str | None:
    """The volume/bind source mounted over ``path`` in a service, if any."""
    for mount in service.get("volumes", []):
        source, target = mount.split(":")[:2]
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source
    return None
