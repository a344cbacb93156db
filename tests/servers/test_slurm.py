"""Smoke tests of the ``slurm_cluster`` fixture: the node, a job that completes, one that fails, an array whose tasks
run srun steps (what submitit submits), a job that is requeued, one that is cancelled, each seen the way submitit sees
jobs (sbatch, scontrol, scancel, sacct). Also, without a cluster: the skip message and a daemon's failure report."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest

from tests.servers import slurm
from tests.servers.slurm import ClusterError, Daemon, SlurmCluster, wait_until


def wait_for_lines(path: Path, count: int, timeout: float = 30) -> list[str]:
    """The lines of a file a job writes, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_without_the_packages_the_fixture_skips_and_says_what_to_install(monkeypatch):
    monkeypatch.setitem(slurm.PROGRAMS, "slurmctld", ("no-such-slurmctld",))
    with pytest.raises(pytest.skip.Exception, match="no slurmctld.*apt-get install --no-install-recommends slurmctld"):
        slurm.require_slurm()


def test_a_daemon_that_dies_fails_with_the_end_of_its_log(tmp_path: Path):
    daemon = Daemon("broken", [sys.executable, "-c", "print('bad config line 7'); raise SystemExit(2)"], tmp_path, {})
    with pytest.raises(ClusterError, match=r"(?s)broken \(pid \d+\) exited with status 2 before .*bad config line 7"):
        wait_until(lambda: False, "listening", daemon)


@pytest.mark.slow
def test_the_node_is_idle_and_the_cluster_ran_a_first_job(slurm_cluster: SlurmCluster):
    assert slurm_cluster.env["SLURM_CONF"] == str(slurm_cluster.conf)
    assert slurm_cluster.conf.is_file() and slurm_cluster.conf.is_relative_to(slurm_cluster.tmp)
    nodes = slurm_cluster.run("sinfo", "--noheader", "--Node", "--format=%N %P %T").stdout.split()
    assert nodes == ["localhost", f"{slurm_cluster.partition}*", "idle"]
    assert math.isfinite(slurm_cluster.startup_seconds) and 0 < slurm_cluster.startup_seconds < 60


@pytest.mark.slow
def test_a_job_completes(slurm_cluster: SlurmCluster, tmp_path: Path):
    job = slurm_cluster.sbatch(f"--output={tmp_path / 'out.txt'}", "--wrap=echo hello from $SLURM_JOB_ID")
    record = slurm_cluster.wait_for_job_state(job, "COMPLETED")
    assert record["ExitCode"] == "0:0" and record["NodeList"] == "localhost"
    assert (tmp_path / "out.txt").read_text() == f"hello from {job}\n"


@pytest.mark.slow
def test_a_job_that_exits_3_failed_with_exit_code_3(slurm_cluster: SlurmCluster, tmp_path: Path):
    job = slurm_cluster.sbatch(f"--output={tmp_path / 'out.txt'}", "--wrap=exit 3")
    record = slurm_cluster.wait_for_job_state(job, {"COMPLETED", "FAILED"})
    assert (record["State"], record["ExitCode"]) == ("FAILED", "3:0")


@pytest.mark.slow
def test_an_array_job_runs_srun_steps_as_submitit_does(slurm_cluster: SlurmCluster, tmp_path: Path):
    job = slurm_cluster.sbatch(
        "--array=0-1", f"--output={tmp_path / 'out_%a.txt'}", "--wrap=srun --unbuffered echo task $SLURM_ARRAY_TASK_ID"
    )
    for task in (0, 1):
        record = slurm_cluster.wait_for_job_state(f"{job}_{task}", {"COMPLETED", "FAILED"})
        assert (record["State"], record["ExitCode"]) == ("COMPLETED", "0:0")
        assert (tmp_path / f"out_{task}.txt").read_text() == f"task {task}\n"


@pytest.mark.slow
def test_a_requeued_job_runs_again_with_its_restart_count(slurm_cluster: SlurmCluster, tmp_path: Path):
    # The job's own output file is truncated when it starts again, so the runs append to a file of their own.
    counts = tmp_path / "restart_counts.txt"
    job = slurm_cluster.sbatch(
        f"--output={tmp_path / 'out.txt'}", f"--wrap=echo ${{SLURM_RESTART_COUNT:-0}} >> {counts}; sleep 60"
    )
    assert wait_for_lines(counts, 1) == ["0"]

    requeued = time.monotonic()
    slurm_cluster.run("scontrol", "requeue", job)
    # COMPLETING while its processes are killed, then PENDING (reason BeginTime) until it may start again.
    slurm_cluster.wait_for_queue_state(job, "PENDING", timeout=10)
    # Held pending until the old launch credential expires (cred_expire=5 in slurm.conf), then started again.
    assert wait_for_lines(counts, 2) == ["0", "1"]
    assert time.monotonic() - requeued < 15
    shown = slurm_cluster.run("scontrol", "show", "job", job).stdout
    assert "JobState=RUNNING" in shown and "Restarts=1" in shown

    slurm_cluster.run("scancel", job)
    assert slurm_cluster.wait_for_job_state(job, {"CANCELLED", "COMPLETED", "FAILED"})["State"] == "CANCELLED"


@pytest.mark.slow
def test_a_cancelled_job_is_cancelled(slurm_cluster: SlurmCluster, tmp_path: Path):
    job = slurm_cluster.sbatch(f"--output={tmp_path / 'out.txt'}", "--wrap=sleep 60")
    slurm_cluster.wait_for_queue_state(job, "RUNNING")
    slurm_cluster.run("scancel", job)
    assert slurm_cluster.wait_for_job_state(job, {"CANCELLED", "COMPLETED", "FAILED"})["State"] == "CANCELLED"
