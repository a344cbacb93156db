"""Sweeps on a real SLURM cluster (one node, started by the tests: tests/servers/slurm.py), through
`hydra/launcher=slurm` (Hydra's submitit launcher with the project's waiting and reasons, src/sweep/slurm.py): a
sweep ends in its report as a local one does, a job that fails is listed with its reason, and a job that SLURM
requeues mid-training resumes from its last step and ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_in_process

from .conftest import ROOT, check, run_here
from .test_interrupts import LONG_RUN, LONG_STEPS, assert_same_weights

pytestmark = pytest.mark.slow
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the cluster extra is not installed")

TINY_JOB = [
    "model.d_model=16",
    "model.layers=1",
    "model.d_ff=32",
    "trainer.max_steps=12",
    "trainer.val_check_interval=6",
    "trainer.enable_progress_bar=false",
    "batch_size=16",
    "torch_threads=1",
]


def slurm_sweep(cluster, sweep: Path, *overrides: str) -> list[str]:
    """The command line of a sweep on the test cluster: one CPU per job, so the node runs two jobs at once."""
    return [
        sys.executable,
        "-m",
        "src.run",
        "-m",
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={cluster.partition}",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
        *overrides,
        f"hydra.sweep.dir={sweep}",
    ]


def sweep_env(cluster) -> dict[str, str]:
    return {**cluster.client_env, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def sweep_training_mid_way(cluster, sweep: Path, *overrides: str, job: str = "*") -> tuple[subprocess.Popen, Path, str]:
    """A sweep started on the cluster, once its job `job` (a glob of its directory name) trains past its first step
    checkpoint: the sweep command's process, the job's directory and its SLURM job id."""
    process = start_sweep(cluster, sweep, *overrides)
    return training_mid_way(sweep, process, job)


def start_sweep(cluster, sweep: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        slurm_sweep(cluster, sweep, *overrides),
        cwd=ROOT,
        env=sweep_env(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def training_mid_way(sweep: Path, process: subprocess.Popen, job: str) -> tuple[subprocess.Popen, Path, str]:
    """Once the sweep's job `job` trains past its first step checkpoint: the process, the job's directory and id."""
    deadline = time.monotonic() + 180
    while not list(sweep.glob(f"{job}/checkpoints/step-*.ckpt")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no step checkpoint after 180 s"
        time.sleep(0.1)
    (job_dir,) = [path.parent for path in sweep.glob(f"{job}/run.json")]
    return process, job_dir, json.loads((job_dir / "run.json").read_text())["slurm_job"]


def test_a_sweep_on_slurm_ends_in_its_report_with_the_failed_job_and_its_reason(slurm_cluster, tmp_path):
    """A job that fails while it trains on the cluster (max_loss=0.01: it diverges at its first step; a job that
    cannot run at all is refused before anything is submitted, tests/cli/test_preflight.py) is reported, and the
    others complete."""
    sweep = tmp_path / "sweep"
    started = time.monotonic()
    result = subprocess.run(
        slurm_sweep(slurm_cluster, sweep, *TINY_JOB, "model.heads=1,2", "max_loss=null,0.01"),
        cwd=ROOT,
        env=sweep_env(slurm_cluster),
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(
        f"4-job sweep on SLURM: {time.monotonic() - started:.1f} s; cluster up in {slurm_cluster.startup_seconds:.1f} s"
    )
    assert result.returncode == 1, result.stderr[-3000:]  # two jobs diverged: the command says so
    assert "submitted 4 SLURM job(s)" in result.stdout
    statuses = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/run.json")}
    assert {name: record["status"] for name, record in statuses.items()} == {
        "0_model.heads:1+max_loss:null": "completed",
        "1_model.heads:1+max_loss:0.01": "diverged",
        "2_model.heads:2+max_loss:null": "completed",
        "3_model.heads:2+max_loss:0.01": "diverged",
    }
    for name, record in statuses.items():  # the job's own command, not the worker's (submitit's) command line
        assert record["command"].endswith(f"hydra.run.dir={sweep / name}"), record["command"]
    jobs = {record["slurm_job"] for record in statuses.values()}
    assert len(jobs) == 4 and all("_" in job for job in jobs)  # the tasks of one job array, each in its own run
    report = (sweep / "report.md").read_text()
    assert "2 of 4" in result.stdout and report.count("above max_loss=0.01") == 2
    assert "2 sweep job(s) did not complete (1_model.heads:1+max_loss:0.01, 3_model.heads:2+max_loss:0.01)" in (
        result.stderr
    )
    for name in ("results.csv", "curves.png", "bars.png"):
        assert (sweep / name).is_file(), name


@pytest.fixture(scope="module")
def uninterrupted_weights(tmp_path_factory) -> dict[int, dict]:
    """The requeue tests' references, by seed: the same runs, never interrupted, trained outside SLURM."""
    references = {}
    for seed in (0, 1):
        run_dir = tmp_path_factory.mktemp(f"uninterrupted-{seed}")
        check(run_here("src.run", *LONG_RUN, f"seed={seed}", f"hydra.run.dir={run_dir}"))
        references[seed] = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return references


def test_a_requeued_job_resumes_from_its_last_step_and_ends_with_the_uninterrupted_weights(
    slurm_cluster, tmp_path, uninterrupted_weights
):
    """A job requeued mid-training saves its step and is started again with the same job id; it finds its own run
    and resumes it. The final weights equal those of a run never interrupted (trained outside SLURM with the same
    settings), bit for bit. Both ways SLURM requeues, in one sweep of two jobs training side by side: job 0 by
    `scontrol requeue` (preemption, or by hand: SLURM sends SIGTERM, then starts the job again), job 1 by the signal
    SLURM sends before a time limit (`scancel --signal=USR2`: submitit requeues the job itself)."""
    sweep = tmp_path / "sweep"
    process = start_sweep(slurm_cluster, sweep, *LONG_RUN, "seed=0,1")
    requeue = {"0_*": ["scontrol", "requeue"], "1_*": ["scancel", "--signal=USR2"]}
    requeued = {}
    deadline = time.monotonic() + 180
    while len(requeued) < len(requeue):  # each job requeued as soon as it trains past its first step checkpoint
        for job, command in requeue.items():
            if job not in requeued and list(sweep.glob(f"{job}/checkpoints/step-*.ckpt")):
                (directory,) = [path.parent for path in sweep.glob(f"{job}/run.json")]
                requeued[job] = (directory, json.loads((directory / "run.json").read_text())["slurm_job"])
                slurm_cluster.run(*command, requeued[job][1])
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"no step checkpoint after 180 s: {sorted(requeued)} requeued"
        time.sleep(0.1)
    (job_dir, job), (other_dir, other) = requeued["0_*"], requeued["1_*"]
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]

    for seed, (directory, requeued) in enumerate(((job_dir, job), (other_dir, other))):
        record = json.loads((directory / "run.json").read_text())
        assert record["status"] == "completed" and record["slurm_job"] == requeued, record
        assert [session["status"] for session in record["previous"]] == ["interrupted"], record
        assert record["requeued"].startswith(f"SLURM started job {requeued} again (restart 1): resuming from")
        steps = torch.load(directory / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        reference = uninterrupted_weights[seed]
        assert steps["global_step"] == reference["global_step"] == LONG_STEPS
        assert_same_weights(steps["state_dict"], reference["state_dict"])
    assert "2 of 2 runs completed" in out


def test_a_job_the_cluster_cancels_is_reported_with_slurms_reason(slurm_cluster, tmp_path):
    """A job cancelled on the cluster (scancel: what an administrator, a time limit or a preemption without requeue
    does) is reported with SLURM's own reason beside what the run saved; the sweep waits for the other job."""
    sweep = tmp_path / "sweep"
    process, job_dir, job = sweep_training_mid_way(slurm_cluster, sweep, *LONG_RUN, "seed=0,1", job="1_*")
    slurm_cluster.run("scancel", job)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err[-3000:]
    record = json.loads((job_dir / "run.json").read_text())
    assert record["status"] == "interrupted"  # it saved its step on SLURM's SIGTERM: resumable
    assert f"SLURM job {job} ended CANCELLED" in record["error"]
    assert f"SLURM job {job} ended CANCELLED" in (sweep / "report.md").read_text()
    (other,) = list(sweep.glob("0_*/run.json"))
    assert json.loads(other.read_text())["status"] == "completed"  # waited for, though the other job failed first


def test_a_partition_slurm_does_not_have_is_one_line_and_leaves_nothing(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    command = slurm_sweep(slurm_cluster, sweep, *TINY_JOB, "model.heads=1,2")
    command[command.index(f"hydra.launcher.partition={slurm_cluster.partition}")] = "hydra.launcher.partition=nosuch"
    result = subprocess.run(
        command, cwd=ROOT, env=sweep_env(slurm_cluster), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "SLURM did not take the sweep's jobs" in errors[0] and "partition" in errors[0]
    assert "Traceback" not in result.stderr and not sweep.exists()  # the same command runs once it is fixed


def test_a_job_of_two_slurm_tasks_trains_as_one_run_of_two_ranks_and_requeued_resumes_on_both(slurm_cluster, tmp_path):
    """`tasks_per_node=2 trainer.devices=2`: SLURM starts both ranks (Lightning reads them from SLURM's environment);
    the second task runs the job as an extra rank of the first one's run, writing none of its files. Requeued, both
    ranks continue the run from the saved step (one starting over would leave the other waiting in a collective):
    the run ends completed at its last step, its interrupted session kept."""
    sweep = tmp_path / "sweep"
    long_run = [o for o in LONG_RUN if not o.startswith("torch_threads")]
    process, job_dir, job = sweep_training_mid_way(
        slurm_cluster, sweep, *long_run, "torch_threads=1", "hydra.launcher.tasks_per_node=2", "trainer.devices=2"
    )
    slurm_cluster.run("scontrol", "requeue", job)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    record = json.loads((job_dir / "run.json").read_text())
    assert record["status"] == "completed" and "resuming from" in record["requeued"]
    assert [session["status"] for session in record["previous"]] == ["interrupted"]
    checkpoint = torch.load(job_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == LONG_STEPS
    # the first rank's files only: one TensorBoard file per session (the interrupted one and the resumed one)
    assert len(list(job_dir.glob("events.out.tfevents.*"))) == 2
    assert not list(job_dir.glob("error*"))
    log = "".join(path.read_text() for path in sweep.glob(".submitit/*/*_log.err"))
    assert log.count("Starting with 2 processes") == 2, log[-2000:]  # both sessions ran as one run of two ranks


def test_a_sweep_whose_process_died_is_not_resumed_while_slurm_still_runs_its_job(slurm_cluster, tmp_path, monkeypatch):
    """The sweep's process killed outright (a lost login session): its job goes on on the cluster, and the sweep's
    directory is no longer locked. Resuming then would train that job a second time over its own files: refused in
    one line naming the job and both ways out (wait, or scancel), before anything is written or submitted; once
    SLURM no longer has the job, the same check passes."""
    from src.sweep.slurm import check_no_job_still_running

    sweep = tmp_path / "sweep"
    process, job_dir, job = sweep_training_mid_way(slurm_cluster, sweep, *LONG_RUN, "seed=0")
    process.kill()
    process.communicate()
    for name, value in slurm_cluster.client_env.items():  # squeue asks the test cluster, as the sweep's command did
        monkeypatch.setenv(name, value)
    before = sorted(str(path) for path in sweep.rglob("*") if "checkpoints" not in path.parts)
    resume = slurm_sweep(slurm_cluster, sweep, *LONG_RUN, "seed=0", "ckpt_path=last")[2:]  # after `python -m`
    code, _, err = run_in_process(*resume)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, err[-3000:]
    array = job.partition("_")[0]
    assert (sweep / ".slurm_jobs").read_text().split() == [array]  # the launcher's list of the jobs it submitted
    assert f"{job} running" in errors[0] and f"scancel {array}" in errors[0] and "second time" in errors[0]
    assert sorted(str(path) for path in sweep.rglob("*") if "checkpoints" not in path.parts) == before
    slurm_cluster.run("scancel", array)
    deadline = time.monotonic() + 60
    while slurm_cluster.run("squeue", "--noheader", f"--jobs={array}", check=False).stdout.strip():
        assert time.monotonic() < deadline, "SLURM still lists the cancelled job after 60 s"
        time.sleep(0.5)
    check_no_job_still_running(sweep)  # nothing left on the cluster: the resume may go on
    assert json.loads((job_dir / "run.json").read_text())["slurm_job"] == job
