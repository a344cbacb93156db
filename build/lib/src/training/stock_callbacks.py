"""Lightning's own callbacks by config, by class name: `+callbacks.<Name>.<argument>=<value>`.

    +callbacks.EarlyStopping.patience=5          # monitor and mode default to the task's main metric
    +callbacks.StochasticWeightAveraging.swa_lrs=0.01
    +callbacks.DeviceStatsMonitor.cpu_stats=true

Only classes of `lightning.pytorch.callbacks` that can be built from plain values are offered; the names and the
arguments are checked before any work starts, so a typo is one line, not a traceback after the data has loaded.
"""

from __future__ import annotations

import inspect
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


def build_stock_callbacks(settings: Mapping[str, Any], monitor: str, mode: str) -> list:
    """The configured callbacks; EarlyStopping watches the task's main metric unless told otherwise."""
    callbacks = []
    for name, arguments in settings.items():
        kwargs = dict(arguments or {})
        if name == "EarlyStopping":
            kwargs.setdefault("monitor", monitor)
            kwargs.setdefault("mode", mode)
        try:
            callbacks.append(stock_class(name)(**kwargs))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"callbacks.{name}: {str(error).strip().splitlines()[0]}: fix its arguments") from None
    return callbacks
