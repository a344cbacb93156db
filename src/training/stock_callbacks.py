"""Lightning's own callbacks by config, by class name: `+callbacks.<Name>.<argument>=<value>`.

    +callbacks.EarlyStopping.patience=5          # monitor and mode default to the task's main metric
    +callbacks.StochasticWeightAveraging.swa_lrs=0.01
    +callbacks.DeviceStatsMonitor.cpu_stats=true

Only classes of `lightning.pytorch.callbacks` that can be built from plain values are offered; the names and the
arguments are checked before any work starts, so a typo is one line, not a traceback after the data has loaded.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from src.model import ConfigError

# Base classes, and callbacks that need Python objects (functions, a writer) or that the run already wires up
# itself (checkpoints, progress bars, the learning-rate monitor, the time budget: trainer.max_time).
NOT_BY_CONFIG = {
    "Callback",
    "Checkpoint",
    "BaseFinetuning",
    "BackboneFinetuning",
    "BasePredictionWriter",
    "LambdaCallback",
    "ProgressBar",
    "RichProgressBar",
    "TQDMProgressBar",
    "ModelCheckpoint",
    "LearningRateMonitor",
    "Timer",
    "WeightAveraging",
}


def stock_names() -> list[str]:
    import lightning.pytorch.callbacks as lightning_callbacks  # here: the command line is checked before the import

    return sorted(set(lightning_callbacks.__all__) - NOT_BY_CONFIG)


def stock_class(name: str) -> type:
    import lightning.pytorch.callbacks as lightning_callbacks

    return getattr(lightning_callbacks, name)


def check_stock_callbacks(settings: Mapping[str, Any]) -> None:
    for name, arguments in settings.items():
        offered = stock_names()
        if name not in offered:
            raise ConfigError(
                f"callbacks.{name} is not one of Lightning's callbacks offered here: use one of {', '.join(offered)}"
            )
        if arguments is not None and not isinstance(arguments, Mapping):
            raise ConfigError(
                f"callbacks.{name}={arguments} must be its arguments: write +callbacks.{name}.<argument>=<value>"
            )
        try:
            inspect.signature(stock_class(name)).bind_partial(**dict(arguments or {}))  # names; values when built
        except TypeError as error:
            raise ConfigError(f"callbacks.{name}: {error}: check the argument names of lightning's {name}") from None


def direction_of(metric: str) -> str:
    """Lightning's mode for a metric tag: max when a larger value is better (accuracy, BLEU), min otherwise."""
    from src.training.metrics import higher_is_better

    return "max" if higher_is_better(metric) else "min"


def build_stock_callbacks(settings: Mapping[str, Any], monitor: str, mode: str) -> list:
    """The configured callbacks; EarlyStopping watches the task's main metric unless told otherwise."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    callbacks = []
    for name, arguments in settings.items():
        kwargs = dict(arguments or {})
        if name == "EarlyStopping":  # the task's main metric unless told; a metric's own direction unless told
            kwargs.setdefault("mode", mode if "monitor" not in kwargs else direction_of(kwargs["monitor"]))
            kwargs.setdefault("monitor", monitor)
        try:
            callbacks.append(stock_class(name)(**kwargs))
        except (TypeError, ValueError, MisconfigurationException) as error:
            raise ConfigError(f"callbacks.{name}: {str(error).strip().splitlines()[0]}: fix its arguments") from None
    return callbacks


def why_training_stopped(trainer, settings: Mapping[str, Any], history: list[dict]) -> dict[str, Any] | None:
    """Why training ended before `trainer.max_steps` (`settings`: the run's trainer config), or None when it
    reached them: early stopping (the metric,
    its best value and the step of that value, read from the run's validation `history`), the time budget
    (`trainer.max_time`, Lightning's Timer) or the epoch limit. A run that stops early says so, in one line and
    in run.json, instead of ending silently as "completed"."""
    from lightning.pytorch.callbacks import EarlyStopping, Timer
    from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

    step, max_steps = trainer.global_step, settings.get("max_steps")
    if max_steps is not None and 0 <= max_steps <= step:
        return None
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopping_reason != EarlyStoppingReason.NOT_STOPPED:
            seen = [
                (entry[callback.monitor], entry["step"]) for entry in history if entry.get(callback.monitor) is not None
            ]
            best = float(callback.best_score)
            if not math.isfinite(best) and seen:  # stopped (by a threshold) before any improvement was recorded
                best = (max if callback.mode == "max" else min)(value for value, _ in seen)
            best_step = min(seen, key=lambda value_step: abs(value_step[0] - best))[1] if seen else None
            what = {
                EarlyStoppingReason.PATIENCE_EXHAUSTED: f"{callback.monitor} did not improve for {callback.wait_count} "
                f"validation(s) (patience {callback.patience})",
                EarlyStoppingReason.STOPPING_THRESHOLD: f"{callback.monitor} reached stopping_threshold="
                f"{callback.stopping_threshold}",
                EarlyStoppingReason.DIVERGENCE_THRESHOLD: f"{callback.monitor} passed divergence_threshold="
                f"{callback.divergence_threshold}",
                EarlyStoppingReason.NON_FINITE_METRIC: f"{callback.monitor} became non-finite",
            }[callback.stopping_reason]
            return {
                "by": "early_stopping",
                "step": step,
                "metric": callback.monitor,
                "best": best,
                "best_step": best_step,
                "message": f"stopped early at step {step}"
                + (f" of {max_steps}" if max_steps and max_steps > 0 else "")
                + f" by EarlyStopping: {what}; best {callback.monitor} {best:.4g}"
                + (f" at step {best_step}" if best_step is not None else ""),
            }
        if isinstance(callback, Timer) and callback.time_remaining() is not None and callback.time_remaining() <= 0:
            return {
                "by": "max_time",
                "step": step,
                "message": f"stopped at the time budget trainer.max_time={settings.get('max_time')} at step {step}"
                + (f" of {max_steps}" if max_steps and max_steps > 0 else ""),
            }
    if trainer.max_epochs not in (None, -1) and trainer.current_epoch >= trainer.max_epochs:
        return {
            "by": "max_epochs",
            "step": step,
            "message": f"stopped after trainer.max_epochs={trainer.max_epochs} epochs at step {step}",
        }
    return None
