"""Commands run in the test process (run_here, tests/conftest.py run_in_process) start as a new process would: a
warning a process says once is said again by the next command, whatever ran before it in this process, so that a
test asserting on it does not pass or fail by the order the tests ran in."""

from __future__ import annotations

import warnings

import pytest

from .conftest import SMALL_SYNTHETIC, TINY, run_here

pytestmark = pytest.mark.slow  # four commands: two sweeps, two runs (about 3 s)

SEARCH = ["-m", "hparams_search=lr_warmup_dropout_size", "hydra.sweeper.study_name=held", "hydra.sweeper.n_trials=1"]


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def test_a_study_warning_is_said_by_every_command_that_meets_it(tmp_path):
    """A stored study whose one trial (all n_trials asks for) is still running: each sweep says so and runs none.
    src.study says it once per process, since its check runs both before the sweep and in the sweeper."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    from hydra import compose, initialize_config_dir

    from src.cli.command_line import CONF_DIR
    from src.study import open_study, search_of

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    search = [*SEARCH, f"hydra.sweeper.storage={url}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        config = compose("config", overrides=search[1:], return_hydra_config=True)
    open_study(url, "held", search_of(config)).ask()  # another machine's trial, running
    said = []
    for sweep in ("first", "second"):
        result = run_here("src.run", *search, f"hydra.sweep.dir={tmp_path / sweep}")
        assert result.returncode == 0, result.stderr
        said.append([line for line in warning_lines(result.stderr) if "still running" in line])
    assert said[0] == said[1] and len(said[0]) == 1, said


def test_the_leak_ablations_warning_is_said_by_every_run(tmp_path):
    """mask=none warns when its model is built, once per process (src/model/masks.py)."""
    settings = [*TINY, *SMALL_SYNTHETIC, "mask=none", "logger=none"]
    for run in ("first", "second"):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            result = run_here("src.run", *settings, f"hydra.run.dir={tmp_path / run}")
        assert result.returncode == 0, result.stderr
        assert [str(w.message) for w in said if str(w.message).startswith("mask=none")], run
