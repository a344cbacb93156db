"""The jobs a sweep directory's earlier commands left running, which a sweep into it must not train a second time:
SLURM's, by squeue's answer (here squeue is a script printing what a real one prints in each case: pending array
ranges, ended jobs, ids SLURM has forgotten, held jobs, no SLURM at all; against a real cluster, with a sweep's
process killed while its job trains: tests/e2e/test_slurm.py), and submitit_local's, processes of this machine."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.model import ConfigError
from src.sweep.slurm import check_no_job_still_running, local_jobs_still_running, record_submitted, submitted_jobs
from tests.conftest import wait_for_state


def a_swept_directory(tmp_path):
    sweep = tmp_path / "sweep"
    for name in ("12_0", "12_1", "15"):  # submitit's folders: not read (a local sweep's are process ids)
        (sweep / ".submitit" / name).mkdir(parents=True)
    record_submitted(sweep, ["21_0", "21_1", "21_2"])  # the launcher's list: kept wherever submitit's folder is
    record_submitted(sweep, ["22"])  # a resume's submission is added
    record_submitted(sweep, ["24_0"])
    job = sweep / "0_seed:0"
    job.mkdir()  # a run's own record names the allocation it ran in, which is not the sweep's job: not read
    (job / "run.json").write_text(json.dumps({"status": "running", "slurm_job": "9"}))
    return sweep


@pytest.fixture
def squeue(tmp_path, monkeypatch):
    """A squeue on PATH that prints `out` to stdout and `err` to stderr and exits with `code`, keeping its arguments."""
    programs, asked = tmp_path / "programs", tmp_path / "asked"
    programs.mkdir()

    def answers(out: str = "", err: str = "", code: int = 0):
        script = programs / "squeue"
        script.write_text(
            f'#!/bin/sh\necho "$@" > {shlex.quote(str(asked))}\nprintf %s {shlex.quote(out)}\n'
            f"printf %s {shlex.quote(err)} >&2\nexit {code}\n"
        )
        script.chmod(0o755)
        return asked

    monkeypatch.setenv("PATH", str(programs))
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    return answers


def test_a_sweeps_jobs_are_its_launchers_list_and_submitits_folders_not_its_own_allocation(tmp_path, monkeypatch):
    sweep = a_swept_directory(tmp_path)
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert submitted_jobs(sweep) == ["21", "22", "24"]
    monkeypatch.setenv("SLURM_JOB_ID", "22")  # a command inside the allocation that is job 22: not waiting on it
    assert submitted_jobs(sweep) == ["21", "24"]
    assert submitted_jobs(tmp_path / "never-swept") == []


def test_jobs_squeue_lists_pending_or_running_refuse_the_sweep_naming_them_and_the_fix(tmp_path, squeue):
    asked = squeue(out="21_[1-2] PENDING\n21_0 RUNNING\n22 COMPLETED\n24_0 CANCELLED\n")
    with pytest.raises(ConfigError) as refused:
        check_no_job_still_running(a_swept_directory(tmp_path))
    said = str(refused.value)
    assert "21_[1-2] pending, 21_0 running)" in said and "22" not in said, said  # ended jobs are not named
    assert "scancel 21`" in said and "squeue --jobs=21`" in said and "second time" in said, said
    assert "scontrol release" not in said
    words = open(asked).read().split()
    assert "--states=all" in words and "--jobs=21,22,24" in words and any(w.startswith("--user=") for w in words)


def test_a_held_job_is_said_to_wait_for_a_release(tmp_path, squeue):
    squeue(out="22 REQUEUE_HOLD\n")
    with pytest.raises(ConfigError, match=r"scontrol release.*scancel 22`"):
        check_no_job_still_running(a_swept_directory(tmp_path))


@pytest.mark.parametrize(
    "answer",
    [
        {"out": "21_0 COMPLETED\n21_1 TIMEOUT\n21_2 FAILED\n22 CANCELLED\n24_0 OUT_OF_MEMORY\n"},  # ended, still known
        {"err": "slurm_load_jobs error: Invalid job id specified\n", "code": 1},  # forgotten by SLURM: long ended
        {},  # none listed
    ],
    ids=["ended", "forgotten", "none"],
)
def test_jobs_that_have_ended_let_the_sweep_go_on_without_a_word(tmp_path, squeue, capsys, answer):
    squeue(**answer)
    check_no_job_still_running(a_swept_directory(tmp_path))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("how", ["no squeue", "no controller"])
def test_where_squeue_cannot_answer_one_warning_says_to_check(tmp_path, squeue, capsys, how):
    if how == "no controller":
        squeue(err="squeue: error: Unable to contact slurm controller (connect failure)\n", code=1)
    check_no_job_still_running(a_swept_directory(tmp_path))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "squeue --jobs=21,22,24" in warnings[0], warnings


@pytest.mark.parametrize("held", ["nothing", "runs only", "submitit_local's folders"])
def test_a_directory_slurm_never_ran_is_not_asked_about(tmp_path, squeue, capsys, held):
    asked = squeue(code=1)  # it would fail if asked
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    if held == "runs only":  # a local sweep's jobs, run inside an allocation: their records name it
        (sweep / "0_seed:0").mkdir()
        (sweep / "0_seed:0" / "run.json").write_text(json.dumps({"status": "interrupted", "slurm_job": "9"}))
    if held == "submitit_local's folders":  # named by the ids of processes that have ended
        (sweep / ".submitit" / "4194000").mkdir(parents=True)
    check_no_job_still_running(sweep)
    assert capsys.readouterr().err == "" and not asked.exists()


def test_a_user_without_a_name_here_asks_about_the_ids_of_every_user(tmp_path, squeue, monkeypatch):
    """A container whose uid has no passwd entry: getpass cannot name the user, and squeue is asked without --user."""
    import getpass

    def nameless() -> str:
        raise KeyError("getpwuid(): uid not found")

    monkeypatch.setattr(getpass, "getuser", nameless)
    asked = squeue(out="24_0 RUNNING\n")
    with pytest.raises(ConfigError, match="24_0 running"):
        check_no_job_still_running(a_swept_directory(tmp_path))
    assert not any(word.startswith("--user") for word in open(asked).read().split())


def test_submitit_local_jobs_still_running_refuse_the_sweep_until_they_end(tmp_path, squeue):
    """A local job outlives its sweep's process (killed): a process of this machine whose command line names the
    sweep's submitit folder, as submitit starts it. A live process of another id named there (this test's own,
    which never ran a job of it) is not taken for one."""
    asked = squeue(code=1)
    sweep = tmp_path / "sweep"
    folder = sweep / ".submitit"
    folder.mkdir(parents=True)
    # what submitit_local starts, as /proc shows it (`python -m submitit.local._local <folder>/%j`), the folder
    # relative to the job's working directory as the sweep's command may give it
    waits = "import time; time.sleep(60)"
    job = subprocess.Popen([sys.executable, "-c", waits, "-m", "submitit.local._local", ".submitit/%j"], cwd=sweep)
    try:
        started = time.monotonic() + 10
        while b"submitit.local._local" not in Path("/proc", str(job.pid), "cmdline").read_bytes():  # exec'd yet?
            assert time.monotonic() < started, "the job's process did not start in 10 s"
            time.sleep(0.01)
        (folder / str(job.pid)).mkdir()
        (folder / str(os.getpid())).mkdir()  # alive, but not started for this sweep
        assert local_jobs_still_running(sweep) == [str(job.pid)]
        with pytest.raises(ConfigError, match=rf"processes {job.pid}\).*`kill {job.pid}`"):
            check_no_job_still_running(sweep)
    finally:
        job.kill()
        job.wait()
    assert local_jobs_still_running(sweep) == []
    check_no_job_still_running(sweep)
    assert not asked.exists()  # no SLURM job was submitted from here


def test_jobs_whose_processes_still_train_them_refuse_the_sweep_until_they_end(tmp_path, squeue):
    """A joblib worker goes on with the job it holds when its sweep's process is killed: the job's run.json names
    that process. A job whose named process still runs refuses the sweep; not a job that ended, nor one whose
    process is gone (killed: a resume goes on with it)."""
    import socket

    from src.provenance import process_started

    asked = squeue(code=1)
    sweep = tmp_path / "sweep"
    sleeps = [sys.executable, "-c", "import time; time.sleep(60)"]
    worker = subprocess.Popen(sleeps)  # the process the records name: any live one will do
    gone = subprocess.Popen(sleeps)
    gone_started = process_started(gone.pid)
    gone.kill()
    gone.wait()
    names = {"0_seed:0": ("running", worker), "1_seed:1": ("completed", worker), "2_seed:2": ("running", gone)}
    try:
        for name, (status, process) in names.items():
            (sweep / name / ".hydra").mkdir(parents=True)
            started = gone_started if process is gone else process_started(process.pid)
            record = {"status": status, "host": socket.gethostname(), "pid": process.pid, "process_started": started}
            (sweep / name / "run.json").write_text(json.dumps(record))
        with pytest.raises(ConfigError, match=rf"\(0_seed:0 by process {worker.pid}\).*`kill {worker.pid}`"):
            check_no_job_still_running(sweep)
        os.kill(worker.pid, signal.SIGSTOP)  # Ctrl-Z: a kill alone would wait until it is continued
        wait_for_state(worker.pid, "T")
        group = os.getpgid(worker.pid)  # the test's own: a kill -CONT of it is harmless
        advice = rf"`kill {worker.pid}; kill -CONT -{group}` \(it is stopped, as by Ctrl-Z"
        with pytest.raises(ConfigError, match=advice):
            check_no_job_still_running(sweep)
    finally:
        worker.kill()
        worker.wait()
    check_no_job_still_running(sweep)
    assert not asked.exists()
