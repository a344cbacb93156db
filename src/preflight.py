"""What `python -m src.run` checks before Hydra writes anything: no command may redo finished work over its results,
or write a second run over a first one.

Hydra writes `.hydra/` into the run directory (and `multirun.yaml` into a sweep directory) before any of the
task's code runs, so these checks are Hydra callbacks (conf/config.yaml, `hydra.callbacks.preflight`): Hydra calls
`on_run_start` / `on_multirun_start` with the composed config, before it creates or touches a directory. A refusal
is one `error:` line, exit status 2, and every file of the earlier run or sweep unchanged. (Hydra turns an
exception raised by a callback into a warning and goes on, so the callback exits itself.)

Refused:
- a new run in a directory that already holds one (`hydra.run.dir=<run>` without `ckpt_path`);
- resuming a checkpoint that has nothing left to train (its step has reached `trainer.max_steps`, its epochs
  `trainer.max_epochs`, or its time `trainer.max_time`): Lightning would return at once and the run would end as
  "completed" with no metrics;
- resuming another run's checkpoint into a directory that holds a run (its checkpoints and metrics would be
  replaced by another run's continuation);
- a sweep into a `hydra.sweep.dir` that already holds one: Hydra reuses job directories without complaint, so
  the second sweep would overwrite the first one's checkpoints and metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.cli import user_errors_as_one_line
from src.model import ConfigError
from src.provenance import read_status, shell_override


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
        with user_errors_as_one_line():
            check_sweep_dir(config)


def check_run_dir(config: DictConfig) -> None:
    """One run: a directory that holds a run is only entered to resume it (see check_resume)."""
    run_dir = _resolved(config, "hydra.run.dir")
    if run_dir is None:
        return
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if config.get("ckpt_path") is None:
        if status is not None:
            raise ConfigError(
                f"hydra.run.dir={run_dir} already holds a run ({status}): resume it with ckpt_path=last, or "
                "choose another directory"
            )
        return
    check_resume(config, run_dir, holds_a_run=status is not None)


def check_sweep_dir(config: DictConfig) -> None:
    """A sweep: only into a directory that holds no sweep (job directories or Hydra's multirun.yaml)."""
    sweep_dir = _resolved(config, "hydra.sweep.dir")
    if sweep_dir is None:
        return
    sweep_dir = Path(sweep_dir)
    jobs = sorted(path.parent for path in sweep_dir.glob("*/.hydra"))
    if not jobs and not (sweep_dir / "multirun.yaml").is_file():
        return
    resume = (
        f"; to resume one of its jobs in place: python -m src.run <that job's overrides> "
        f"{shell_override('hydra.run.dir', jobs[0].resolve())} ckpt_path=last"
        if jobs
        else ""
    )
    raise ConfigError(
        f"hydra.sweep.dir={sweep_dir} already holds a sweep ({len(jobs)} job directories), which this one would "
        f"overwrite: choose another hydra.sweep.dir, or leave it out for a new one{resume}"
    )


def check_resume(config: DictConfig, run_dir: Path, holds_a_run: bool) -> None:
    """`ckpt_path` must name a readable checkpoint with training left to do, and resuming into a directory that
    holds a run must continue that run, not another one."""
    from src.training.checkpoint import read_checkpoint, resolve_resume_checkpoint
    from src.validation import validate_config

    # The values first, as src.run would check them, but before Hydra rewrites the run's .hydra/ with them.
    validate_config(OmegaConf.masked_copy(config, [key for key in config if key != "hydra"]))
    ckpt = resolve_resume_checkpoint(str(config.ckpt_path), run_dir)
    if holds_a_run and run_dir.resolve() not in ckpt.resolve().parents:
        raise ConfigError(
            f"ckpt_path={config.ckpt_path} is a checkpoint of another run, and hydra.run.dir={run_dir} already holds "
            f"a run whose checkpoints and metrics resuming would replace: leave out hydra.run.dir (a new directory), "
            f"or resume that run with ckpt_path=last"
        )
    check_training_left(read_checkpoint(str(ckpt), "ckpt_path"), ckpt, config)


def check_training_left(checkpoint: dict, ckpt: Path, config: DictConfig) -> None:
    """Refuse to resume a checkpoint that has reached the trainer's limits (`finished_by`): Lightning would return
    at once, and the run would end "completed" with no metrics. Also called by each job of a sweep, whose
    directories are new (so nothing is lost there, but the job is reported with this reason)."""
    finished = finished_by(checkpoint, config.trainer)
    if finished is not None:
        setting, reached = finished
        raise ConfigError(
            f"ckpt_path={config.ckpt_path}: {ckpt} has already {reached}, all that trainer.{setting}="
            f"{config.trainer[setting]} asks for, so resuming would train nothing: raise trainer.{setting} to train "
            f"longer, or evaluate it with python -m src.eval {shell_override('ckpt', ckpt)}"
        )


def finished_by(checkpoint: dict, trainer: DictConfig) -> tuple[str, str] | None:
    """Which of the trainer's limits the checkpoint has already reached, as (setting, what it reached); None when
    training has steps left. These are the limits Lightning's fit loop stops at (`max_steps`, `max_epochs`) and
    its Timer callback (`max_time`)."""
    step = int(checkpoint.get("global_step", 0))
    if trainer.get("max_steps") is not None and 0 <= trainer.max_steps <= step:
        return "max_steps", f"trained {step} steps"
    epochs = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    processed = int(epochs.get("processed", 0))
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
