"""A stacked sweep stopped and resumed: Ctrl-C (the step is saved) or SIGKILL (what came after the group's last
saved state is lost) mid-sweep, then the same command with hydra.sweep.dir=<the sweep> ckpt_path=last, ends with
exactly the weights and metrics of the sweep that was never stopped. Dropout is on, so the random state matters.
`-m model.heads=1,2 seed=0,1` is two groups of two (jobs 0-1 and 2-3)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src.training.checkpoint import newest_checkpoint

from .conftest import ROOT, SMALL_SYNTHETIC, TINY, check, run_here

pytestmark = pytest.mark.slow

REPLACED = (
    "model.heads=",
    "model.dropout=",
    "trainer.max_steps=",
    "trainer.val_check_interval=",
    "dashboard.attention_every_n_steps=",
)
SETTINGS = [
    *(o for o in TINY if not o.startswith(REPLACED)),
    *SMALL_SYNTHETIC,
    "model.dropout=0.1",
    "trainer.max_steps=120",
    "trainer.val_check_interval=40",
    "checkpoint.every_n_train_steps=20",
    "dashboard.attention_every_n_steps=120",  # drawn once, at the end: every 6 steps was a third of each sweep's time
]
SWEEP = ["-m", "hydra/launcher=stacked", "model.heads=1,2", "seed=0,1", *SETTINGS]
JOBS = ["0_model.heads:1+seed:0", "1_model.heads:1+seed:1", "2_model.heads:2+seed:0", "3_model.heads:2+seed:1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("uninterrupted") / "sweep"
    check(run_here("src.run", *SWEEP, f"hydra.sweep.dir={sweep}"))
    return sweep


def start(sweep: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "src.run", *SWEEP, f"hydra.sweep.dir={sweep}"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, f"the sweep ended early: {process.communicate()}"
        assert time.time() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


def assert_same_as(sweep: Path, reference: Path, jobs: list[str] = JOBS) -> None:
    for job in jobs:
        mine = torch.load(sweep / job / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
        theirs = torch.load(reference / job / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
        assert mine["global_step"] == theirs["global_step"] == 120
        assert mine["state_dict"].keys() == theirs["state_dict"].keys()
        for name, tensor in theirs["state_dict"].items():
            assert torch.equal(mine["state_dict"][name], tensor), f"{job}: {name} differs after resuming"
        history = json.loads((sweep / job / "metrics.json").read_text())["history"]
        assert history == json.loads((reference / job / "metrics.json").read_text())["history"]
        assert json.loads((sweep / job / "run.json").read_text())["status"] == "completed"
    if jobs == JOBS:
        assert "4 of 4 runs completed" in (sweep / "report.md").read_text()


def interrupt_at(sweep: Path, state: str) -> None:
    """The sweep started, and Ctrl-C once the group state `state` was first saved: that group is interrupted."""
    process = start(sweep)
    wait_for(sweep / "stacked_groups" / state, process)
    time.sleep(random.uniform(0.0, 0.3))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err


def test_ctrl_c_saves_the_groups_step_and_the_sweep_resumes_exactly(tmp_path, uninterrupted):
    sweep = tmp_path / "sweep"
    process = start(sweep)
    wait_for(sweep / "stacked_groups/jobs-0-1.ckpt", process)  # the first group's first saved state
    time.sleep(random.uniform(0.0, 0.5))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    stopped_at = torch.load(sweep / JOBS[0] / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    step = stopped_at["global_step"]
    assert 0 < step < 120 and f"interrupted by SIGINT at step {step}, which was saved" in line
    state = torch.load(sweep / "stacked_groups/jobs-0-1.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == step
    record = json.loads((sweep / JOBS[0] / "run.json").read_text())
    assert record["status"] == "interrupted" and record["resume"] in line
    assert record["numerics"]["trainer.precision"] == "32-true"  # what it trained with, as a finished member says
    assert f"hydra.sweep.dir={sweep.resolve()}" in record["resume"] and record["resume"].endswith("ckpt_path=last")
    assert not (sweep / JOBS[2]).exists()  # the second group never started

    # The command it printed, as a user pastes it: the first group goes on from its step, the second starts
    resumed = check(run_here("src.run", *SWEEP, f"hydra.sweep.dir={sweep}", "ckpt_path=last"))
    output = resumed.stdout + resumed.stderr
    assert f"resuming 2 seeds trained together from {sweep.resolve() / 'stacked_groups/jobs-0-1.ckpt'}" in output
    assert "training 2 seeds together as one stacked model: 2_model.heads:2+seed:0, 3_model.heads:2+seed:1" in output
    assert "warning:" not in output
    assert_same_as(sweep, uninterrupted)
    record = json.loads((sweep / JOBS[0] / "run.json").read_text())
    assert record["previous"][0]["status"] == "interrupted"


def test_a_killed_sweep_resumes_from_the_groups_last_saved_state_and_keeps_finished_groups(tmp_path, uninterrupted):
    sweep = tmp_path / "sweep"
    process = start(sweep)
    wait_for(sweep / "stacked_groups/jobs-2-3.ckpt", process)  # the first group done, the second under way
    time.sleep(random.uniform(0.0, 0.3))
    process.kill()  # SIGKILL: nothing runs after it
    process.communicate(timeout=60)
    assert json.loads((sweep / JOBS[2] / "run.json").read_text())["status"] == "running"
    finished = (sweep / JOBS[0] / "checkpoints/last.ckpt").stat().st_mtime_ns

    resumed = check(run_here("src.run", *SWEEP, f"hydra.sweep.dir={sweep}", "ckpt_path=last"))
    assert "jobs 0, 1 have finished: kept as they are, not trained again" in resumed.stdout
    assert (sweep / JOBS[0] / "checkpoints/last.ckpt").stat().st_mtime_ns == finished  # not trained again
    assert_same_as(sweep, uninterrupted)

    # Everything has finished now: the same command keeps every job and only writes the report again
    again = check(run_here("src.run", *SWEEP, f"hydra.sweep.dir={sweep}", "ckpt_path=last"))
    assert "jobs 2, 3 have finished" in again.stdout and "training" not in again.stdout


def test_an_interrupted_group_resumed_with_its_settings_in_another_order_resumes_exactly(tmp_path, uninterrupted):
    """The jobs of a resumed sweep are matched to its directories by their settings, not by the numbers Hydra gives
    them this time: `seed=1,0 model.heads=2,1` numbers every job otherwise than `model.heads=1,2 seed=0,1`, yet the
    interrupted group goes on in its directories from its own state, its members in their order, bit-exact."""
    sweep = tmp_path / "sweep"
    interrupt_at(sweep, "jobs-2-3.ckpt")  # the first group done, the second interrupted

    reordered = ["-m", "hydra/launcher=stacked", "seed=1,0", "model.heads=2,1", *SETTINGS]
    resumed = check(run_here("src.run", *reordered, f"hydra.sweep.dir={sweep}", "ckpt_path=last"))
    output = resumed.stdout + resumed.stderr
    state = sweep.resolve() / "stacked_groups/jobs-2-3.ckpt"
    assert f"resuming 2 seeds trained together from {state}: {JOBS[2]}, {JOBS[3]}" in output
    assert "jobs 0, 1 have finished: kept as they are, not trained again" in output
    assert "warning:" not in output
    assert sorted(d.name for d in sweep.iterdir() if (d / ".hydra").is_dir()) == JOBS  # no job made a new one
    assert_same_as(sweep, uninterrupted)


def test_a_seed_added_to_an_interrupted_group_trains_apart_and_the_group_resumes_exactly(tmp_path, uninterrupted):
    """`seed=0,1,2` after `seed=0,1` stopped in its first group: the interrupted members go on from their group's
    state (which holds only them) bit-exact, and the seed added to their configuration trains in a group of its own,
    as it would had it been added once they had finished; the second configuration, never started, trains its
    three seeds together."""
    sweep = tmp_path / "sweep"
    interrupt_at(sweep, "jobs-0-1.ckpt")

    added = [o if o != "seed=0,1" else "seed=0,1,2" for o in SWEEP]
    resumed = check(run_here("src.run", *added, f"hydra.sweep.dir={sweep}", "ckpt_path=last"))
    output = resumed.stdout + resumed.stderr
    state = sweep.resolve() / "stacked_groups/jobs-0-1.ckpt"
    assert f"resuming 2 seeds trained together from {state}: {JOBS[0]}, {JOBS[1]}" in output
    # the second group had not started: its jobs take the numbers Hydra gives them now
    new = ["2_model.heads:1+seed:2", "3_model.heads:2+seed:0", "4_model.heads:2+seed:1", "5_model.heads:2+seed:2"]
    apart = "jobs 0, 1 resume the group they were interrupted in, whose saved state holds only them: job 2 trains"
    assert apart in output
    assert f"training 3 seeds together as one stacked model: {', '.join(new[1:])}" in output
    assert "warning:" not in output
    assert_same_as(sweep, uninterrupted, JOBS[:2])
    alone = json.loads((sweep / new[0] / "run.json").read_text())
    assert alone["status"] == "completed" and "stacked" not in alone
    report = (sweep / "report.md").read_text()
    assert "6 of 6 runs completed" in report
    assert_three_seeds_per_configuration(report)


def snapshot(directory: Path) -> dict[str, int]:
    """Every file under `directory`, with the time it was last written."""
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_three_seeds_per_configuration(report: str) -> None:
    """The report's table: a row per model.heads, each cell a mean over three seeds (n=3)."""
    rows = [line for line in report.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2, report
    for row in rows:
        cells = row.strip("|").split("|")[1:5]  # the four metrics' mean ± std (n)
        assert all(cell.strip().strip("*").endswith("(3)") for cell in cells), row


def test_seeds_added_with_seed_swept_last_train_only_the_new_seeds(tmp_path):
    """`model.heads=1,2 seed=0,1,2` after `model.heads=1,2 seed=0,1`: Hydra would number model.heads=2 seed=0 as job
    3, which model.heads=2 seed=1 is. The jobs that ran keep their directories, untouched; each new seed gets a
    directory numbered after the highest; and the report counts three seeds per configuration."""
    sweep = tmp_path / "sweep"
    small = ["-m", "hydra/launcher=stacked", "model.heads=1,2", *(o for o in TINY if not o.startswith("model.heads="))]
    small += [*SMALL_SYNTHETIC, f"hydra.sweep.dir={sweep}"]
    check(run_here("src.run", *small, "seed=0,1"))
    before = {job: snapshot(sweep / job) for job in JOBS}
    time.sleep(0.01)  # a file written again would have a later time

    added = check(run_here("src.run", *small, "seed=0,1,2", "ckpt_path=last"))
    output = added.stdout + added.stderr
    assert "jobs 0, 1 have finished: kept as they are, not trained again" in output
    assert "jobs 2, 3 have finished: kept as they are, not trained again" in output
    assert "warning:" not in output
    assert {job: snapshot(sweep / job) for job in JOBS} == before
    new = ["4_model.heads:1+seed:2", "5_model.heads:2+seed:2"]
    assert sorted(d.name for d in sweep.iterdir() if (d / ".hydra").is_dir()) == [*JOBS, *new]
    for job in new:
        assert json.loads((sweep / job / "run.json").read_text())["status"] == "completed"
        assert "seed=2" in (sweep / job / ".hydra/overrides.yaml").read_text()
    report = (sweep / "report.md").read_text()
    assert "6 of 6 runs completed" in report and "never started" not in report
    assert_three_seeds_per_configuration(report)
    shown = check(run_here("src.report", str(sweep)))  # the report asked for by hand sees the same sweep
    assert "6 of 6 runs completed" in shown.stdout + shown.stderr


def test_what_a_resume_of_a_stacked_sweep_refuses_in_one_line(uninterrupted):
    sweep = uninterrupted

    def refused(*args: str) -> str:
        result = run_here(*args)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, result.stderr
        return lines[0]

    changed = [o if o != "model.dropout=0.1" else "model.dropout=0.2" for o in SWEEP]
    line = refused("src.run", *changed, f"hydra.sweep.dir={sweep}", "ckpt_path=last")
    assert "had model.dropout=0.1, this one has model.dropout=0.2" in line
    line = refused("src.run", *SWEEP, "ckpt_path=last")
    assert "add hydra.sweep.dir=<the sweep's directory>" in line
    line = refused("src.run", *SWEEP, f"hydra.sweep.dir={sweep}")  # without ckpt_path=last: a new sweep
    assert f"hydra.sweep.dir={sweep.resolve()} ckpt_path=last (interrupted groups resume" in line
    # a member's checkpoint is weights only, and the group's state is several models: neither resumes alone
    line = refused("src.run", *SETTINGS, "model.heads=1", f"hydra.run.dir={sweep / JOBS[0]}", "ckpt_path=last")
    assert "a group resumes as a whole" in line and "saved by a member of a stacked group" in line
    line = refused("src.eval", f"ckpt={sweep / 'stacked_groups/jobs-0-1.ckpt'}")
    assert "is the training state of a stacked group of 2 seeds, not one model: give one of its members" in line


def interrupt_on_the_second_call(real):
    """`real`, but Ctrl-C comes (a real SIGINT to this process) as it is called the second time: for the second
    member, while the group is being set up."""
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(None)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)  # the signal lands here
        return real(*args, **kwargs)

    return interrupted


@pytest.mark.parametrize("where", ["while its directories are made", "while its members are built"])
def test_ctrl_c_before_the_group_trains_is_an_interrupt_and_the_sweep_resumes(tmp_path, monkeypatch, where):
    """Ctrl-C before the first step (building a group's members takes seconds) is an interrupt as during training:
    one `error:` line with the command that resumes the sweep, no traceback, exit 130, and each member that had a
    run.json recorded as interrupted (no error.txt). The resumed sweep trains the group from the start; each member
    ends completed, without an earlier attempt's error.txt, and with the command that does what it did."""
    import src.data
    import src.sweep.stacked
    from tests.conftest import run_in_process

    sweep = tmp_path / "sweep"
    small = ["-m", "hydra/launcher=stacked", "seed=0,1", *TINY, *SMALL_SYNTHETIC, f"hydra.sweep.dir={sweep}"]
    if where == "while its directories are made":
        patched = src.sweep.stacked, "make_job_directory"
    else:
        patched = src.data, "build_datamodule"
    monkeypatch.setattr(*patched, interrupt_on_the_second_call(getattr(*patched)))
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal's process
    try:
        code, _, err = run_in_process("src.run", *small)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the command (a traceback)")
    finally:
        signal.signal(signal.SIGINT, handler)
    monkeypatch.undo()
    assert code == 130, err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: interrupted by SIGINT before") and "resume the sweep" in line, line
    assert line.endswith(f"hydra.sweep.dir={sweep.resolve()} ckpt_path=last"), line
    jobs = [sweep / "0_seed:0", sweep / "1_seed:1"]
    if where == "while its members are built":
        for job in jobs:
            record = json.loads((job / "run.json").read_text())
            assert record["status"] == "interrupted" and record["resume"] in line, record
            assert not (job / "error.txt").exists()
        (jobs[0] / "error.txt").write_text("an earlier attempt's failure\n")  # as a crashed attempt leaves it
    else:
        assert not any((job / "run.json").exists() for job in jobs)  # the jobs never started

    resumed = check(run_here("src.run", *small, "ckpt_path=last"))
    assert "training 2 seeds together as one stacked model: 0_seed:0, 1_seed:1" in resumed.stdout
    for job in jobs:
        record = json.loads((job / "run.json").read_text())
        assert record["status"] == "completed"
        assert not (job / "error.txt").exists()  # what failed before is in run.json's `previous`, not beside it
        # it started over, from nothing saved: its command is a fresh member's, not a resume's
        assert "ckpt_path" not in record["command"] and f"hydra.run.dir={job}" in record["command"], record


@pytest.mark.parametrize("second", [0.03, "once the line is printed"])
def test_a_second_ctrl_c_while_the_interrupted_group_saves_and_records_changes_nothing(tmp_path, second):
    """Two Ctrl-C a moment apart in a stacked group: the second comes while the first's step is saved (every
    member's last.ckpt and the group's state), while each member's run.json records the interrupt, or once the
    interrupt's line is printed, while the sweep's report is written. Once the step is done, the save, the records
    and the report finish undisturbed: one error line, status 130, every member interrupted with the command that
    resumes the sweep, its newest weights at the step of the group's state, and the report written."""
    sweep = tmp_path / "sweep"
    process = start(sweep)
    wait_for(sweep / "stacked_groups/jobs-0-1.ckpt", process)  # the first group's first saved state
    process.send_signal(signal.SIGINT)
    said = []
    if second == "once the line is printed":
        assert process.stderr is not None
        while not said or not said[-1].startswith("error:"):
            said.append(process.stderr.readline())
            assert said[-1], "the sweep ended without its line"
    else:
        time.sleep(second)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    err = "".join(said) + err
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    state = torch.load(sweep / "stacked_groups/jobs-0-1.ckpt", map_location="cpu", weights_only=True)
    for job in JOBS[:2]:
        record = json.loads((sweep / job / "run.json").read_text())
        assert record["status"] == "interrupted" and record["resume"] in line, record
        # the newest weights of each member are those of the group's state: a resumed group and src.eval agree
        saved = torch.load(newest_checkpoint(sweep / job), map_location="cpu", weights_only=True)
        assert saved["global_step"] == state["global_step"], err
    assert "0 of 4 runs completed" in (sweep / "report.md").read_text()
