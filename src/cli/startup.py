"""Ctrl-C while a command starts. Its imports (torch, Lightning, Hydra) take seconds, and a KeyboardInterrupt raised
in the middle of one surfaces as Python's traceback through library code, or as another error the import turns it
into (exit status 1). Nothing has been read or written yet, so the command says so in one line and exits with the
shell's status for SIGINT. Installed only when a command module runs as `python -m src.<command>` (a test or a
notebook importing the module keeps its own Ctrl-C); `run_hydra_command` puts Python's handler back before any work,
so that Lightning and the run's own interrupt handling see Ctrl-C as they expect."""

from __future__ import annotations

import os
import signal
import sys

EXIT_SIGINT = 130


def interrupted_while_starting(signum: int, frame: object) -> None:
    # os._exit, not sys.exit: a SystemExit raised in the middle of a library's import can be turned into another
    # error by its import machinery (numpy's lazy attributes recursed into a RecursionError), and nothing has been
    # opened or written that an orderly exit would close
    print("interrupted while the command was starting: nothing was read or written", file=sys.stderr, flush=True)
    os._exit(EXIT_SIGINT)


# Whether this process is a command's own (`python -m src.<command>`, a console script), not Python's running one.
_OWN_PROCESS = [False]


def quiet_until_started() -> None:
    _OWN_PROCESS[0] = True
    signal.signal(signal.SIGINT, interrupted_while_starting)


def in_a_commands_own_process() -> bool:
    """Whether the command runs as its own process, which quiet_until_started began: it may then say how Ctrl-C ends
    it until the process ends (src/cli/interrupts.py); a command run from Python leaves its caller's Ctrl-C alone."""
    return _OWN_PROCESS[0]


def started() -> None:
    """The command's work begins: Ctrl-C is Python's KeyboardInterrupt again (only if this module changed it)."""
    if signal.getsignal(signal.SIGINT) is interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def ctrl_c_ignored_to_the_end() -> None:
    """The command was interrupted and now records how it ended (run.json, the sweep's report): a second Ctrl-C here
    would cut that record short (run.json left `running`, a traceback), so in a command's own process further
    Ctrl-C are ignored until it exits. A command run from Python (a test, a notebook) keeps its Ctrl-C."""
    import threading

    if in_a_commands_own_process() and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
