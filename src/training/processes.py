"""Which processes belong to a run, and how the extra ranks of a multi-process run are started and watched.

A run may be many processes: the extra ranks of `trainer.strategy=ddp` (Lightning's subprocess launcher starts
each as a new `python -m src.run` process), the ranks of a SLURM job with several tasks (SLURM starts them all),
a SLURM job started again after it was requeued, a sweep job in a joblib or submitit worker. The checks that protect
a user's earlier results (src/cli/preflight.py: no second run in a directory that holds one) must let these through as
part of their run, and only these: a process proves it belongs to the run recorded in a directory's run.json by

- the run's session id, which the first rank puts in run.json and in the environment (`RUN_ENV`) before any
  other rank starts: an extra rank inherits it (Lightning copies the environment into the processes it starts);
- or, under SLURM, the job id: the tasks of one SLURM job, and the same job started again after a requeue, have the
  SLURM job id run.json recorded.

Only the first rank (global rank 0) writes the run's files (run.json, run.log, metrics, checkpoints, events); the
others train and keep quiet. When one of them dies, the first rank records it: `run.json` ends `failed` with that
rank's reason (`RankObserver`), never `running`.

Lightning's own subprocess launcher re-runs the command line (`sys.argv`) in each extra rank. That is the wrong
command inside a Hydra sweep (the whole sweep again, Lightning issue #11300), in a joblib worker and in a submitit
job (neither was started by `python -m src.run`), and its watcher kills the first rank with SIGKILL before anything
can be recorded. `RunRanksLauncher` starts each extra rank with this job's own command instead (its overrides, its
directory), and watches them with `RankObserver`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from src.provenance import slurm_job, slurm_restarts

RUN_ENV = "TRANSFORMER_ABLATIONS_RUN"  # {"dir": <run directory>, "session": <id>}: set by the first rank
RANK_ERROR = "error-rank-{rank}.txt"  # what an extra rank that failed writes (the first rank writes error.txt)
# Set by Lightning's launcher for the processes of a multi-process run: cleared when a job of a sweep ends, or the
# next job in the same process would believe its processes were started for it (LightningEnvironment reads
# LOCAL_RANK as "an outside launcher started me").
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# An extra rank stopped by Ctrl-C or SIGTERM: by its own handler (130, 143; every rank stops at the same step then),
# or by the signal itself, before its handlers were in place (still starting). The first rank says what happened.
INTERRUPTED = (130, 143, -signal.SIGINT, -signal.SIGTERM)


def process_rank() -> int:
    """This process's global rank in its run (0: the first, or only, process). Lightning reads it from the
    environment when it is imported (RANK, LOCAL_RANK, SLURM_PROCID): the same for Lightning's own ranks, a SLURM
    job's tasks and a process that is none of those (0)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0))


def announce(run_dir: Path, session: str) -> None:
    """The first rank, before any other starts: processes started from here on belong to this run."""
    os.environ[RUN_ENV] = json.dumps({"dir": str(Path(run_dir).resolve()), "session": session})


def withdraw() -> None:
    """The run (a job of a sweep) has ended: clear what it put in this process's environment."""
    for key in (RUN_ENV, *DISTRIBUTED_ENV):
        os.environ.pop(key, None)


def announced_run() -> dict[str, str] | None:
    try:
        value = json.loads(os.environ.get(RUN_ENV, ""))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def belongs_to(run_dir: Path, record: dict[str, Any] | None) -> str | None:
    """How this process belongs to the run recorded in `run_dir` (its run.json content, `record`), or None when it
    does not: "rank <r>" (an extra rank the run started, or another task of the SLURM job step that runs it),
    "requeued SLURM job <id>" (that job, started again by SLURM). A process that is not part of the run gets None,
    whatever its environment says of ranks (a second command in the same SLURM job included): that is what keeps
    a second run out of a directory that holds one."""
    if not record:
        return None
    announced = announced_run()
    if (
        announced is not None
        and announced.get("dir") == str(Path(run_dir).resolve())
        and announced.get("session") == record.get("session")
        and process_rank() > 0
    ):
        return f"rank {process_rank()}"
    if requeued(record):
        return f"requeued SLURM job {slurm_job()}"
    same_step = (
        slurm_job() is not None
        and record.get("slurm_job") == slurm_job()
        and record.get("slurm_step") == os.environ.get("SLURM_STEP_ID")
        and record.get("slurm_restart", 0) == slurm_restarts()
    )
    if same_step and process_rank() > 0:  # SLURM started the ranks of this step together
        return f"rank {process_rank()}"
    return None


def requeued(record: dict[str, Any] | None) -> bool:
    """Whether this process runs the recorded run's SLURM job again, started by SLURM after a requeue (preemption,
    `scontrol requeue`, the signal before a time limit): the same job id and a higher restart count. Every rank of
    the job continues the run; an extra rank may read run.json after the first one has rewritten it for this
    restart, so for it an equal (non-zero) count is enough."""
    job = slurm_job()
    if not record or job is None or record.get("slurm_job") != job:
        return False
    recorded, now = int(record.get("slurm_restart") or 0), slurm_restarts()
    return now > recorded or (process_rank() > 0 and now > 0 and now == recorded)


# --- the extra ranks of strategy=ddp -------------------------------------------------------------------------------


def rank_command(local_rank: int, run_dir: Path) -> tuple[list[str], str]:
    """The command that starts an extra rank of this Hydra job, and the directory to start it in: this job's own
    overrides (a sweep's job: its values, not the sweep), its run directory, and no second copy of `.hydra/` or of
    the log (the first rank writes them)."""
    from hydra.core.hydra_config import HydraConfig

    from src.provenance import config_arguments, hydra_value

    hydra = HydraConfig.get()
    command = [sys.executable, "-m", "src.run", *config_arguments(hydra)]
    if "--config-name" not in command:  # named always: the rank must compose what the first one did
        command += ["--config-name", hydra.job.config_name]
    command += list(hydra.overrides.task)
    command += [
        f"hydra.run.dir={hydra_value(Path(run_dir).resolve())}",
        "hydra.output_subdir=null",
        "hydra/job_logging=none",  # no log file of its own beside the first rank's run.log
    ]
    return command, hydra.runtime.cwd


class RankObserver(threading.Thread):
    """Watches the extra ranks from the first one (Lightning's watcher, with the run kept informed).

    - A rank exits with a failure: `on_failure(reason)` records it (run.json: failed, the rank's reason), the other
      ranks are killed (a rank waiting in a collective for a dead peer never returns), and the first rank is given
      `grace_seconds` to end the job through its own error path (on the CPU a collective with a dead peer fails at
      once); after that the process exits with status 1.
    - A rank is stopped by Ctrl-C or SIGTERM: the first rank, signalled too, normally stops at the same step and
      records the interrupt. If it has not within `grace_seconds` (it may be waiting for that rank to join, in C++
      code that no Python signal handler interrupts), `on_interrupt(signal name)` records it, and the process exits
      with 130 / 143."""

    def __init__(
        self,
        procs: Sequence[subprocess.Popen],
        run_dir: Path,
        on_failure: Callable[[str], None],
        on_interrupt: Callable[[str], None] | None = None,
        period: float = 0.5,
        grace_seconds: float = 30.0,
    ):
        super().__init__(daemon=True, name="rank-observer")  # ends with the process
        self.procs, self.run_dir = list(procs), Path(run_dir)
        self.on_failure, self.on_interrupt = on_failure, on_interrupt
        self.period, self.grace_seconds = period, grace_seconds
        self.failure: str | None = None
        self._stopped = threading.Event()

    def stop(self) -> None:
        """The first rank is done with training (or failed itself): what happens to the ranks now is its to say."""
        self._stopped.set()

    def run(self) -> None:
        from src.training.report import print_error

        while not self._stopped.wait(self.period):
            for local_rank, proc in enumerate(self.procs, start=1):
                code = proc.poll()
                if code is None or code == 0:
                    continue
                if self._stopped.is_set():
                    return
                if code in INTERRUPTED:
                    name = "SIGINT" if code in (130, -signal.SIGINT) else "SIGTERM"
                    if not self._stopped.wait(min(self.grace_seconds, 5.0)):  # the first rank stops at once, or not
                        if self.on_interrupt is not None:
                            self.on_interrupt(name)
                        kill_running(self.procs)
                        os._exit(130 if name == "SIGINT" else 143)
                    return
                self.failure = rank_failure(self.run_dir, local_rank, proc.pid, code)
                self.on_failure(self.failure)
                kill_running(self.procs)
                if not self._stopped.wait(self.grace_seconds):
                    print_error(f"{self.failure}: the run stopped (its run.json says why)")
                    os._exit(1)
                return


def kill_running(procs: Sequence[subprocess.Popen]) -> None:
    """Stop the ranks still running (a rank waiting in a collective for a dead peer would never return)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()


def rank_failure(run_dir: Path, local_rank: int, pid: int, code: int) -> str:
    """One line: which rank failed and why (its own last error line, or how it ended)."""
    error_file = Path(run_dir) / RANK_ERROR.format(rank=local_rank)
    reason = ""
    if error_file.is_file():
        lines = [line for line in error_file.read_text(errors="replace").splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else ""
    if not reason:
        reason = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    where = f" (traceback in {error_file})" if error_file.is_file() else ""
    return f"rank {local_rank} (PID {pid}) failed: {reason}{where}"


def wait_for_ranks(procs: Sequence[subprocess.Popen], run_dir: Path, timeout: float = 120.0) -> str | None:
    """The first rank has finished: wait for the others to end too (they finish the same steps), and say which
    failed. None when every one ended well; a rank still running after `timeout` seconds is killed."""
    deadline = time.monotonic() + timeout
    for local_rank, proc in enumerate(procs, start=1):
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            return f"rank {local_rank} (PID {proc.pid}) had not ended {timeout:.0f} s after the first rank: killed"
        if code != 0:
            return rank_failure(run_dir, local_rank, proc.pid, code)
    return None


def adopt_launcher(
    trainer, run_dir: Path, on_failure: Callable[[str], None], on_interrupt: Callable[[str], None] | None = None
) -> RunRanksLauncher | None:
    """Put `RunRanksLauncher` in place of Lightning's subprocess launcher, whatever the strategy was called
    (`strategy=ddp`, `auto` with several devices, a `ddp_*` variant): the launcher Lightning chose says which
    start method the strategy uses. None when the run starts no processes of its own (one process, ddp_spawn, or
    a scheduler that starts them: SLURM's tasks)."""
    launcher = getattr(trainer.strategy, "_launcher", None)
    if type(launcher) is not _SubprocessScriptLauncher or launcher.cluster_environment.creates_processes_externally:
        return None
    ours = RunRanksLauncher(launcher, run_dir, on_failure, on_interrupt)
    trainer.strategy._launcher = ours  # Lightning keeps the strategy's launcher here (2.6)
    return ours


class RunRanksLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher for strategy=ddp, with the extra ranks started as this job's own command
    (`rank_command`) and watched by `RankObserver`."""

    def __init__(
        self,
        launcher,
        run_dir: Path,
        on_failure: Callable[[str], None],
        on_interrupt: Callable[[str], None] | None = None,
    ):
        super().__init__(launcher.cluster_environment, launcher.num_processes, launcher.num_nodes)
        self.run_dir, self.on_failure, self.on_interrupt = Path(run_dir), on_failure, on_interrupt
        self.observer: RankObserver | None = None

    def launch(self, function: Callable, *args: Any, trainer=None, **kwargs: Any) -> Any:
        from lightning.fabric.utilities.distributed import _set_num_threads_if_needed

        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        # fit, then test: the ranks are started once and stay for both (LOCAL_RANK, set now, tells Lightning too)
        if not self.cluster_environment.creates_processes_externally and not self.procs:
            self._call_children_scripts()
            self.observer = RankObserver(self.procs, self.run_dir, self.on_failure, self.on_interrupt)
            self.observer.start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        # What every rank reads to find the others (as Lightning's launcher sets it)
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        for local_rank in range(1, self.num_processes):
            (self.run_dir / RANK_ERROR.format(rank=local_rank)).unlink(missing_ok=True)  # an earlier session's
            command, cwd = rank_command(local_rank, self.run_dir)
            env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            self.procs.append(subprocess.Popen(command, env=env, cwd=cwd, preexec_fn=prepare_extra_rank))

    def kill(self, signum) -> None:
        """Lightning stops the other ranks itself (after Ctrl-C): that is no failure of theirs to record."""
        if self.observer is not None:
            self.observer.stop()
        super().kill(signum)

    def finish(self, failed_at: float | None) -> str | None:
        """The first rank is done (`failed_at`: the time it failed with an error of its own, None when it ended
        well): stop watching, and wait for the other ranks to end. Returns the failure of an extra rank that caused
        the end (None when they all ended well, or when the first rank's own error came first)."""
        if self.observer is not None:
            self.observer.stop()
            if self.observer.failure is not None:
                return self.observer.failure
        if failed_at is None:
            return wait_for_ranks(self.procs, self.run_dir)
        # The first rank failed. If another rank died first (a collective with a dead peer fails on every rank),
        # that rank's reason is the run's: a rank killed by a signal (nobody here sent one yet), or one whose error
        # file is older than the first rank's failure. Its exit may take a moment to be seen.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and any(proc.poll() is None for proc in self.procs):
            time.sleep(0.1)
        cause = None
        for local_rank, proc in enumerate(self.procs, start=1):
            code = proc.poll()
            if code is None or code == 0 or code in INTERRUPTED:
                continue
            error_file = self.run_dir / RANK_ERROR.format(rank=local_rank)
            if code < 0 or (error_file.is_file() and error_file.stat().st_mtime <= failed_at):
                cause = cause or rank_failure(self.run_dir, local_rank, proc.pid, code)
        kill_running(self.procs)
        return cause


def prepare_extra_rank() -> None:
    """In an extra rank, before it starts (Linux; elsewhere nothing):
    - the kernel ends it when the first rank's process ends, however that ends (killed outright included), rather
      than leave it waiting for a peer for ever;
    - Ctrl-C in the terminal reaches the first rank alone until training starts (then every rank's SaveOnInterrupt
      takes it, and they stop at the same step): a rank stopped while it starts would leave the first one waiting
      for it to join, and print a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def started_by_a_run(run_dir: Path) -> bool:
    """Whether a process whose environment gives it a rank above 0 was started as a rank of a run in `run_dir`
    (announced by its first rank) or by SLURM (a task of a job); LOCAL_RANK left over in a shell is neither."""
    announced = announced_run()
    if announced is not None and announced.get("dir") == str(Path(run_dir).resolve()):
        return True
    return slurm_job() is not None


class RankFailed(Exception):
    """An extra rank of the run failed (its reason: the message); the run fails with it."""
