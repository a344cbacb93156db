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


def test_importing_a_command_module_keeps_the_importers_ctrl_c():
    code = "import signal; import src.run; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr
