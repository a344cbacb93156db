"""Ctrl-C while src.eval or src.predict works: one line on stderr, `interrupted by SIGINT ...: <what was and was not
written>; <how to run it again>`, and exit status 130 (the shell's for SIGINT), as src.run and src.analyze say
theirs; never Python's traceback, nor Lightning's "Detected KeyboardInterrupt, attempting graceful shutdown ..."
and its exit status 1, which read as a crash.

Ctrl-C reaches a command as Python's KeyboardInterrupt, except inside a Lightning Trainer's loop (src.eval's test or
validation), which catches it, stops, and raises SystemExit(1) in its place: both are the interrupt. What the line
says is asked of the command when the interrupt comes (`state`), so it tells what was written by then."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager, suppress
from typing import Callable, Iterator

EXIT_SIGINT = 130


def stopped_by_ctrl_c(error: BaseException) -> bool:
    """Ctrl-C: a KeyboardInterrupt, or the SystemExit a Lightning Trainer raises while it handles one."""
    if isinstance(error, KeyboardInterrupt):
        return True
    return isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt)


@contextmanager
def ctrl_c_as_one_line(state: Callable[[], str]) -> Iterator[None]:
    """Ctrl-C inside: `interrupted by SIGINT<state()>` on stderr and exit status 130. `state()` begins with what
    the command was doing or `:`, and says what was written, what was not and how to run it again."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as error:
        if not stopped_by_ctrl_c(error):
            raise
        print(f"interrupted by SIGINT{state()}", file=sys.stderr, flush=True)
        sys.exit(EXIT_SIGINT)


def said_until_the_process_ends(state: str) -> None:
    """The command's work is done, and what is left is the process's exit (torch's and Lightning's clean-up, a
    moment), where Ctrl-C would be Python's "Exception ignored in atexit callback" and its traceback. From here on,
    in a command's own process (src/cli/startup.py), Ctrl-C says `interrupted by SIGINT<state>` and ends the process
    with status 130; a command run from Python leaves its caller's Ctrl-C alone."""
    from src.cli.startup import in_a_commands_own_process

    if not in_a_commands_own_process():
        return

    def say_and_exit(signum: int, frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):  # os._exit flushes nothing: the output first, whole
            with suppress(Exception):
                stream.flush()
        print(f"interrupted by SIGINT{state}", file=sys.stderr, flush=True)
        os._exit(EXIT_SIGINT)  # not sys.exit: an exception raised in an atexit callback is only printed

    signal.signal(signal.SIGINT, say_and_exit)
