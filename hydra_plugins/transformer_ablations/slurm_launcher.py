"""The project's Hydra launcher for SLURM (`hydra/launcher=slurm`, conf/hydra/launcher/slurm.yaml). Hydra loads
launchers only from its `hydra_plugins` namespace package; what this one adds to Hydra's submitit launcher is
explained in src/sweep/slurm.py.

Hydra imports every module of the package when it starts, whatever the command: without the cluster extra
(submitit), this one offers no launcher rather than failing every command's start."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import OmegaConf, open_dict

from src.sweep.slurm import record_cluster_failure

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
            jobs = executor.map_array(self, *zip(*job_params))
            ids = ", ".join(job.job_id for job in jobs)
            print(f"submitted {len(jobs)} SLURM job(s) ({ids}); waiting for them to end")
            return self.wait_for_every_job(jobs, job_overrides, initial_job_idx)

        def wait_for_every_job(self, jobs, job_overrides, initial_job_idx: int) -> list[JobReturn]:
            """Every job's result, once all have ended; a job the cluster ended has its reason written to its run.json
            first. Then the first such job's error is raised, as Hydra's launcher raises it (the sweep ends in its
            report, which lists each job as it ended)."""
            results, first_error = [], None
            for number, (job, overrides) in enumerate(zip(jobs, job_overrides), start=initial_job_idx):
                error = job.exception()  # waits for the job to end
                if error is None:
                    results.append(job.results()[0])
                    continue
                # sacct's state: TIMEOUT, OUT_OF_MEMORY, CANCELLED by <user>, NODE_FAIL, FAILED
                reason = f"SLURM job {job.job_id} ended {job.state}"
                record_cluster_failure(self.job_dir(overrides, number), reason)
                first_error = first_error or error
            if first_error is not None:
                raise first_error
            return results

        def job_dir(self, overrides: Sequence[str], number: int) -> Path:
            """The directory Hydra gives the job (hydra.sweep.dir / hydra.sweep.subdir, as `run_job` computes it)."""
            assert self.hydra_context is not None and self.config is not None
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config.hydra.job):
                config.hydra.job.num = number
            return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
