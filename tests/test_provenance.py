"""run.json: how a run was made and how it ended."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from src.provenance import (
    RunRecord,
    command_line,
    git_state,
    hydra_value,
    live_process,
    process_started,
    read_status,
    shell_override,
    started_by_ps,
)
from tests.conftest import wait_for_state


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


def test_a_run_record_names_its_process_which_is_not_taken_for_another_run_of_that_process(tmp_path):
    RunRecord(tmp_path).update()
    written = json.loads((tmp_path / "run.json").read_text())
    assert written["pid"] == os.getpid() and written["process_started"] == process_started(os.getpid())
    assert process_started(os.getpid()) == process_started(os.getpid())  # the same process: the same start
    if Path("/proc/self/stat").is_file():  # Linux: the boot's id and the start in clock ticks
        assert process_started(os.getpid()).partition(":")[2].isdigit()
    # this very process is not training that run now: an earlier run of it (a test's, a notebook's) has ended
    assert live_process(written) is None


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads a process's state through Linux's /proc")
def test_a_runs_process_is_known_by_its_id_and_start_while_it_runs_and_not_once_it_has_ended():
    """A real process (here `sleep`) recorded as a run's: found while it runs; not when the record is another
    machine's, another process's that had the same id (another start), or one made before ids were recorded; not
    once it has ended, before its parent reaps it (a zombie) nor after."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        record = {
            "status": "running",
            "host": socket.gethostname(),
            "pid": child.pid,
            "process_started": process_started(child.pid),
        }
        assert record["process_started"] is not None
        assert live_process(record) == child.pid
        # trained, and still analysed by its process (analyze_after_fit): still worked on
        assert live_process({**record, "status": "completed", "analysis": "running"}) == child.pid
        assert live_process({**record, "status": "completed", "analysis": "completed"}) is None
        assert live_process({**record, "status": "interrupted"}) is None
        assert live_process({**record, "process_started": "another boot:12"}) is None  # the id, given again
        assert live_process({**record, "host": "another-machine"}) is None
        assert live_process({"host": record["host"]}) is None
    finally:
        child.kill()
    wait_for_state(child.pid, "Z")  # ended, not reaped yet: /proc still lists it
    assert process_started(child.pid) is None and live_process(record) is None
    child.wait()
    assert process_started(child.pid) is None and live_process(record) is None


@pytest.mark.skipif(shutil.which("ps") is None or not Path("/proc/self/stat").is_file(), reason="needs ps and /proc")
def test_where_there_is_no_proc_ps_tells_a_process_by_its_start_and_a_zombie_from_a_live_one():
    """The way of machines without /proc (macOS), run here with this machine's own ps."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        started = started_by_ps(child.pid)
        assert started is not None and started == started_by_ps(child.pid) and started_by_ps(os.getpid()) is not None
        assert re.fullmatch(r"\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}", started), started  # C locale: one format
    finally:
        child.kill()
    wait_for_state(child.pid, "Z")
    assert started_by_ps(child.pid) is None  # a zombie
    child.wait()
    assert started_by_ps(child.pid) is None


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


# A command written out for a user with the interpreter spelt `python` (or `python3`), not module_command's
# python_command(): not preceded by a path (`.venv/bin/python -m` is a real interpreter's).
LITERAL_PYTHON = re.compile(r"(?<![\w./-])python3? -m\b")


def printed_literals(source: str) -> list[tuple[int, str]]:
    """The string literals of a module's source that can reach a user, with their line: all but the docstrings of
    the module, its classes and functions (comments are not in the syntax tree). An f-string's literal parts count
    one by one: `f"python -m {module}"` holds "python -m "."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_scan_finds_a_literal_command_and_passes_over_docstrings_and_comments():
    source = '''"""`python -m src.run`: a docstring names the command as the documentation does."""
def refuse(path):
    """`python -m src.report <dir>` in a docstring."""
    print(f"python -m src.report {path}")  # python -m src.report in a comment
    print(f"see python -m {path} --help, or {INTERPRETER} -m src.eval")
    print(".venv/bin/python -m src.run, as a path")
'''
    found = [(line, text) for line, text in printed_literals(source) if LITERAL_PYTHON.search(text)]
    assert found == [(4, "python -m src.report "), (5, "see python -m ")]


def test_no_printed_command_names_the_interpreter_python_literally():
    """Every command printed for a user to paste (a refusal, a warning, an interrupt's line, run.json, report.md,
    study.yaml, the attention page, a --help) starts with module_command's interpreter: a literal `python -m src.`
    would send a user of a fresh clone's unactivated .venv to the system's Python, without the project's packages.
    Docstrings and comments are not printed, and keep the documentation's `python -m src.run`."""
    from src.provenance import PROJECT_ROOT

    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{line}: {text!r}"
        for path in sorted((PROJECT_ROOT / "src").rglob("*.py"))
        for line, text in printed_literals(path.read_text(encoding="utf-8"))
        if LITERAL_PYTHON.search(text)
    ]
    assert found == [], "write these with src.provenance.module_command:\n" + "\n".join(found)


def test_printed_commands_name_the_interpreter_as_module_command_does(monkeypatch, capsys):
    """A refusal's command, a sweep's suggested command and the report's refusal all start with python_command()
    (here a fresh clone's unactivated .venv); a console script names itself (transformer-report)."""
    import sys

    from src import provenance
    from src.cli.command_line import as_command, typed_command
    from src.sweep.report import main as report_main

    monkeypatch.setattr(provenance, "python_command", lambda: ".venv/bin/python")
    assert as_command("src.run", "-m", "seed=range(3)") == ".venv/bin/python -m src.run -m 'seed=range(3)'"
    assert typed_command("src.eval") == ".venv/bin/python -m src.eval"
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/transformer-report"])
    assert typed_command("src.report") == "transformer-report"
    monkeypatch.setattr(sys, "argv", ["/project/src/report.py"])  # as `python -m src.report` starts it
    with pytest.raises(SystemExit) as exit_:
        report_main(["/no/such/sweep"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "error: /no/such/sweep does not exist: give the sweep directory `.venv/bin/python -m src.run -m ...` printed\n"
    )


def test_printed_commands_keep_the_options_that_chose_the_configs(tmp_path):
    """--config-dir and --config-name are not overrides: a resume or a job's own command rebuilt from the overrides
    alone would compose other configs. config_arguments reads them from the run's Hydra config (composed, or saved
    in .hydra/hydra.yaml and multirun.yaml), and every printed resume gives them first."""
    from omegaconf import OmegaConf

    from src.provenance import config_arguments, resume_in_place
    from src.sweep.resume import resume_arguments

    hydra = OmegaConf.create(
        {
            "runtime": {
                "config_sources": [
                    {"path": "hydra.conf", "schema": "pkg", "provider": "hydra"},
                    {"path": "/project/src/conf", "schema": "file", "provider": "main"},
                    {"path": "file:///home/me/my confs", "schema": "file", "provider": "command-line"},
                ]
            },
            "job": {"config_name": "mine"},
            "overrides": {"hydra": ["hydra/launcher=joblib"], "task": ["seed=0,1", "+experiment=wider"]},
            "sweep": {"dir": str(tmp_path)},
        }
    )
    assert config_arguments(hydra) == ["--config-dir", "/home/me/my confs", "--config-name", "mine"]
    plain = OmegaConf.create({"runtime": {"config_sources": []}, "job": {"config_name": "config"}})
    assert config_arguments(plain) == []

    words = shlex.split(resume_in_place(["seed=0", "ckpt_path=last"], tmp_path / "run", hydra))
    assert words[1:] == ["-m", "src.run", "--config-dir", "/home/me/my confs", "--config-name", "mine", "seed=0",
                         f"hydra.run.dir={tmp_path / 'run'}", "ckpt_path=last"]  # fmt: skip
    OmegaConf.save({"hydra": hydra}, tmp_path / "multirun.yaml")
    assert resume_arguments(tmp_path) == [
        "-m", "--config-dir", "/home/me/my confs", "--config-name", "mine", "hydra/launcher=joblib", "seed=0,1",
        "+experiment=wider", f"hydra.sweep.dir={tmp_path.resolve()}", "ckpt_path=last",
    ]  # fmt: skip
