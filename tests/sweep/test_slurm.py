"""The SLURM jobs a sweep directory knows of, and how a sweep into it reads squeue's answer about them. Here squeue
is a script printing what a real one prints in each case (pending array ranges, ended jobs, ids SLURM has forgotten,
held jobs, no SLURM at all); the same check against a real cluster, with a sweep's process killed while its job
trains: tests/e2e/test_slurm.py."""

from __future__ import annotations

import json
import shlex

import pytest

from src.model import ConfigError
from src.sweep.slurm import check_no_job_on_the_cluster, record_submitted, submitted_jobs


def a_swept_directory(tmp_path):
    sweep = tmp_path / "sweep"
    for name in ("12_0", "12_1", "15", "not-a-job"):  # submitit's folders: array tasks, a single job, something else
        (sweep / ".submitit" / name).mkdir(parents=True)
    (sweep / ".submitit" / "13_0").write_text("")  # a file, not a job's folder
    record_submitted(sweep, ["21_0", "21_1"])  # the launcher's list: kept wherever submitit's folder is
    record_submitted(sweep, ["22_0"])  # a resume's submission is added
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
    assert submitted_jobs(sweep) == ["12", "15", "21", "22"]
    monkeypatch.setenv("SLURM_JOB_ID", "15")  # resumed inside the allocation that is job 15: not its own job
    assert submitted_jobs(sweep) == ["12", "21", "22"]
    assert submitted_jobs(tmp_path / "never-swept") == []


def test_jobs_squeue_lists_pending_or_running_refuse_the_sweep_naming_them_and_the_fix(tmp_path, squeue):
    asked = squeue(out="12_[3-5] PENDING\n12_1 RUNNING\n21_0 COMPLETED\n22_0 CANCELLED\n")
    with pytest.raises(ConfigError) as refused:
        check_no_job_on_the_cluster(a_swept_directory(tmp_path))
    said = str(refused.value)
    assert "12_[3-5] pending, 12_1 running)" in said and "21_0" not in said, said  # ended jobs are not named
    assert "scancel 12`" in said and "squeue --jobs=12`" in said and "second time" in said, said
    assert "scontrol release" not in said
    words = open(asked).read().split()
    assert "--states=all" in words and "--jobs=12,15,21,22" in words and any(w.startswith("--user=") for w in words)


def test_a_held_job_is_said_to_wait_for_a_release(tmp_path, squeue):
    squeue(out="15 REQUEUE_HOLD\n")
    with pytest.raises(ConfigError, match=r"scontrol release.*scancel 15`"):
        check_no_job_on_the_cluster(a_swept_directory(tmp_path))


@pytest.mark.parametrize(
    "answer",
    [
        {"out": "12_0 COMPLETED\n12_1 TIMEOUT\n15 CANCELLED\n21_0 FAILED\n22_0 OUT_OF_MEMORY\n"},  # ended, still known
        {"err": "slurm_load_jobs error: Invalid job id specified\n", "code": 1},  # forgotten by SLURM: long ended
        {},  # none listed
    ],
    ids=["ended", "forgotten", "none"],
)
def test_jobs_that_have_ended_let_the_sweep_go_on_without_a_word(tmp_path, squeue, capsys, answer):
    squeue(**answer)
    check_no_job_on_the_cluster(a_swept_directory(tmp_path))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("how", ["no squeue", "no controller"])
def test_where_squeue_cannot_answer_one_warning_says_to_check(tmp_path, squeue, capsys, how):
    if how == "no controller":
        squeue(err="squeue: error: Unable to contact slurm controller (connect failure)\n", code=1)
    check_no_job_on_the_cluster(a_swept_directory(tmp_path))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "squeue --jobs=12,15,21,22" in warnings[0], warnings


@pytest.mark.parametrize("held", ["nothing", "runs only"])
def test_a_directory_slurm_never_ran_is_not_asked_about(tmp_path, squeue, capsys, held):
    asked = squeue(code=1)  # it would fail if asked
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    if held == "runs only":  # a local sweep's jobs, run inside an allocation: their records name it
        (sweep / "0_seed:0").mkdir()
        (sweep / "0_seed:0" / "run.json").write_text(json.dumps({"status": "interrupted", "slurm_job": "9"}))
    check_no_job_on_the_cluster(sweep)
    assert capsys.readouterr().err == "" and not asked.exists()


def test_a_user_without_a_name_here_asks_about_the_ids_of_every_user(tmp_path, squeue, monkeypatch):
    """A container whose uid has no passwd entry: getpass cannot name the user, and squeue is asked without --user."""
    import getpass

    def nameless() -> str:
        raise KeyError("getpwuid(): uid not found")

    monkeypatch.setattr(getpass, "getuser", nameless)
    asked = squeue(out="15 RUNNING\n")
    with pytest.raises(ConfigError, match="15 running"):
        check_no_job_on_the_cluster(a_swept_directory(tmp_path))
    assert not any(word.startswith("--user") for word in open(asked).read().split())
