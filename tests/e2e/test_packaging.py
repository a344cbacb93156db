"""`pip install .` as a user does it: a wheel built from the repository, installed into a fresh virtual environment,
runs from another directory through its console scripts, with the configs and experiments it carries."""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow


def run(*command: str | Path, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert result.returncode == 0, (
        f"{command}: exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
    return result


def test_a_built_wheel_runs_outside_the_repository(tmp_path):
    # Built from a copy of the project's files: a build writes build/ and *.egg-info/ into the tree it builds.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("src", "conf", "experiments"):  # links kept as links: src/conf -> conf, conf/experiment -> ...
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    run(
        sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, cwd=source
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "src/conf/config.yaml" in names and "src/conf/experiment/heads.yaml" in names

    # A fresh environment; its dependencies are borrowed from this one (one line in a .pth file) rather than
    # downloaded, and this project is not importable there until the wheel is installed.
    venv = tmp_path / "venv"
    run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    venv_site = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    )
    (venv_site / "borrowed_dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    run(python, "-m", "pip", "install", "--no-deps", "-q", wheel, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(python, "-c", "import src; print(src.__file__)", cwd=elsewhere).stdout
    assert str(venv_site) in where  # the installed copy, not the repository
    scripts = python.parent
    config = run(scripts / "transformer-run", "--cfg", "job", "experiment=depth", cwd=elsewhere).stdout
    assert "norm_position: pre" in config  # an experiment shipped with the package
    tiny = ["trainer.max_steps=2", "trainer.val_check_interval=2", "task.train_size=16", "task.val_size=4"]
    tiny += ["task.test_size=4", "batch_size=4", "model.d_model=16", "model.d_ff=32", "logger=none"]
    run(scripts / "transformer-run", *tiny, cwd=elsewhere)
    (checkpoint,) = elsewhere.glob("outputs/*/*/checkpoints/last.ckpt")
    # The commands that read the run, each installed script as its own __main__, in one Python (as the --help pages
    # below): three processes would import torch and Lightning three times over
    analysis = ["single_heads=false", "keep_one=false", "prune_step=1.0"]
    commands = [
        [scripts / "transformer-eval", f"ckpt={checkpoint}"],
        [scripts / "transformer-predict", f"ckpt={checkpoint}", "text=1234"],
        [scripts / "transformer-analyze", f"ckpt={checkpoint.parents[1]}", *analysis],
    ]
    said = run(python, "-c", EACH_COMMAND, *(json.dumps([str(a) for a in c]) for c in commands), cwd=elsewhere).stdout
    assert said.count(f"{COMMAND_END} 0") == len(commands), said[-3000:]
    assert f"checkpoint: {checkpoint}" in said.splitlines(), said[-3000:]  # src.eval read and printed the run
    assert (checkpoint.parents[1] / "analysis" / "report.md").is_file()

    # Every console script pyproject.toml lists is installed, and its --help names it as the user typed it.
    section = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    listed = re.findall(r"^([\w-]+) = ", section, flags=re.M)  # (tomllib is Python 3.11's; 3.10 is supported)
    assert sorted(listed) == [f"transformer-{name}" for name in ("analyze", "eval", "predict", "report", "run")]
    # Each installed script's --help, run as the shell runs it (its own file as __main__, its name as argv[0]), all
    # in one Python: five processes would import torch and Lightning five times over for the same check
    said = run(python, "-c", HELP_OF_EACH, *(scripts / name for name in listed), cwd=elsewhere).stdout
    helped = dict(zip(listed, (page.lstrip("\n") for page in said.split(HELP_END))))
    for name in listed:
        if name == "transformer-report":  # argparse's help (src/report.py)
            assert helped[name].startswith("usage: transformer-report ") and "sweep_dir" in helped[name]
            continue
        assert helped[name].startswith(f"{name}: ") and f"Usage: {name} " in helped[name], helped[name]
        assert "python -m" not in helped[name]


COMMAND_END = "<<exit status>>"
# Runs each command given (a JSON list: an installed console script and its arguments) as its own __main__, printing
# COMMAND_END and its exit status after each.
EACH_COMMAND = f"""
import contextlib, json, runpy, sys
for command in sys.argv[1:]:
    sys.argv = json.loads(command)
    status = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    print({COMMAND_END!r}, status, flush=True)
"""

HELP_END = "<<end of help>>"
# Runs each console script given (a path) with --help as its own __main__, printing HELP_END after each page.
HELP_OF_EACH = f"""
import contextlib, runpy, sys
for script in sys.argv[1:]:
    sys.argv = [script, "--help"]
    with contextlib.suppress(SystemExit):
        runpy.run_path(script, run_name="__main__")
    print({HELP_END!r}, flush=True)
"""


def test_the_torch_range_starts_where_the_model_can_run_and_admits_the_pinned_build():
    """pyproject's torch range starts at 2.5, the oldest release with what the model calls (enable_gqa in
    F.scaled_dot_product_attention, a custom op's register_vmap); constraints.txt's pin lies inside it."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    (line,) = re.findall(r'^\s*"(torch[<>=!~].*?)",', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    allowed = Requirement(line).specifier
    (pin,) = re.findall(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), flags=re.M)
    assert Version(pin) in allowed
    assert Version("2.5.0") in allowed and Version("2.4.1") not in allowed
