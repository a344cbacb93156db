"""A grid sweep resumed as a whole: the sweep's own command with `hydra.sweep.dir=<the sweep> ckpt_path=last`, what an
interrupted job prints. The grid sweeper (`hydra/sweeper=grid`, the default: hydra_plugins/transformer_ablations/
grid_sweeper.py) does it whatever launcher runs the jobs (the basic one, joblib, submitit); the stacked launcher
resumes its groups of seeds itself (src/sweep/stacked.py), and an Optuna search through its study (src/study.py).

The command's jobs are matched to the job directories the sweep holds by their settings (src/sweep/runs.py:
matched_jobs, job_numbers), not by the numbers Hydra gives them, so the command may give its settings in another
order and add values; a directory that none of its jobs has the settings of is refused before anything runs
(src/cli/preflight.py). Then each job, by what its directory holds (`resume_plan`):

- completed: kept as it is. It is not launched, so not even Hydra's .hydra/ files are written again;
- failed or diverged: kept as it ended, in one warning line: a crash or a divergence would come again, and a sweep
  must not hide them by running them over. To run one again, its directory is deleted and the sweep resumed again
  (it is then a job the sweep has not started);
- interrupted, or killed outright (its run.json still `running`), with a checkpoint: resumed in its own directory from
  its newest checkpoint, exactly as `python -m src.run <its overrides> hydra.run.dir=<job> ckpt_path=last` resumes it.
  One interrupted after its last step (while it was tested) has nothing left to train: kept, with the command that
  evaluates it;
- a directory with nothing saved (stopped before its first checkpoint): trained again from the start, in place;
- no directory (a job the sweep never started, or a value added): run as a new job.

A sweep whose first command gave `ckpt_path=<a checkpoint>` (every job starts from it) keeps that in its
multirun.yaml: the jobs a resume starts or restarts start from it too, not from scratch.

The jobs to run go to the launcher in runs of consecutive numbers (a launcher numbers the jobs it is given from the
first one's): a sweep stopped and resumed with its own command runs what was left as one batch (joblib side by side).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.provenance import hydra_value, read_record

RESUME = "last"  # ckpt_path=last with a sweep's hydra.sweep.dir: the sweep goes on where it stopped
ENDED_BY_ITSELF = ("failed", "diverged")  # kept as they ended: running them again would end them so again


class Next(Enum):
    """What a resumed sweep does with one of its jobs."""

    KEEP = "kept as it is"  # completed
    KEEP_ENDED = "kept as it ended"  # failed, diverged
    KEEP_TRAINED = "kept: every step trained"  # interrupted after its last step: nothing left to train
    RESUME = "resumed from its newest checkpoint"
    RESTART = "trained again from the start"  # its directory holds nothing to resume from
    START = "run as a new job"


@dataclass
class ResumedJob:
    """One job of a resumed grid sweep (resume_plan)."""

    number: int  # its number in the sweep: its directory's, or a new one
    overrides: list[str]  # as the sweep's command gives them (ckpt_path=last included)
    directory: Path | None  # the job directory whose settings it has; None: the sweep never started it
    status: str | None  # what that directory's run.json says (None: no run.json)
    next: Next
    checkpoint: Path | None = None  # the newest checkpoint it resumes from (Next.RESUME, Next.KEEP_TRAINED)
    trained: str | None = None  # Next.KEEP_TRAINED: what its checkpoint reached ("trained 600 steps")
    starts_from: str | None = None  # the sweep's own ckpt_path=<a checkpoint> override, which its jobs start from

    @property
    def launched(self) -> list[str]:
        """The overrides the launcher gets: a job with nothing to resume from without ckpt_path=last (it starts as
        in the sweep's first command: from the checkpoint that command's ckpt_path gave, if it gave one), and a job
        whose directory exists in that directory, whatever Hydra would name it now."""
        overrides = list(self.overrides)
        if self.next is not Next.RESUME:
            overrides = [o for o in overrides if o.lstrip("+~").partition("=")[0] != "ckpt_path"]
            overrides += [self.starts_from] if self.starts_from else []
        if self.directory is not None:
            overrides.append(f"hydra.sweep.subdir={hydra_value(self.directory.name)}")
        return overrides

    @property
    def runs(self) -> bool:
        """Whether the resumed sweep launches it (RUN); else it is kept as it is."""
        return self.next in RUN

    @property
    def name(self) -> str:
        return self.directory.name if self.directory is not None else str(self.number)


def resume_plan(
    sweep_dir: Path, jobs: Sequence[Sequence[str]], compose: Callable[[list[str]], DictConfig], first: int = 0
) -> list[ResumedJob]:
    """What a grid sweep resumed with ckpt_path=last does with each of its `jobs` (their overrides, in the sweep's
    order), by what sweep_dir holds: see the module's docstring. `compose(overrides)`: a job's config (the trainer's
    limits say whether an interrupted job's checkpoint has training left). `first`: Hydra's number of the first job."""
    from src.cli.preflight import finished_by
    from src.sweep.runs import job_number, job_numbers, matched_jobs
    from src.training.checkpoint import newest_checkpoint, read_checkpoint

    planned, held = matched_jobs(sweep_dir, jobs)
    numbers = job_numbers(planned, {key: job_number(directory) for key, directory in held.items()}, first)
    starts_from = sweep_starts_from(sweep_dir)
    plan = []
    for overrides, key, number in zip(jobs, planned, numbers):
        directory = held.get(key)
        job = ResumedJob(number, list(overrides), directory, None, Next.START, starts_from=starts_from)
        plan.append(job)
        if directory is None:
            continue
        job.status = (read_record(directory) or {}).get("status")
        if job.status == "completed":
            job.next = Next.KEEP
            continue
        if job.status in ENDED_BY_ITSELF:
            job.next = Next.KEEP_ENDED
            continue
        job.checkpoint = newest_checkpoint(directory)
        if job.checkpoint is None:
            job.next = Next.RESTART
            continue
        finished = finished_by(read_checkpoint(str(job.checkpoint), "ckpt_path"), compose(job.launched).trainer)
        job.next, job.trained = (Next.RESUME, None) if finished is None else (Next.KEEP_TRAINED, finished[1])
    return plan


def sweep_starts_from(sweep_dir: Path) -> str | None:
    """The sweep's own `ckpt_path=<a checkpoint>` override (its jobs start from that checkpoint), None without one.
    A resumed sweep's ckpt_path=last replaces it on the command line; multirun.yaml keeps it (resume_sweep)."""
    try:
        task = [str(o) for o in OmegaConf.load(Path(sweep_dir) / "multirun.yaml").hydra.overrides.task]
    except Exception:  # no multirun.yaml that says the sweep's overrides: nothing it started from
        return None
    given = [o for o in task if o.lstrip("+~").startswith("ckpt_path=")]
    return given[-1] if given and given[-1].lstrip("+~") != f"ckpt_path={RESUME}" else None


def resume_arguments(sweep_dir: Path) -> list[str] | None:
    """The arguments of the command that resumes the sweep in `sweep_dir` as a whole: its own (its multirun.yaml's
    overrides, its launcher among them), in its own directory, with ckpt_path=last. None without a multirun.yaml
    that says them (a sweep of another Hydra, a hand-made folder)."""
    try:
        hydra = OmegaConf.load(Path(sweep_dir) / "multirun.yaml").hydra
        return sweep_resume_arguments(hydra, sweep_dir)
    except Exception:
        return None


def sweep_resume_arguments(hydra: Any, sweep_dir: Path, launcher: str | None = None) -> list[str]:
    """The arguments that resume a sweep (a grid sweep, a stacked one, an Optuna search) in its own directory: the
    options that chose its configs (src/provenance.py: config_arguments), its Hydra and task overrides without its
    directory, mode and ckpt_path, then hydra.sweep.dir=<it> and ckpt_path=last. `hydra`: its Hydra config (as
    composed, or from its multirun.yaml). `launcher`: an override that replaces its launcher's, first (a stacked
    sweep's groups resume only with hydra/launcher=stacked)."""
    from src.provenance import config_arguments

    dropped = ("hydra.sweep.dir=", "hydra.run.dir=", "hydra.mode=", *(("hydra/launcher=",) if launcher else ()))
    kept_hydra = [str(o) for o in hydra.overrides.get("hydra") or [] if not str(o).lstrip("+~").startswith(dropped)]
    kept_task = [str(o) for o in hydra.overrides.task if not str(o).lstrip("+~").startswith("ckpt_path=")]
    where = f"hydra.sweep.dir={hydra_value(Path(sweep_dir).resolve())}"
    chosen = config_arguments(hydra)
    return ["-m", *chosen, *([launcher] if launcher else []), *kept_hydra, *kept_task, where, f"ckpt_path={RESUME}"]


def resume_command(sweep_dir: Path) -> str | None:
    """resume_arguments as a command to paste into a shell, None where there are none."""
    from src.provenance import command_line

    arguments = resume_arguments(sweep_dir)
    return command_line(argv=arguments) if arguments is not None else None


def resume_sweep(sweeper: Any, arguments: list[str]) -> list[Any]:
    """The grid sweeper's sweep, resumed (hydra_plugins/transformer_ablations/grid_sweeper.py): Hydra's basic
    sweeper's jobs and multirun.yaml, then resume_plan's jobs launched and what it keeps said. Returns the launched
    jobs' results, in batches as Hydra's basic sweeper does."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from src.training.report import print_line, print_warning

    params = sweeper._parse_config()
    params.extend(arguments)
    parser = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader)
    jobs = [job for batch in sweeper.split_arguments(parser.parse_overrides(params), None) for job in batch]
    sweep_dir = Path(str(sweeper.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    # The sweep as it is now (its values added), with its own ckpt_path: ckpt_path=last says to resume it, and the
    # checkpoint its first command gave (if any) is what its jobs not yet started start from (sweep_starts_from)
    starts_from = sweep_starts_from(sweep_dir)
    saved = OmegaConf.to_container(sweeper.config)
    task = [o for o in saved["hydra"]["overrides"]["task"] if not o.lstrip("+~").startswith("ckpt_path=")]
    saved["hydra"]["overrides"]["task"] = [*task, *([starts_from] if starts_from else [])]
    OmegaConf.save(OmegaConf.create(saved), sweep_dir / "multirun.yaml")

    def compose(overrides: list[str]) -> DictConfig:
        return sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, overrides)

    plan = resume_plan(sweep_dir, jobs, compose)
    for line in said_of(plan, sweep_dir):
        (print_warning if line.startswith("warning: ") else print_line)(line.removeprefix("warning: "))
    returns = []
    for batch in consecutive_runs([job for job in plan if job.runs], sweeper.max_batch_size):
        overrides = [job.launched for job in batch]
        sweeper.validate_batch_is_legal(overrides)
        results = sweeper.launcher.launch(overrides, initial_job_idx=batch[0].number)
        for result in results:  # as Hydra's basic sweeper: a job that raised ends the sweep with its error
            _ = result.return_value
        returns.append(results)
    return returns


RUN = (Next.RESUME, Next.RESTART, Next.START)  # what a resumed sweep launches


def consecutive_runs(jobs: list[ResumedJob], most: int | None) -> list[list[ResumedJob]]:
    """The jobs in batches of consecutive numbers, in number order, each at most `most` long (None: no limit)."""
    batches: list[list[ResumedJob]] = []
    for job in sorted(jobs, key=lambda job: job.number):
        if batches and job.number == batches[-1][-1].number + 1 and (not most or len(batches[-1]) < most):
            batches[-1].append(job)
        else:
            batches.append([job])
    return batches


def said_of(plan: list[ResumedJob], sweep_dir: Path) -> list[str]:
    """What a resumed sweep says before it launches anything: a line for the jobs it keeps and for those it resumes,
    a `warning:` line for the jobs kept as they ended (failed, diverged), for those kept because their every step was
    trained, and for those trained again from the start."""
    from src.provenance import module_command, shell_override

    def jobs(selected: list[ResumedJob], with_status: bool = False) -> str:
        selected = sorted(selected, key=lambda job: job.number)
        named = [f"{job.number} ({job.status})" if with_status else str(job.number) for job in selected]
        return f"job {named[0]}" if len(named) == 1 else f"jobs {', '.join(named)}"

    lines = []
    kept = [job for job in plan if job.next is Next.KEEP]
    if kept:
        has, it_is = ("has", "it is") if len(kept) == 1 else ("have", "they are")
        lines.append(f"{jobs(kept)} {has} finished: kept as {it_is}, not trained again")
    for job in sorted((job for job in plan if job.next is Next.RESUME), key=lambda job: job.number):
        assert job.directory is not None and job.checkpoint is not None
        lines.append(f"job {job.number} ({job.name}) goes on from its {job.checkpoint.relative_to(job.directory)}")
    ended = [job for job in plan if job.next is Next.KEEP_ENDED]
    if ended:
        report = module_command("src.report", shlex.quote(str(sweep_dir)))
        lines.append(
            f"warning: {jobs(ended, with_status=True)} {'is' if len(ended) == 1 else 'are'} kept as "
            f"{'it' if len(ended) == 1 else 'they'} ended, not run again (a crash or a divergence would come again): "
            f"{report} says why; to run one again, delete its directory and resume the sweep"
        )
    for job in (job for job in plan if job.next is Next.KEEP_TRAINED):
        assert job.directory is not None
        lines.append(
            f"warning: job {job.number} ({job.name}) was interrupted after its last step ({job.trained}), so there "
            "is nothing to resume: kept; its final metrics are not recorded: evaluate it with "
            f"{module_command('src.eval', shell_override('ckpt', job.directory))}"
        )
    restarted = [job for job in plan if job.next is Next.RESTART]
    if restarted:
        names = ", ".join(f"{job.number} ({job.name}, {job.status or 'no run.json'})" for job in restarted)
        lines.append(
            f"warning: {'job' if len(restarted) == 1 else 'jobs'} {names} stopped before saving a checkpoint: "
            "trained again from the start, in place"
        )
    return lines
