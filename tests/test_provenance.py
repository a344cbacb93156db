"""run.json: how a run was made and how it ended."""

from __future__ import annotations

import json
import shlex

import pytest

from src.provenance import RunRecord, command_line, git_state, hydra_value, read_status, shell_override


def test_a_run_record_says_how_the_run_was_made_and_ended(tmp_path):
    record = RunRecord(tmp_path)
    record.update()
    written = json.loads((tmp_path / "run.json").read_text())
    assert written["status"] == "running" and written["ended"] is None
    for key in ("command", "cwd", "started", "host", "threads", "git", "versions"):
        assert written[key] is not None, key
    assert written["versions"]["torch"] and written["versions"]["python"]
    record.end("completed", metrics={"val/loss": 0.5})
    written = json.loads((tmp_path / "run.json").read_text())
    assert (written["status"], written["metrics"]) == ("completed", {"val/loss": 0.5}) and written["ended"]
    assert read_status(tmp_path) == "completed"


def test_a_resumed_run_keeps_the_earlier_sessions(tmp_path):
    RunRecord(tmp_path).end("interrupted", resume="python -m src.run ckpt_path=last")
    RunRecord(tmp_path).end("completed")
    written = json.loads((tmp_path / "run.json").read_text())
    assert written["status"] == "completed"
    assert [session["status"] for session in written["previous"]] == ["interrupted"]


def test_the_command_line_can_be_pasted_back():
    from src.provenance import python_command

    assert command_line(argv=["model.heads=8", 'text="ein Hund"']) == (
        f"""{python_command()} -m src.run model.heads=8 'text="ein Hund"'"""
    )


def test_git_state_outside_a_checkout_is_unknown(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    assert read_status(tmp_path) is None


def test_printed_commands_start_the_interpreter_that_ran(monkeypatch, tmp_path):
    """`python` only when the PATH finds this interpreter; else its path, relative where possible (a fresh clone's
    .venv is not activated, and `python` would be another one, without the project's packages)."""
    import shutil
    import sys

    from src import provenance

    monkeypatch.setattr(shutil, "which", lambda name: sys.executable)
    assert provenance.python_command() == "python"
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/python")
    monkeypatch.setattr(sys, "executable", str(tmp_path / ".venv" / "bin" / "python"))
    monkeypatch.chdir(tmp_path)
    assert provenance.python_command() == ".venv/bin/python"
    assert provenance.command_line(argv=["model.heads=8"]) == ".venv/bin/python -m src.run model.heads=8"
    # a command written with its arguments as they are: quoted already, or a placeholder to replace
    assert provenance.module_command("src.report", "'a b'", "<x>") == ".venv/bin/python -m src.report 'a b' <x>"


@pytest.mark.parametrize(
    "value",
    [
        "/runs/3_model.heads:8+seed:1",  # a sweep job's directory: plain, as it is
        "/runs/a b,c=d",  # a space, `,` and `=`: Hydra's grammar needs quotes
        "/runs/it's [x] {y} (z)",
        "/runs/${oc.env:HOME}/$HOME",  # taken literally, not interpolated
        "/runs/Straße",
    ],
)
def test_a_printed_override_reads_back_as_the_same_value_through_the_shell_and_hydra(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    (argument,) = shlex.split(shell_override("hydra.run.dir", value))  # what the shell hands over
    parsed = OverridesParser.create().parse_override(argument).value()
    assert OmegaConf.create({"dir": parsed}).dir == value  # what the config holds once resolved
    assert hydra_value(value) == value or hydra_value(value).startswith("'")
    if value == "/runs/3_model.heads:8+seed:1":
        assert shell_override("ckpt", value) == f"ckpt={value}"  # readable when nothing needs quoting
