"""A joblib launcher's sweep whose process pool lost a worker (`hydra/launcher=joblib`): the out-of-memory killer,
a `kill -9`, a crash in native code. joblib then ends every other worker of the pool and raises in the sweep's
process, so no job that was training could record its end. Here each of this sweep's jobs left `running` is
recorded as interrupted (stopped from outside, as by Ctrl-C, not ended by its own error: the sweep's resume goes on
with it from its newest checkpoint), with why, before the report is written (src.run's `cli`)."""

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
    end: each one's run.json still says `running`. Each is recorded here as interrupted, with why: none ended by
    itself, so the sweep's own command with ckpt_path=last (src/sweep/resume.py) resumes each from its newest
    checkpoint (one with none is trained again from the start), runs the jobs never started, and keeps the rest.
    Then the report is written. Returns the one line that says what happened and how to go on (src.run prints it
    and exits with status 1)."""
    from src.provenance import now, write_record
    from src.sweep.report import report_after_sweeper_error
    from src.sweep.resume import resume_command

    whole = resume_command(sweep_dir)
    stopped = jobs_left_running(sweep_dir, began)
    for run_dir in stopped:
        saved = newest_checkpoint(run_dir)
        lost = f"what it trained after {saved.relative_to(run_dir)} is lost" if saved else "it saved no checkpoint"
        reason = (
            f"its joblib worker process, or another worker of the sweep's pool, was {how} while it trained (joblib "
            f"then ends every worker of the pool): {lost}"
        )
        record = read_record(run_dir) or {}
        record.update(status="interrupted", error=reason, ended=now(), checkpoint=str(saved) if saved else None)
        record["resume"] = whole or resume_in_place(run_dir)
        write_record(run_dir, record)
        (run_dir / "error.txt").write_text(f"{reason}; resume with: {record['resume']}\n")
    sweep = report_after_sweeper_error()
    oom = " (SIGKILL is what the out-of-memory killer sends: run fewer jobs at once, hydra.launcher.n_jobs)"
    parts = [f"a joblib worker of the sweep was {how}{oom if 'SIGKILL' in how else ''}, and joblib ended the sweep"]
    if stopped:
        names = ", ".join(run_dir.name for run_dir in stopped)
        parts.append(f"{len(stopped)} running job(s) were stopped and are recorded as interrupted ({names})")
    never = len(sweep.not_started) if sweep is not None else 0
    if never:
        parts.append(f"{never} job(s) never started")
    if sweep is None:  # no job had begun: nothing to resume, and the directory holds only Hydra's multirun.yaml
        parts.append(f"no job had started: run the sweep again with another hydra.sweep.dir than {sweep_dir}")
    elif stopped or never:
        goes_on = [
            *(["resumes the stopped jobs from their last checkpoints"] if stopped else []),
            *(["runs those never started"] if never else []),
        ]
        how_to = whole or f"{sweep.directory / 'report.md'} gives the command that runs each"
        parts.append(f"the sweep's own command {' and '.join(goes_on)}, and keeps the rest: {how_to}")
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


def resume_in_place(run_dir: Path) -> str:
    """The command that resumes a sweep's job in its own directory from its newest checkpoint, as resume_command
    writes it, from the job's saved overrides and Hydra config (this process is the sweep's, not the job's)."""
    from src.provenance import resume_in_place as resume_command

    saved = run_dir / ".hydra"
    hydra = OmegaConf.load(saved / "hydra.yaml").hydra if (saved / "hydra.yaml").is_file() else None
    return resume_command([str(o) for o in OmegaConf.load(saved / "overrides.yaml")], run_dir, hydra)
