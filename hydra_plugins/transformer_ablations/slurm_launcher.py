"""The project's Hydra launcher for SLURM (`hydra/launcher=slurm`, conf/hydra/launcher/slurm.yaml). Hydra loads
launchers only from its `hydra_plugins` namespace package; what this one adds to Hydra's submitit launcher is
explained in src/sweep/slurm.py.

Hydra imports every module of the package when it starts, whatever the command: without the cluster extra
(submitit), this one offers no launcher rather than failing every command's start."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf, open_dict

from src.model import ConfigError
from src.sweep.slurm import (
    ended_by_the_cluster,
    record_cluster_failure,
    record_submitted,
    refused_before_any_job,
    sbatch_reason,
    wait_until_ended,
)
from src.training.report import print_error

try:
    from hydra_plugins.hydra_submitit_launcher import config as submitit_config
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # pip install -e '.[cluster]' adds it
    submitit_launcher = None

if submitit_launcher is not None:

    class SlurmLauncher(submitit_launcher.SlurmLauncher):
        """Hydra's submitit SLURM launcher; `launch` is Hydra's own up to the submission (the same executor and
        parameters), then `wait_for_every_job`."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            import submitit

            assert self.config is not None and len(job_overrides) > 0
            params = self.params
            init_params: dict[str, Any] = {"folder": params["submitit_folder"]}
            init_params.update({f"{self._EXECUTOR}_{x}": y for x, y in params.items() if x in {"max_num_timeout"}})
            executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
            baseparams = set(OmegaConf.structured(submitit_config.BaseQueueConf).keys())
            executor.update_parameters(
                **{
                    (x if x in baseparams else f"{self._EXECUTOR}_{x}"): y
                    for x, y in params.items()
                    if x not in {"max_num_timeout", "submitit_folder"}
                }
            )
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            job_params = []
            for number, overrides in enumerate(job_overrides, start=initial_job_idx):
                print(f"#{number} : {' '.join(filter_overrides(overrides))}")
                job_params.append(
                    (list(overrides), "hydra.sweep.dir", number, f"job_id_for_{number}", Singleton.get_state())
                )
            try:
                jobs = executor.map_array(self, *zip(*job_params))
            except Exception as error:  # sbatch refused: a partition that does not exist, no SLURM here, ...
                refused_before_any_job(sweep_dir)
                raise ConfigError(f"SLURM did not take the sweep's jobs: {sbatch_reason(error)}") from None
            ids = ", ".join(job.job_id for job in jobs)
            record_submitted(sweep_dir, [job.job_id for job in jobs])  # a resume asks SLURM about them first
            print(f"submitted {len(jobs)} SLURM job(s) ({ids}); waiting for them to end")
            try:
                return self.wait_for_every_job(jobs, job_overrides, initial_job_idx)
            except KeyboardInterrupt:
                print_error(
                    f"interrupted while waiting: the SLURM jobs {ids} go on running on the cluster (stop them with "
                    f"scancel {jobs[0].job_id.split('_')[0]}); their report, once they end: python -m src.report "
                    f"{sweep_dir}"
                )
                sys.exit(130)

        def wait_for_every_job(self, jobs, job_overrides, initial_job_idx: int) -> list[JobReturn]:
            """Every job's result, once all have ended. A job the cluster ended returns nothing, as a job of ours that
            failed does (src.run's sweep_catch_errors), with SLURM's reason in its run.json; the sweep then ends in
            its report, which lists each job as it ended, and the command says which did not complete."""
            results = []
            for number, (job, overrides) in enumerate(zip(jobs, job_overrides), start=initial_job_idx):
                job_dir = self.job_dir(overrides, number)
                wait_until_ended(job, job_dir)
                if not ended_by_the_cluster(job, job_dir) and job.exception() is None:
                    results.append(job.results()[0])
                    continue
                # sacct's state: TIMEOUT, OUT_OF_MEMORY, CANCELLED by <user>, NODE_FAIL, FAILED
                reason = f"SLURM job {job.job_id} ended {job.state}"
                if not record_cluster_failure(job_dir, reason):
                    print_error(f"{reason} before its run began: the sweep's report lists the command that runs it")
                ended = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
                ended.return_value = None
                results.append(ended)
            return results

        def job_dir(self, overrides: Sequence[str], number: int) -> Path:
            """The directory Hydra gives the job (hydra.sweep.dir / hydra.sweep.subdir, as `run_job` computes it)."""
            assert self.hydra_context is not None and self.config is not None
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config.hydra.job):
                config.hydra.job.num = number
            return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
