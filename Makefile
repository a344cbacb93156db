# `make run` and `make test` work on a fresh clone: they build .venv first if it is missing or stale.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast lint format bench bench-quality bench-gpu tensorboard clean

setup: $(STAMP)

# constraints.txt pins what our machines install (the CPU build of torch); the package itself asks for a range.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,optuna,cluster,wandb,mlflow,pretrained,bertviz]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m src.run $(ARGS)

# Two workers (pytest-xdist), one test file each at a time: the end-to-end tests mostly wait on their own
# subprocesses, so the suite takes about half the time on two cores. The files are handed out in collection order,
# end-to-end files first (tests/conftest.py), so that no slow file is left to one worker at the end.
# Three workers were tried on two cores, to fill the time the end-to-end tests wait: slower (25 min of tests
# against 19, a third more CPU time spent). `make test ARGS="-n 0"`: one process.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

# ruff (lint, import order, format) on everything; mypy on the typed packages (see pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Speed figures beside their goals (a few minutes); bench-quality trains the quality experiments on real data
# (about 35 minutes; data from a shared/data folder beside the repository, or ARGS="--data DIR").
bench: $(STAMP)
	$(PY) -m src.bench $(ARGS)

bench-quality: $(STAMP)
	$(PY) -m src.bench.quality $(ARGS)

# The GPU figures beside their goals, on one CUDA GPU, in under 8 minutes (src/bench/gpu.py). It needs a torch built
# with CUDA, which .venv's is not (constraints.txt pins the CPU build): it runs with the environment where this
# project is installed with a CUDA torch (GPU_PYTHON, python3 unless given). ARGS="--data DIR --out DIR".
GPU_PYTHON ?= python3
bench-gpu:
	$(GPU_PYTHON) -m src.bench.gpu $(ARGS)

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir outputs --samples_per_plugin images=100

clean:
	rm -rf $(VENV) .pytest_cache
