"""Real signals on real runs: SIGTERM (what a scheduler sends) saves the step it stopped at, SIGKILL loses only
what came after the last checkpoint, and either way the resumed run ends with exactly the weights of a run that
was never interrupted. Ctrl-C in src.eval and src.predict is one line and exit status 130, with nothing half-written."""

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
import torch

from src.model import ConfigError
from src.sweep.resume import resume_command
from tests.conftest import PYTHON

from .conftest import ROOT, SMALL_SYNTHETIC, check, run_here

pytestmark = pytest.mark.slow

# Long enough for a signal to land mid-training: the tests signal within a second of the first step checkpoint (step
# 40), and the 260 steps after it take 2-3 s on one core (4 s where the other test worker shares it). Dropout is on, so
# the random state matters too.
LONG_STEPS = 300
LONG_RUN = [
    "task=reverse",
    *SMALL_SYNTHETIC,
    "model.d_model=16",
    "model.heads=2",
    "model.layers=1",
    "model.d_ff=32",
    "model.dropout=0.1",
    f"trainer.max_steps={LONG_STEPS}",
    "trainer.val_check_interval=150",
    "trainer.enable_progress_bar=false",
    "checkpoint.every_n_train_steps=40",
    "dashboard.attention_every_n_steps=150",
    "optimizer.warmup_steps=10",
    "batch_size=16",
    "torch_threads=1",
]


def long_run_with(*overrides: str) -> list[str]:
    """LONG_RUN with some values replaced (Hydra refuses the same key twice on one command line)."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [o for o in LONG_RUN if o.split("=", 1)[0] not in keys] + list(overrides)


def start(run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "src.run", *LONG_RUN, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path_glob: str, folder: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not list(folder.glob(path_glob)):
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        assert time.time() < deadline, f"no {path_glob} after {timeout} s"
        time.sleep(0.05)


def weights(run_dir: Path) -> dict:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == LONG_STEPS
    return checkpoint["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    check(run_here("src.run", *LONG_RUN, f"hydra.run.dir={run_dir}"))
    return weights(run_dir)


def resume_in_place(run_dir: Path):
    return check(run_here("src.run", *LONG_RUN, f"hydra.run.dir={run_dir}", "ckpt_path=last"))


def assert_same_weights(resumed: dict, reference: dict) -> None:
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), f"{name} differs after resuming"


def test_sigterm_saves_the_step_and_resumes_exactly(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for("checkpoints/step-*.ckpt", run_dir, process)
    time.sleep(random.uniform(0.0, 0.5))  # somewhere after the first step checkpoint
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    stopped_at = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert 0 < stopped_at < LONG_STEPS  # saved at the step it stopped, mid-training
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and f"step {stopped_at} saved" in error_lines[0]
    assert f"hydra.run.dir={run_dir} ckpt_path=last" in record["resume"] and record["resume"] in error_lines[0]

    resume_in_place(run_dir)
    assert_same_weights(weights(run_dir), uninterrupted)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["previous"][0]["status"] == "interrupted"


def test_sigkill_at_an_arbitrary_step_resumes_exactly(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for("checkpoints/step-*.ckpt", run_dir, process)
    time.sleep(random.uniform(0.0, 1.0))
    process.kill()  # SIGKILL: nothing runs after it
    process.communicate(timeout=60)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # the truth as far as anyone knows

    resume_in_place(run_dir)
    assert_same_weights(weights(run_dir), uninterrupted)


def test_a_diverging_run_fails_and_saves_no_nan_weights(tmp_path):
    run_dir = tmp_path / "run"
    huge_lr = [
        "optimizer.lr=1e6",
        "trainer.gradient_clip_val=null",
        "trainer.max_steps=40",
        "trainer.val_check_interval=10",
    ]
    result = run_here("src.run", *LONG_RUN, *huge_lr, f"hydra.run.dir={run_dir}")
    assert result.returncode == 1, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "training diverged at step" in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "diverged" and "diverged at step" in record["error"]
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values()), f"{path.name} holds non-finite weights"


def test_a_diverging_sweep_job_is_a_failed_job_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    jobs = long_run_with(
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        "trainer.gradient_clip_val=null",
        "optimizer.lr=1e-3,1e6",
    )
    result = run_here("src.run", "-m", *jobs, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 1, result.stderr
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/run.json"))
    assert statuses == ["completed", "diverged"]
    assert "1 sweep job(s) did not complete" in result.stderr and "Traceback" not in result.stderr


def written(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under `folder`, with the time it was last written and a digest of its bytes."""
    import hashlib

    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_an_interrupted_grid_sweep_resumes_as_a_whole_and_keeps_what_finished(tmp_path):
    """SIGINT during job 1 of `seed=0,1,2`: job 0 has completed, job 2 never started. The interrupt's line, job 1's
    run.json, the report and the same sweep run again into its directory (refused) each give one command, the
    sweep's own with hydra.sweep.dir=<the sweep> ckpt_path=last. Run, it keeps job 0 as it is (not one of its files
    written again), resumes job 1 in its directory from the step it saved, and runs job 2; the report counts all
    three."""
    sweep = tmp_path / "sweep"
    args = [*long_run_with("trainer.max_steps=200", "trainer.val_check_interval=100"), "seed=0,1,2"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "src.run", "-m", *args, f"hydra.sweep.dir={sweep}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for("1_*/checkpoints/step-40.ckpt", sweep, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    job = sweep / "1_seed:1"
    record = json.loads((job / "run.json").read_text())
    command = record["resume"]
    assert record["status"] == "interrupted" and command.endswith(f"hydra.sweep.dir={sweep.resolve()} ckpt_path=last")
    assert " -m src.run -m " in command and "seed=0,1,2" in command, command
    step = torch.load(job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert 40 <= step < 200 and f"(step {step} saved in {job / 'checkpoints' / 'last.ckpt'})" in line, line
    said = "resume the sweep (this job from the step saved; the finished jobs kept, the others run) with: "
    assert f"{said}{command}; this job alone resumes with: " in line, line
    report = (sweep / "report.md").read_text()
    assert "1 of 3 runs completed" in report and "1 of the sweep's 3 jobs never started" in report
    assert f"| 1_seed:1 | interrupted | SIGINT at step {step}; resume it: `{command}` |" in report
    (row,) = [line for line in report.splitlines() if "| not started |" in line]
    assert row.startswith("| 2_seed:2 |") and "hydra.run.dir=" in row  # the job alone, into the sweep

    refused = run_here("src.run", "-m", *args, f"hydra.sweep.dir={sweep}")  # the same sweep, without ckpt_path=last
    assert refused.returncode == 2, refused.stderr
    finish = f"to finish it, run it again with ckpt_path=last, {command} (it runs its 1 interrupted job in place and "
    assert f"{finish}the 1 job it never started, and keeps the rest)" in refused.stderr, refused.stderr

    finished = written(sweep / "0_seed:0")
    # while another process holds the sweep (a second resume, or the sweep itself still running), refused: both
    # would train job 1 and 2, over each other's files
    holder = subprocess.Popen(
        [sys.executable, "-c", "from pathlib import Path; from src.sweep.lock import *; "
         f"hold_sweep_lock(Path({str(sweep)!r})); print(1, flush=True); input()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "1"
    every_file = written(sweep)
    busy = run_here("src.run", *shlex.split(command)[3:])
    holder.communicate("\n", timeout=30)
    assert busy.returncode == 2 and f"is in use by another sweep (process {holder.pid} on " in busy.stderr, busy.stderr
    assert written(sweep) == every_file

    resumed = check(run_here("src.run", *shlex.split(command)[3:]))
    output = resumed.stdout + resumed.stderr
    assert "job 0 has finished: kept as it is, not trained again" in output
    assert "job 1 (1_seed:1) goes on from its checkpoints/last.ckpt" in output
    assert "warning:" not in output, output
    assert written(sweep / "0_seed:0") == finished  # not trained again, not even its .hydra/ written again
    record = json.loads((job / "run.json").read_text())
    assert record["status"] == "completed" and record["previous"][0]["status"] == "interrupted"
    history = json.loads((job / "metrics.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [100, 200]  # one curve, continued where it stopped
    assert sorted(d.name for d in sweep.iterdir() if (d / ".hydra").is_dir()) == ["0_seed:0", "1_seed:1", "2_seed:2"]
    assert json.loads((sweep / "2_seed:2" / "run.json").read_text())["status"] == "completed"
    assert "3 of 3 runs completed" in (sweep / "report.md").read_text()


def test_ctrl_c_while_the_data_are_built_is_an_interrupt_not_a_crash(tmp_path):
    """Before Lightning's loop (here: a large synthetic training set being generated) Ctrl-C is Python's
    KeyboardInterrupt, which no training callback sees: the run says it was interrupted, in one line, and records it
    so, not as a failure with a traceback."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "src.run", f"hydra.run.dir={run_dir}", "trainer.max_steps=2", "task.train_size=400000",
         "torch_threads=1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (run_dir / "run.json").is_file() and time.monotonic() < deadline:  # the run has begun building
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last == "error: interrupted by SIGINT (nothing saved); run it again in a new directory"
    assert "Traceback" not in err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"


def test_ctrl_c_once_training_has_ended_says_to_evaluate_not_to_resume(tmp_path):
    """Ctrl-C after the last step was saved (here: while the test split is scored, test_after_fit=true) left a run
    whose printed resume command was refused (nothing left to train): the run is recorded interrupted, with the
    command that evaluates its checkpoint, and no resume command."""
    run_dir = tmp_path / "run"
    settings = long_run_with("trainer.max_steps=4", "trainer.val_check_interval=4", "task.test_size=20000")
    process = subprocess.Popen(
        [sys.executable, "-m", "src.run", *settings, "test_after_fit=true", f"hydra.run.dir={run_dir}"],
        cwd=ROOT, env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.is_file() and time.monotonic() < deadline:  # the last step is saved: training has ended
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: interrupted by SIGINT (step 4 saved in ") and "Traceback" not in err, err
    evaluate = f"-m src.eval ckpt={run_dir}"  # the run: src.eval reads its best checkpoint, as the test split did
    assert "; training had ended (trained 4 steps, all that trainer.max_steps asks for) and the run's final " in line
    assert line.endswith(evaluate) and "are not recorded: evaluate it with " in line, line
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["resume"] is None and evaluate in record["error"]
    evaluated = run_here("src.eval", f"ckpt={run_dir}", "split=val")
    assert evaluated.returncode == 0, evaluated.stderr


def test_ctrl_c_once_a_sweep_jobs_training_has_ended_says_to_evaluate_it_and_to_resume_the_sweep(tmp_path):
    """As above, in job 0 of a grid sweep: the job's line gives the command that evaluates it and the sweep's own
    command, which runs the job never started and keeps this one (run.json keeps no resume: the job has nothing to
    resume); the same sweep run again into its directory says so, and does not count the job among those a resume
    runs."""
    sweep = tmp_path / "sweep"
    settings = long_run_with("trainer.max_steps=4", "trainer.val_check_interval=4", "task.test_size=20000")
    args = [*settings, "test_after_fit=true", "seed=0,1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "src.run", "-m", *args, f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    job = sweep / "0_seed:0"
    wait_for("0_*/checkpoints/last.ckpt", sweep, process)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    record = json.loads((job / "run.json").read_text())
    assert record["status"] == "interrupted" and record["resume"] is None  # the job has nothing to resume
    whole = resume_command(sweep)
    assert whole.endswith(f"hydra.sweep.dir={sweep.resolve()} ckpt_path=last")
    assert f"are not recorded: evaluate it with {PYTHON} -m src.eval ckpt={job}; " in line, line
    assert line.endswith(f"; the sweep's other jobs go on (this one is kept as it is) with: {whole}"), line
    refused = run_here("src.run", "-m", *args, f"hydra.sweep.dir={sweep}")  # the same sweep, without ckpt_path=last
    assert refused.returncode == 2, refused.stderr
    assert "interrupted job" not in refused.stderr, refused.stderr
    assert f"to finish it, run it again with ckpt_path=last, {whole} (it runs the 1 job it never started" in (
        refused.stderr
    )
    kept = "1 job (0_seed:0) was interrupted after its last step, which a resume keeps; its final metrics are not "
    assert f"{kept}recorded: evaluate it with {PYTHON} -m src.eval ckpt={job}" in refused.stderr, refused.stderr


def test_a_sweep_whose_process_died_is_not_resumed_while_its_local_job_still_trains(tmp_path):
    """hydra/launcher=submitit_local runs each job as a process of its own, which goes on when the sweep's process
    is killed outright: resuming then would train it a second time over its own files. Refused in one line naming
    the process and both ways out, nothing written; once the job has ended, the same check passes. (The same on a
    SLURM cluster: tests/e2e/test_slurm.py.)"""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the cluster extra is not installed")
    from src.sweep.slurm import check_no_job_still_running

    sweep = tmp_path / "sweep"
    longer = [o for o in LONG_RUN if not o.startswith("trainer.max_steps=")] + ["trainer.max_steps=1000000"]
    # (still training whenever the resume is tried, however fast the machine: the test stops the job itself)
    args = ["-m", *longer, "seed=0", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    command = [sys.executable, "-m", "src.run", *args, f"hydra.sweep.dir={sweep}"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    output = (tmp_path / "sweep.log").open("w")  # not a pipe: the job, which outlives the sweep, holds it open
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not list(sweep.glob("*/checkpoints/step-*.ckpt")):
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "sweep.log").read_text()
        time.sleep(0.1)
    process.kill()
    process.wait()
    output.close()
    (job,) = [path.name for path in (sweep / ".submitit").iterdir() if path.name.isdigit()]
    try:
        assert Path("/proc", job).is_dir()  # the job outlived the sweep's process
        before = sorted(str(path) for path in sweep.rglob("*") if "checkpoints" not in path.parts)
        refused = run_here("src.run", *args, f"hydra.sweep.dir={sweep}", "ckpt_path=last")
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert refused.returncode == 2 and len(errors) == 1, refused.stderr[-3000:]
        assert f"(processes {job})" in errors[0] and f"`kill {job}`" in errors[0], errors
        assert sorted(str(path) for path in sweep.rglob("*") if "checkpoints" not in path.parts) == before
    finally:
        # as the line says: submitit's process `job` passes SIGTERM on to the job's task, the process that trains
        os.kill(int(job), signal.SIGTERM)
    deadline = time.monotonic() + 60
    while True:
        try:
            check_no_job_still_running(sweep)  # nothing left running: the resume may go on
            break
        except ConfigError:
            assert time.monotonic() < deadline, "the job is still running 60 s after SIGTERM"
            time.sleep(0.1)
    (record,) = [json.loads(path.read_text()) for path in sweep.glob("*/run.json")]
    assert record["status"] == "interrupted", record  # its step saved: the resume goes on from it


# --- Ctrl-C in src.eval and src.predict: one line, exit status 130, nothing half-written -------------------------


def tiny_reverse_run(run_dir: Path, *settings: str) -> Path:
    tiny = [o for o in LONG_RUN if not o.startswith(("trainer.", "checkpoint.", "dashboard.", "task."))]
    schedule = ["trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.enable_progress_bar=false"]
    check(run_here("src.run", "task=reverse", *settings, *tiny, *schedule, f"hydra.run.dir={run_dir}"))
    return run_dir


@pytest.fixture(scope="module")
def big_test_split(tmp_path_factory) -> Path:
    """A tiny reverse run whose test splits are large: src.eval takes tens of seconds on them, time for a signal."""
    sizes = ["task.train_size=200", "task.val_size=32", "task.test_size=30000"]
    return tiny_reverse_run(tmp_path_factory.mktemp("big_test") / "run", *sizes)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    return tiny_reverse_run(tmp_path_factory.mktemp("small") / "run", *SMALL_SYNTHETIC)


def start_command(module: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def wait_for_line(stream, start: str, process: subprocess.Popen) -> None:
    """Read `stream` until a line that begins with `start` (what the command says when it gets there)."""
    for line in stream:
        if line.startswith(start):
            return
    pytest.fail(f"no line {start!r}: {process.communicate()}")


def interrupted_line(err: str, module: str, args: list[str]) -> str:
    """The one line that says the command was interrupted, its command to run again checked and cut off."""
    assert "Traceback" not in err and "Detected KeyboardInterrupt" not in err, err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and lines[0] == err.strip().splitlines()[-1], err
    said, _, again = lines[0].partition("; run the same command again: ")
    if again:
        assert again.endswith(f" -m {module} " + " ".join(shlex.quote(a) for a in args)), again
    return said


def test_ctrl_c_while_eval_evaluates_is_one_line_and_status_130(big_test_split):
    """Lightning's loop catches Ctrl-C and exits with status 1 after "Detected KeyboardInterrupt, attempting
    graceful shutdown ...": the command says it was interrupted instead, that src.eval wrote nothing, and how to
    run it again."""
    args = [f"ckpt={big_test_split}", "torch_threads=1"]
    process = start_command("src.eval", *args)
    wait_for_line(process.stderr, "using ", process)  # the checkpoint is read: the data and the test loop follow
    time.sleep(8.0)  # the test splits are built (a few seconds): inside Lightning's test loop
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    said = "interrupted by SIGINT: no metric was printed and nothing was written (src.eval writes no file)"
    assert interrupted_line(err, "src.eval", args) == said
    assert "test/loss" not in out


def test_ctrl_c_after_eval_printed_its_metrics_is_one_line_and_status_130(small_run):
    """Ctrl-C as the process ends (its metrics printed, torch and Lightning cleaning up) says the metrics are
    complete, instead of Python's "Exception ignored in atexit callback" and a traceback."""
    args = [f"ckpt={small_run}", "torch_threads=1"]
    process = start_command("src.eval", *args)
    wait_for_line(process.stdout, "  test_long/token_acc:", process)  # the last metric
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert interrupted_line(err, "src.eval", args) in (
        "interrupted by SIGINT as the command ended: the metrics above are complete (src.eval writes no file)",
        # the signal may land between the last line and the command's note that every metric is out
        "interrupted by SIGINT while the metrics were printed: those above may not be all of them (src.eval writes "
        "no file)",
    )


@pytest.mark.parametrize("mode", ["input", "text"])
def test_ctrl_c_while_predict_decodes_is_one_line_and_writes_nothing(small_run, tmp_path, mode):
    """src.predict stopped while it decodes a large file (or many samples of one text) says what was not written
    and the command that runs it again; no output file, and no partial one beside it."""
    output = tmp_path / "big.out"
    if mode == "input":
        digits = random.Random(0)
        source = tmp_path / "big.txt"
        source.write_text("".join(f"{digits.randrange(10**7, 10**9)}\n" for _ in range(200_000)))
        given = [f"input={source}", f"output={output}"]
    else:
        given = ["text=12345678", "decode.strategy=sample", "num_samples=200000"]
    args = [f"ckpt={small_run}", *given, "torch_threads=1"]
    process = start_command("src.predict", *args)
    wait_for_line(process.stderr, "using ", process)  # the checkpoint is read: reading the lines, decoding follow
    time.sleep(4.0)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    said = f"{output} was not written" if mode == "input" else "nothing was printed or written"
    assert interrupted_line(err, "src.predict", args) == f"interrupted by SIGINT: {said}"
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == (["big.txt"] if mode == "input" else [])


@pytest.mark.parametrize("gap", [0.0, 0.02, 0.05])
def test_a_second_ctrl_c_while_the_interrupted_run_saves_and_records_changes_nothing(tmp_path, gap):
    """Two Ctrl-C a moment apart: the second came while the first's checkpoint was saved or run.json written, and
    gave tracebacks with run.json left `running`. Once the step is done, the save and the record finish undisturbed:
    one error line, status 130, run.json interrupted with its resume command."""
    run_dir = tmp_path / "run"
    process = start(run_dir)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "step-40.ckpt").is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    time.sleep(gap)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["resume"].endswith("ckpt_path=last")
