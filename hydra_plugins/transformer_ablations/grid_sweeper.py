"""The project's grid sweeper (`hydra/sweeper=grid`, the default: conf/hydra/sweeper/grid.yaml): Hydra's basic
sweeper, which with `ckpt_path=last` and the sweep's own `hydra.sweep.dir` goes on where the sweep stopped instead of
starting it over. Hydra loads sweepers only from its `hydra_plugins` namespace package; what a resume does is
explained in src/sweep/resume.py.

Hydra imports every module of the package when it starts, whatever the command: this one imports nothing heavy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class GridSweeper(BasicSweeper):
    """Hydra's basic sweeper; a sweep resumed with ckpt_path=last runs only what its directory has not finished."""

    resumes_in_place = True  # src/cli/preflight.py asks it: ckpt_path=last resumes the sweep in hydra.sweep.dir

    def sweep(self, arguments: list[str]) -> Any:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        from src.cli.preflight import COMPOSED_JOBS, resumes_grid_sweep

        assert self.config is not None
        hydras = ConfigLoaderImpl.load_sweep_config

        def load_sweep_config(loader: ConfigLoaderImpl, master_config: Any, sweep_overrides: list[str]) -> Any:
            """Hydra's, while this sweep runs: a job the preflight composed runs with that composition (the launcher
            then numbers it), not composed a second time: a composition is a tenth of a second or more. A job run in
            another process (joblib's workers, submitit's jobs) is composed there by Hydra, and so is a job the
            preflight did not compose."""
            composed = composed_by_the_preflight(master_config, sweep_overrides)
            return composed if composed is not None else hydras(loader, master_config, sweep_overrides)

        ConfigLoaderImpl.load_sweep_config = load_sweep_config  # type: ignore[method-assign]
        try:
            if not resumes_grid_sweep(self.config):
                return super().sweep(arguments)
            from src.sweep.resume import resume_sweep

            return resume_sweep(self, arguments)
        finally:  # composed for this sweep's config: a later sweep in this process composes its own
            ConfigLoaderImpl.load_sweep_config = hydras  # type: ignore[method-assign]
            COMPOSED_JOBS.clear()

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Hydra composes each job of a batch before launching it, so that a job that does not compose fails before
        any runs. The preflight (src/cli/preflight.py: check_sweep_jobs) composed and checked every job of the sweep
        before the sweep began; those are not composed again (a tenth of a second each: a 12-job sweep of small runs
        spent about 1.5 s in it)."""
        from src.cli.preflight import COMPOSED_JOBS

        left = [overrides for overrides in batch if tuple(overrides) not in COMPOSED_JOBS]
        if left:
            super().validate_batch_is_legal(left)


def composed_by_the_preflight(master_config: Any, sweep_overrides: list[str]) -> Any:
    """The job the preflight composed from this sweep's config with these overrides (check_sweep_jobs), handed over
    (the preflight only read it), or None where it composed none."""
    from src.cli.preflight import COMPOSED_JOBS

    composed = COMPOSED_JOBS.get(tuple(sweep_overrides))
    if composed is None or composed[0] is not master_config:
        return None
    del COMPOSED_JOBS[tuple(sweep_overrides)]  # used once (its launch): a long sweep does not keep every job's config
    return composed[1]
