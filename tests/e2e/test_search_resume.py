"""An Optuna search whose study is kept in a database (sqlite here), stopped by Ctrl-C while a trial trains and
resumed through the search itself: the interrupted job prints the search's own command with
hydra.sweep.dir=<the sweep> ckpt_path=last, and that command goes on with the trial from its job's checkpoint, in
its own directory, as a new trial of the study whose value the study is told; then it samples the trials left.
Killed outright (SIGKILL), a search leaves its trial running in the study: once that trial's heartbeats have
stopped for the grace period the same command goes on with it as with an interrupted one.
With the study in memory there is no search to go on with, and the interrupted job says so in its one line."""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.report import main as report_main

from .conftest import ROOT, SMALL_SYNTHETIC, TINY, check, run_here
from .test_shared_study import SEARCHED, study_rows

pytestmark = pytest.mark.slow

STUDY = "lr_warmup_dropout_size"
REPLACED = ("trainer.max_steps=", "trainer.val_check_interval=", "dashboard.attention_every_n_steps=")
# Trials of 300 steps (a few seconds), validated every 100 and saved every 20: long enough for Ctrl-C to land
# after the first validation and before the end. Minimising the validation loss, which every trial has.
SEARCH = [
    "-m",
    f"hparams_search={STUDY}",
    *(o for o in TINY if not o.startswith(SEARCHED + REPLACED)),
    *SMALL_SYNTHETIC,
    "trainer.max_steps=300",
    "trainer.val_check_interval=100",
    "checkpoint.every_n_train_steps=20",
    "dashboard.attention_every_n_steps=100",
    "objective=val/loss",
    "hydra.sweeper.direction=minimize",
    "hydra.sweeper.n_trials=2",
]


def start(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "src.run", *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def history(job: Path) -> list[dict]:
    try:
        return json.loads((job / "metrics.json").read_text())["history"]
    except (OSError, ValueError, KeyError):
        return []


def interrupt_after_the_first_validation(
    process: subprocess.Popen, sweep: Path, timeout: float = 120, job: int = 0, how: int = signal.SIGINT
) -> str:
    """`how` (SIGINT: Ctrl-C) once job `job` has validated once (so its metrics.json has a history to continue,
    and it has saved a checkpoint); its output. SIGKILL kills the sweep outright, as the out-of-memory killer or a
    lost machine would: nothing of it can record how it ended."""
    deadline = time.time() + timeout
    while not any(history(path) for path in sweep.glob(f"{job}_*")):
        assert process.poll() is None, f"the sweep ended early: {process.communicate()}"
        assert time.time() < deadline, f"job {job} did not validate in {timeout} s"
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.2))
    process.send_signal(how)
    out, err = process.communicate(timeout=120)
    assert process.returncode == (130 if how == signal.SIGINT else -how), err
    return err if how == signal.SIGINT else out + err


def error_line(err: str) -> str:
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err, err
    return line


def test_an_interrupted_trial_goes_on_through_the_search_and_its_value_reaches_the_study(tmp_path):
    """Then the resumed search is killed outright (SIGKILL) in its next trial, which stays running in the study:
    resumed again once its heartbeats have stopped long enough, the search goes on with it as with an interrupted
    one, from its job's checkpoint."""
    import optuna
    from optuna.trial import TrialState

    url, sweep = f"sqlite:///{tmp_path / 'studies.db'}", tmp_path / "sweep"
    stored = [f"hydra.sweeper.storage={url}", f"hydra.sweep.dir={sweep}"]
    err = interrupt_after_the_first_validation(start(*SEARCH, *stored), sweep)

    # The one line gives the search's own command, not a single run's
    line = error_line(err)
    assert "the search stops here; resume it, this trial going on from the step saved" in line, line
    assert line.endswith(f"hydra.sweep.dir={sweep.resolve()} ckpt_path=last"), line
    command = line.split(" with: ", 1)[1]
    assert " -m " in command and "hydra.run.dir" not in command and f"hydra.sweeper.storage={url}" in command
    (job,) = [path.parent for path in sweep.glob("*/.hydra")]  # job 0, stopped; job 1 never started
    record = json.loads((job / "run.json").read_text())
    assert record["status"] == "interrupted" and record["resume"] == command
    before = history(job)
    assert [entry["step"] for entry in before] == [100]

    # The study holds the trial failed, marked interrupted, with its job; it keeps its place until resumed
    from src.study import INTERRUPTED, JOB_DIR, KILLED, NUMBER, RESUMES, claimed

    study = optuna.load_study(study_name=STUDY, storage=url)
    (interrupted,) = study.get_trials()
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs[INTERRUPTED] is True
    assert interrupted.user_attrs[JOB_DIR] == str(job.resolve()) and interrupted.user_attrs[NUMBER] == 0

    # The command as printed, pasted: the trial goes on from its checkpoint, in its directory, then trial 2 is new;
    # killed outright once trial 2's job (job 1) has validated once
    output = interrupt_after_the_first_validation(start(*shlex.split(command)[3:]), sweep, job=1, how=signal.SIGKILL)
    assert "interrupted trial 0 goes on as trial 1: job 0 resumes from " in output, output[-3000:]
    assert "warning:" not in output, output[-3000:]
    jobs = sorted(path.parent for path in sweep.glob("*/.hydra"))
    assert [path.name.split("_", 1)[0] for path in jobs] == ["0", "1"] and jobs[0] == job  # same name, same place
    after = history(job)
    assert [entry["step"] for entry in after] == [100, 200, 300] and after[0] == before[0]  # continued, not redone
    record = json.loads((job / "run.json").read_text())
    assert record["status"] == "completed" and [p["status"] for p in record["previous"]] == ["interrupted"]
    assert "ckpt_path=last" in record["command"]
    for path in jobs:  # each job still a job of the sweep, as the report reads it
        assert "mode: MULTIRUN" in (path / ".hydra" / "hydra.yaml").read_text()

    study = optuna.load_study(study_name=STUDY, storage=url)
    trials = study.get_trials()
    assert [trial.state for trial in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.RUNNING]
    going_on, killed = trials[1], trials[2]
    assert going_on.user_attrs[RESUMES] == 0 and going_on.params == interrupted.params
    assert going_on.user_attrs[JOB_DIR] == str(job) and going_on.user_attrs[NUMBER] == 0
    final = json.loads((job / "metrics.json").read_text())["final"]
    assert going_on.value == pytest.approx(final["val/loss"])
    assert killed.user_attrs[NUMBER] == 1 and json.loads((jobs[1] / "run.json").read_text())["status"] == "running"

    # Killed a moment ago, trial 2 is still running as far as anyone can tell (its heartbeat is recent): a resume now
    # could train job 1 twice at once, and is refused before anything is written
    files = {path: path.stat().st_mtime_ns for path in sweep.rglob("*")}
    too_soon = run_here("src.run", *shlex.split(command)[3:])
    assert too_soon.returncode == 2, too_soon.stderr[-3000:]
    assert error_line(too_soon.stderr).startswith(f"error: hydra.sweep.dir={sweep.resolve()} is a search still running")
    assert "its trial 2 had a heartbeat " in error_line(too_soon.stderr)
    assert optuna.load_study(study_name=STUDY, storage=url).get_trials()[2].state == TrialState.RUNNING
    assert {path: path.stat().st_mtime_ns for path in sweep.rglob("*")} == files

    # Silent for longer than the grace period (its heartbeats made 5 minutes old, rather than waited for), it counts
    # as killed: the report says so, and how to go on with it
    from tests.test_study_resume import silence

    silence(url, 5)
    report_main([str(sweep)])
    report = (sweep / "report.md").read_text()
    assert "3 trials: 1 completed, 1 interrupted and resumed, 1 killed" in report
    assert "Trial 2 (killed) has not been resumed: `" + command + "` goes on with it" in report
    assert study_rows(report)[2][1] == "killed (no heartbeat for 5 min)"

    # Resumed again, the search goes on with the killed trial as with an interrupted one: from job 1's checkpoint
    before = history(jobs[1])
    resumed = check(run_here("src.run", *shlex.split(command)[3:]))
    output = resumed.stdout + resumed.stderr
    assert "killed trial 2 goes on as trial 3: job 1 resumes from " in output, output[-3000:]
    assert "warning:" not in output, output[-3000:]
    # the figures as the search counts them: the study holds 4 trials (the report's count), 2 toward n_trials
    assert (
        "The study holds 4 trials, 2 of which count toward n_trials=2 (trial 0 was resumed as trial 1; trial 2 was "
        "resumed as trial 3); this sweep ran 1 of them." in output
    ), output[-3000:]
    assert [entry["step"] for entry in history(jobs[1])] == [100, 200, 300] and history(jobs[1])[0] == before[0]
    assert sorted(path.parent for path in sweep.glob("*/.hydra")) == jobs  # no new job: n_trials=2 are done
    record = json.loads((jobs[1] / "run.json").read_text())
    assert record["status"] == "completed" and [p["status"] for p in record["previous"]] == ["running"]

    study = optuna.load_study(study_name=STUDY, storage=url)
    trials = study.get_trials()
    assert [trial.state for trial in trials] == [TrialState.FAIL, TrialState.COMPLETE] * 2
    assert trials[2].user_attrs[INTERRUPTED] is True and trials[2].user_attrs[KILLED] >= 300
    new = trials[3]
    assert new.user_attrs[RESUMES] == 2 and new.user_attrs[NUMBER] == 1 and new.user_attrs[JOB_DIR] == str(jobs[1])
    assert new.params == killed.params
    assert [trial.number for trial in claimed(study)] == [1, 3]  # n_trials=2: the stopped ones are superseded

    # One sweep, whose report lists the resumed jobs with the others, and says which trial went on with which
    report_main([str(sweep)])
    report = (sweep / "report.md").read_text()
    assert report.startswith("# Sweep report: sweep") and "2 of 2 runs completed." in report
    assert "single runs" not in report and "has not been resumed" not in report
    assert "4 trials: 2 completed, 1 interrupted and resumed, 1 killed and resumed" in report
    rows = study_rows(report)
    assert rows[0][1] == "interrupted, resumed as trial 1" and rows[1][1] == "completed (resumes trial 0)"
    assert rows[2][1] == "killed, resumed as trial 3" and rows[3][1] == "completed (resumes trial 2)"
    assert rows[1][-1] == f"this sweep: {job.name}" and rows[3][-1] == f"this sweep: {jobs[1].name}"
    assert rows[2][-1] == f"this sweep: {jobs[1].name}"  # the killed trial's job, named when it was failed


def test_an_interrupted_trial_of_a_study_in_memory_says_the_search_cannot_go_on(tmp_path):
    sweep = tmp_path / "sweep"
    err = interrupt_after_the_first_validation(start(*SEARCH, f"hydra.sweep.dir={sweep}"), sweep)
    line = error_line(err)
    assert "the search stops here and cannot be continued, its study being in memory" in line, line
    assert "give hydra.sweeper.storage=sqlite:///<file>.db" in line
    (job,) = [path.parent for path in sweep.glob("*/.hydra")]
    # what can be resumed is the job's training, alone
    assert line.endswith(
        f"this job's training alone resumes with: {json.loads((job / 'run.json').read_text())['resume']}"
    )
    assert f"hydra.run.dir={job} ckpt_path=last" in line
    assert "hparams_search=" not in line  # as a single run, the search would only warn that it needs -m


def test_a_resume_that_is_not_of_this_search_is_one_error_line_before_anything_is_written(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    nowhere = tmp_path / "nowhere"
    result = run_here(
        "src.run", *SEARCH, f"hydra.sweeper.storage={url}", f"hydra.sweep.dir={nowhere}", "ckpt_path=last"
    )
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"hydra.sweep.dir={nowhere} holds no search to resume (ckpt_path=last)" in line
    assert not nowhere.exists() and not (tmp_path / "studies.db").exists()


def test_a_diverged_trial_is_one_warning_line_with_its_runs_reason(tmp_path):
    """Not Optuna's "Return value must be float-castable": the trial, its job and why, from its run.json."""
    sweep = tmp_path / "sweep"
    diverging = [o for o in SEARCH if not o.startswith(("trainer.max_steps=", "hydra.sweeper.n_trials="))]
    result = run_here(
        "src.run",
        *diverging,
        "trainer.max_steps=20",
        "optimizer.lr=1e6",  # a plain value: out of the search
        "trainer.gradient_clip_val=null",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweep.dir={sweep}",
    )
    output = result.stdout + result.stderr
    assert "float-castable" not in output and "Failed [" not in output
    (job,) = [path.parent for path in sweep.glob("*/.hydra")]
    reason = json.loads((job / "run.json").read_text())["error"]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("warning: trial 0")]
    assert line == f"warning: trial 0 (job {job.name}) diverged: {reason}; the study counts it as a failed trial"
    # the searched learning rate, fixed: said once (before the sweep, not again by the sweeper), and what ran
    (fixed,) = [line for line in result.stderr.splitlines() if "on the command line fixes" in line]
    assert fixed.startswith("warning: optimizer.lr=1e6 on the command line fixes optimizer.lr for every trial, so ")
    assert "- optimizer.lr=1000000.0" in (job / ".hydra" / "overrides.yaml").read_text()  # every trial's
