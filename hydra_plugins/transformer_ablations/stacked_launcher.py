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

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra.core.hydra_config import HydraConfig

        from src.sweep.stacked import (
            RESUME,
            group_state_path,
            make_job_directory,
            resume_command,
            resume_plan,
            stack_groups,
            task_module,
            why_not_stacked,
        )
        from src.training.report import print_line, print_warning
        from src.training.stacked import NotStackable

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        # ckpt_path=last: the sweep in this directory goes on where it stopped (src/cli/preflight.py checked it is one)
        resuming = self.config.get("ckpt_path") == RESUME
        results: dict[int, JobReturn] = {}
        groups = self._split(stack_groups(job_overrides))
        if all(len(group) == 1 for group in groups):
            print_warning(
                "hydra/launcher=stacked stacks nothing here: no two jobs differ only in seed (give several seeds, "
                "seed=0,1,2, or a hydra.launcher.max_members above 1); each job runs on its own"
            )
        for group in groups:
            configs = [self._job_config(job_overrides[index], initial_job_idx + index) for index in group]
            why = why_not_stacked(configs[0]) if len(group) > 1 else "it is alone in its group"
            if why is not None:
                if len(group) > 1:
                    print_warning(
                        f"jobs {self._names(group, initial_job_idx)} run one after another, not stacked: {why}"
                    )
                for index, config in zip(group, configs):
                    results[index] = self._run_alone(config, job_overrides[index], resuming)
                continue
            numbers = [initial_job_idx + index for index in group]
            state, resume = group_state_path(self.config.hydra.sweep.dir, numbers), False
            if resuming:  # finished members are kept; the others go on from their saved state, or start
                run_dirs = [self._directory(config) for config in configs]
                plan = resume_plan(run_dirs, numbers, self.config.hydra.sweep.dir)
                if plan.finished:
                    kept = ", ".join(str(numbers[m]) for m in plan.finished)
                    print_line(f"jobs {kept} have finished: kept as they are, not trained again")
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
            log.info(f"\t#{self._names(group, initial_job_idx)} stacked")
            original = HydraConfig.instance().cfg
            try:
                made = [make_job_directory(config, self.hydra_context, self.task_function) for config in configs]
                returns = task_module(self.task_function).run_stacked_group(
                    configs, made, state, resume, resume_command(self.config)
                )
            except NotStackable as refused:
                # known only once the members' data are built: the group has put their directories back as this
                # launcher made them, and its jobs run as any group that cannot be stacked
                print_warning(
                    f"jobs {self._names(group, initial_job_idx)} run one after another, not stacked: {refused}"
                )
                returns = None
            except KeyboardInterrupt:  # Ctrl-C as the directories were made (later, the group answers it itself)
                self._interrupted_while_made(group, initial_job_idx)
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

    def _interrupted_while_made(self, group: list[int], initial_job_idx: int) -> NoReturn:
        """Ctrl-C before the group's members had a run.json: they are jobs that never started, and the resumed
        sweep trains them (and keeps the groups that finished). One line, exit status 130, as a later interrupt."""
        import sys

        from src.provenance import command_line
        from src.sweep.stacked import resume_command
        from src.training.report import print_error

        assert self.config is not None
        command = command_line(argv=resume_command(self.config))
        print_error(
            f"interrupted by SIGINT before jobs {self._names(group, initial_job_idx)} started training; resume the "
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

    def _job_config(self, overrides: Sequence[str], number: int) -> DictConfig:
        """A job's config, as Hydra's basic launcher composes it (its number set)."""
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = number
            config.hydra.job.num = number
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
    def _names(group: list[int], initial_job_idx: int) -> str:
        return ", ".join(str(initial_job_idx + index) for index in group)
