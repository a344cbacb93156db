"""What `python -m src.run` checks before Hydra writes anything: a run or sweep that would be refused is refused
before its directory exists (a refused run leaves nothing behind), and no command may redo finished work over its
results, or write a second run over a first one.

Hydra writes `.hydra/` into the run directory (and `multirun.yaml` into a sweep directory) before any of the
task's code runs, so these checks are Hydra callbacks (conf/config.yaml, `hydra.callbacks.preflight`): Hydra calls
`on_run_start` / `on_multirun_start` with the composed config, before it creates or touches a directory. A refusal
is one `error:` line, exit status 2, and every file of the earlier run or sweep unchanged. (Hydra turns an
exception raised by a callback into a warning and goes on, so the callback exits itself.)

Every run is checked as a whole before it starts: its settings (src/cli/validation.py validate_config), its data as
far as is cheap to read (check_data there: the data files' first part, a pretrained model's tokenizer and weights)
and the checkpoint it resumes. A grid sweep (Hydra's basic sweeper) has each of its jobs checked so before the
first one starts: one job that cannot run refuses the whole sweep, naming the job, rather than leaving a failed job
behind in the sweep's report. (A sweeper that picks its jobs as it goes, Optuna's, has the data its jobs share
checked.) What is found only while a run reads its data (past the part of a large file checked here) or trains
ends that run as failed, and its run.json says why; a sweep reports it and goes on.

The processes of a run (the extra ranks of strategy=ddp, the tasks of a SLURM job, the job started again after a
requeue) enter its directory as part of that run (src/training/processes.py says which they are); for any other
process, refused:
- a new run in a directory that already holds one (`hydra.run.dir=<run>` without `ckpt_path`);
- resuming a checkpoint that has nothing left to train (its step has reached `trainer.max_steps`, its epochs
  `trainer.max_epochs`, or its time `trainer.max_time`): Lightning would return at once and the run would end as
  "completed" with no metrics;
- resuming another run's checkpoint into a directory that holds a run (its checkpoints and metrics would be
  replaced by another run's continuation);
- an Optuna search whose stored study cannot be reached or continued (src/study.py: another direction, objective
  or search space), and `ckpt_path=last` with an Optuna search into a directory that holds no search with a stored
  study, or one of another study, storage or settings (src/study.py check_resume); a searched parameter given a
  value on the command line in a way that cannot be meant (src/study.py check_fixed: `++key=value`, or every one
  of them, so that every trial runs the same settings), while one given plainly is said in one `warning:` line;
  the same for a setting a grid sweep's `hydra.sweeper.params` sweeps (check_grid_fixed): `++key=value` refused,
  one value said;
- a sweep into a `hydra.sweep.dir` that already holds one: Hydra reuses job directories without complaint, so
  the second sweep would overwrite the first one's checkpoints and metrics (a stacked sweep or an Optuna search
  resumed with `ckpt_path=last` goes on in its own directory instead).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.cli.command_line import USER_ERRORS, user_errors_as_one_line
from src.model import ConfigError
from src.provenance import how_to_stop, live_process, module_command, read_record, read_status, shell_override
from src.study import (
    changed_after_planning,
    check_fixed,
    check_study,
    fixed_clause,
    fixed_on_command_line,
    plain,
    pronouns,
    resumes_search,
)
from src.study import check_resume as check_search_resume
from src.study import read_record as read_study_record
from src.training.checkpoint import newest_checkpoint, read_checkpoint
from src.training.processes import belongs_to, process_rank, started_by_a_run
from src.training.report import print_warning


def _resolved(config: DictConfig, key: str) -> Any:
    """A value of the composed config, None when it cannot be resolved before the job starts."""
    try:
        return OmegaConf.select(config, key, throw_on_resolution_failure=True)
    except Exception:  # an interpolation only Hydra's job can resolve: nothing to check here
        return None


class Preflight(Callback):
    """Hydra callback: the checks above, before Hydra writes into a run or sweep directory."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with user_errors_as_one_line():  # exits with status 2: Hydra would only warn about an exception
            check_run_dir(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from src.sweep.lock import check_not_in_use, hold_sweep_lock
        from src.sweep.slurm import check_no_job_still_running

        with user_errors_as_one_line():
            # one grid sweep's process per directory (src/sweep/lock.py): a second would train the same jobs again
            locked = resumes_in_place(OmegaConf.select(config, "hydra.sweeper", default=None) or {})
            swept_in = _resolved(config, "hydra.sweep.dir")
            sweep_dir = swept_in if locked else None
            if sweep_dir is not None:
                check_not_in_use(Path(sweep_dir))
            check_sweep_dir(config)
            if swept_in is not None:  # a sweep's process killed: its SLURM or submitit_local jobs may still run
                check_no_job_still_running(Path(swept_in))
            check_tasks_per_device(config)
            check_sweep_direction(config)
            check_study(config)  # an Optuna study in a storage: reachable, same objective, direction and space
            check_fixed(config)  # a searched parameter given one value on the command line: said, or refused
            check_grid_fixed(config)  # a setting the grid sweep plans to sweep given one value: said, or refused
            check_sweep_jobs(config)
            if sweep_dir is not None:
                hold_sweep_lock(Path(sweep_dir))  # until the command ends (src.run's cli releases it)


def check_run_dir(config: DictConfig) -> None:
    """One run: its settings are sound and its data readable (so a refused run leaves no directory behind), and a
    directory that holds a run is only entered to resume it (see check_resume)."""
    from src.cli.validation import check_data, validate_config

    run_dir = _resolved(config, "hydra.run.dir")
    if run_dir is None:
        return
    # As src.run checks them again, but before Hydra writes anything
    validate_config(_without_hydra(config), overrides=list(config.hydra.overrides.task))
    run_dir = Path(run_dir)
    if (run_dir / "multirun.yaml").is_file():
        raise ConfigError(
            f"hydra.run.dir={run_dir} is a sweep's directory: give one of its jobs' directories to resume that "
            "job, or choose another directory"
        )
    if process_rank() > 0 and not started_by_a_run(run_dir):
        raise ConfigError(
            f"this process has rank {process_rank()} (LOCAL_RANK or RANK is set in its environment), but no run "
            "started it: unset LOCAL_RANK and RANK, and give trainer.devices=N for a run of N processes"
        )
    record = read_record(run_dir)
    if belongs_to(run_dir, record) is not None:
        # A process of the run recorded there (an extra rank it started, a task of its SLURM job, or that job started
        # again after a requeue): part of that run, checked when the run started, not a second run over it.
        return
    status = record.get("status") if record is not None else None
    if (pid := live_process(record)) is not None:
        doing = "analysing" if status != "running" else "training"
        sweep = " (a job of a sweep, which may stop with it)" if record and record.get("process_command") else ""
        raise ConfigError(
            f"hydra.run.dir={run_dir} holds a run that process {pid} of this machine is {doing} now: this command "
            f"would write over its files; wait until it ends, or stop it with {how_to_stop([pid])}{sweep}: a run "
            "stopped while it trains saves its step; then run this command again"
        )
    if config.get("ckpt_path") is None:
        saved = newest_checkpoint(run_dir) if status is not None else None
        if status == "running" and saved is None:
            raise ConfigError(
                f"hydra.run.dir={run_dir} holds a run that is running, or was killed before saving a checkpoint "
                "(its run.json says running): choose another directory, or delete that one once it is not running"
            )
        if status is not None and saved is None:  # failed before training: nothing to resume
            raise ConfigError(
                f"hydra.run.dir={run_dir} holds a run that ended ({status}) before saving a checkpoint, so there is "
                "nothing to resume: choose another directory, or delete that one first"
            )
        if status is not None:
            raise ConfigError(
                f"hydra.run.dir={run_dir} already holds a run ({status}): resume it with ckpt_path=last, or "
                "choose another directory"
            )
    else:
        check_last_has_a_run_dir(config, run_dir)
        check_analysis_target(run_dir, bool(config.get("analyze_after_fit")))  # resumed in place: may have one
        check_resume(config, run_dir, holds_a_run=status is not None)
    check_data(_without_hydra(config))  # last: the data files are read (their first part), a model's tokenizer loaded


def check_last_has_a_run_dir(config: DictConfig, run_dir: Path) -> None:
    """ckpt_path=last resumes the run in hydra.run.dir. Without hydra.run.dir on the command line, that is the new
    directory Hydra would make for this run (outputs/<date>/<time>), which holds nothing: say what ckpt_path=last
    reads and how to name the run, rather than that a directory nobody made has no checkpoints."""
    if str(config.get("ckpt_path")) != "last" or run_dir.exists():
        return
    given = any(str(o).startswith("hydra.run.dir=") for o in OmegaConf.select(config, "hydra.overrides.hydra") or [])
    if given:
        raise ConfigError(
            f"ckpt_path=last resumes the run in hydra.run.dir, and hydra.run.dir={run_dir} does not exist: give the "
            "interrupted run's directory, hydra.run.dir=<the run> ckpt_path=last"
        )
    raise ConfigError(
        "ckpt_path=last resumes the run in hydra.run.dir, and none was given (this run would get a new one): add "
        "hydra.run.dir=<the run> (the directory the interrupted run printed), or give ckpt_path=<the run> to "
        "continue it in a new directory"
    )


def check_analysis_target(run_dir: Path, analyze_after_fit: bool) -> None:
    """analyze_after_fit=true writes <run>/analysis/, which must not exist: a run resumed in place may have one
    from an earlier session (or from src.analyze), and an analysis is never overwritten. Refused before training,
    not after it."""
    from src.analyze import ANALYSIS_DIR

    existing = run_dir / ANALYSIS_DIR
    if analyze_after_fit and existing.exists():
        raise ConfigError(
            f"{existing} exists (an earlier analysis of this run), which analyze_after_fit=true would overwrite: "
            "move it away first, or leave out analyze_after_fit=true and analyse the run later with "
            f"{module_command('src.analyze', shell_override('ckpt', run_dir), shell_override('out', f'{existing}-2'))}"
        )


def check_sweep_dir(config: DictConfig) -> None:
    """A sweep: only into a directory that holds no sweep (job directories or Hydra's multirun.yaml) and no run;
    and an optimising sweeper must have trials to run."""
    sweep_dir = _resolved(config, "hydra.sweep.dir")
    trials = OmegaConf.select(config, "hydra.sweeper.n_trials", default=None)
    if trials is not None and trials < 1:
        raise ConfigError(f"hydra.sweeper.n_trials={trials} runs no trial: give hydra.sweeper.n_trials >= 1")
    if resumes_search(config):  # ckpt_path=last: an Optuna search goes on in its own directory (src/study.py)
        check_search_resume(config)
        return
    if resumes_stacked_sweep(config):  # ckpt_path=last: a stacked sweep goes on in its own directory
        given = any(str(o).startswith("hydra.sweep.dir=") for o in config.hydra.overrides.hydra)
        check_stacked_sweep_dir(sweep_dir if given else None)
        return
    if resumes_grid_sweep(config):  # ckpt_path=last: a grid sweep goes on in its own directory (src/sweep/resume.py)
        given = any(str(o).startswith("hydra.sweep.dir=") for o in config.hydra.overrides.hydra)
        check_grid_sweep_dir(sweep_dir if given else None)
        return
    if sweep_dir is None:
        return
    sweep_dir = Path(sweep_dir)
    if read_status(sweep_dir) is not None:
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds a single run, among whose files the sweep would write: choose "
            "another hydra.sweep.dir, or leave it out for a new one"
        )
    jobs = sorted(path.parent for path in sweep_dir.glob("*/.hydra"))
    if not jobs and not (sweep_dir / "multirun.yaml").is_file():
        return
    from src.sweep.runs import is_search

    stacked = any("stacked" in (read_record(job) or {}) for job in jobs)  # members of stacked groups of seeds
    searched = read_study_record(sweep_dir) is not None  # an Optuna search whose study is in a database
    if stacked:
        resume = (
            "; its jobs were trained as stacked groups of seeds: to finish it, run the same sweep again with "
            f"{shell_override('hydra.sweep.dir', sweep_dir.resolve())} ckpt_path=last (interrupted groups resume, "
            "finished ones are kept)"
        )
    elif searched:
        resume = (
            "; it is an Optuna search: to go on with it, run the same search again with "
            f"{shell_override('hydra.sweep.dir', sweep_dir.resolve())} ckpt_path=last (interrupted trials resume, "
            "then new ones are sampled up to hydra.sweeper.n_trials)"
        )
    elif is_search(sweep_dir):
        resume = "; it is an Optuna search whose study was kept in memory, so it cannot go on"
    else:
        to_finish = what_finishes_the_sweep(sweep_dir, jobs)
        if to_finish is None:
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir} holds a finished sweep ({len(jobs)} jobs, all completed), which this "
                f"one would overwrite: it is done, its report is {sweep_dir / 'report.md'} "
                f"({module_command('src.report', shlex.quote(str(sweep_dir)))} writes it again); for another sweep, "
                "choose another hydra.sweep.dir, or leave it out for a new one"
            )
        resume = f"; to finish it, {to_finish}"
    held = counted(len(jobs), "job directory", "job directories")
    raise ConfigError(
        f"hydra.sweep.dir={sweep_dir} already holds a sweep ({held}), which this one would overwrite: choose another "
        f"hydra.sweep.dir, or leave it out for a new one{resume}"
    )


SHOWN_JOBS = 3  # job directories a refusal names (the report lists them all)


def counted(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def what_finishes_the_sweep(sweep_dir: Path, jobs: list[Path]) -> str | None:
    """What a grid sweep in `sweep_dir` needs to be finished, by what its directory holds: its own command with
    ckpt_path=last, which resumes its interrupted jobs in place and runs those it never started, keeping the
    finished ones (src/sweep/resume.py); and which jobs failed or diverged, which that keeps as they ended (the
    report says why). None when every job completed: the sweep is done."""
    from src.sweep.report import not_started
    from src.sweep.resume import ENDED_BY_ITSELF, resume_command

    report = module_command("src.report", shlex.quote(str(sweep_dir)))
    records = {job: read_record(job) or {} for job in jobs}
    unfinished = [job for job in jobs if records[job].get("status") != "completed"]
    missing = not_started(sweep_dir)
    if not unfinished and not missing:
        return None if jobs else f"run the jobs it planned, which {report} lists"
    ended = [job for job in unfinished if records[job].get("status") in ENDED_BY_ITSELF]
    trained = [job for job in unfinished if job not in ended and trained_to_the_end(job)]
    interrupted = [job for job in unfinished if job not in ended and job not in trained]
    command = resume_command(sweep_dir) or (
        f"the same sweep with {shell_override('hydra.sweep.dir', sweep_dir.resolve())} ckpt_path=last"
    )
    said = []
    if interrupted or missing:
        goes_on = []
        if interrupted:
            goes_on.append(f"its {counted(len(interrupted), 'interrupted job')} in place")
        if missing:
            goes_on.append(f"the {counted(len(missing), 'job')} it never started")
        runs = " and ".join(goes_on)
        said.append(f"run it again with ckpt_path=last, {command} (it runs {runs}, and keeps the rest)")
    if ended:
        names = ", ".join(f"{job.name} ({records[job].get('status')})" for job in ended)
        again = "then" if said else f"with {command}"
        said.append(
            f"{counted(len(ended), 'job')} failed or diverged ({names}), which a resume keeps as they ended ({report} "
            f"says why): to run one again, delete its directory and resume the sweep ({again})"
        )
    if trained:
        evaluate = ", ".join(module_command("src.eval", shell_override("ckpt", job)) for job in trained)
        said.append(
            f"{counted(len(trained), 'job')} ({', '.join(job.name for job in trained)}) "
            f"{'was' if len(trained) == 1 else 'were'} interrupted after {'its' if len(trained) == 1 else 'their'} "
            f"last step, which a resume keeps; {'its' if len(trained) == 1 else 'their'} final metrics are not "
            f"recorded: evaluate {'it' if len(trained) == 1 else 'each'} with {evaluate}"
        )
    return "; ".join(said)


def trained_to_the_end(job: Path) -> bool:
    """Whether an unfinished job's newest checkpoint holds every step its trainer asked for (it was interrupted
    after its last step): a resumed sweep keeps it (src/sweep/resume.py, Next.KEEP_TRAINED)."""
    checkpoint = newest_checkpoint(job)
    if checkpoint is None:
        return False
    try:
        trainer = OmegaConf.load(job / ".hydra" / "config.yaml").trainer
        return finished_by(read_checkpoint(str(checkpoint), "ckpt_path"), trainer) is not None
    except Exception:  # a checkpoint or config that cannot be read: the resume says what it does with it
        return False


def resumes_stacked_sweep(config: DictConfig) -> bool:
    """hydra/launcher=stacked with ckpt_path=last: the sweep in hydra.sweep.dir goes on where it stopped."""
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
    return launcher.endswith("StackedLauncher") and OmegaConf.select(config, "ckpt_path", default=None) == "last"


def resumes_grid_sweep(config: DictConfig) -> bool:
    """ckpt_path=last with a sweeper that resumes a grid sweep in place (hydra/sweeper=grid, the default: its class
    says so) and a launcher that runs each job on its own: the sweep in hydra.sweep.dir goes on where it stopped
    (src/sweep/resume.py). The stacked launcher resumes its groups itself (resumes_stacked_sweep)."""
    if OmegaConf.select(config, "ckpt_path", default=None) != "last" or resumes_stacked_sweep(config):
        return False
    return resumes_in_place(OmegaConf.select(config, "hydra.sweeper", default=None) or {})


def resumes_in_place(sweeper: Any) -> bool:
    """Whether the sweeper this config makes (`hydra.sweeper`) resumes a sweep in its own directory with
    ckpt_path=last: its class says so (`resumes_in_place`: the grid sweeper)."""
    from hydra.utils import get_class

    try:
        return bool(getattr(get_class(str(sweeper.get("_target_", ""))), "resumes_in_place", False))
    except Exception:  # no sweeper this code can import: Hydra names the problem when it makes one
        return False


def check_grid_sweep_dir(sweep_dir: Any) -> None:
    """A grid sweep resumed with ckpt_path=last: hydra.sweep.dir must be given and hold a grid sweep whose jobs ran
    one by one; a single run, a stacked sweep and an Optuna search each resume with a command of their own."""
    from src.sweep.resume import resume_command
    from src.sweep.runs import is_search

    if sweep_dir is None:
        raise ConfigError(
            "ckpt_path=last in a sweep resumes that sweep in its own directory: add hydra.sweep.dir=<the sweep's "
            "directory> (the command an interrupted job printed has it)"
        )
    sweep_dir = Path(sweep_dir)
    record = read_record(sweep_dir)
    if record is not None:
        again = record.get("resume") or (
            module_command("src.run", "<its overrides>", shell_override("hydra.run.dir", sweep_dir), "ckpt_path=last")
        )
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds a single run, not a sweep: a run resumes without -m ({again})"
        )
    jobs = sorted(path.parent for path in sweep_dir.glob("*/.hydra"))
    if not jobs and not (sweep_dir / "multirun.yaml").is_file():
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds no sweep to resume (ckpt_path=last): give the directory of the "
            "interrupted sweep, or drop ckpt_path=last to start a new one"
        )
    if any("stacked" in (read_record(job) or {}) for job in jobs):
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds a sweep whose jobs were trained as stacked groups of seeds, which "
            "resume only as groups, with hydra/launcher=stacked: "
            + (resume_command(sweep_dir) or "its own command, hydra/launcher=stacked added")
        )
    if is_search(sweep_dir) or read_study_record(sweep_dir) is not None:
        search = (read_study_record(sweep_dir) or {}).get("resume")  # recorded where its study is stored
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds an Optuna search, not a grid sweep: "
            + (
                f"resume it with its own command, {search}"
                if search
                else "its study was in memory, so it cannot go on: start a new search in another hydra.sweep.dir"
            )
        )
    if not (sweep_dir / "multirun.yaml").is_file():
        # A grid sweep writes multirun.yaml before its first job: run directories without one are a folder of runs
        # (outputs/<date> typed for outputs/multirun/<date>/<time>), whose names no job of a sweep would match.
        held = f" ({counted(len(jobs), 'run directory', 'run directories')} but no multirun.yaml)" if jobs else ""
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds no sweep to resume (ckpt_path=last){held}: give the directory of "
            "the interrupted sweep, or drop ckpt_path=last to start a new one"
        )


def check_stacked_sweep_dir(sweep_dir: Any) -> None:
    """A stacked sweep resumed with ckpt_path=last: hydra.sweep.dir must be given and hold that sweep."""
    if sweep_dir is None:
        raise ConfigError(
            "ckpt_path=last with hydra/launcher=stacked resumes a sweep in its own directory: add "
            "hydra.sweep.dir=<the sweep's directory> (the command an interrupted group printed has it)"
        )
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "multirun.yaml").is_file() and not any(sweep_dir.glob("*/.hydra")):
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds no sweep to resume (ckpt_path=last): give the directory of the "
            "interrupted sweep, or drop ckpt_path=last to start a new one"
        )
    # A job of a grid sweep (trained alone) that did not finish resumes from its own checkpoint, which only the grid
    # sweep's resume reads: a stacked group would train it again from the start, over its steps.
    # (A directory without run.json holds nothing to lose: a group may have died before writing its members'.)
    records = {job.parent.name: read_record(job.parent) for job in sorted(sweep_dir.glob("*/.hydra"))}
    alone = [
        name
        for name, record in records.items()
        if record is not None and "stacked" not in record and record.get("status") != "completed"
    ]
    if alone:
        from src.sweep.resume import resume_command

        grid = resume_command(sweep_dir)
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds jobs trained one by one that did not finish "
            f"({', '.join(alone[:SHOWN_JOBS])}{', ...' if len(alone) > SHOWN_JOBS else ''}), which a stacked group "
            "would train again from the start: resume the sweep as it ran, "
            + (grid if grid else "its own command with ckpt_path=last, without hydra/launcher=stacked")
        )


def check_stacked_resume(config: DictConfig, jobs: list[list[str]]) -> None:
    """A stacked sweep resumed with ckpt_path=last must be the sweep in that directory. Its jobs are matched to the
    sweep's job directories by their settings (src/sweep/stacked.py: resumed_jobs), so the command may give them in
    another order and add values (seeds), but every directory must be one of its jobs (check_no_job_left_out), a
    group resumed from its saved state must fit hydra.launcher.max_members (check_group_fits), and each group state
    it resumes was trained with the settings that change the numbers as they are now (the thread count included)."""
    from hydra.core.global_hydra import GlobalHydra

    from src.sweep.stacked import group_state_path, resumed_groups, resumed_jobs, stack_groups
    from src.training.checkpoint import read_checkpoint

    sweep_dir = Path(config.hydra.sweep.dir)
    numbers, held = resumed_jobs(sweep_dir, jobs)
    check_no_job_left_out(sweep_dir, held, jobs)
    limit = OmegaConf.select(config, "hydra.launcher.max_members", default=None)
    loader = GlobalHydra.instance().config_loader()
    for group in stack_groups(jobs):
        for resumed in resumed_groups(group, held, numbers, sweep_dir):  # as the launcher groups them
            check_group_fits(resumed, numbers, held, sweep_dir, limit)
            for start in range(0, len(resumed), limit or len(resumed)):
                members = resumed[start : start + (limit or len(resumed))]
                state = group_state_path(sweep_dir, [numbers[m] for m in members])
                if len(members) < 2 or not state.is_file():
                    continue
                checkpoint = read_checkpoint(str(state), "ckpt_path")
                settings = _without_hydra(loader.load_sweep_config(config, list(jobs[members[0]])))
                check_made_alike(settings, checkpoint, settings.torch_threads or 0)


def check_grid_resume(config: DictConfig, jobs: list[list[str]], loader: Any) -> list[Any]:
    """A grid sweep resumed with ckpt_path=last must be the sweep in that directory: its jobs are matched to the
    sweep's job directories by their settings, so the command may give them in another order and add values, but
    every directory must be one of its jobs (check_no_job_left_out). Returns what the resume does with each job
    (src/sweep/resume.py: resume_plan), for check_sweep_jobs to check the jobs it runs as they will run."""
    from src.sweep.resume import resume_plan
    from src.sweep.runs import matched_jobs

    sweep_dir = Path(config.hydra.sweep.dir)
    planned, held = matched_jobs(sweep_dir, jobs)
    check_no_job_left_out(sweep_dir, [held.get(key) for key in planned], jobs)
    return resume_plan(sweep_dir, jobs, lambda overrides: loader.load_sweep_config(config, overrides))


def check_no_job_left_out(sweep_dir: Path, held: list[Path | None], jobs: list[list[str]]) -> None:
    """A resumed sweep runs every job its directory holds (`held`: the directory each of its `jobs` goes on in,
    None for a new job): a job directory whose settings none of its jobs has would be passed over (an interrupted
    stacked group could not resume without it), and the report would count it beside jobs trained otherwise.
    Refused in one line that says what the command leaves out: values it no longer sweeps (`seed=0,1` after
    `seed=0,1,2`), with the values to give, or else the settings that differ from its nearest job's. Never a pairing
    of a left-out job with a new one that Hydra happens to give its number."""
    from src.sweep.runs import held_overrides, settings_key, unswept_run_only

    overrides_held = held_overrides(sweep_dir)
    left_out = [directory for directory in overrides_held if directory not in held]
    if not left_out:
        return
    leave_out = unswept_run_only(list(overrides_held.values()), [[str(o) for o in job] for job in jobs])
    planned = [settings_key(overrides, leave_out) for overrides in jobs]
    # what this command gives each setting, in its order (each override written as settings_key writes it)
    given = values_by_setting(
        [[s for o in overrides for s in sorted(settings_key([o], leave_out))] for overrides in jobs]
    )
    had = {directory: settings_key(overrides, leave_out) for directory, overrides in overrides_held.items()}
    fix = (
        "resume a sweep with the settings it was started with (each job's .hydra/overrides.yaml; values such as "
        "seeds may be added, and the settings given in any order)"
    )
    names = ", ".join(d.name for d in left_out[:SHOWN_JOBS])
    names += f" (and {len(left_out) - SHOWN_JOBS} more)" if len(left_out) > SHOWN_JOBS else ""
    held_values = values_by_setting([sorted(settings) for settings in had.values()])  # the directories' values
    dropped = values_left_out([had[d] for d in left_out], given, held_values)
    if dropped:

        def swept(values_of: dict[str, list[str]]) -> str:
            return " ".join(f"{key}={','.join(values_of[key])}" for key in dropped)

        whole = {key: [*given[key], *(v for v in held_values[key] if v not in given[key])] for key in dropped}
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds {names}, which this sweep would not run: it leaves out "
            f"{swept(dropped)} (it gives {swept(given)}), and a resumed sweep runs every job its directory holds: give "
            f"{swept(whole)} (more values may be added), or drop ckpt_path=last and choose another hydra.sweep.dir for "
            "a sweep of fewer jobs"
        )
    was = had[left_out[0]]
    if not planned:
        raise ConfigError(f"hydra.sweep.dir={sweep_dir} holds {names}, which this sweep would not run: {fix}")
    nearest = min(planned, key=lambda settings: len(settings ^ was))
    before, after = sorted(was - nearest), sorted(nearest - was)

    def keys(settings: list[str]) -> str:
        return "no " + ", ".join(setting.partition("=")[0] for setting in settings)

    more = f" (and {len(left_out) - 1} more)" if len(left_out) > 1 else ""
    raise ConfigError(
        f"hydra.sweep.dir={sweep_dir} holds a sweep run with other settings: its job {left_out[0].name}{more} had "
        f"{' '.join(before) or keys(after)}, this one has {' '.join(after) or keys(before)}: {fix}, or start a new "
        "one without ckpt_path=last"
    )


def values_by_setting(jobs: list[list[str]]) -> dict[str, list[str]]:
    """Each setting's values over `jobs` (each its settings written as settings_key writes them, `key=value`), in
    the order they first appear."""
    values: dict[str, list[str]] = {}
    for job in jobs:
        for setting in job:
            key, _, value = setting.partition("=")
            if value not in values.setdefault(key, []):
                values[key].append(value)
    return values


def values_left_out(
    left_out: list[frozenset[str]], given: dict[str, list[str]], held: dict[str, list[str]]
) -> dict[str, list[str]]:
    """The values of swept settings that a resumed command no longer gives (`seed=2` of `seed=0,1` after
    `seed=0,1,2`), by setting, from the settings_key of each job left out, the values the command gives and those
    the sweep's directories hold. A value left out is one of a setting whose other values the command still gives;
    a setting none of whose values it gives any more (model.dropout=0.1 now 0.2), or that it no longer gives at
    all, is no value left out but another sweep: empty then."""
    dropped: dict[str, list[str]] = {}
    for settings in left_out:
        for setting in sorted(settings):
            key, _, value = setting.partition("=")
            if value in given.get(key, []):
                continue
            if not set(given.get(key, [])) & set(held.get(key, [])):
                return {}
            if value not in dropped.setdefault(key, []):
                dropped[key].append(value)
    return {key: dropped[key] for key in given if key in dropped}  # in the command's order


def check_group_fits(
    members: list[int], numbers: list[int], held: list[Path | None], sweep_dir: Path, limit: int | None
) -> None:
    """A group resumed from its saved training state resumes as a whole, with the members it was saved with (a seed
    added trains in a group of its own: src/sweep/stacked.py, resumed_groups): with more members than
    hydra.launcher.max_members (lowered since), it would take the memory that limit is there to bound."""
    from src.sweep.stacked import group_state_path

    state = group_state_path(sweep_dir, [numbers[m] for m in members])
    if not limit or len(members) <= limit or not state.is_file():
        return
    names = ", ".join(held[m].name for m in members if held[m] is not None)
    raise ConfigError(
        f"{names} were interrupted in a stacked group of {len(members)} (its state: {state}), which resumes as a "
        f"whole, and hydra.launcher.max_members={limit} is smaller: resume with hydra.launcher.max_members="
        f"{len(members)}, and lower it once that group has finished"
    )


def on_a_cluster(config: DictConfig) -> bool:
    """Whether a sweep's jobs run on a cluster's nodes (the SLURM launchers), not on this machine."""
    return "slurm" in str(OmegaConf.select(config, "hydra.launcher._target_", default="")).lower()


def check_tasks_per_device(config: DictConfig) -> None:
    """On SLURM (the submitit launchers) each rank of a multi-device run is a task that SLURM starts: several
    devices need as many tasks per node, or every job would fail on the cluster with Lightning's own advice."""
    tasks = OmegaConf.select(config, "hydra.launcher.tasks_per_node", default=None)
    devices = _resolved(config, "trainer.devices")
    if tasks is None or not isinstance(devices, int) or devices == tasks or not on_a_cluster(config):
        return
    raise ConfigError(
        f"trainer.devices={devices} with hydra.launcher.tasks_per_node={tasks}: on SLURM each device is one task, "
        f"started by SLURM: set hydra.launcher.tasks_per_node={devices} (with GPUs also "
        f"hydra.launcher.gpus_per_node={devices})"
    )


def check_sweep_direction(config: DictConfig) -> None:
    """An optimising sweeper (Optuna) maximises or minimises what the runs return (`objective`, by default the
    task's main metric): the two must agree, or the search would hunt for the worst settings."""
    from src.study import check_direction, directions_of

    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if direction is not None:
        check_direction(config, directions_of(direction))


def sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """The overrides of every job a grid sweep runs, in the order Hydra's basic sweeper numbers them (its
    `hydra.sweeper.params` first, then the command line's); None for a sweeper that picks its jobs as it goes."""
    from src.sweep.runs import plans_a_grid

    if not plans_a_grid(str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))):
        return None
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    return grid_jobs(params, [str(o) for o in config.hydra.overrides.task])


def grid_jobs(params: Any, overrides: list[str]) -> list[list[str]]:
    """The overrides of every job Hydra's basic sweeper plans from `hydra.sweeper.params` and the command line's
    overrides: one list of overrides keyed by setting, where a later value replaces an earlier one (so the command
    line's replace the params'), and every combination of the values."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from src.sweep.runs import running_config_loader

    arguments = [f"{key}={value}" for key, value in (params or {}).items()] + overrides
    parser = OverridesParser.create(config_loader=running_config_loader())  # a glob lists the group's options
    (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)
    return jobs


def check_grid_fixed(config: DictConfig) -> None:
    """A setting a grid sweep's plan sweeps given one value on the command line (`-m experiment=heads model.heads=4`).

    An experiment plans its sweep in `hydra.sweeper.params` (experiments/heads.yaml: model.heads 1,2,4,8 and seed
    0,1,2, 12 jobs). The command line's value for the same setting replaces the planned values (grid_jobs), so that
    sweep runs 3 jobs, all with model.heads=4. Legal and useful (one configuration of a study, with its seeds), but it
    was silent: one `warning:` line, worded as the Optuna search's (src/study.py check_fixed), with the job counts.
    Refused in one line, as the search refuses it, when the override has a prefix (`++model.heads=4`): the sweeper
    keys the overrides as written, so it keeps the planned values too, and each job gets one of them and then this
    one: the jobs planned to differ in it would train the same run (check_not_repeated would refuse that later, as
    two jobs with the same settings, without naming the cause).

    Not said: a sweep of the command line's own over the setting (`model.heads=1,2`), which replaces the planned
    values as well but lists the values it runs, as a range of one's own replaces an Optuna search's; and a planned
    value that is no sweep (`seed: 0`), a setting like any other the command line may change."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    jobs = sweep_jobs(config)
    if jobs is None:  # a sweeper that picks its jobs as it goes (Optuna): src/study.py check_fixed
        return
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    parser = OverridesParser.create()
    swept = {key for key, value in params.items() if parser.parse_override(f"{key}={value}").is_sweep_override()}
    overrides = [str(o) for o in config.hydra.overrides.task]
    fixed = {key: o for key, o in fixed_on_command_line(params, overrides).items() if key in swept}
    if not fixed:
        return
    for key, override in fixed.items():
        if override.get_key_element() != key:  # a prefix: ++, ~
            raise ConfigError(
                f"{changed_after_planning(override, key, params, 'every job', 'sweep has set')}, so the jobs planned "
                f"to differ in it would all train the same run: write {plain(override, key)} to run that value "
                "alone, or leave it out to sweep it"
            )
    given = {override.input_line for override in fixed.values()}
    planned = len(grid_jobs(params, [o for o in overrides if o not in given]))  # what leaving them out runs
    it, its = pronouns(fixed)
    print_warning(
        f"{fixed_clause(fixed, params, 'job', 'sweep', 'sweeps')}: the sweep runs {counted(len(jobs), 'job')}, not "
        f"{planned}; leave {it} out to sweep {it}, or give {it} values of {its} own, comma-separated"
    )


def swept_keys(config: DictConfig) -> list[str]:
    """The settings and groups a sweep varies: its sweep overrides and its sweeper's params (a search space)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    return [*params, *(o.key_or_group for o in overrides if o.is_sweep_override())]


# Every job check_sweep_jobs composed in this process, by its overrides: the sweep's config and the job's config
# composed from it. The grid sweeper does not compose them a second time, neither to check a batch before launching
# it nor, in this process, to run them (hydra_plugins/transformer_ablations/grid_sweeper.py).
COMPOSED_JOBS: dict[tuple[str, ...], tuple[DictConfig, DictConfig]] = {}


def check_sweep_jobs(config: DictConfig) -> None:
    """Each job of a grid sweep checked as a single run is (check_run_dir) before the first one starts: its
    settings, its data and the checkpoint it resumes. One job that cannot run refuses the sweep, with the job's
    number and values: nothing has run, and no failed job is left in the sweep's report. The data and checkpoints
    the jobs share are read once. A sweeper that picks its jobs as it goes (Optuna) has the data checked that all
    its jobs read, where the search does not vary it (the task, its settings, or the pretrained model)."""
    from hydra.core.global_hydra import GlobalHydra

    from src.cli.validation import check_data, validate_config

    COMPOSED_JOBS.clear()  # this sweep's own jobs, not an earlier command's of this process
    check_stacked_launcher(config.hydra.launcher)
    check_joblib_launcher(config.hydra.launcher)
    jobs = sweep_jobs(config)
    varied = swept_keys(config)
    warn_if_only_outputs_vary(varied)
    resuming = resumes_stacked_sweep(config)
    if resuming and jobs is not None:
        check_stacked_resume(config, jobs)
    if jobs is None:  # the data every job reads, unless the search varies what is read
        if not any(key in ("task", "model", "model.pretrained") or key.startswith("task.") for key in varied):
            check_data(_without_hydra(config))
        return
    loader = GlobalHydra.instance().config_loader()
    # a grid sweep resumed in place: each job as the sweeper will launch it, or not at all (src/sweep/resume.py)
    plan = check_grid_resume(config, jobs, loader) if resumes_grid_sweep(config) else None
    read_data: set[str] = set()
    read_checkpoints: dict[Path, dict] = {}
    threads = threads_for_jobs(config.hydra.launcher)
    composed: dict[str, int] = {}  # each job's settings, written out: the first job that has them
    for index, overrides in enumerate(jobs):
        resumed = plan[index] if plan is not None else None
        number = resumed.number if resumed is not None else index
        launched = resumed.launched if resumed is not None else list(overrides)
        job = loader.load_sweep_config(config, launched)
        COMPOSED_JOBS[tuple(launched)] = (config, job)
        settings = _without_hydra(job)
        # the same settings from the same group choices: an experiment that chooses the default mask composes what
        # no choice does, yet beside model.pretrained the two train other masks (src/pretrained/run_config.py)
        choices = OmegaConf.select(job, "hydra.runtime.choices", default=None)
        check_not_repeated(index, OmegaConf.to_yaml(settings) + str(choices), composed, jobs, varied)
        if resumed is not None and not resumed.runs:  # kept as it is: nothing of it is read or written
            continue
        try:
            validate_config(settings, overrides=list(job.hydra.overrides.task), runs_here=not on_a_cluster(config))
            data = OmegaConf.to_yaml(OmegaConf.masked_copy(settings, ["task", "model"]))
            if data not in read_data:  # the same task and model: the same files, read once
                check_data(settings)
                read_data.add(data)
            if resumed is not None and resumed.checkpoint is not None:  # resumed in its own directory
                assert resumed.directory is not None
                check_analysis_target(resumed.directory, bool(settings.get("analyze_after_fit")))
                checkpoint = read_checkpoint(str(resumed.checkpoint), "ckpt_path")
                check_made_alike(job, checkpoint, settings.torch_threads or threads)
            elif settings.get("ckpt_path") is not None and not resuming:  # a stacked sweep's own: checked above
                ckpt, checkpoint = sweep_checkpoint(str(settings.ckpt_path), read_checkpoints)
                check_training_left(checkpoint, ckpt, settings)
                check_made_alike(job, checkpoint, settings.torch_threads or threads)
        except USER_ERRORS as error:
            values = " ".join(o for o in overrides if o.split("=")[0].lstrip("+~") in varied)
            values = re.sub(r"\\(.)", r"\1", values)  # as typed: Hydra's escapes (cross\:9\:0) taken out
            job = f"job {number} of the sweep" + (f" ({values})" if values else "")
            raise type(error)(f"{job} cannot run, so no job was started: {error}") from None


def warn_if_only_outputs_vary(varied: list[str]) -> None:
    """A sweep over a setting that does not change what a run trains or measures (progress output, threads,
    dashboards: NOT_EXPERIMENT_SETTINGS) trains the same run once per value. Legal, and the point when comparing
    speed (torch_threads, compile), so not refused; said once, since each value is a row of its own in report.md."""
    from src.cli.schema import is_experiment_setting

    idle = [key for key in varied if not key.startswith("hydra.") and not is_experiment_setting(key)]
    if idle:
        print_warning(
            f"the sweep varies {', '.join(idle)}, which does not change what a run trains or measures: its jobs "
            "train the same run, each value a row of its own in report.md (to compare seeds, sweep seed)"
        )


def check_not_repeated(number: int, settings: str, composed: dict[str, int], jobs, varied) -> None:
    """Two jobs of one sweep with the same settings and group choices (`seed=0,0,1`, `seed=0,00`, `model.heads=2,2`)
    would train the same run twice, and the report would count it twice: a mean over seeds of n it does not have, a
    confidence interval and a t-test narrower than the data allow. Refused, naming the two jobs."""
    first = composed.setdefault(settings, number)
    if first == number:
        return

    def values(job: int) -> str:
        return " ".join(o for o in jobs[job] if o.split("=")[0].lstrip("+~") in varied)

    raise ConfigError(
        f"jobs {first} ({values(first)}) and {number} ({values(number)}) of the sweep have the same settings: the "
        "same run trained twice, counted twice in the report's statistics: give each value once"
    )


def sweep_checkpoint(ckpt_path: str, read: dict[Path, dict]) -> tuple[Path, dict]:
    """The checkpoint a sweep's jobs resume (`ckpt_path`, a file or a run directory), read once for all of them."""
    from src.training.checkpoint import read_checkpoint, resolve_resume_checkpoint

    if ckpt_path == "last":  # the sweep directory is new (check_sweep_dir): its jobs have no checkpoints
        raise ConfigError(
            "ckpt_path=last resumes a run in its own directory, and a sweep's job directories are new: give "
            "ckpt_path=<checkpoint or run directory>, or resume each job of an earlier sweep in place "
            f"({module_command('src.run', '<its overrides>', 'hydra.run.dir=<job directory>', 'ckpt_path=last')})"
        )
    ckpt = resolve_resume_checkpoint(ckpt_path, Path.cwd())  # (the directory matters only for `last`)
    if ckpt not in read:
        read[ckpt] = read_checkpoint(str(ckpt), "ckpt_path")
    return ckpt, read[ckpt]


def check_stacked_launcher(launcher: DictConfig) -> None:
    """hydra/launcher=stacked: its one setting, max_members, is a number of seeds (or null: no limit)."""
    if not str(launcher.get("_target_", "")).endswith("StackedLauncher"):
        return
    limit = launcher.get("max_members")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(
            f"hydra.launcher.max_members={limit} must be a number of seeds, 1 or more (or null for no limit)"
        )


JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def check_joblib_launcher(launcher: DictConfig) -> None:
    """hydra/launcher=joblib: its settings as Hydra's joblib launcher uses them. It passes them to joblib.Parallel
    only once the sweep's directory and multirun.yaml are written, where joblib's refusals are tracebacks; and it
    sets backend=loky itself, so a backend or a thread-based choice given here would be ignored without a word."""
    if launcher.get("_target_") != JOBLIB_LAUNCHER:
        return
    n_jobs = launcher.get("n_jobs")
    if n_jobs == 0:
        raise ConfigError(
            "hydra.launcher.n_jobs=0 runs no job: give how many jobs run at once (1 or more), or -1 for one per core"
        )
    backend = launcher.get("backend")
    if backend is not None and backend != "loky":
        raise ConfigError(
            f"hydra.launcher.backend={backend} would be ignored: Hydra's joblib launcher always runs its jobs in "
            "loky worker processes (threads do not work with Hydra's per-job state): leave hydra.launcher.backend out"
        )
    prefer = launcher.get("prefer")
    if prefer == "threads":  # a hint joblib ignores once the backend is set, as the launcher sets it
        raise ConfigError(
            "hydra.launcher.prefer=threads would be ignored: Hydra's joblib launcher always runs its jobs in worker "
            "processes: leave hydra.launcher.prefer out (processes)"
        )
    if prefer not in (None, "processes"):
        raise ConfigError(
            f"hydra.launcher.prefer={prefer} is not known: leave it out (processes, the only choice the joblib "
            "launcher honours)"
        )
    require = launcher.get("require")
    if require is not None:
        raise ConfigError(
            f"hydra.launcher.require={require} asks for jobs that share memory (threads), which Hydra's joblib "
            "launcher does not run: leave hydra.launcher.require out"
        )
    # Refused rather than handled: joblib's timeout does not stop the job that ran too long, it raises in the
    # sweep's process and kills every worker of the pool at once, so each running job loses the steps since its
    # last checkpoint (the same as a worker killed outright), and the jobs not started never run. trainer.max_time
    # bounds each job instead, and stops it cleanly: its step saved, run.json saying why it stopped.
    timeout = launcher.get("timeout")
    if timeout is not None:
        raise ConfigError(
            f"hydra.launcher.timeout={timeout} would kill every running job of the sweep, unsaved, once one job "
            "passes it: leave it out, and bound each job's training with trainer.max_time=DD:HH:MM:SS (it stops "
            "at that time and saves its step)"
        )
    check_joblib_arguments(launcher)


def check_joblib_arguments(launcher: DictConfig) -> None:
    """The launcher's other settings (batch_size, pre_dispatch, max_nbytes ...) as joblib reads them, given the way
    the launcher passes them (hydra_joblib_launcher/_core.py: backend loky, numbers written as text made numbers).
    joblib.Parallel checks most as it is made (nothing starts then), one at a time here so that the refusal names
    its setting; pre_dispatch ("2*n_jobs") it reads only as it runs, with its own arithmetic."""
    from joblib import Parallel

    for key, value in launcher.items():
        if key in ("_target_", "backend", "prefer", "require", "timeout"):  # checked above
            continue
        if key in ("pre_dispatch", "batch_size", "max_nbytes") and isinstance(value, str) and value.isdigit():
            value = int(value)
        try:
            if key == "pre_dispatch" and isinstance(value, str) and value != "all":
                from joblib._utils import eval_expr

                eval_expr(value.replace("n_jobs", "1"))
            else:
                Parallel(backend="loky", **{str(key): value})
        except ImportError:  # another joblib, without that helper: joblib says it when the sweep starts
            continue
        except (ValueError, TypeError) as error:
            said = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
            raise ConfigError(
                f"hydra.launcher.{key}={value} is refused by joblib ({said}): fix it, or leave it out for the "
                "launcher's default"
            ) from None


def threads_for_jobs(launcher: DictConfig) -> int:
    """torch_threads=0 under a launcher that runs jobs side by side (joblib): the cores shared out between the
    jobs, so they do not oversubscribe the machine (two 2-thread jobs on 2 cores run far slower than two 1-thread
    ones). 0 (torch's default) otherwise."""
    jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    if jobs is None:
        return 0
    from joblib import cpu_count  # the cores joblib counts: this process's affinity and container limits

    cores = cpu_count()
    if jobs < 0:  # joblib's arithmetic: -1 one job per core, -2 all cores but one, ..., never fewer than one job
        jobs = max(cores + 1 + jobs, 1)
    return max(1, cores // jobs)


def _without_hydra(config: DictConfig) -> DictConfig:
    """The run's own settings, as the task function gets them (Hydra's are under `hydra`)."""
    return OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])


def check_resume(config: DictConfig, run_dir: Path, holds_a_run: bool) -> None:
    """`ckpt_path` must name a readable checkpoint with training left to do, made with the settings this run has
    (src.training.checkpoint.check_resumable_settings: checked here, so a refusal leaves the run's files as they
    were); resuming into a directory that holds a run must continue that run from its newest checkpoint."""
    from src.training.checkpoint import read_checkpoint, resolve_resume_checkpoint

    ckpt = resolve_resume_checkpoint(str(config.ckpt_path), run_dir)
    if holds_a_run and run_dir.resolve() not in ckpt.resolve().parents:
        raise ConfigError(
            f"ckpt_path={config.ckpt_path} is a checkpoint of another run, and hydra.run.dir={run_dir} already holds "
            f"a run whose checkpoints and metrics resuming would replace: leave out hydra.run.dir (a new directory), "
            f"or resume that run with ckpt_path=last"
        )
    checkpoint = read_checkpoint(str(ckpt), "ckpt_path")
    check_training_left(checkpoint, ckpt, config)
    newest = newest_checkpoint(run_dir) if holds_a_run else None
    if newest is not None and newest.resolve() != ckpt.resolve():
        latest = read_checkpoint(str(newest), "ckpt_path")
        if latest.get("global_step", 0) > checkpoint.get("global_step", 0):
            raise ConfigError(
                f"ckpt_path={config.ckpt_path} is at step {checkpoint.get('global_step', 0)}, but {run_dir} has "
                f"trained to step {latest['global_step']} ({newest.name}), so resuming here would redo those steps "
                "over its results: resume its newest checkpoint with ckpt_path=last, or this one into a new "
                "directory (leave out hydra.run.dir)"
            )
    check_made_alike(config, checkpoint, config.torch_threads)
    if holds_a_run:
        warn_if_it_leaves_its_row(config, run_dir)


def check_made_alike(config: DictConfig, checkpoint: dict, threads: int) -> None:
    """The checkpoint was made with the settings that change the numbers as this run has them (the model, the
    data's seed and order, the optimiser, ...). `threads`: the torch threads the run will use (0: torch's
    default). A pretrained model's mask is the one it trains with, settled from Hydra's overrides where `config` has
    them (src/pretrained/run_config.py)."""
    import torch

    from src.cli.schema import resolve_precision
    from src.training.checkpoint import check_resumable_settings, numeric_settings

    plain = OmegaConf.to_container(_without_hydra(config), resolve=True)
    assert isinstance(plain, dict)
    overrides = OmegaConf.select(config, "hydra.overrides.task", default=None)
    if plain["model"].get("pretrained") and overrides is not None:
        from src.pretrained.run_config import run_mask

        plain["mask"] = run_mask(str(plain["model"]["pretrained"]), plain["mask"], list(overrides), config.hydra)
    trainer = plain["trainer"]
    if torch.cuda.is_available() or str(trainer.get("accelerator")) == "cpu":  # this machine can say what `auto` is
        trainer["precision"] = resolve_precision(trainer.get("precision"), trainer.get("accelerator"))
    check_resumable_settings(
        checkpoint,
        config.task.name,
        "ckpt_path",
        plain,
        numeric_settings(plain, threads or torch.get_num_threads()),  # type: ignore[arg-type]
    )


def warn_if_it_leaves_its_row(config: DictConfig, run_dir: Path) -> None:
    """A sweep's job resumed in place with an experiment setting changed (say a raised trainer.max_steps) is no
    longer a seed of its configuration: the sweep report will give it a row of its own. Legal, and surprising."""
    from src.cli.schema import is_experiment_setting

    if not (run_dir.parent / "multirun.yaml").is_file():
        return
    try:
        before = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
    except Exception:  # no record of the job's overrides: nothing to compare
        return

    def settings(overrides) -> dict[str, str]:
        pairs = (str(o).partition("=") for o in overrides)
        return {key.lstrip("+~"): value for key, _, value in pairs if is_experiment_setting(key)}

    old, new = settings(before), settings(config.hydra.overrides.task)
    changed = [f"{key}={new[key]}" for key in new if old.get(key) != new[key]]
    changed += [f"without {key}={old[key]}" for key in old if key not in new]
    if changed:
        print_warning(
            f"{run_dir.name} is a job of the sweep {run_dir.parent}, resumed with {', '.join(changed)}: the sweep "
            "report will show it as a configuration of its own, not as a seed of its former row"
        )


def check_training_left(checkpoint: dict, ckpt: Path, config: DictConfig) -> None:
    """Refuse to resume a checkpoint that has reached the trainer's limits (`finished_by`): Lightning would return
    at once, and the run would end "completed" with no metrics. Also called by each job of a sweep, whose
    directories are new (so nothing is lost there, but the job is reported with this reason)."""
    if checkpoint.get("stacked") or "stacked_group" in checkpoint:  # src/training/stacked.py
        # a member's checkpoint holds its weights and settings only; the group's state resumes the whole group
        what = (
            "the training state of a stacked group of seeds"
            if "stacked_group" in checkpoint
            else ("saved by a member of a stacked group of seeds, which keeps no optimizer or loop state of its own")
        )
        group = checkpoint.get("stacked_group")
        member = group["members"][0] if group else ckpt.parent.parent
        raise ConfigError(
            f"ckpt_path={config.ckpt_path}: {ckpt} is {what}: a group resumes as a whole, with the sweep's own "
            "command plus hydra.sweep.dir=<its sweep directory> ckpt_path=last (its run.json's `resume` has it); "
            f"evaluate or analyse a member with {module_command('src.eval', shell_override('ckpt', member))}"
        )
    finished = finished_by(checkpoint, config.trainer)
    if finished is not None:
        setting, reached = finished
        raise ConfigError(
            f"ckpt_path={config.ckpt_path}: {ckpt} has already {reached}, all that trainer.{setting}="
            f"{config.trainer[setting]} asks for, so resuming would train nothing: raise trainer.{setting} to train "
            f"longer, or evaluate it with {module_command('src.eval', shell_override('ckpt', ckpt))}"
        )


def finished_by(checkpoint: dict, trainer: DictConfig) -> tuple[str, str] | None:
    """Which of the trainer's limits the checkpoint has already reached, as (setting, what it reached); None when
    training has steps left. These are the limits Lightning's fit loop stops at (`max_steps`, `max_epochs`) and
    its Timer callback (`max_time`)."""
    step = int(checkpoint.get("global_step", 0))
    if trainer.get("max_steps") is not None and 0 <= trainer.max_steps <= step:
        return "max_steps", f"trained {step} steps"
    fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
    epochs = fit_loop.get("epoch_progress", {}).get("current", {})
    processed = int(epochs.get("processed", 0))
    # A checkpoint written at an epoch's last batch (the last validation) has that epoch started, not yet counted
    # as processed; Lightning counts it done when it resumes there. Whether it was the last batch: Lightning's
    # flag, or the run's data loader's count of batches (src/data/resumable.py).
    loaders = fit_loop.get("state_dict", {}).get("combined_loader") or [{}]
    batches, per_epoch = loaders[0].get("batches_yielded", 0), loaders[0].get("batches_per_epoch")
    at_last_batch = fit_loop.get("epoch_loop.batch_progress", {}).get("is_last_batch") or (
        per_epoch is not None and batches >= per_epoch
    )
    if at_last_batch and epochs.get("started", 0) > processed:
        processed += 1
    if trainer.get("max_epochs") not in (None, -1) and trainer.max_epochs <= processed:
        return "max_epochs", f"trained {processed} epochs"
    budget = time_budget_seconds(trainer.get("max_time"))
    timer = checkpoint.get("callbacks", {}).get("Timer", {})
    elapsed = float(timer.get("time_elapsed", {}).get("train", 0.0))
    if budget is not None and elapsed >= budget:
        return "max_time", f"trained for {elapsed:.0f} s"
    return None


def time_budget_seconds(max_time: Any) -> float | None:
    """`trainer.max_time` ("DD:HH:MM:SS", Lightning's format) in seconds."""
    try:
        days, hours, minutes, seconds = (int(part) for part in str(max_time).split(":"))
    except ValueError:  # None, or not a duration (validate_config names that)
        return None
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
