"""How a run was made and how it ended: `run.json` in every run directory.

Written when the run starts (status "running") and again when it ends, whatever the ending:

    completed     training reached its end; final metrics recorded
    failed        a bad setting, bad data or a crash; `error` holds the one-line reason
    diverged      the training loss became non-finite (or passed trainer.max_loss); no such weights were saved
    interrupted   Ctrl-C or SIGTERM; a checkpoint of the last finished step was saved; `resume` is the command

A process killed outright (SIGKILL, power loss) leaves "running" behind, which is then the truth as far as anyone
can know. A resumed run writes into the same directory and keeps the earlier sessions under `previous`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from src.cli.free_text import hydra_literal

RUN_FILE = "run.json"
PACKAGES = ("torch", "lightning", "hydra-core", "omegaconf", "torchmetrics", "tokenizers", "sacrebleu", "numpy")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def python_command() -> str:
    """How to start this same interpreter from the current directory: `python` when that is what the PATH finds,
    else its path (`.venv/bin/python` on a fresh clone, whose virtual environment is not activated)."""
    interpreter = Path(sys.executable).absolute()
    found = shutil.which("python")
    if found is not None and Path(found).absolute() == interpreter:
        return "python"
    try:
        return str(interpreter.relative_to(Path.cwd()))
    except ValueError:
        return shlex.quote(str(interpreter))


def module_command(module: str, *arguments: str) -> str:
    """`<interpreter> -m <module> <arguments>`, started with this interpreter (python_command): a command printed
    for the user to paste. Each argument is written as it is given: quoted for the shell already (shell_override,
    shlex.quote), or a placeholder the user replaces (`<sweep dir>`, `...`); command_line quotes the words of a real
    command line itself.

    Files that outlive the process name the interpreter so too, not `python` (run.json, a sweep's report.md and
    study.yaml, the attention page): their commands name this machine's runs and sweeps, by paths relative to the
    directory they were written from as the interpreter's is, so they are pasted there, where `python` may be
    another interpreter without the project's packages. Read on another machine, the paths change as the
    interpreter does."""
    return " ".join([python_command(), "-m", module, *arguments])


def command_line(module: str = "src.run", argv: list[str] | None = None) -> str:
    """The command as it can be pasted back into a shell (in the directory it was started from)."""
    args = sys.argv[1:] if argv is None else argv
    return module_command(module, *(shlex.quote(a) for a in args))


# What Hydra's override grammar reads as a plain value without quotes (a Hydra sweep job's `3_model.heads:8+seed:1`
# included). Anything else (a space, `,` `=` `[` `]` `{` `}` `(` `)`, quotes, `${`, a non-ASCII letter) is quoted.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_\-/.+:@%]*")


def hydra_value(value: object) -> str:
    """`value` written so that Hydra's override grammar reads it back as this very string: as it is when it is
    plain, else in single quotes with `'` escaped and `${` escaped, so OmegaConf takes it literally."""
    text = str(value)
    if _PLAIN_VALUE.fullmatch(text) and "${" not in text:
        return text
    return hydra_literal(text)  # backslashes before a quote or `${` need escaping too


def shell_override(key: str, value: object) -> str:
    """`key=value` as one argument a shell passes to a Hydra command unchanged, for any value (a directory whose
    name holds spaces, `:`, `,`, quotes or `$`): printed follow-up commands work when pasted."""
    return shlex.quote(f"{key}={hydra_value(value)}")


def slurm_job() -> str | None:
    """This process's SLURM job (`<array job>_<task>` for a job array, as sacct names it), None outside SLURM. A job
    requeued after preemption keeps its id."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def slurm_restarts() -> int:
    """How many times SLURM has started this job again (requeued after preemption or by `scontrol requeue`)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """A directory's run.json, None when it has none (or an unreadable one)."""
    try:
        record = json.loads((Path(run_dir) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def resume_in_place(overrides: list[str], run_dir: Path, hydra: Any = None) -> str:
    """The command that resumes a run in its own directory from its newest checkpoint: the options that chose its
    configs (config_arguments, from its Hydra config `hydra` where given), its overrides (without its own ckpt_path
    and Hydra's settings), hydra.run.dir=<the run> and ckpt_path=last."""
    keep = [o for o in overrides if not o.lstrip("+~").startswith(("ckpt_path=", "hydra."))]
    chosen = config_arguments(hydra) if hydra is not None else []
    return command_line(argv=[*chosen, *keep, f"hydra.run.dir={hydra_value(run_dir)}", "ckpt_path=last"])


RUN_CONFIG_NAME = "config"  # src.run's primary config (src/run.py's @hydra.main): no --config-name needed for it


def config_arguments(hydra: Any) -> list[str]:
    """The options of a command line that chose the configs a run or sweep was composed from, which its overrides do
    not say: `--config-dir <dir>` for each directory added so, `--config-name <name>` for a primary config other
    than src.run's own. Without them a printed command (a resume, a job's own command) would compose other configs
    than the ones it ran with, or fail to find a config group the user added. `hydra`: its Hydra config (Hydra's
    HydraConfig, or the `hydra` of a saved .hydra/hydra.yaml or multirun.yaml)."""
    from omegaconf import OmegaConf

    arguments = []
    for source in OmegaConf.select(hydra, "runtime.config_sources", default=None) or []:
        if source.get("provider") == "command-line":  # Hydra's name for --config-dir's search path entry
            arguments += ["--config-dir", str(source.get("path")).removeprefix("file://")]
    name = OmegaConf.select(hydra, "job.config_name", default=None)
    if name and name != RUN_CONFIG_NAME:
        arguments += ["--config-name", str(name)]
    return arguments


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The project's commit and whether the working tree had changes (None outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class RunRecord:
    """run.json of one run directory; `update` rewrites the file at once (atomically), so it is never half written."""

    def __init__(self, run_dir: Path, module: str = "src.run"):
        self.path = Path(run_dir) / RUN_FILE
        self._lock = threading.Lock()
        previous = self._read_previous()
        self.data: dict[str, Any] = {
            "status": "running",
            # Which processes belong to this run (src/training/processes.py): the ranks it starts carry the session
            # id; a SLURM job's tasks, and the job started again after a requeue, carry its job id.
            "session": uuid.uuid4().hex,
            "slurm_job": slurm_job(),
            "slurm_step": os.environ.get("SLURM_STEP_ID"),  # the tasks of one `srun` share it; a batch script has none
            "slurm_restart": slurm_restarts(),  # a requeued job is started again with this one higher
            # this interpreter, as `resume` and every command of this file: they run where `cwd` and `host` say
            # (module_command)
            "command": command_line(module),
            "cwd": os.getcwd(),
            "started": now(),
            "ended": None,
            "host": socket.gethostname(),
            # the process that trains it, so that a second command into its directory while it still does is
            # refused (live_process): its id, and when it started, which tells it from a later process of that id
            "pid": os.getpid(),
            "process_started": process_started(os.getpid()),
            "threads": torch.get_num_threads(),
            "git": git_state(),
            "versions": package_versions(),
        }
        if previous:
            self.data["previous"] = previous

    def _read_previous(self) -> list[dict]:
        """The sessions recorded before this one in the same directory (a resumed run)."""
        if not self.path.is_file():
            return []
        try:
            earlier = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        sessions = earlier.pop("previous", [])
        return [*sessions, earlier]

    def update(self, **fields: Any) -> None:
        with self._lock:  # the thread that watches a run's other ranks records their failure too
            self.data.update(fields)
            write_record(self.path.parent, self.data)

    def end(self, status: str, **fields: Any) -> None:
        self.update(status=status, ended=now(), **fields)


def process_started(pid: int) -> str | None:
    """When process `pid` of this machine started, as a text that differs between two processes the system gave that
    same id: on Linux the kernel's boot id and the process's start in clock ticks since boot (/proc/<pid>/stat),
    elsewhere what `ps` says (its start to the second, in one fixed format). None for no such process, for one that
    has ended and waits to be reaped (a zombie), and where neither can say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        stat = ""
    if stat:
        fields = stat.rpartition(")")[2].split()  # after "(<name>)", which may hold spaces and parentheses
        if fields[0] in ("Z", "X"):  # state
            return None
        try:
            boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        except OSError:  # hidden in some sandboxes: the start alone still tells processes apart until a reboot
            boot = ""
        return f"{boot}:{fields[19]}"  # starttime, the 22nd field of the line
    if Path("/proc/self/stat").exists():  # Linux, and no such process
        return None
    return started_by_ps(pid)


def started_by_ps(pid: int) -> str | None:
    """process_started where there is no /proc (macOS, the BSDs): `ps`'s start of the process, to the second, in the
    C locale and UTC, so that every process reads it alike; None for a zombie or no such process."""
    asked = ["ps", "-o", "lstart=", "-o", "state=", "-p", str(pid)]
    try:
        answer = subprocess.run(asked, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C", "TZ": "UTC0"})
    except OSError:
        return None
    start, _, state = answer.stdout.strip().rpartition(" ")
    return start.strip() if answer.returncode == 0 and start and not state.startswith("Z") else None


def process_stopped(pid: int) -> bool:
    """Whether process `pid` of this machine is stopped (Ctrl-Z or SIGSTOP: state T, or t under a debugger). A
    stopped process keeps a SIGTERM pending, doing nothing about it, until it is continued."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        stat = ""
    if stat:
        return stat.rpartition(")")[2].split()[0] in ("T", "t")
    if Path("/proc/self/stat").exists():  # Linux, and no such process
        return False
    answer = subprocess.run(["ps", "-o", "state=", "-p", str(pid)], capture_output=True, text=True)
    return answer.stdout.strip().startswith(("T", "t"))


def how_to_stop(pids: Sequence[int | str]) -> str:
    """The command a refusal gives to stop the processes of this machine at work on a run: `kill <pids>`, and for
    those that are stopped (Ctrl-Z) a `kill -CONT` of their process group, without which the kill waits until they
    are continued. The group, not the process alone: Ctrl-Z stops the whole job, a run's DataLoader workers too,
    and a run continued without them waits for them forever after saving its step."""
    ids = [str(pid) for pid in pids]
    stopped = [pid for pid in ids if process_stopped(int(pid))]
    if not stopped:
        return f"`kill {' '.join(ids)}`"
    groups = list(dict.fromkeys(f"-{process_group(int(pid))}" for pid in stopped))
    if len(ids) == 1:
        which = "it is stopped, as by Ctrl-Z, and acts"
    elif len(stopped) == 1:
        which = f"process {stopped[0]} is stopped, as by Ctrl-Z, and acts"
    else:
        which = f"processes {', '.join(stopped)} are stopped, as by Ctrl-Z, and act"
    continued = "its process group" if len(groups) == 1 else "their process groups"
    return (
        f"`kill {' '.join(ids)}; kill -CONT {' '.join(groups)}` ({which} on a kill only once continued: "
        f"-CONT {' '.join(groups)} continues {continued}, as `fg` would)"
    )


def process_group(pid: int) -> int:
    """The process group of `pid` (its job, in a shell with job control); the process itself once it has gone."""
    try:
        return os.getpgid(pid)
    except OSError:
        return pid


def live_process(record: dict[str, Any] | None) -> int | None:
    """The id of the process that works on the run recorded in `record` (a run.json) now, training it or analysing
    it after training: the process recorded, while it still runs on this machine, known by its id and its start (a
    process the system has since given the same id is not taken for it). None for a run that ended (and is not
    being analysed), one recorded without them (before they were recorded), elsewhere, by this very process (an
    earlier run of a test's process), or whose process has ended."""
    if not record or (record.get("status") != "running" and record.get("analysis") != "running"):
        return None
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return None
    pid = record["pid"]
    started = record.get("process_started")
    if pid == os.getpid() or started is None or process_started(pid) != started:
        return None
    return pid


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Write a directory's run.json at once (atomically), so that it is never half written."""
    path = Path(run_dir) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.part")
    partial.write_text(json.dumps(record, indent=2, default=str) + "\n")
    partial.replace(path)


def read_status(run_dir: Path) -> str | None:
    """The status in a directory's run.json, or None when it has none (or an unreadable one)."""
    record = read_record(run_dir)
    return record.get("status") if record is not None else None
