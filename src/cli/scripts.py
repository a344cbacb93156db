"""The console scripts (pyproject.toml's [project.scripts]: transformer-run, -eval, -predict, -analyze, -report).

`python -m src.run` installs the quiet Ctrl-C of start-up (startup.py) in the first lines of its module, before its
imports. A console script imports its module before it calls anything in it, so it starts here instead: this module
imports nothing heavy, installs the handler, and only then imports the command."""

from __future__ import annotations

import importlib

from src.cli.startup import quiet_until_started


def _start(module: str, function: str = "cli") -> None:
    quiet_until_started()  # the command's run_hydra_command (or src.report's main) hands Ctrl-C back to Python
    getattr(importlib.import_module(module), function)()


def run() -> None:
    _start("src.run")


def evaluate() -> None:
    _start("src.eval")


def predict() -> None:
    _start("src.predict")


def analyze() -> None:
    _start("src.analyze")


def report() -> None:
    _start("src.report", "main")
