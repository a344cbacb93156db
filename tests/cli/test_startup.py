"""Ctrl-C while a command is still importing (src/cli/startup.py): one line and exit status 130, nothing written,
no traceback; and a module imported (by a test, a notebook) leaves the importer's Ctrl-C alone."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", ["src.run", "src.eval", "src.report"])
def test_ctrl_c_during_the_imports_is_one_line_and_status_130(command, tmp_path):
    args = {"src.run": [f"hydra.run.dir={tmp_path / 'run'}"], "src.eval": ["ckpt=none"], "src.report": [str(tmp_path)]}
    process = subprocess.Popen(
        [sys.executable, "-m", command, *args[command]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    time.sleep(0.4)  # inside torch's and Lightning's imports, which take seconds
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines() == ["interrupted while the command was starting: nothing was read or written"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script", ["transformer-run", "transformer-report"])
def test_ctrl_c_during_a_console_scripts_imports_is_one_line_and_status_130(script, tmp_path):
    """The installed scripts import their command before calling it: src/cli/scripts.py installs the handler
    first (the scripts are `make setup`'s editable install, beside this Python)."""
    path = Path(sys.executable).parent / script
    if not path.exists():
        pytest.skip(f"{script} is not installed beside {sys.executable} (make setup installs it)")
    args = {"transformer-run": [f"hydra.run.dir={tmp_path / 'run'}"], "transformer-report": [str(tmp_path)]}
    process = subprocess.Popen(
        [str(path), *args[script]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(0.4)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines() == ["interrupted while the command was starting: nothing was read or written"]
    assert not (tmp_path / "run").exists()


def test_every_console_script_starts_through_the_quiet_start():
    """pyproject.toml's scripts each name a function of src/cli/scripts.py, which exists and installs the handler
    before importing its command."""
    import inspect
    import re

    import src.cli.scripts as scripts

    section = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    entries = dict(re.findall(r'^([\w-]+) = "([\w.:]+)"', section, flags=re.M))
    assert len(entries) == 5 and all(target.startswith("src.cli.scripts:") for target in entries.values()), entries
    for target in entries.values():
        assert "_start(" in inspect.getsource(getattr(scripts, target.split(":")[1]))


def test_importing_a_command_module_keeps_the_importers_ctrl_c():
    code = "import signal; import src.run; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    # Started with Ctrl-C at its default whatever this process has (an ignored SIGINT is inherited, and Python then
    # installs no handler of its own): the test is about the import, not about its parent.
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert done.stdout.strip() == "True", done.stderr
