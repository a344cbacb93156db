"""What the commands (src.run, src.eval, src.predict) share at their boundary with the user: every mistake a user
can make is answered with one line, `error: <what is wrong>: <the fix>`, and exit status 2, never a traceback.

That covers our own checks (ConfigError, DataError) and Hydra's: an unknown key, a value of the wrong type, an
unknown group option or an override Hydra cannot parse. Hydra's own messages for those are several lines and
sometimes lead astray (for `model.head=8` it suggests `+model.head=8`, which adds a key nothing reads), so Hydra is
asked to raise them (HYDRA_FULL_ERROR) and they are rewritten here.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException

from src.data import DataError
from src.model import ConfigError

# The Hydra configs, by absolute path: the commands then find them however they are started (`python -m`, the
# console scripts, or their entry functions called from Python, as the tests do). In the repository src/conf is a
# link to the top-level conf/; an installed package carries the files themselves (package data, pyproject.toml).
CONF_DIR = str(Path(__file__).resolve().parent / "conf")


def compose_run_config(*overrides: str):
    """The config `python -m src.run <overrides>` would get, composed in this process (no subprocess start, no
    run directory): for the tests and the benchmarks."""
    from hydra import compose, initialize_config_dir

    from src.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


# Errors that are the user's to fix: printed as one line, never as a traceback.
USER_ERRORS = (ConfigError, DataError)
EXIT_USER_ERROR = 2


def _print_error(message: str) -> None:
    from src.training.report import print_error  # the run's log gets it too, when there is one

    print_error(message)


@contextmanager
def user_errors_as_one_line():
    """Turn a ConfigError/DataError, or Hydra's refusal of an override, into `error: ...` on stderr and exit
    status 2."""
    try:
        yield
    except USER_ERRORS as error:
        _print_error(str(error))
        sys.exit(EXIT_USER_ERROR)
    except (ConfigCompositionException, OverrideParseException) as error:
        _print_error(hydra_error_line(error))
        sys.exit(EXIT_USER_ERROR)


def hydra_error_line(error: HydraException) -> str:
    """One line with the fix for Hydra's composition and parsing errors."""
    text, cause = str(error), str(error.__cause__ or "")
    if isinstance(error, MissingConfigException):
        option = re.search(r"Could not find '([^']+)/([^']+)'", text)
        choices = re.search(r"Available options in '[^']+':\n((?:\t.*\n?)+)", text)
        if option:
            group, name = option.groups()
            listed = ", ".join(c.strip() for c in choices.group(1).splitlines() if c.strip()) if choices else ""
            fix = f"choose one of {listed}" if listed else f"see python -m src.run --help for the {group} options"
            return f"{group}={name} is not an option of {group}: {fix}"
        return text.splitlines()[0]
    if isinstance(error, OverrideParseException):
        return (
            f"could not parse the command line ({text.splitlines()[0]}): write overrides as key=value, and quote a "
            """value with spaces or non-ASCII letters for Hydra inside the shell's quotes: 'text="ein Hund läuft"'"""
        )
    override = re.search(r"(?:Could not override|Error merging override) '?([^'\s]+)'?", text)
    key = override.group(1).split("=")[0] if override else "a setting"
    if "not in" in cause or "not in struct" in cause:
        return (
            f"{key} is not a setting: check its spelling (python -m src.run --cfg job prints every setting; "
            "add your own keys under meta.<name>)"
        )
    if "could not be converted" in cause or "Value" in cause:
        return f"{key}: {cause.splitlines()[0]}: give a value of the setting's type"
    first = (cause or text).splitlines()[0]
    return f"{key}: {first}"


def print_help_without_schemas(main: Callable[[], object]) -> None:
    """Hydra's --help, less the `schema/*` groups: they hold the structured configs the yaml files build on
    (src/schema.py) and are not choices a user makes, but Hydra lists every group it knows."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            main()
    finally:
        print("\n".join(line for line in buffer.getvalue().splitlines() if not line.startswith("schema/")))


def run_hydra_command(main: Callable[[], object], before: Callable[[list[str]], None] | None = None) -> None:
    """Run a @hydra.main function with every user mistake, Hydra's included, as one line and exit status 2.

    `before` checks the raw command line before Hydra does anything (Hydra writes into the run directory before
    the task function runs)."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra raises instead of printing its own several lines
    with user_errors_as_one_line():
        if before is not None:
            before(sys.argv[1:])
        if {"--help", "-h"} & set(sys.argv[1:]):
            print_help_without_schemas(main)
            return
        main()
