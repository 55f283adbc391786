# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# A CPU build of torch when one is at hand; any torch>=2.4 (CUDA builds too) works.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean bench test-compose lint-imports

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" || $(PY) -m pip install -q "torch>=2.4"
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pipeline demo

# The layer contract first (pyproject.toml [tool.importlinter]): an upward import fails the run.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The docker-compose stack, built and run (tests/compose/test_stack.py): starts dockerd when none
# runs (root), builds the Debian base, project and Ceph RGW images, runs the stack with
# docker/compose.local.yml and tears it down. Needs Debian's docker.io, docker-compose and debootstrap.
test-compose: $(STAMP)
	$(PY) -m pytest -q -rs -s -m compose tests/compose $(PYTEST_ARGS)

lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(VENV)/bin/pipeline bench features
	$(VENV)/bin/pipeline bench build

clean:
	rm -rf $(VENV) .pytest_cache

# On a GPU machine: the trainer's CUDA figures (runs/gpu-check/gpu-check.json), then the CUDA tests.
# Without CUDA it stops with one line; `pipeline bench gpu --device cpu` is the CPU-size run.
.PHONY: gpu-check
gpu-check: $(STAMP)
	$(VENV)/bin/pipeline bench gpu $(GPU_CHECK_ARGS)
	$(PY) -m pytest -q -rs -m cuda tests/model/test_cuda.py
