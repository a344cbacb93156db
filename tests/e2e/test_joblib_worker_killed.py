"""A worker of the joblib launcher's pool killed outright (SIGKILL: what the kernel's out-of-memory killer sends), on
a real sweep with real loky workers. joblib then ends every worker of the pool, and the sweep: each job that was
training ends `interrupted` in its run.json (stopped from outside, not by its own error; never `running`) with the
reason and the sweep's own command that resumes it, the report is written after that, and the command exits with
status 1 and one `error:` line, without a traceback."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, SMALL_SYNTHETIC, check, run_here

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through Linux's /proc"),
]

# A tiny model (about 100 steps a second on one core) whose first checkpoint comes at step 50.
BASE = [
    "task=reverse",
    *SMALL_SYNTHETIC,
    "model.d_model=16",
    "model.layers=1",
    "model.d_ff=32",
    "model.dropout=0.0",
    "trainer.val_check_interval=50",
    "trainer.enable_progress_bar=false",
    "optimizer.warmup_steps=4",
    "batch_size=16",
    "dashboard.attention_every_n_steps=1000",
    "torch_threads=1",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
]


def start_sweep(sweep: Path, *overrides: str) -> subprocess.Popen:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "src.run", "-m", *BASE, *overrides, f"hydra.sweep.dir={sweep}"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_training(sweep: Path, jobs: list[str], process: subprocess.Popen, timeout: float = 240) -> None:
    """Each of `jobs` (directory names) has saved its first checkpoint and still runs."""
    deadline = time.time() + timeout
    while not all((sweep / job / "checkpoints" / "last.ckpt").is_file() for job in jobs):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{jobs} saved no checkpoint in {timeout} s"
        time.sleep(0.05)
    for job in jobs:
        assert json.loads((sweep / job / "run.json").read_text())["status"] == "running"


def kill_a_worker(process: subprocess.Popen) -> None:
    """SIGKILL to one loky worker process of the sweep's pool (a child of the sweep command, so only this test's)."""
    children = [
        int(child)
        for task in Path(f"/proc/{process.pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    workers = [pid for pid in children if b"popen_loky" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)


def record(job_dir: Path) -> dict:
    return json.loads((job_dir / "run.json").read_text())


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err[-5000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-5000:]
    return errors[0]


def test_a_worker_killed_while_the_first_jobs_train_records_them_interrupted_with_how_to_resume(tmp_path):
    """Killed while jobs 0 and 1 train: both are recorded interrupted (the one whose worker was not killed too,
    since joblib ends every worker), with the sweep's own command, which resumes them from their last checkpoints;
    the jobs that never started are listed as such in the report; a job directory another command entered
    meanwhile (here a run resumed in place, whose run.json says `running`) is left as it is."""
    sweep = tmp_path / "sweep"
    process = start_sweep(sweep, "model.heads=1,2", "seed=0,1", "trainer.max_steps=3000")
    training = ["0_model.heads:1+seed:0", "1_model.heads:1+seed:1"]
    wait_until_training(sweep, training, process)
    # job 3's directory, entered by another command: a single run's record (no process_command), started now
    other = sweep / "3_model.heads:2+seed:1"
    (other / ".hydra").mkdir(parents=True)
    (other / ".hydra" / "overrides.yaml").write_text("- model.heads=2\n- seed=1\n")
    others_record = {
        "status": "running",
        "command": f"python -m src.run model.heads=2 seed=1 hydra.run.dir={other} ckpt_path=last",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "host": socket.gethostname(),
    }
    (other / "run.json").write_text(json.dumps(others_record))
    before = (other / "run.json").read_bytes()

    kill_a_worker(process)
    _, err = process.communicate(timeout=180)

    assert process.returncode == 1, err[-5000:]
    line = one_error_line(err)
    assert "a joblib worker of the sweep was killed by SIGKILL" in line and "out-of-memory" in line, line
    for job in training:
        run = record(sweep / job)
        assert run["status"] == "interrupted" and run["ended"], run
        assert "killed by SIGKILL" in run["error"] and "joblib then ends every worker" in run["error"], run["error"]
        assert run["resume"].endswith(f"hydra.sweep.dir={sweep} ckpt_path=last"), run["resume"]
        assert " -m " in run["resume"] and "model.heads=1,2" in run["resume"], run["resume"]
        assert run["resume"] in line and job in line
        assert "killed by SIGKILL" in (sweep / job / "error.txt").read_text()
    assert (other / "run.json").read_bytes() == before  # another command's run: not this sweep's to record
    report = (sweep / "report.md").read_text()
    for job in training:
        row = next(row for row in report.splitlines() if row.startswith(f"| {job} |"))
        assert "| interrupted |" in row and "killed by SIGKILL" in row, row
    assert not (sweep / "2_model.heads:2+seed:0").exists()
    never = next(row for row in report.splitlines() if row.startswith("| 2_model.heads:2+seed:0 |"))
    assert "| not started |" in never, never
    assert "1 job(s) never started" in line and "runs those never started" in line, line


def test_a_worker_killed_after_jobs_completed_keeps_them_and_the_sweep_resumes(tmp_path):
    """Killed once the first two jobs have completed and the next two train: no traceback; the completed jobs keep
    their records; the stopped ones are interrupted, and the sweep's own command given resumes both from their last
    checkpoints to the end of their training, leaving the completed jobs' files as they were."""
    sweep = tmp_path / "sweep"
    process = start_sweep(sweep, "trainer.max_steps=20,400", "seed=0,1")
    training = ["2_trainer.max_steps:400+seed:0", "3_trainer.max_steps:400+seed:1"]
    wait_until_training(sweep, training, process)
    completed = {
        job: (sweep / job / "run.json").read_bytes()
        for job in ("0_trainer.max_steps:20+seed:0", "1_trainer.max_steps:20+seed:1")
    }
    assert all(json.loads(content)["status"] == "completed" for content in completed.values())

    kill_a_worker(process)
    out, err = process.communicate(timeout=180)

    assert process.returncode == 1, err[-5000:]
    line = one_error_line(err)
    assert "killed by SIGKILL" in line and "never started" not in line, line
    for job, content in completed.items():
        assert (sweep / job / "run.json").read_bytes() == content
    assert "2 of 4 runs completed" in out, out[-3000:]
    assert all(record(sweep / job)["status"] == "interrupted" for job in training)
    saved = {job: record(sweep / job)["checkpoint"] for job in training}
    assert all(saved.values()), saved
    resume = {record(sweep / job)["resume"] for job in training}
    assert len(resume) == 1, resume

    # the command given resumes the stopped jobs in their own directories, from their last checkpoints, to their end
    python, dash_m, module, *arguments = shlex.split(resume.pop())
    assert (dash_m, module) == ("-m", "src.run"), arguments
    result = run_here("src.run", *arguments)
    check(result)
    assert "jobs 0, 1 have finished: kept as they are" in result.stdout + result.stderr, result.stderr[-3000:]
    for job in training:
        run = record(sweep / job)
        assert run["status"] == "completed" and run["previous"][-1]["status"] == "interrupted", run
        assert run["metrics"], run
    for job, content in completed.items():
        assert (sweep / job / "run.json").read_bytes() == content


def test_a_sweep_whose_process_died_is_not_resumed_while_its_workers_still_train(tmp_path):
    """The sweep's own process killed outright (`kill -9`, a lost login session) while its joblib workers train:
    they go on with the jobs they hold, and a resume would train those a second time, two processes over each job's
    files. The resume is refused in one line naming the jobs, their processes and how to stop them, before it
    writes anything; once they are stopped as it says (SIGTERM), each records its step, and the sweep may resume."""
    from src.sweep.slurm import check_no_job_still_running

    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    settings = ["seed=0,1", "trainer.max_steps=1000000"]  # still training whenever the resume is tried: stopped below
    command = [sys.executable, "-m", "src.run", "-m", *BASE, *settings, f"hydra.sweep.dir={sweep}"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    output = (tmp_path / "sweep.log").open("w")  # not a pipe: the workers, which outlive the sweep, hold it open
    # in a process group of its own, its workers too: whatever fails below, none is left training on
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
    )
    training = ["0_seed:0", "1_seed:1"]
    try:
        deadline = time.time() + 240
        while not all((sweep / job / "checkpoints" / "last.ckpt").is_file() for job in training):
            assert process.poll() is None and time.time() < deadline, (tmp_path / "sweep.log").read_text()[-3000:]
            time.sleep(0.05)
        process.kill()
        process.wait()
        workers = [record(sweep / job)["pid"] for job in training]
        assert process.pid not in workers and all(record(sweep / job)["status"] == "running" for job in training)

        result = run_here("src.run", "-m", *BASE, *settings, f"hydra.sweep.dir={sweep}", "ckpt_path=last")
        line = one_error_line(result.stderr)
        assert result.returncode == 2, result.stderr[-3000:]
        for job, pid in zip(training, workers):
            assert f"{job} by process {pid}" in line, line
        assert f"`kill {workers[0]} {workers[1]}`" in line, line
        assert not (sweep / "report.md").exists()
        for pid in workers:
            os.kill(pid, signal.SIGTERM)  # as the line says: each job saves its step and ends interrupted
        deadline = time.time() + 60
        while any(record(sweep / job)["status"] == "running" for job in training):
            assert time.time() < deadline, "the jobs still run 60 s after SIGTERM"
            time.sleep(0.1)
        for job in training:
            assert record(sweep / job)["status"] == "interrupted", record(sweep / job)
        check_no_job_still_running(sweep)  # the resume may go on
    finally:
        # the sweep's process group: its workers, which once their job has ended wait for the next one from a pool
        # that is gone
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        output.close()
