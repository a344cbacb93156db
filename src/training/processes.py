"""Which processes belong to a run, and how the extra ranks of a multi-process run are started and watched.

A run may be many processes: the extra ranks of `trainer.strategy=ddp` (Lightning's subprocess launcher starts
each as a new `python -m src.run` process), the ranks of a SLURM job with several tasks (SLURM starts them all),
a SLURM job started again after it was requeued, a sweep job in a joblib or submitit worker. The checks that protect
a user's earlier results (src/preflight.py: no second run in a directory that holds one) must let these through as
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

from src.provenance import slurm_job

RUN_ENV = "TRANSFORMER_ABLATIONS_RUN"  # {"dir": <run directory>, "session": <id>}: set by the first rank
RANK_ERROR = "error-rank-{rank}.txt"  # what an extra rank that failed writes (the first rank writes error.txt)
# Set by Lightning's launcher for the processes of a multi-process run: cleared when a job of a sweep ends, or the
# next job in the same process would believe its processes were started for it (LightningEnvironment reads
# LOCAL_RANK as "an outside launcher started me").
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
INTERRUPTED = (130, 143)  # an extra rank stopped by Ctrl-C or SIGTERM: every rank stops at the same step then


def process_rank() -> int:
    """This process's global rank in its run (0: the first, or only, process). Lightning reads it from the
    environment when it is imported (RANK, LOCAL_RANK, SLURM_PROCID): the same for Lightning's own ranks, a SLURM
    job's tasks and a process that is none of those (0)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0))


def slurm_restarts() -> int:
    """How many times SLURM has started this job again (requeued after preemption or by `scontrol requeue`)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)


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
    does not: "rank <r>" (an extra rank the run started), "slurm job <id>" (a task of that run's SLURM job, or the
    job started again after a requeue). A process that is not part of the run gets None, whatever its environment
    says of ranks: that is what keeps a second run out of a directory that holds one."""
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
    job = slurm_job()
    if job is not None and record.get("slurm_job") == job:
        return f"slurm job {job}"
    return None


def requeued(record: dict[str, Any] | None) -> bool:
    """Whether this process is the first rank of the recorded run's SLURM job, started again by SLURM after the
    job was requeued (preemption, `scontrol requeue`, a time limit's signal): it continues that run."""
    job = slurm_job()
    return bool(record) and job is not None and record.get("slurm_job") == job and process_rank() == 0


# --- the extra ranks of strategy=ddp -------------------------------------------------------------------------------


def rank_command(local_rank: int, run_dir: Path) -> tuple[list[str], str]:
    """The command that starts an extra rank of this Hydra job, and the directory to start it in: this job's own
    overrides (a sweep's job: its values, not the sweep), its run directory, and no second copy of `.hydra/` or of
    the log (the first rank writes them)."""
    from hydra.core.hydra_config import HydraConfig

    from src.provenance import hydra_value

    hydra = HydraConfig.get()
    command = [sys.executable, "-m", "src.run"]
    for source in hydra.runtime.config_sources:  # --config-dir given on the command line
        if source.provider == "command-line":
            command += ["--config-dir", source.path.removeprefix("file://")]
    command += ["--config-name", hydra.job.config_name, *hydra.overrides.task]
    command += [
        f"hydra.run.dir={hydra_value(Path(run_dir).resolve())}",
        "hydra.output_subdir=null",
        "hydra/job_logging=none",  # no log file of its own beside the first rank's run.log
    ]
    return command, hydra.runtime.cwd


class RankObserver(threading.Thread):
    """Watches the extra ranks from the first one (Lightning's watcher, with the run kept informed): when one exits
    with a failure, `on_failure(reason)` records it (run.json: failed, the rank's reason), the other ranks are
    killed (a rank waiting in a collective for a dead peer never returns), and the first rank is given
    `grace_seconds` to end the job through its own error path (on the CPU a collective with a dead peer fails at
    once); after that the process exits with status 1."""

    def __init__(
        self,
        procs: Sequence[subprocess.Popen],
        run_dir: Path,
        on_failure: Callable[[str], None],
        period: float = 0.5,
        grace_seconds: float = 30.0,
    ):
        super().__init__(daemon=True, name="rank-observer")  # ends with the process
        self.procs, self.run_dir, self.on_failure = list(procs), Path(run_dir), on_failure
        self.period, self.grace_seconds = period, grace_seconds
        self.failure: str | None = None
        self._stopped = threading.Event()

    def stop(self) -> None:
        """The first rank is done with training (or failed itself): what happens to the ranks now is its to say."""
        self._stopped.set()

    def run(self) -> None:
        while not self._stopped.wait(self.period):
            for local_rank, proc in enumerate(self.procs, start=1):
                code = proc.poll()
                if code is None or code == 0 or code in INTERRUPTED:
                    continue
                if self._stopped.is_set():
                    return
                self.failure = rank_failure(self.run_dir, local_rank, proc.pid, code)
                self.on_failure(self.failure)
                for other in self.procs:
                    if other.poll() is None:
                        other.kill()
                if not self._stopped.wait(self.grace_seconds):
                    from src.training.report import print_error

                    print_error(f"{self.failure}: the run stopped (its run.json says why)")
                    os._exit(1)
                return


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


def adopt_launcher(trainer, run_dir: Path, on_failure: Callable[[str], None]) -> RunRanksLauncher | None:
    """Put `RunRanksLauncher` in place of Lightning's subprocess launcher, whatever the strategy was called
    (`strategy=ddp`, `auto` with several devices, a `ddp_*` variant): the launcher Lightning chose says which
    start method the strategy uses. None when the run starts no processes of its own (one process, ddp_spawn, or
    a scheduler that starts them: SLURM's tasks)."""
    launcher = getattr(trainer.strategy, "_launcher", None)
    if type(launcher) is not _SubprocessScriptLauncher or launcher.cluster_environment.creates_processes_externally:
        return None
    ours = RunRanksLauncher(launcher, run_dir, on_failure)
    trainer.strategy._launcher = ours  # Lightning keeps the strategy's launcher here (2.6)
    return ours


class RunRanksLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher for strategy=ddp, with the extra ranks started as this job's own command
    (`rank_command`) and watched by `RankObserver`."""

    def __init__(self, launcher, run_dir: Path, on_failure: Callable[[str], None]):
        super().__init__(launcher.cluster_environment, launcher.num_processes, launcher.num_nodes)
        self.run_dir, self.on_failure = Path(run_dir), on_failure
        self.observer: RankObserver | None = None

    def launch(self, function: Callable, *args: Any, trainer=None, **kwargs: Any) -> Any:
        from lightning.fabric.utilities.distributed import _set_num_threads_if_needed

        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        # fit, then test: the ranks are started once and stay for both (LOCAL_RANK, set now, tells Lightning too)
        if not self.cluster_environment.creates_processes_externally and not self.procs:
            self._call_children_scripts()
            self.observer = RankObserver(self.procs, self.run_dir, self.on_failure)
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
            command, cwd = rank_command(local_rank, self.run_dir)
            env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            self.procs.append(subprocess.Popen(command, env=env, cwd=cwd))

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
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        return cause


class RankFailed(Exception):
    """An extra rank of the run failed (its reason: the message); the run fails with it."""
