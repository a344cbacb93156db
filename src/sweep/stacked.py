"""hydra/launcher=stacked: the jobs of a sweep that differ only in `seed` train together, as one stacked model in
one process (src/training/stacked.py), and every job keeps its own directory.

    python -m src.run -m seed=0,1,2,3,4 hydra/launcher=stacked                  one group of five
    python -m src.run -m model.heads=1,2,4 seed=0,1,2 hydra/launcher=stacked    three groups of three

A group is the jobs whose overrides are the same once `seed=` is left out. A job alone in its group, and a group
that cannot be stacked (several devices or processes, `compile=true`, a resumed run, a pretrained model), runs as a
separate job, as the basic launcher runs it, with one `warning:` line saying why.

Each member's job directory is made as Hydra makes a job's (the same path, .hydra/config.yaml, hydra.yaml,
overrides.yaml, and the callbacks' on_job_start/on_job_end), so the sweep's report and every command that reads a
run read the members as any other jobs.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from src.sweep.runs import SEED  # the axis the report pools over is the axis a group stacks


def without_seed(overrides: Sequence[str]) -> tuple[str, ...]:
    """A job's overrides with its `seed=` left out: what the jobs of one group share."""
    return tuple(o for o in overrides if o.lstrip("+~").split("=", 1)[0] != SEED)


def stack_groups(job_overrides: Sequence[Sequence[str]]) -> list[list[int]]:
    """The jobs (by index) grouped by their overrides without `seed=`, in the order the groups first appear; a
    group's jobs keep their order."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, overrides in enumerate(job_overrides):
        groups.setdefault(without_seed(overrides), []).append(index)
    return list(groups.values())


def why_not_stacked(cfg: DictConfig) -> str | None:
    """Why the jobs of a group with this config (the first member's, `hydra` node included) cannot be stacked,
    None when they can."""
    trainer = cfg.trainer
    devices = trainer.get("devices", "auto")
    if trainer.get("num_nodes", 1) not in (None, 1) or (devices not in ("auto", 1, "1") and devices != [0]):
        return f"trainer.devices={devices} (a stacked group trains on one device)"
    if str(trainer.get("strategy", "auto")) not in ("auto", "single_device"):
        return f"trainer.strategy={trainer.strategy} (a stacked group trains in one process)"
    if cfg.get("compile", False):
        return "compile=true (torch.compile of the stacked model is not supported yet)"
    if cfg.get("ckpt_path") is not None:
        return "ckpt_path is set (a stacked group does not resume yet)"
    if cfg.model.get("pretrained"):
        return f"model.pretrained={cfg.model.pretrained} (a stacked group starts from random weights)"
    if trainer.get("accumulate_grad_batches", 1) not in (None, 1):
        return "trainer.accumulate_grad_batches is not 1"
    if trainer.get("gradient_clip_algorithm") not in (None, "norm"):
        return f"trainer.gradient_clip_algorithm={trainer.gradient_clip_algorithm} (members clip by norm)"
    others = [name for name in cfg.get("callbacks") or {} if name != "EarlyStopping"]
    if others:  # EarlyStopping is each member's own (src/training/stacked.py)
        names = ", ".join(f"callbacks.{name}" for name in others)
        return f"{names} (a stacked group runs no per-member Lightning callbacks but EarlyStopping)"
    if cfg.checkpoint.every_n_train_steps > 0:
        return "checkpoint.every_n_train_steps > 0 (stacked members keep best.ckpt and last.ckpt only)"
    return None


def make_job_directory(config: DictConfig, hydra_context: Any, task_function: Any) -> tuple[DictConfig, Path]:
    """What Hydra's run_job does for a job before it calls the task function: its output directory (the sweep's
    dir and subdir), .hydra/ with config.yaml, hydra.yaml and overrides.yaml, and the callbacks' on_job_start.
    Returns the job's config without its `hydra` node, and its directory."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import _save_config

    HydraConfig.instance().set_config(config)
    output_dir = os.path.join(str(config.hydra.sweep.dir), str(config.hydra.sweep.subdir))
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = os.path.abspath(output_dir)
    HydraConfig.instance().set_config(config)
    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    if config.hydra.output_subdir is not None:
        hydra_output = Path(config.hydra.runtime.output_dir) / str(config.hydra.output_subdir)
        _save_config(task_cfg, "config.yaml", hydra_output)
        _save_config(copy.deepcopy(HydraConfig.instance().cfg), "hydra.yaml", hydra_output)
        _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
    hydra_context.callbacks.on_job_start(config=config, task_function=task_function)
    return task_cfg, Path(config.hydra.runtime.output_dir)


def job_return(config: DictConfig, task_cfg: DictConfig, value: Any) -> Any:
    """Hydra's JobReturn for a member: its return value, or the exception it ended with (status FAILED)."""
    from hydra.core.utils import JobReturn, JobStatus

    result = JobReturn()
    result.cfg = task_cfg
    result.hydra_cfg = OmegaConf.create({"hydra": OmegaConf.to_container(config.hydra, resolve=False)})
    result.overrides = list(OmegaConf.to_container(config.hydra.overrides.task))  # type: ignore[arg-type]
    result.working_dir = os.getcwd()
    result.task_name = str(config.hydra.job.name)
    if isinstance(value, BaseException):
        result.status, result.return_value = JobStatus.FAILED, value
    else:
        result.status, result.return_value = JobStatus.COMPLETED, value
    return result


def task_module(task_function: Any):
    """The module of the sweep's task function (src.run, which is `__main__` under `python -m src.run`): the
    group is run by its `run_stacked_group`, with that module's own state (a second import would be a copy)."""
    return sys.modules[task_function.__module__]
