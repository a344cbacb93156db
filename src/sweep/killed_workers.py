"""A joblib launcher's sweep whose process pool lost a worker (`hydra/launcher=joblib`): the out-of-memory killer,
a `kill -9`, a crash in native code. joblib then ends every other worker of the pool and raises in the sweep's
process, so no job that was training could record its end. Here each of this sweep's jobs left `running` is
recorded as failed, with why and how to resume it, before the report is written (src.run's `cli`)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from src.provenance import command_line, read_record
from src.training.checkpoint import newest_checkpoint


def worker_killed(error: BaseException) -> str | None:
    """How a worker of joblib's process pool died, when `error` is joblib's word that one did (the out-of-memory
    killer, a `kill -9`, a crash in native code): "killed by SIGKILL", "exited with status 1", from the exit codes
    loky puts in its message ("{SIGKILL(-9)}"). None for any other error, or without joblib."""
    import re

    try:
        from joblib.externals.loky.process_executor import TerminatedWorkerError
    except ImportError:  # no joblib launcher installed: no pool to lose
        return None
    while error is not None and not isinstance(error, TerminatedWorkerError):
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    if error is None:
        return None
    codes = re.findall(r"\b([A-Z][A-Z0-9]*)\((-?\d+)\)", str(error).partition("exit codes")[2])
    said = [f"killed by {name}" if name.startswith("SIG") else f"exited with status {code}" for name, code in codes]
    return " and ".join(dict.fromkeys(said)) or "ended unexpectedly"


def killed_pool_ends_the_sweep(sweep_dir: Path, how: str, began: float) -> str:
    """A worker of the joblib launcher's pool died: joblib ends every other worker with it (SIGKILL; it has waited
    for them all to be gone before it raises), and the sweep with them. No job in those workers could record its
    end: each one's run.json still says `running`. Each is recorded here as failed, with why and the command that
    resumes it from its last checkpoint (as an interrupted job of a sweep is resumed: in place, ckpt_path=last);
    then the report is written. Returns the one line that says what happened and how to go on (src.run prints it
    and exits with status 1)."""
    from src.provenance import now, write_record
    from src.sweep.report import report_after_sweeper_error
    from src.sweep.resume import resume_command

    stopped = {run_dir: resume_of_killed_job(run_dir) for run_dir in jobs_left_running(sweep_dir, began)}
    for run_dir, go_on in stopped.items():
        saved = newest_checkpoint(run_dir)
        reason = (
            f"its joblib worker process, or another worker of the sweep's pool, was {how} while it trained (joblib "
            "then ends every worker of the pool): "
            + (f"what it trained after {saved.relative_to(run_dir)} is lost" if saved else go_on)
        )
        record = read_record(run_dir) or {}
        record.update(status="failed", error=reason, ended=now(), checkpoint=str(saved) if saved else None)
        if saved is not None:  # the report gives it beside the reason, as for an interrupted job
            record["resume"] = resume_in_place(run_dir)
        write_record(run_dir, record)
        (run_dir / "error.txt").write_text(f"{reason}\n" if saved is None else f"{reason}; {go_on}\n")
    sweep = report_after_sweeper_error()
    oom = " (SIGKILL is what the out-of-memory killer sends: run fewer jobs at once, hydra.launcher.n_jobs)"
    parts = [f"a joblib worker of the sweep was {how}{oom if 'SIGKILL' in how else ''}, and joblib ended the sweep"]
    if stopped:
        names = ", ".join(run_dir.name for run_dir in stopped)
        parts.append(f"{len(stopped)} running job(s) were stopped and are recorded as failed ({names})")
        parts += [f"{run_dir.name}: {go_on}" for run_dir, go_on in stopped.items()]
    if sweep is not None and sweep.not_started:
        # the sweep resumed as a whole runs them, and keeps the jobs stopped here as they ended (src/sweep/resume.py)
        whole = resume_command(sweep_dir)
        runs = (
            f"the sweep's own command runs them, and keeps the rest: {whole}"
            if whole
            else f"{sweep.directory / 'report.md'} gives the command that runs each"
        )
        parts.append(f"{len(sweep.not_started)} job(s) never started: {runs}")
    if sweep is None:  # no job had begun: nothing to resume, and the directory holds only Hydra's multirun.yaml
        parts.append(f"no job had started: run the sweep again with another hydra.sweep.dir than {sweep_dir}")
    return "; ".join(parts)


def jobs_left_running(sweep_dir: Path, began: float) -> list[Path]:
    """The jobs of this command's sweep whose run.json still says `running`: only those this very command started
    (the sweep's process command, on this host, since it began). A job directory of the sweep that another command
    entered meanwhile (a job resumed in place: its own process command, or none) is that command's to record."""
    import datetime as dt
    import socket

    this_command = command_line()
    left = []
    for run_dir in sorted(path.parent for path in sweep_dir.glob("*/.hydra")):
        record = read_record(run_dir) or {}
        try:
            started = dt.datetime.fromisoformat(str(record.get("started"))).timestamp()
        except ValueError:
            continue
        if (
            record.get("status") == "running"
            and record.get("process_command") == this_command
            and record.get("host") == socket.gethostname()
            and started >= int(began)  # run.json keeps whole seconds
        ):
            left.append(run_dir)
    return left


def resume_of_killed_job(run_dir: Path) -> str:
    """What to do with a job whose worker was killed: resume it from its newest checkpoint, in place, as an
    interrupted job of a sweep is resumed; without one, run it again (src.run refuses to start a new run over a
    directory that holds one, so that directory goes first)."""
    import shlex

    if newest_checkpoint(run_dir) is not None:
        return f"resume it from its last checkpoint with: {resume_in_place(run_dir)}"
    command = (read_record(run_dir) or {}).get("command") or resume_in_place(run_dir).removesuffix(" ckpt_path=last")
    return f"it saved no checkpoint: delete {shlex.quote(str(run_dir))} and run it again with: {command}"


def resume_in_place(run_dir: Path) -> str:
    """The command that resumes a sweep's job in its own directory from its newest checkpoint, as resume_command
    writes it, from the job's saved overrides (this process is the sweep's, not the job's)."""
    from src.provenance import resume_in_place as resume_command

    return resume_command([str(o) for o in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")], run_dir)
