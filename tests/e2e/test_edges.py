"""The edges between commands: a command that would redo finished work or write over earlier results refuses
before it writes; a sweep whose every job fails still ends with its report; printed follow-up commands work for
any directory name; a run that stops early says why."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from src.provenance import hydra_value, python_command

from .conftest import ROOT, SMALL_SYNTHETIC, TINY, check, run_here

pytestmark = pytest.mark.slow

# The example: four steps, one validation at the end.
FOUR_STEPS = [*TINY, *SMALL_SYNTHETIC, "trainer.max_steps=4", "trainer.val_check_interval=4"]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    check(run_here("src.run", *FOUR_STEPS, f"hydra.run.dir={run_dir}"))
    return run_dir


def test_resuming_a_run_that_has_nothing_left_to_train_is_refused_before_it_writes(finished_run, tmp_path):
    before = snapshot(finished_run)
    result = run_here("src.run", *FOUR_STEPS, f"hydra.run.dir={finished_run}", "ckpt_path=last")
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result)
    assert "trainer.max_steps=4" in line and "would train nothing" in line and "raise trainer.max_steps" in line
    assert "Traceback" not in result.stderr
    assert snapshot(finished_run) == before  # metrics.json and run.json keep their numbers

    # Other members: the same checkpoint resumed into a new directory, by file or by run directory, and a time
    # budget already spent.
    elsewhere = tmp_path / "elsewhere"
    for ckpt in (finished_run / "checkpoints" / "last.ckpt", finished_run):
        result = run_here("src.run", *FOUR_STEPS, f"hydra.run.dir={elsewhere}", f"ckpt_path={ckpt}")
        assert result.returncode == 2 and len(error_lines(result)) == 1 and "would train nothing" in result.stderr
        assert not elsewhere.exists()
    assert snapshot(finished_run) == before


def test_a_sweep_resuming_a_finished_checkpoint_is_refused_before_any_job(finished_run, tmp_path):
    """Every job of a grid sweep is checked before the first one starts: one that would train nothing refuses the
    sweep, with its number and values, and no sweep directory is written."""
    sweep = tmp_path / "sweep"
    tiny = [o for o in FOUR_STEPS if not o.startswith("model.heads=")]
    ckpt = finished_run / "checkpoints" / "last.ckpt"
    result = run_here("src.run", "-m", *tiny, "seed=0,1", f"ckpt_path={ckpt}", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result)
    assert line.startswith("error: job 0 of the sweep (seed=0) cannot run, so no job was started: ckpt_path=")
    assert "would train nothing" in line and "raise trainer.max_steps" in line
    assert not sweep.exists()


def test_resuming_another_runs_checkpoint_into_a_run_directory_is_refused(finished_run, tmp_path):
    other = tmp_path / "other"
    check(run_here("src.run", *FOUR_STEPS, "seed=1", f"hydra.run.dir={other}"))
    before = snapshot(finished_run)
    result = run_here(
        "src.run",
        *FOUR_STEPS,
        "trainer.max_steps=8",
        "seed=1",
        f"hydra.run.dir={finished_run}",
        f"ckpt_path={other / 'checkpoints' / 'last.ckpt'}",
    )
    assert result.returncode == 2 and len(error_lines(result)) == 1
    assert "checkpoint of another run" in result.stderr
    assert snapshot(finished_run) == before


def test_a_second_sweep_into_the_same_directory_is_refused_and_the_first_is_unchanged(tmp_path):
    """The refusal says what the directory holds: a finished sweep (its report, and how to start another), or an
    unfinished one with the one command that finishes it, its own with ckpt_path=last (which resumes the
    interrupted jobs in place and runs those it never started), and the jobs that failed, which that keeps as they
    ended; never a resume for jobs that completed."""
    sweep = tmp_path / "sweep"
    tiny = [o for o in FOUR_STEPS if not o.startswith("model.heads=")]
    check(run_here("src.run", "-m", *tiny, "model.heads=1,2,4", f"hydra.sweep.dir={sweep}"))
    before = snapshot(sweep)
    result = run_here("src.run", "-m", *tiny, "model.heads=1,2,4", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result)
    assert line == (
        f"error: hydra.sweep.dir={sweep} holds a finished sweep (3 jobs, all completed), which this one would "
        f"overwrite: it is done, its report is {sweep / 'report.md'} ({python_command()} -m src.report {sweep} "
        "writes it again); for another sweep, choose another hydra.sweep.dir, or leave it out for a new one"
    )
    assert snapshot(sweep) == before  # one event file per job, the first sweep's checkpoints and metrics

    # job 0 interrupted at step 2 (as run.json says it after Ctrl-C), job 1 failed, job 2 never started
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
    record = json.loads((jobs[0] / "run.json").read_text())
    resume = f"python -m src.run model.heads=1 hydra.run.dir={jobs[0]} ckpt_path=last"
    checkpoint = str(jobs[0] / "checkpoints" / "last.ckpt")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    torch.save({**saved, "global_step": 2}, checkpoint)  # steps left to train: a resume goes on with it
    (jobs[0] / "run.json").write_text(json.dumps({**record, "status": "interrupted", "checkpoint": checkpoint,
                                                  "resume": resume}))  # fmt: skip
    (jobs[1] / "run.json").write_text(json.dumps({**record, "status": "failed", "error": "a bad batch"}))
    shutil.rmtree(jobs[2])
    result = run_here("src.run", "-m", *tiny, "model.heads=1,2,4", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result)
    head, failed = line.split(", and keeps the rest); ")
    python = python_command()
    resume = f"{python} -m src.run -m {' '.join(tiny)} model.heads=1,2,4 hydra.sweep.dir={sweep} ckpt_path=last"
    assert head == (
        f"error: hydra.sweep.dir={sweep} already holds a sweep (2 job directories), which this one would overwrite: "
        f"choose another hydra.sweep.dir, or leave it out for a new one; to finish it, run it again with "
        f"ckpt_path=last, {resume} (it runs its 1 interrupted job in place and the 1 job it never started"
    )
    assert failed == (
        f"1 job failed or diverged ({jobs[1].name} (failed)), which a resume keeps as they ended "
        f"({python_command()} -m src.report {sweep} says why): to run one again, delete its directory and resume the "
        "sweep (then)"
    )
    run_here("src.report", str(sweep))  # its report gives the command that runs the job it never started alone
    (row,) = [line for line in (sweep / "report.md").read_text().splitlines() if "| not started |" in line]
    never = row.split("`")[1]
    assert never.startswith(f"{python_command()} -m src.run ") and never.endswith(
        f" model.heads=4 hydra.run.dir={jobs[2]}"
    )
    check(run_here("src.run", *shlex.split(never)[3:]))  # the command runs the job into the sweep
    assert json.loads((jobs[2] / "run.json").read_text())["status"] == "completed"


def test_a_search_whose_every_trial_fails_still_ends_with_its_report(tmp_path):
    """Optuna raises "No trials are completed yet" after the last trial when none completed."""
    sweep = tmp_path / "search"
    result = run_here(
        "src.run",
        "-m",
        "hparams_search=lr_warmup_dropout_size",
        "hydra.sweeper.n_trials=2",
        "max_loss=0.5",
        "trainer.max_steps=4",
        *SMALL_SYNTHETIC,
        "torch_threads=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "No trials are completed" not in result.stderr
    assert error_lines(result)[-1].startswith("error: none of the 2 sweep jobs completed")
    report = (sweep / "report.md").read_text()
    assert "0 of 2 runs completed" in report and "No run completed" in report
    assert report.count("| diverged |") == 2 and report.count("above max_loss=0.5") == 2
    # The same search into its directory: its study was in memory, so no command can go on with it (a grid sweep's
    # resume with ckpt_path=last would be refused as an Optuna search).
    before = snapshot(sweep)
    again = run_here(
        "src.run", "-m", "hparams_search=lr_warmup_dropout_size", "hydra.sweeper.n_trials=2", "max_loss=0.5",
        "trainer.max_steps=4", *SMALL_SYNTHETIC, "torch_threads=1", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert again.returncode == 2, again.stderr[-2000:]
    (line,) = error_lines(again)
    assert line.endswith("; it is an Optuna search whose study was kept in memory, so it cannot go on"), line
    assert "ckpt_path=last" not in line
    assert snapshot(sweep) == before


def test_early_stopping_says_why_the_run_stopped(tmp_path):
    run_dir = tmp_path / "run"
    result = check(
        run_here(
            "src.run",
            *TINY,
            *SMALL_SYNTHETIC,
            "trainer.max_steps=200",
            "trainer.val_check_interval=2",
            "optimizer.lr=1e-6",  # nothing improves: patience 1 ends it at the second validation
            "+callbacks.EarlyStopping.patience=1",
            f"hydra.run.dir={run_dir}",
        )
    )
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("stopped early")]
    record = json.loads((run_dir / "run.json").read_text())
    stopped = record["stopped"]
    assert record["status"] == "completed" and stopped["by"] == "early_stopping"
    assert stopped["metric"] == "val/exact_match" and stopped["step"] < 200 and stopped["best_step"] == 2
    assert f"at step {stopped['step']} of 200" in line and "val/exact_match" in line and "at step 2" in line
    assert line in (run_dir / "run.log").read_text()


def printed(result: subprocess.CompletedProcess, label: str) -> list[str]:
    """The arguments of the command a run printed after `label:`, as a shell would split them."""
    (line,) = [line for line in result.stdout.splitlines() if line.startswith(f"{label}:")]
    return shlex.split(line.split(":", 1)[1])


def serve(args: list[str]) -> tuple[subprocess.Popen, str]:
    """Start TensorBoard as printed (on a free port); its address once it listens."""
    process = subprocess.Popen([*args, "--port", "0"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    assert process.stderr is not None
    while time.time() < deadline:
        line = process.stderr.readline()
        found = re.search(r"(http://localhost:\d+)/", line)
        if found:
            return process, found.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError("TensorBoard did not start")


def read_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("name", ["3_model.heads:2+seed:0", "a run, with: odd name's $HOME", "a=b #c [d] {e} :cat:"])
def test_the_printed_commands_work_for_any_directory_name(tmp_path, name):
    """A sweep job's directory holds `:` (TensorBoard's --logdir_spec splits at it), a user's may hold spaces,
    commas, quotes or `$`: the printed TensorBoard command shows the run's scalars, and the printed evaluate
    command evaluates its checkpoint."""
    run_dir = tmp_path / name
    result = check(run_here("src.run", *FOUR_STEPS, f"hydra.run.dir={hydra_value(run_dir)}"))
    assert (run_dir / "run.json").is_file()

    tensorboard = printed(result, "TensorBoard")
    assert tensorboard[1:3] == ["-m", "tensorboard.main"]
    process, address = serve([sys.executable, *tensorboard[1:]])
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # TensorBoard reads the event files in the background
            tags = read_json(f"{address}/data/plugin/scalars/tags")
            if any("train/loss" in run_tags for run_tags in tags.values()):  # type: ignore[union-attr]
                break
            time.sleep(1)
        assert any("train/loss" in run_tags for run_tags in tags.values()), tags  # type: ignore[union-attr]
    finally:
        process.kill()
        process.wait()

    evaluate = printed(result, "evaluate")
    assert evaluate[1:3] == ["-m", "src.eval"]
    evaluated = check(run_here("src.eval", *evaluate[3:], "torch_threads=1"))
    assert "val/exact_match" in evaluated.stdout or "test/exact_match" in evaluated.stdout


def test_a_run_finished_by_its_epochs_or_resumed_from_an_older_checkpoint_is_not_redone(tmp_path):
    """max_epochs: the checkpoint of the last validation has its last epoch started, not yet counted; an older
    checkpoint of a run resumed in its own directory would redo the later steps over their results."""
    epochs = tmp_path / "epochs"
    by_epochs = [*FOUR_STEPS, "trainer.max_steps=-1", "trainer.max_epochs=1"]
    check(run_here("src.run", *by_epochs, f"hydra.run.dir={epochs}"))
    before = snapshot(epochs)
    result = run_here("src.run", *by_epochs, f"hydra.run.dir={epochs}", "ckpt_path=last")
    assert result.returncode == 2 and "trainer.max_epochs=1" in error_lines(result)[0]
    assert snapshot(epochs) == before

    steps = tmp_path / "steps"
    every_two = [*FOUR_STEPS, "checkpoint.every_n_train_steps=2"]
    check(run_here("src.run", *every_two, f"hydra.run.dir={steps}"))
    before = snapshot(steps)
    older = steps / "checkpoints" / "step-2.ckpt"
    result = run_here("src.run", *every_two, "trainer.max_steps=8", f"hydra.run.dir={steps}", f"ckpt_path={older}")
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result)
    assert "is at step 2" in line and "trained to step 4" in line and "ckpt_path=last" in line
    assert snapshot(steps) == before


def text_bad_past_the_checked_part(path: Path) -> Path:
    """A text file whose flaw (a byte that is not UTF-8) lies past the part of it src.run checks before the run
    starts (src/data/files.py CHECKED_BYTES): found only when the run reads the whole file."""
    from src.data.files import CHECKED_BYTES

    line = b"To be, or not to be, that is the question.\n"
    path.write_bytes(line * (CHECKED_BYTES // len(line) + 2) + b"na\xefve\n")
    return path


def test_a_refused_run_leaves_no_directory_and_one_that_failed_reading_its_data_names_the_way_out(tmp_path):
    run_dir = tmp_path / "run"
    result = run_here("src.run", *FOUR_STEPS, "model.heads=3", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2 and "does not divide" in error_lines(result)[0]
    assert not run_dir.exists()
    # Bad data found before the run starts: no directory either (the example)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = run_here("src.run", *TINY, "task=char_lm", f"task.path={empty}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2 and "file is empty" in error_lines(result)[0]
    assert not run_dir.exists()
    # Bad data found only while the run reads it: the run's directory says failed, with the line at fault.
    broken = tmp_path / "broken"
    text = text_bad_past_the_checked_part(tmp_path / "big.txt")
    result = run_here("src.run", *TINY, "task=char_lm", f"task.path={text}", f"hydra.run.dir={broken}")
    record = json.loads((broken / "run.json").read_text())
    assert result.returncode == 2 and record["status"] == "failed" and "not valid UTF-8" in record["error"]
    again = run_here("src.run", *FOUR_STEPS, f"hydra.run.dir={broken}")
    (line,) = error_lines(again)
    assert "before saving a checkpoint" in line and "nothing to resume" in line and "choose another directory" in line


def test_a_sweep_job_resumed_with_another_setting_is_told_it_leaves_its_row(tmp_path):
    sweep = tmp_path / "sweep"
    tiny = [o for o in FOUR_STEPS if not o.startswith("model.heads=")]
    check(run_here("src.run", "-m", *tiny, "model.heads=1,2", f"hydra.sweep.dir={sweep}"))
    job = next(sweep.glob("1_*"))
    result = check(
        run_here("src.run", *tiny, "model.heads=2", "trainer.max_steps=6", f"hydra.run.dir={job}", "ckpt_path=last")
    )
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("warning:") and "sweep" in line]
    assert "trainer.max_steps=6" in line and "a configuration of its own" in line


def test_a_sweep_composed_with_a_config_dir_of_its_own_prints_commands_that_keep_it(tmp_path):
    """A user's own config group added with --config-dir (experiment/mine.yaml beside the project's): the sweep's
    jobs record their own command, and the sweep's resume is built from multirun.yaml, both with --config-dir, so
    each composes the user's config again (without it, `experiment=mine` is a config Hydra cannot find)."""
    from src.sweep.resume import resume_arguments

    configs = tmp_path / "my configs"
    (configs / "experiment").mkdir(parents=True)
    (configs / "experiment" / "mine.yaml").write_text("# @package _global_\nmodel:\n  norm_position: pre\n")
    sweep = tmp_path / "sweep"
    check(run_here("src.run", "--config-dir", str(configs), "-m", *FOUR_STEPS, "experiment=mine", "seed=0,1",
                   f"hydra.sweep.dir={sweep}"))  # fmt: skip
    job = json.loads((sweep / "0_seed:0" / "run.json").read_text())
    assert shlex.split(job["command"])[3:5] == ["--config-dir", str(configs)], job["command"]
    assert "norm_position: pre" in (sweep / "0_seed:0" / ".hydra" / "config.yaml").read_text()
    arguments = resume_arguments(sweep)
    assert arguments[:3] == ["-m", "--config-dir", str(configs)] and arguments[-1] == "ckpt_path=last", arguments
    # the printed resume runs as it reads: the sweep has finished, so it keeps both jobs
    resumed = check(run_here("src.run", *arguments))
    assert "jobs 0, 1 have finished: kept as they are" in resumed.stdout + resumed.stderr
