"""The SLURM jobs a sweep directory knows of, and what a sweep into it does where SLURM cannot be asked about them.
With a real cluster (a sweep's process killed while its job runs): tests/e2e/test_slurm.py."""

from __future__ import annotations

import json

import pytest

from src.sweep.slurm import check_no_job_on_the_cluster, submitted_jobs


def a_swept_directory(tmp_path):
    sweep = tmp_path / "sweep"
    for name in ("12_0", "12_1", "15", "not-a-job"):  # submitit's folders: array tasks, a single job, something else
        (sweep / ".submitit" / name).mkdir(parents=True)
    (sweep / ".submitit" / "13_0").write_text("")  # a file, not a job's folder
    job = sweep / "0_seed:0"
    job.mkdir()
    (job / "run.json").write_text(json.dumps({"status": "running", "slurm_job": "9_0"}))  # a custom submitit folder
    (sweep / "1_seed:1").mkdir()
    (sweep / "1_seed:1" / "run.json").write_text(json.dumps({"status": "completed", "slurm_job": None}))
    return sweep


def test_a_sweeps_jobs_are_found_by_submitits_folders_and_the_runs_records(tmp_path):
    assert submitted_jobs(a_swept_directory(tmp_path)) == ["9", "12", "15"]
    assert submitted_jobs(tmp_path / "never-swept") == []


def test_without_squeue_a_swept_directory_gets_one_warning_and_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))
    check_no_job_on_the_cluster(a_swept_directory(tmp_path))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "squeue --jobs=9,12,15" in warnings[0], warnings


@pytest.mark.parametrize("held", ["nothing", "runs only"])
def test_a_directory_slurm_never_ran_is_not_asked_about(tmp_path, monkeypatch, capsys, held):
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))  # squeue would not answer: it is not asked
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    if held == "runs only":  # a local sweep's jobs
        (sweep / "0_seed:0").mkdir()
        (sweep / "0_seed:0" / "run.json").write_text(json.dumps({"status": "interrupted", "slurm_job": None}))
    check_no_job_on_the_cluster(sweep)
    assert capsys.readouterr().err == ""
