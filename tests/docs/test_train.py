"""Every documented `python -m src.run ...` command (that needs neither a GPU nor a cluster) trains, at a test's
size, exactly as written otherwise (see commands.py)."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.e2e.conftest import check

from .commands import of_kind, unique
from .conftest import copy_run, run_here, sized, write_data_files

pytestmark = pytest.mark.slow

TRAIN = unique(of_kind("train"))
SINGLE = [c for c in TRAIN if "-m" not in c.args]  # run here; the sweeps run in test_train_sweeps.py


def test_the_pages_have_training_commands():
    assert len(TRAIN) >= 15, [c.line for c in TRAIN]


@pytest.mark.parametrize("command", SINGLE, ids=[c.id for c in SINGLE])
def test_a_documented_training_command_runs(command, tmp_path, home, finished_run):
    run_documented_training(command, tmp_path, home, finished_run)


def run_documented_training(command, tmp_path, home, finished_run) -> None:
    """The command as written, at a test's size (see commands.py), and what it says it made."""
    write_data_files(tmp_path)
    line = command.line
    resumes = "ckpt_path=" in line
    if "outputs/<date>/<time>" in line:
        line = line.replace("outputs/<date>/<time>", str(copy_run(finished_run, tmp_path)))
    if "<the same overrides>" in line:
        overrides = (finished_run / ".hydra" / "overrides.yaml").read_text()
        same = [o.removeprefix("- ").strip() for o in overrides.splitlines() if o.startswith("- ")]
        same = [o for o in same if not o.startswith(("hydra.", "trainer.max_steps="))]
        line = line.replace("<the same overrides>", " ".join(shlex.quote(o) for o in same))
    assert "<" not in line.replace("<date>", "").replace("<time>", ""), f"a placeholder the test cannot fill: {line}"
    args = shlex.split(line)[3:]
    sweep = "-m" in args
    args = [a for a in args if a != "-m"]
    args = sized(command, args, resumes)
    if sweep:
        args = ["-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    elif not any(a.startswith("hydra.run.dir=") for a in args) and "--cfg" not in args:
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    done = check(run_here(["-m", "src.run", *args], tmp_path, home))
    if "--cfg" in args:
        assert "model:" in done.stdout
        return
    if sweep:
        assert (tmp_path / "sweep" / "report.md").is_file(), done.stdout[-2000:]
        return
    run_dir = next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir="))
    record = json.loads((tmp_path / run_dir / "run.json").read_text())
    assert record["status"] == "completed", record
