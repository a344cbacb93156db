"""One sweep process per sweep directory. A grid sweep's resume (src/sweep/resume.py) decides what to run from what
the directory holds, so a second resume started while the first still trains (or while the sweep itself still
runs) would see the same interrupted and unstarted jobs and train each of them a second time, two processes writing
one job's checkpoints and metrics. The sweep's process therefore holds an exclusive lock on `.sweep.lock` in its
directory from its checks (src/cli/preflight.py) until the command ends, and a second sweep into that directory is
refused, naming the process that holds it: before any other check (check_not_in_use, which writes nothing), and
when the lock is taken once every check has passed (hold_sweep_lock).

`flock`, not a file whose presence is the lock: the kernel releases it when its process ends in any way (SIGKILL,
a lost machine's NFS lease), so there is never a stale lock to delete by hand. The file keeps who held it last."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import IO

from src.model import ConfigError
from src.provenance import command_line, how_to_stop, now

LOCK_FILE = ".sweep.lock"

_held: IO[str] | None = None  # this process's lock, kept open (so held) until release_sweep_lock
_made: Path | None = None  # the sweep directory hold_sweep_lock made (None: it was there already)


def hold_sweep_lock(sweep_dir: Path) -> None:
    """Take the sweep directory's lock for this process, until release_sweep_lock or the process ends; refused (one
    ConfigError) while another process holds it. Where the file system cannot lock (Lustre without flock, NFS
    mounted nolock) the sweep goes on unlocked, said in one warning line."""
    global _held, _made
    release_sweep_lock()
    made = None if sweep_dir.is_dir() else sweep_dir
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / LOCK_FILE
    while True:
        handle = open(path, "a+")  # noqa: SIM115 (kept open: the lock lasts as long as the file is open)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            record = handle.read()
            handle.close()
            raise in_use(sweep_dir, record) from None
        except OSError as error:  # no locks on this file system: nothing to wait for, nothing to hold
            handle.close()
            cannot_lock(sweep_dir, error)
            return
        # the file locked is still the directory's (a sweep refused at launch removes its lock file with the
        # directory it made: one that opened the file before then holds a lock nobody else can see)
        if path.exists() and os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
            break
        handle.close()
        sweep_dir.mkdir(parents=True, exist_ok=True)
    handle.seek(0)
    handle.truncate()
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": now(), "command": command_line()}
    handle.write(json.dumps(holder) + "\n")
    handle.flush()
    _held, _made = handle, made


def check_not_in_use(sweep_dir: Path) -> None:
    """Refused (one ConfigError) while another process holds the sweep directory's lock; writes nothing (the checks
    run before anything is written: a sweep that is refused later leaves the directory as it was)."""
    path = sweep_dir / LOCK_FILE
    try:
        handle = open(path)  # noqa: SIM115 (closed below, whatever happens)
    except OSError:  # no lock file: no sweep has held this directory (or it cannot be read, so not locked either)
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise in_use(sweep_dir, handle.read()) from None
        except OSError:  # no locks on this file system: hold_sweep_lock says so
            return


def cannot_lock(sweep_dir: Path, error: OSError) -> None:
    from src.training.report import print_warning

    print_warning(
        f"hydra.sweep.dir={sweep_dir} is on a file system that cannot lock files ({error.strerror or error}): "
        "nothing stops a second sweep or resume from running in it at the same time, so start one only once this "
        "one has ended"
    )


def in_use(sweep_dir: Path, record: str) -> ConfigError:
    return ConfigError(
        f"hydra.sweep.dir={sweep_dir} is in use by another sweep{holder_said(record)}, and two sweeps in one "
        f"directory would train the same jobs twice, over each other's files: wait until it ends (or stop it with "
        f"{how_to_stop_holder(record)}), then run this command again"
    )


def how_to_stop_holder(record: str) -> str:
    """How to stop the sweep holding the lock: Ctrl-C in its terminal, or the kill its process of this machine
    takes (provenance.how_to_stop: with a kill -CONT where it is stopped, as by Ctrl-Z, which Ctrl-C cannot reach)."""
    holder = lock_holder(record)
    if holder and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return f"Ctrl-C in its terminal, or {how_to_stop([holder['pid']])}"
    return "Ctrl-C"


def holder_said(text: str) -> str:
    """` (process 123 on host h, since <time>: <its command>)` from a lock file's record, or nothing."""
    holder = lock_holder(text)
    if holder is None or not {"pid", "host", "started", "command"} <= holder.keys():
        return ""
    return f" (process {holder['pid']} on {holder['host']}, since {holder['started']}: {holder['command']})"


def lock_holder(text: str) -> dict | None:
    """The record a lock's holder wrote in the lock file (hold_sweep_lock), or None where it is not one."""
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def release_sweep_lock() -> None:
    """Let go of this process's sweep lock, if it holds one (the command has ended: a later sweep in the same process,
    as the tests run them, takes it anew). A sweep directory this process made, in which nothing else was written
    (the launcher refused the jobs: a SLURM partition that does not exist), is removed with its lock file: a refused
    command leaves nothing behind."""
    global _held, _made
    if _held is None:
        return
    path = Path(_held.name)
    if _made is not None and [entry.name for entry in _made.iterdir()] == [LOCK_FILE]:
        path.unlink()  # while still held: no other process can hold this file meanwhile
        _made.rmdir()
    _held.close()  # closing the file releases the flock
    _held = _made = None
