"""Fixtures shared by the tests of the top-level modules (schema, validation)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from src.cli.command_line import compose_run_config
from src.cli.schema import register_configs
from src.provenance import python_command

ROOT = Path(__file__).resolve().parents[1]
register_configs()

# How the commands the project prints for a user start in these tests (`make test` starts them all in the
# repository root, where the commands' own processes run too): `python` where the PATH finds this interpreter,
# else its path, .venv/bin/python when the environment is not activated (src.provenance.python_command).
PYTHON = python_command()


compose_config = compose_run_config  # the config `python -m src.run <overrides>` would get, in this process


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_per_test_process():
    """Every test process runs torch on one thread, as tests/training/conftest.py does for its tests and
    run_in_process leaves it. The suite runs in two processes on two cores (`make test`), and torch's default is a
    thread per core: two processes of two threads each on two cores spent more time waiting for each other's
    threads than computing (tests/model, test_bad_inputs, tests/cli, test_predict: 170-216 s with the
    default, 86-98 s with one thread, on a 2-core Xeon). The commands the tests start run with torch_threads=1 or
    OMP_NUM_THREADS=1 already."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def compose():
    return compose_config


@pytest.fixture
def text_files(tmp_path):
    """Tiny data files for the file-based tasks (validation only checks that they exist)."""
    paths = {}
    for name, content in {
        "text.txt": "hello world\n" * 20,
        "src.txt": "ein haus\n",
        "tgt.txt": "a house\n",
        "train.tsv": "good film\t1\nbad film\t0\n",
    }.items():
        (tmp_path / name).write_text(content)
        paths[name] = str(tmp_path / name)
    return paths


@pytest.fixture
def translation_overrides(text_files):
    """task=translation with every file field set, plus the given overrides."""

    def overrides(*extra: str) -> list[str]:
        sides = [
            f"task.{split}_{side}={text_files['src.txt'] if side == 'src' else text_files['tgt.txt']}"
            for split in ("train", "val", "test")
            for side in ("src", "tgt")
        ]
        return ["task=translation", *sides, *extra]

    return overrides


def run_in_process(module: str, *args: str) -> tuple[int, str, str]:
    """`python -m <module> <args>` in this process, through the module's own entry function: (exit status, stdout,
    stderr). For fixtures, where pytest's capsys is not available."""
    import contextlib
    import importlib
    import io
    import sys

    import torch

    entry = importlib.import_module(module)
    if hasattr(entry, "cli"):
        command = entry.cli
    elif hasattr(entry, "run_hydra_command"):  # a Hydra command: src.run, src.eval, src.predict, src.analyze
        command = lambda: entry.run_hydra_command(entry.main)  # noqa: E731
    else:  # an argparse one, reading sys.argv: src.report
        command = entry.main
    out, err, argv, code = io.StringIO(), io.StringIO(), sys.argv, 0
    forget_what_was_said()
    sys.argv = [module, *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            command()
    except SystemExit as exit:
        code = 0 if exit.code is None else exit.code if isinstance(exit.code, int) else 1  # sys.exit(): success
    finally:
        sys.argv = argv
        torch.set_num_threads(1)
    return code, out.getvalue(), err.getvalue()


def forget_what_was_said() -> None:
    """The warnings a process says once, forgotten, so that each command run_in_process runs says them as a new
    process would, whatever ran in this process before it: src.study's (said before a sweep and not again by its
    sweeper), src.analyze's (said for a sweep's first job) and a mask scheme's (said for the first model built). A
    module not imported yet has nothing to forget."""
    import sys

    study, analyze, masks = (sys.modules.get(name) for name in ("src.study", "src.analyze", "src.model.masks"))
    if study is not None:
        study._warn_once.cache_clear()
    if analyze is not None:
        analyze._WARNED.clear()
    if masks is not None:
        masks._warned.clear()


def process_state(pid: int) -> str | None:
    """A process's state letter as Linux's /proc gives it (R running, S sleeping, T stopped, Z ended and not reaped
    yet); None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]  # after "(<name>)"
    except (FileNotFoundError, ProcessLookupError):
        return None


def wait_for_state(pid: int, *states: str | None, timeout: float = 10) -> str | None:
    """Wait until the process is in one of `states` (None: gone) and return that state; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while (now := process_state(pid)) not in states:
        assert time.monotonic() < deadline, f"process {pid} is in state {now}, not {states} after {timeout} s"
        time.sleep(0.01)
    return now


pytest_plugins = ["tests.servers.slurm"]


def pytest_collection_modifyitems(config, items) -> None:
    """The files that hold end-to-end (slow) tests first, the rest after, each keeping its order. `make test` hands
    files to its two workers in this order (--no-loadscope-reorder): otherwise pytest-xdist hands them out by
    number of tests, largest first, and the end-to-end files, few tests of long subprocesses each, came last, with
    one worker running the slowest of them alone while the other waited."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)  # a stable sort: each file's order is kept
