# `make run` and `make test` work on a fresh clone: they build .venv first if it is missing or stale.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast lint format bench bench-quality bench-gpu tensorboard clean

setup: $(STAMP)

# constraints.txt pins what our machines install (the CPU build of torch); the package itself asks for a range.
# pip compiles what it installs to bytecode one file after the other; compileall does the same on every core (a
# fresh setup on two cores: 161 s with pip's compiling, 89 s so). Compiled here rather than at first import: a
# process never writes bytecode where PYTHONDONTWRITEBYTECODE is set (common in containers), and would compile torch
# again at every start. (compileall's exit status is left out: a few files of torch's are for newer Pythons only.)
PURELIB = $$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -c constraints.txt -e '.[dev,optuna,cluster,wandb,mlflow,pretrained,bertviz]'
	$(PY) -m compileall -q -j 0 $(PURELIB) > /dev/null || true
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m src.run $(ARGS)

# Two workers (pytest-xdist), one test file each at a time: the end-to-end tests mostly wait on their own
# subprocesses, so the suite takes about half the time on two cores. The files are handed out in collection order,
# end-to-end files first (tests/conftest.py), so that no slow file is left to one worker at the end.
# Three workers were tried on two cores, to fill the time the end-to-end tests wait: slower (25 min of tests
# against 19, a third more CPU time spent). `make test ARGS="-n 0"`: one process.
# The project's own modules compiled first: the suite starts a few hundred processes (commands, DDP ranks, cluster
# jobs), and where PYTHONDONTWRITEBYTECODE is set each one compiled src/ from source (about 0.3 s of a start).
test: $(STAMP)
	$(PY) -m compileall -q -j 0 src tests > /dev/null
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
