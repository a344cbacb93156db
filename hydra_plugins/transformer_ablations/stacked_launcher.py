"""The project's Hydra launcher for seeds trained together (`hydra/launcher=stacked`, conf/hydra/launcher/
stacked.yaml): Hydra loads launchers only from its `hydra_plugins` namespace package; what it does is explained in
src/sweep/stacked.py."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class StackedLauncher(Launcher):
    def __init__(self, max_members: int | None = None) -> None:
        self.max_members = max_members  # a group larger than this is split into groups of at most this many
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        # Whether this sweep was told it stacks nothing: a sweeper calls launch() once per batch (an Optuna search
        # once per trial or n_jobs trials, a resumed sweep once per run of consecutive jobs), and the line is said
        # once a sweep. Hydra makes the launcher, and calls setup(), once a sweep: a second sweep in the same process
        # (a test, a notebook) is told again.
        self.said_nothing_stacked = False

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.said_nothing_stacked = False

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra.core.hydra_config import HydraConfig

        from src.sweep.stacked import (
            RESUME,
            group_state_path,
            make_job_directory,
            resume_command,
            resume_plan,
            resumed_jobs,
            stack_groups,
            task_module,
            why_not_stacked,
        )
        from src.training.report import print_line, print_warning
        from src.training.stacked import NotStackable

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = self.config.hydra.sweep.dir
        Path(str(sweep_dir)).mkdir(parents=True, exist_ok=True)
        # ckpt_path=last: the sweep in this directory goes on where it stopped (src/cli/preflight.py checked it is one)
        resuming = self.config.get("ckpt_path") == RESUME
        results: dict[int, JobReturn] = {}
        # Each job's number and, resumed, the directory it goes on in: the one that holds its settings, whatever
        # number Hydra gave the job this time (seeds added, settings in another order); new jobs come after
        numbers = [initial_job_idx + index for index in range(len(job_overrides))]
        held: list[Path | None] = [None] * len(job_overrides)
        groups = stack_groups(job_overrides)
        if resuming:
            numbers, held = resumed_jobs(sweep_dir, job_overrides, initial_job_idx)
            groups = [part for group in groups for part in self._resumed(group, held, numbers)]
        groups = self._split(groups)
        if all(len(group) == 1 for group in groups) and not self.said_nothing_stacked:
            self.said_nothing_stacked = True
            print_warning(
                "hydra/launcher=stacked stacks nothing here: no two jobs differ only in seed (give several seeds, "
                "seed=0,1,2, or a hydra.launcher.max_members above 1); each job runs on its own"
            )
        for group in groups:
            configs = [self._job_config(job_overrides[index], numbers[index], held[index]) for index in group]
            why = why_not_stacked(configs[0]) if len(group) > 1 else "it is alone in its group"
            if why is not None:
                if len(group) > 1:
                    print_warning(f"jobs {self._names(group, numbers)} run one after another, not stacked: {why}")
                for index, config in zip(group, configs):
                    results[index] = self._run_alone(config, job_overrides[index], resuming)
                continue
            # the group's state is named by its jobs' numbers: the numbers of their directories, which a resumed
            # sweep keeps, so a group finds its state whatever order the command gives its settings in
            members = [numbers[index] for index in group]
            state, resume = group_state_path(sweep_dir, members), False
            if resuming:  # finished members are kept; the others go on from their saved state, or start
                run_dirs = [self._directory(config) for config in configs]
                plan = resume_plan(run_dirs, members, sweep_dir)
                if plan.finished:
                    kept = ", ".join(str(members[m]) for m in plan.finished)
                    one = len(plan.finished) == 1
                    jobs, verb, it_is = ("job", "has", "it is") if one else ("jobs", "have", "they are")
                    print_line(f"{jobs} {kept} {verb} finished: kept as {it_is}, not trained again")
                for m in plan.finished:
                    results[group[m]] = self._finished(configs[m], run_dirs[m])
                if plan.note:
                    print_warning(plan.note)
                group, configs = [group[m] for m in plan.train], [configs[m] for m in plan.train]
                state, resume = plan.state, plan.resume
                if not resume:
                    configs = [self._without_resume(config) for config in configs]
                if len(group) == 1:
                    results[group[0]] = self._run_alone(configs[0], job_overrides[group[0]], False)
                    continue
                if not group:
                    continue
            log.info(f"\t#{self._names(group, numbers)} stacked")
            original = HydraConfig.instance().cfg
            try:
                made = [make_job_directory(config, self.hydra_context, self.task_function) for config in configs]
                returns = task_module(self.task_function).run_stacked_group(
                    configs, made, state, resume, resume_command(self.config)
                )
            except NotStackable as refused:
                # known only once the members' data are built: the group has put their directories back as this
                # launcher made them, and its jobs run as any group that cannot be stacked
                print_warning(f"jobs {self._names(group, numbers)} run one after another, not stacked: {refused}")
                returns = None
            except KeyboardInterrupt:  # Ctrl-C as the directories were made (later, the group answers it itself)
                self._interrupted_while_made(group, numbers)
            finally:
                HydraConfig.instance().cfg = original  # type: ignore[assignment]
            if returns is None:
                for index, config in zip(group, configs):
                    results[index] = self._run_alone(config, job_overrides[index], resuming)
                continue
            for index, config, result in zip(group, configs, returns):
                self.hydra_context.callbacks.on_job_end(config=config, job_return=result)
                results[index] = result
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [results[index] for index in range(len(job_overrides))]

    def _resumed(self, group: list[int], held: list[Path | None], numbers: list[int]) -> list[list[int]]:
        """A group of a resumed sweep as it trains (src/sweep/stacked.py: resumed_groups), with a line where members
        interrupted together resume apart from the others of their group (seeds added since): a line, not a
        warning, as nothing is lost: the interrupted ones go on bit-exact, and the others train as they would had
        they been added once the interrupted group had finished."""
        from src.provenance import read_status
        from src.sweep.stacked import FINISHED, resumed_groups, saved_group
        from src.training.report import print_line

        assert self.config is not None
        sweep_dir = self.config.hydra.sweep.dir
        parts = resumed_groups(group, held, numbers, sweep_dir)

        def resumes_its_state(part: list[int]) -> bool:
            names = [directory.name for m in part if (directory := held[m]) is not None]
            first = held[part[0]]
            return first is not None and saved_group(first, sweep_dir) == names

        if len(parts) > 1:
            saved = [part for part in parts if resumes_its_state(part)]
            others = [m for m in group if not any(m in part for part in saved)]
            trained = [m for m in others if held[m] is None or read_status(held[m]) not in FINISHED]
            if saved and trained:
                together = "; ".join(self._names(part, numbers) for part in saved)
                names = self._names(trained, numbers)
                apart = f"jobs {names} train" if len(trained) > 1 else f"job {names} trains"
                print_line(
                    f"jobs {together} resume the group they were interrupted in, whose saved state holds only them: "
                    f"{apart} apart from them"
                )
        return parts

    def _run_alone(self, config: DictConfig, overrides: Sequence[str], resuming: bool) -> JobReturn:
        """A job run on its own, as Hydra's basic launcher runs it (in a resumed sweep: see _resumed_alone)."""
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        if resuming:
            resumed = self._resumed_alone(config)
            if isinstance(resumed, JobReturn):
                return resumed
            config = resumed
        log.info(f"\t#{config.hydra.job.num} : {' '.join(filter_overrides(overrides))}")
        result = run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return result

    def _interrupted_while_made(self, group: list[int], numbers: list[int]) -> NoReturn:
        """Ctrl-C before the group's members had a run.json: they are jobs that never started, and the resumed
        sweep trains them (and keeps the groups that finished). One line, exit status 130, as a later interrupt."""
        import sys

        from src.cli.startup import ctrl_c_ignored_to_the_end
        from src.provenance import command_line
        from src.sweep.stacked import resume_command
        from src.training.report import print_error

        assert self.config is not None
        ctrl_c_ignored_to_the_end()  # the line, and the sweep's report after it, written undisturbed
        command = command_line(argv=resume_command(self.config))
        print_error(
            f"interrupted by SIGINT before jobs {self._names(group, numbers)} started training; resume the "
            f"sweep (this group starts from the beginning) with: {command}"
        )
        sys.exit(130)  # the shell's status for SIGINT, as src.run's EXIT_SIGNAL

    @staticmethod
    def _directory(config: DictConfig) -> Path:
        from hydra.core.hydra_config import HydraConfig

        from src.sweep.stacked import job_directory

        original = HydraConfig.instance().cfg
        try:
            return job_directory(config)
        finally:
            HydraConfig.instance().cfg = original  # type: ignore[assignment]

    def _job_config(self, overrides: Sequence[str], number: int, directory: Path | None) -> DictConfig:
        """A job's config, as Hydra's basic launcher composes it (its number set); a job of a resumed sweep whose
        settings a directory holds goes on in that `directory` (its name is the sweep's subdir: the settings the
        command varies, in its order, would name it otherwise)."""
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = number
            config.hydra.job.num = number
            if directory is not None:
                config.hydra.sweep.subdir = directory.name
        return config

    def _without_resume(self, config: DictConfig) -> DictConfig:
        """A job of a resumed sweep that has nothing to resume from: trained from the start (ckpt_path unset)."""
        with open_dict(config):
            config.ckpt_path = None
        return config

    def _resumed_alone(self, config: DictConfig) -> DictConfig | JobReturn:
        """A job of a resumed sweep that runs on its own: kept when it has finished, resumed in place from its
        newest checkpoint when it has one, else trained from the start."""
        from src.provenance import read_status
        from src.sweep.stacked import FINISHED
        from src.training.checkpoint import newest_checkpoint
        from src.training.report import print_line

        run_dir = self._directory(config)
        if read_status(run_dir) in FINISHED:
            print_line(f"job {config.hydra.job.num} has finished: kept as it is, not trained again")
            return self._finished(config, run_dir)
        if newest_checkpoint(run_dir) is None:
            return self._without_resume(config)
        return config

    def _finished(self, config: DictConfig, run_dir: Path) -> JobReturn:
        """A finished job of a resumed sweep: its value read back, for the sweeper and the report."""
        from src.sweep.stacked import finished_value, job_return, task_config, task_module

        objective = task_module(self.task_function).objective_of(config)
        return job_return(config, task_config(config), finished_value(run_dir, objective))

    def _split(self, groups: list[list[int]]) -> list[list[int]]:
        if not self.max_members:
            return groups
        return [
            group[start : start + self.max_members]
            for group in groups
            for start in range(0, len(group), self.max_members)
        ]

    @staticmethod
    def _names(group: list[int], numbers: list[int]) -> str:
        return ", ".join(str(numbers[index]) for index in group)
