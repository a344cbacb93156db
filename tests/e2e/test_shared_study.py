"""One Optuna search shared by two sweeps at once, through a real PostgreSQL server (tests/servers/postgres.py):
the same command twice, as two machines would type it. Between them they run the trials asked for, none twice, and
every report lists every trial with its parameters and value. A storage or a stored study the search cannot use is
one `error:` line before any training."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from src.report import _format, setting_cell
from src.report import main as report_main
from tests.servers.postgres import free_port, postgres_server  # noqa: F401

from .conftest import ROOT, SMALL_SYNTHETIC, TINY, check, run_here

pytestmark = pytest.mark.slow

STUDY = "lr_warmup_dropout_size"
SEARCHED = ("optimizer.lr=", "optimizer.warmup_steps=", "model.dropout=", "model.d_model=")
# Minimising the validation loss, whose values differ from trial to trial (a few steps reach no exact match at all)
TINY_SEARCH = [
    "-m",
    f"hparams_search={STUDY}",
    *(o for o in TINY if not o.startswith(SEARCHED)),
    *SMALL_SYNTHETIC,
]
SEARCH = [*TINY_SEARCH, "objective=val/loss", "hydra.sweeper.direction=minimize"]


def start_sweep(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "src.run", *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen, timeout: int = 600) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def study_rows(text: str) -> dict[int, list[str]]:
    """The rows of the `## Study` table of a report (or of src.report's printout), by trial number: its cells."""
    section = text.split("## Study", 1)[-1] if "## Study" in text else text
    rows = {}
    for line in section.splitlines():
        if re.match(r"^\| \d+ \|", line):
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            rows[int(cells[0])] = cells
    return rows


def header_of(text: str) -> list[str]:
    section = text.split("## Study", 1)[-1] if "## Study" in text else text
    line = next(line for line in section.splitlines() if line.startswith("| trial |"))
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def lists_every_trial(text: str, trials, with_values: bool = True) -> None:
    """Every trial has its row, with its parameters as the report shows them and its value (a trial still running
    when the report was written may have none yet, unless `with_values`)."""
    rows, header = study_rows(text), header_of(text)
    assert sorted(rows) == [trial.number for trial in trials]
    for trial in trials:
        cells = dict(zip(header, rows[trial.number]))
        for name, value in trial.params.items():
            assert cells[name] == setting_cell(str(value)), (name, cells)
        value = next(cells[key] for key in cells if key.startswith("value"))
        if with_values or cells["state"] != "running":
            assert value.strip("*") == _format(trial.value), cells


def test_two_sweeps_share_one_study_and_each_report_lists_every_trial(tmp_path, postgres_server):  # noqa: F811
    import optuna

    from src.study import HOST, JOB_DIR, SWEEP_DIR

    url = postgres_server.new_database()
    sweeps = [tmp_path / "machine_a", tmp_path / "machine_b"]
    started, launched_at = time.perf_counter(), datetime.now()
    processes = [
        start_sweep(*SEARCH, "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage={url}", f"hydra.sweep.dir={sweep}")
        for sweep in sweeps
    ]
    results = [check(finish(process)) for process in processes]
    elapsed = time.perf_counter() - started

    study = optuna.load_study(study_name=STUDY, storage=url)
    trials = study.get_trials()
    assert [trial.number for trial in trials] == [0, 1, 2, 3]  # the total asked for, not 4 per sweep
    assert all(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
    jobs = sorted(job.parent for sweep in sweeps for job in sweep.glob("*/.hydra"))
    assert len(jobs) == 4  # no trial ran twice: one job directory each, across both sweeps
    assert sorted(Path(trial.user_attrs[JOB_DIR]) for trial in trials) == [job.resolve() for job in jobs]
    by_sweep = {sweep: [t for t in trials if t.user_attrs[SWEEP_DIR] == str(sweep.resolve())] for sweep in sweeps}
    assert all(by_sweep.values()), f"one sweep ran every trial: {by_sweep}"  # they shared the work
    assert all(trial.user_attrs[HOST] for trial in trials)
    drawn = {(trial.params["optimizer.lr"], trial.params["model.dropout"]) for trial in trials}
    assert len(drawn) == 4  # each trial sampled its own values (one shared seed would repeat the first draws)

    for sweep, result in zip(sweeps, results):
        report = (sweep / "report.md").read_text()
        lists_every_trial(report, trials, with_values=False)  # the first to end may see the other's last running
        assert f"## Study {STUDY}: every trial, whichever sweep ran it" in report
        ran_here = {trial.number for trial in by_sweep[sweep]}
        for number, cells in study_rows(report).items():
            assert cells[-1].startswith("this sweep: ") == (number in ran_here)
        assert f"this sweep ran {len(ran_here)} of them" in result.stdout + result.stderr
        # Once both have ended, the report made again lists every value (src.report's entry, in this process)
        report_main([str(sweep)])
        lists_every_trial((sweep / "report.md").read_text(), trials)
        assert (sweep / "study.csv").read_text().count("\n") == 5
    best = min(trials, key=lambda t: t.value)
    printed = check(run_here("src.report", "--storage", url, "--study", STUDY)).stdout
    lists_every_trial(printed, trials)
    assert list(study_rows(printed))[0] == best.number  # best (lowest loss) first
    first = (min(trial.datetime_start for trial in trials) - launched_at).total_seconds()
    print(
        f"PostgreSQL ready in {postgres_server.startup_seconds:.2f} s; the commands' first trial {first:.1f} s after "
        f"they started; both sweeps (4 trials in all) done in {elapsed:.1f} s"
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_a_study_the_search_cannot_use_is_one_error_line_before_any_training(tmp_path, postgres_server):  # noqa: F811
    """Each refused before Hydra writes the sweep directory: nothing trained, nothing written."""
    from tests.test_study import made_study

    url = postgres_server.new_database()
    made_study(url, "objective=val/loss", "hydra.sweeper.direction=minimize")
    nowhere = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/studies"
    cases = {
        "unreachable": ([f"hydra.sweeper.storage={nowhere}"], "cannot be reached"),
        "direction": ([f"hydra.sweeper.storage={url}"], "was made to minimize"),  # val/exact_match: maximize
        "space": ([f"hydra.sweeper.storage={url}", "model.dropout=interval(0.0, 0.5)"], "this search has"),
    }
    for name, (overrides, words) in cases.items():
        sweep = tmp_path / name
        search = TINY_SEARCH if name == "direction" else SEARCH
        result = run_here("src.run", *search, *overrides, f"hydra.sweep.dir={sweep}")
        assert result.returncode == 2, (name, result.stderr[-3000:])
        (line,) = error_lines(result)
        assert words in line, (name, line)
        assert not sweep.exists(), name
