"""The project's Hydra launcher for seeds trained together (`hydra/launcher=stacked`, conf/hydra/launcher/
stacked.yaml): Hydra loads launchers only from its `hydra_plugins` namespace package; what it does is explained in
src/sweep/stacked.py."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

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
            make_job_directory,
            stack_groups,
            task_module,
            why_not_stacked,
        )
        from src.training.report import print_warning

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        results: dict[int, JobReturn] = {}
        groups = self._split(stack_groups(job_overrides))
        if all(len(group) == 1 for group in groups):
            print_warning(
                "hydra/launcher=stacked stacks nothing here: no two jobs differ only in seed (give several seeds, "
                "seed=0,1,2, or a hydra.launcher.max_members above 1); each job runs on its own"
            )
        for group in groups:
            configs = []
            for index in group:
                number = initial_job_idx + index
                config = self.hydra_context.config_loader.load_sweep_config(self.config, list(job_overrides[index]))
                with open_dict(config):
                    config.hydra.job.id = number
                    config.hydra.job.num = number
                configs.append(config)
            why = why_not_stacked(configs[0]) if len(group) > 1 else "it is alone in its group"
            if why is not None:
                if len(group) > 1:
                    print_warning(
                        f"jobs {self._names(group, initial_job_idx)} run one after another, not stacked: {why}"
                    )
                for index, config in zip(group, configs):
                    log.info(f"\t#{initial_job_idx + index} : {' '.join(filter_overrides(job_overrides[index]))}")
                    results[index] = run_job(
                        hydra_context=self.hydra_context,
                        task_function=self.task_function,
                        config=config,
                        job_dir_key="hydra.sweep.dir",
                        job_subdir_key="hydra.sweep.subdir",
                    )
                    configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                continue
            log.info(f"\t#{self._names(group, initial_job_idx)} stacked")
            original = HydraConfig.instance().cfg
            try:
                made = [make_job_directory(config, self.hydra_context, self.task_function) for config in configs]
                returns = task_module(self.task_function).run_stacked_group(configs, made)
            finally:
                HydraConfig.instance().cfg = original  # type: ignore[assignment]
            for index, config, result in zip(group, configs, returns):
                self.hydra_context.callbacks.on_job_end(config=config, job_return=result)
                results[index] = result
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [results[index] for index in range(len(job_overrides))]

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
