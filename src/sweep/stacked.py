"""hydra/launcher=stacked: the jobs of a sweep that differ only in `seed` train together, as one stacked model in
one process (src/training/stacked.py), and every job keeps its own directory.

    python -m src.run -m seed=0,1,2,3,4 hydra/launcher=stacked                  one group of five
    python -m src.run -m model.heads=1,2,4 seed=0,1,2 hydra/launcher=stacked    three groups of three

A group is the jobs whose overrides are the same once `seed=` is left out. A job alone in its group, and a group
that cannot be stacked (several devices or processes, `compile=true`, a resumed run, a pretrained model, seeds whose
data give models of different shapes: known once their data are built), runs as separate jobs, as the basic
launcher runs them, with one `warning:` line saying why.

Each member's job directory is made as Hydra makes a job's (the same path, .hydra/config.yaml, hydra.yaml,
overrides.yaml, and the callbacks' on_job_start/on_job_end), so the sweep's report and every command that reads a
run read the members as any other jobs.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
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
    if cfg.get("ckpt_path") not in (None, RESUME):
        return f"ckpt_path={cfg.ckpt_path} (a stacked group resumes only its own state, with ckpt_path=last)"
    if cfg.model.get("pretrained"):
        return f"model.pretrained={cfg.model.pretrained} (a stacked group starts from random weights)"
    if trainer.get("accumulate_grad_batches", 1) not in (None, 1):
        return "trainer.accumulate_grad_batches is not 1"
    if str(trainer.get("gradient_clip_algorithm") or "norm").lower() != "norm":  # Lightning reads it in any case
        return f"trainer.gradient_clip_algorithm={trainer.gradient_clip_algorithm} (members clip by norm)"
    others = [name for name in cfg.get("callbacks") or {} if name != "EarlyStopping"]
    if others:  # EarlyStopping is each member's own (src/training/stacked.py)
        names = ", ".join(f"callbacks.{name}" for name in others)
        return f"{names} (a stacked group runs no per-member Lightning callbacks but EarlyStopping)"
    return None


RESUME = "last"  # ckpt_path=last with a stacked sweep's hydra.sweep.dir: the sweep goes on where it stopped
GROUP_STATES = "stacked_groups"  # the sweep directory's folder of groups' training states


def group_state_path(sweep_dir: str | Path, job_numbers: Sequence[int]) -> Path:
    """Where a group saves its training state: in the sweep's directory, named by its jobs' numbers (a member's
    own directory holds what a separate job's holds, and nothing else)."""
    return Path(sweep_dir) / GROUP_STATES / f"jobs-{'-'.join(str(n) for n in job_numbers)}.ckpt"


FINISHED = ("completed", "diverged")  # a job that ended so has nothing left to train


@dataclass
class ResumePlan:
    """What a group of a stacked sweep resumed with ckpt_path=last does (resume_plan)."""

    finished: list[int]  # members (their places in the group) that have finished: kept as they are
    train: list[int]  # the others, trained together
    state: Path  # their group's training state: resumed from when `resume`, else saved there as they train
    resume: bool
    note: str | None  # a warning: members that had started but saved no state start over


def resume_plan(run_dirs: Sequence[Path], job_numbers: Sequence[int], sweep_dir: str | Path) -> ResumePlan:
    """A group of a stacked sweep resumed with ckpt_path=last: with its saved training state it goes on from there
    (its finished members included, as the state knows them); without one, its finished members are kept and the
    others train together from the start (members added to a sweep, a group that stopped before its first saved
    state)."""
    from src.provenance import read_status

    everyone = list(range(len(run_dirs)))
    statuses = [read_status(run_dir) for run_dir in run_dirs]
    finished = [m for m in everyone if statuses[m] in FINISHED]
    whole = group_state_path(sweep_dir, job_numbers)
    if len(finished) < len(everyone) and whole.is_file():
        return ResumePlan([], everyone, whole, True, None)
    train = [m for m in everyone if m not in finished]
    state = group_state_path(sweep_dir, [job_numbers[m] for m in train])
    if state.is_file():  # these members were themselves resumed as a group before, and stopped again
        return ResumePlan(finished, train, state, True, None)
    started = [m for m in train if statuses[m] is not None]
    note = None
    if started:
        names = ", ".join(run_dirs[m].name for m in started)
        said = ", ".join(sorted({str(statuses[m]) for m in started}))
        note = f"{names} stopped ({said}) before the group saved its training state: trained again from the start"
    return ResumePlan(finished, train, state, False, note)


def resumed_jobs(
    sweep_dir: str | Path, job_overrides: Sequence[Sequence[str]], first_number: int = 0
) -> tuple[list[int], list[Path | None]]:
    """The number and directory of each job of a stacked sweep resumed with ckpt_path=last, matched to the job
    directories the sweep holds by their settings (src/sweep/runs.py: job_numbers): a job whose settings a directory
    holds goes on in it, under its number, whatever the command's order; a new job (a seed added) gets a new number
    (None: its directory is made as Hydra names it). `first_number`: the sweep's number of the first of these jobs
    (Hydra's initial_job_idx, for a sweeper that launches its jobs in batches)."""
    from src.sweep.runs import job_number, job_numbers, matched_jobs

    planned, held = matched_jobs(Path(sweep_dir), job_overrides)
    numbers = job_numbers(planned, {key: job_number(d) for key, d in held.items()}, first_number)
    return numbers, [held.get(key) for key in planned]


def saved_group(run_dir: Path, sweep_dir: str | Path) -> list[str] | None:
    """The members (their directories' names, in the group's order) of the group whose saved training state this
    member of a stacked sweep resumes from; None when it has nothing to resume from as a member of a group: it has
    finished, was never in a group, or stopped before its group saved a state."""
    from src.sweep.runs import read_record

    record = read_record(run_dir)
    group = record.get("stacked") or {}
    if record.get("status") in FINISHED or not group.get("group_state"):
        return None
    # run.json holds the path the state was saved at; a sweep directory copied or moved since holds it under the
    # same name in its own folder of group states
    if not (Path(sweep_dir) / GROUP_STATES / Path(group["group_state"]).name).is_file():
        return None
    return [Path(member).name for member in group.get("members") or []]


def resumed_groups(
    group: Sequence[int], run_dirs: Sequence[Path | None], numbers: Sequence[int], sweep_dir: str | Path
) -> list[list[int]]:
    """A group of jobs that differ only in seed (stack_groups), in a stacked sweep resumed with ckpt_path=last: the
    members interrupted in a group that saved its training state resume as exactly that group, in its order (its
    state holds those members and no others); the rest (finished, new, or stopped before any saved state) form a
    group of their own, in the order of their numbers. A seed added to a group that was interrupted is so trained
    in a group of its own: the interrupted ones go on bit-exact, and the new one trains as it would had it been
    added once they had finished. The groups come in the order of their lowest numbers."""
    in_order = sorted(group, key=lambda index: numbers[index])
    by_name = {directory.name: index for index in group if (directory := run_dirs[index]) is not None}
    saved: list[list[int]] = []
    placed: set[int] = set()
    for index in in_order:
        directory = run_dirs[index]
        names = saved_group(directory, sweep_dir) if directory is not None and index not in placed else None
        # (a member the sweep no longer runs is refused before it starts: src/cli/preflight.py, check_no_job_left_out)
        if names and all(name in by_name and by_name[name] not in placed for name in names):
            saved.append([by_name[name] for name in names])
            placed.update(saved[-1])
    rest = [index for index in in_order if index not in placed]
    return sorted([*saved, *([rest] if rest else [])], key=lambda members: min(numbers[m] for m in members))


def finished_value(run_dir: Path, objective: str | None) -> float | None:
    """What a finished member returns to the sweep, read back from its metrics.json (None when it diverged)."""
    from src.provenance import read_status
    from src.training.metrics_file import read_metrics

    if read_status(run_dir) != "completed" or objective is None:
        return None
    return (read_metrics(run_dir) or {}).get("final", {}).get(objective)


def job_directory(config: DictConfig) -> Path:
    """A job's directory, as Hydra names it: the sweep's dir and its subdir (the job's number and values)."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(config)  # the subdir's interpolations read hydra.* through HydraConfig
    return Path(os.path.abspath(os.path.join(str(config.hydra.sweep.dir), str(config.hydra.sweep.subdir))))


def task_config(config: DictConfig) -> DictConfig:
    """A job's config as the task function gets it: without its `hydra` node."""
    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


def make_job_directory(config: DictConfig, hydra_context: Any, task_function: Any) -> tuple[DictConfig, Path]:
    """What Hydra's run_job does for a job before it calls the task function: its output directory (the sweep's
    dir and subdir), .hydra/ with config.yaml, hydra.yaml and overrides.yaml, and the callbacks' on_job_start.
    Returns the job's config without its `hydra` node, and its directory."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import _save_config

    output_dir = job_directory(config)
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(config)
    task_cfg = task_config(config)
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


def resume_command(sweep_config: DictConfig) -> list[str]:
    """The arguments that resume a stacked sweep where it stopped: its own overrides, in its own directory, with
    ckpt_path=last (every group goes on from its saved state; finished groups are kept, unstarted ones start)."""
    from src.sweep.resume import sweep_resume_arguments

    hydra = sweep_config.hydra
    return sweep_resume_arguments(hydra, Path(str(hydra.sweep.dir)), launcher="hydra/launcher=stacked")


def task_module(task_function: Any):
    """The module of the sweep's task function (src.run, which is `__main__` under `python -m src.run`): the
    group is run by its `run_stacked_group`, with that module's own state (a second import would be a copy)."""
    return sys.modules[task_function.__module__]
