"""Every way a run becomes several processes, on real processes: Lightning's `ddp` (each extra rank a new
`python -m src.run`), inside a sweep and inside a joblib worker, `ddp_spawn`, and a rank that dies. Each extra
rank passes the checks that protect earlier runs as part of its own run, writes none of the first rank's files,
and a dead rank ends the run `failed` with its reason. (SLURM's paths: tests/e2e/test_slurm.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for_state

from .conftest import ROOT, check, run_here, run_module

pytestmark = pytest.mark.slow

# A small model on the default data, 20 steps.
SMALL = [
    "model.d_model=32",
    "model.heads=2",
    "model.layers=1",
    "model.d_ff=64",
    "trainer.max_steps=20",
    "optimizer.warmup_steps=2",  # below max_steps: the warm-up warning would sound (the test counts warnings)
    "trainer.val_check_interval=20",
    "trainer.enable_progress_bar=false",
    "torch_threads=1",
]


def files_of(run_dir: Path) -> list[str]:
    """What a run wrote, by name (TensorBoard's event file names carry the host, time and PID)."""
    names = []
    for path in run_dir.rglob("*"):
        name = str(path.relative_to(run_dir))
        names.append("events.out.tfevents" if name.startswith("events.out.tfevents") else name)
    return sorted(names)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The run the two-rank runs are compared with: one process that sees the same global batch (2 ranks x 32)."""
    single = tmp_path_factory.mktemp("one_process") / "single"
    check(run_here("src.run", *SMALL, "batch_size=64", f"hydra.run.dir={single}"))
    return single


def test_two_devices_with_lightnings_default_strategy_train_like_one_process(tmp_path, one_process):
    """`trainer.devices=2` (strategy auto: Lightning's ddp, the extra rank started as a command of its own) ends
    completed; the run directory holds exactly what a one-process run's holds (the extra rank wrote nothing), and
    the validation loss after 20 steps matches one process with the same global batch to within 1% (DDP averages
    the ranks' token-mean losses; one process takes the mean over all tokens)."""
    ddp, single = tmp_path / "ddp", one_process
    result = check(
        run_module(
            "src.run", *SMALL, "trainer.devices=2", "batch_size=32", f"hydra.run.dir={ddp}", timeout=600, cwd=tmp_path
        )
    )
    record = json.loads((ddp / "run.json").read_text())
    assert record["status"] == "completed", record
    assert "Starting with 2 processes" in result.stdout + result.stderr
    assert files_of(ddp) == files_of(single)
    assert not (tmp_path / "outputs").exists()  # no rank made a directory of its own
    assert result.stderr.count("warning:") == 0 and "error:" not in result.stderr
    ddp_loss = json.loads((ddp / "metrics.json").read_text())["final"]["val/loss"]
    single_loss = json.loads((single / "metrics.json").read_text())["final"]["val/loss"]
    print(f"val/loss after 20 steps: 2 ranks x 32 {ddp_loss:.5f}, 1 process x 64 {single_loss:.5f}")
    assert ddp_loss == pytest.approx(single_loss, rel=0.01)


def test_ddp_spawn_on_two_cpu_processes_trains_like_one_process_with_the_same_global_batch(tmp_path, one_process):
    """trainer=ddp with trainer.strategy=ddp_spawn (gloo) on the default data: it trains, only rank zero writes,
    and the validation loss after 20 steps matches one process that sees the same global batch (ranks take
    interleaved shares of one seeded permutation) to within 1% (DDP averages the ranks' token-mean losses, one
    process takes the mean over all tokens, so the updates differ slightly)."""
    ddp, single = tmp_path / "ddp", one_process
    result = run_module(
        "src.run",
        *SMALL,
        "trainer=ddp",
        "trainer.strategy=ddp_spawn",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "batch_size=32",
        f"hydra.run.dir={ddp}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(ddp.glob("events.out.tfevents.*"))) == 1  # rank zero only
    assert sorted(p.name for p in (ddp / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    ddp_loss = json.loads((ddp / "metrics.json").read_text())["final"]["val/loss"]
    single_loss = json.loads((single / "metrics.json").read_text())["final"]["val/loss"]
    assert ddp_loss == pytest.approx(single_loss, rel=0.01)


def test_strategy_ddp_inside_a_sweep_runs_each_job_once(tmp_path):
    """A Hydra sweep with `trainer.strategy=ddp`: each job's extra rank runs that job (not the sweep again, Lightning
    issue #11300), every job ends completed in its own directory, the report counts each once, and no duplicate
    sweep directory appears."""
    sweep = tmp_path / "sweep"
    result = check(
        run_module(
            "src.run",
            "-m",
            *SMALL,
            "trainer.max_steps=10",
            "trainer.val_check_interval=10",
            "trainer.strategy=ddp",
            "trainer.devices=2",
            "model.heads=1,2",
            f"hydra.sweep.dir={sweep}",
            timeout=600,
            cwd=tmp_path,
        )
    )
    jobs = sorted(path.parent.name for path in sweep.glob("*/run.json"))
    assert jobs == ["0_model.heads:1", "1_model.heads:2"]
    for job in jobs:
        assert json.loads((sweep / job / "run.json").read_text())["status"] == "completed"
    assert "2 of 2 runs completed" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # no second sweep, no run directory


def test_ddp_in_a_joblib_worker_starts_its_ranks_as_the_job(tmp_path):
    """In a joblib worker, `sys.argv` is the worker's, not `python -m src.run`: the extra rank is started as the job's
    own command all the same: two jobs, each in its own worker, starting their ranks at the same time."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    result = check(
        run_module(
            "src.run",
            "-m",
            *SMALL,
            "trainer.max_steps=10",
            "trainer.val_check_interval=10",
            "trainer.devices=2",
            "model.heads=1,2",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}",
            timeout=600,
            cwd=tmp_path,
        )
    )
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in sweep.glob("*/run.json")}
    assert statuses == {"0_model.heads:1": "completed", "1_model.heads:2": "completed"}
    assert (result.stdout + result.stderr).count("Starting with 2 processes") == 2  # each job on two ranks


def children_of(pid: int) -> list[int]:
    """The processes `pid` started (Linux's /proc), so the test kills only its own run's rank."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found


def test_a_rank_killed_mid_run_ends_the_run_failed_with_its_reason(tmp_path):
    """The extra rank is killed outright (SIGKILL: what the kernel's out-of-memory killer sends): the run ends with
    status 1, run.json says `failed` and which rank died how (never `running`), one `error:` line says the same
    and how to resume from the last checkpoint."""
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "src.run",
        *[o for o in SMALL if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))],
        "trainer.max_steps=5000",
        "trainer.val_check_interval=20",
        "trainer.devices=2",
        f"hydra.run.dir={run_dir}",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not (run_dir / "checkpoints" / "last.ckpt").is_file():  # both ranks are training
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "no checkpoint after 180 s"
        time.sleep(0.1)
    ranks = children_of(process.pid)
    assert len(ranks) == 1, ranks
    os.kill(ranks[0], signal.SIGKILL)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed"
    assert record["error"].startswith(f"rank 1 (PID {ranks[0]}) failed: killed by SIGKILL"), record["error"]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rank 1" in errors[0] and "ckpt_path=last" in errors[0], err[-3000:]


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_ctrl_c_while_two_ranks_start_ends_the_run_interrupted_without_a_hang(tmp_path, strategy):
    """Ctrl-C reaches every process of the terminal's group, here a few seconds in: while the ranks start (before
    any step), or once they train. Either way the run ends `interrupted` with status 130, at once, with one
    `error:` line (and, with ddp, no traceback), and no rank is left behind."""
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "src.run", *SMALL[:4], "trainer.max_steps=5000", "trainer.devices=2"]
    command.append(f"trainer.strategy={strategy}")
    process = subprocess.Popen(
        [*command, "torch_threads=1", f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not (run_dir / "run.json").is_file():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.1)
    time.sleep(2.0)
    ranks = children_of(process.pid)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert err.count("error: interrupted by SIGINT") == 1, err[-3000:]
    if strategy == "ddp":  # ddp_spawn's ranks are started by multiprocessing, whose start-up prints its traceback
        assert "Traceback" not in err and err.count("error:") == 1
    for rank in ranks:  # a process signalled a moment ago may still be on its way out
        wait_for_state(rank, "Z", None)


def test_a_process_with_a_rank_in_its_environment_but_no_run_is_refused(tmp_path):
    """LOCAL_RANK left over in a shell: the process is no rank of any run, so it may not train as one."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", LOCAL_RANK="1")
    result = subprocess.run(
        [sys.executable, "-m", "src.run", *SMALL, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: this process has rank 1 (LOCAL_RANK or RANK is set")
    assert not (tmp_path / "run").exists()


def test_several_devices_on_slurm_need_as_many_tasks_and_a_launcher_without_m_is_warned_about(tmp_path):
    """Before anything is submitted: trainer.devices=2 with one SLURM task per job is refused in one line; a
    launcher chosen without -m is legal (the run trains here) and said so."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    refused = run_module(
        "src.run", "-m", "hydra/launcher=slurm", "trainer.devices=2", *SMALL, f"hydra.sweep.dir={tmp_path / 's'}"
    )
    assert refused.returncode == 2 and "set hydra.launcher.tasks_per_node=2" in refused.stderr
    assert not (tmp_path / "s").exists()
    single = check(run_here("src.run", "hydra/launcher=slurm", *SMALL, f"hydra.run.dir={tmp_path / 'r'}"))
    warnings = [line for line in single.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: hydra/launcher=slurm has no effect without -m: this run trains here, once; add -m to run it as a "
        "sweep"
    ]


def test_a_spawned_rank_killed_mid_run_ends_the_run_failed_with_its_reason(tmp_path):
    """strategy=ddp_spawn: the ranks are processes forked from the command, which waits for them; one killed
    outright ends the run `failed` with that rank's reason and one `error:` line, not torch's traceback."""
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    long = [o for o in SMALL if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))]
    command = [sys.executable, "-m", "src.run", *long, "trainer.max_steps=5000", "trainer.val_check_interval=20"]
    process = subprocess.Popen(
        [*command, "trainer.strategy=ddp_spawn", "trainer.devices=2", f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 180
    while not (run_dir / "checkpoints" / "last.ckpt").is_file():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "no checkpoint after 180 s"
        time.sleep(0.1)
    ranks = [pid for pid in children_of(process.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(ranks) == 2, ranks
    os.kill(ranks[1], signal.SIGKILL)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["error"].endswith(f"(PID {ranks[1]}) failed: killed by SIGKILL")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
