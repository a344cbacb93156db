"""Where a run's scalars and hyperparameters go, selected by `logger=<name>`: Lightning's own loggers.

TensorBoard is the dashboards' home (attention maps, head statistics, text samples, the HPARAMS table), so every
option except `none` writes TensorBoard's event files into the run directory; `csv`, `wandb` and `mlflow` add a
copy of the scalars and hyperparameters for the tools people already use. The trackers are optional dependencies:
choosing one that is not installed is refused before any work, with the command that installs it.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlparse

from src.model import ConfigError


def build_tensorboard(settings: Any, run_dir: Path, run_name: str):
    from src.training.tensorboard_logger import RunTensorBoardLogger

    # name="" and version="": event files go straight into the run directory (no lightning_logs/version_0).
    return RunTensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)


def build_csv(settings: Any, run_dir: Path, run_name: str):
    from lightning.pytorch.loggers import CSVLogger

    # run_dir/csv/version_<n>/metrics.csv (and hparams.yaml): a resumed run adds a version rather than replacing the
    # file, which Lightning's CSV writer would delete if it found one.
    return CSVLogger(save_dir=str(run_dir), name="csv")


def build_wandb(settings: Any, run_dir: Path, run_name: str):
    from lightning.pytorch.loggers import WandbLogger

    # Online or offline as wandb's own settings say (WANDB_MODE=offline works without a network).
    return WandbLogger(project=settings.project, name=run_name, save_dir=str(run_dir))


def build_mlflow(settings: Any, run_dir: Path, run_name: str):
    from lightning.pytorch.loggers import MLFlowLogger

    uri = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"file:{Path.cwd() / 'mlruns'}"
    if uri.startswith("file:"):
        # MLflow 3 refuses a plain folder as its store unless asked; a folder is what a laptop run wants, and
        # `mlflow ui --backend-store-uri <it>` reads it.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(experiment_name=settings.project, run_name=run_name, tracking_uri=uri)


def wandb_ready() -> None:
    """Online W&B needs a login; without one, wandb stops the run after the data has loaded. Checked first."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        if netrc.netrc(os.environ.get("NETRC")).authenticators(host or ""):
            return
    except (OSError, netrc.NetrcParseError):
        pass
    raise ConfigError(
        "logger=wandb has no Weights & Biases login: run `wandb login`, or set WANDB_MODE=offline to log locally "
        "(`wandb sync` uploads later)"
    )


@dataclass(frozen=True)
class LoggerOption:
    build: Optional[Callable[[Any, Path, str], Any]]  # a Lightning logger beside TensorBoard (None: nothing more)
    with_tensorboard: bool = True
    module: Optional[str] = None  # what must be importable
    extra: Optional[str] = None  # the optional dependency group that installs it
    ready: Optional[Callable[[], None]] = None  # raises ConfigError when it could not work (e.g. no login)
    reads: tuple[str, ...] = ()  # the logger.* settings besides name that it uses


# `logger=<name>`: name -> option. A new one is a small function above and one entry here (and a conf/logger yaml).
LOGGERS: dict[str, LoggerOption] = {
    "tensorboard": LoggerOption(build=None),
    "csv": LoggerOption(build=build_csv),
    "wandb": LoggerOption(build=build_wandb, module="wandb", extra="wandb", ready=wandb_ready, reads=("project",)),
    "mlflow": LoggerOption(build=build_mlflow, module="mlflow", extra="mlflow", reads=("project", "tracking_uri")),
    "none": LoggerOption(build=None, with_tensorboard=False),
}


def check_logger(settings: Any) -> None:
    """A known option whose package is installed; else one line naming the fix."""
    option = LOGGERS.get(settings.name)
    if option is None:
        raise ConfigError(
            f"logger={settings.name} is not known: choose where the scalars go with logger=<option> (or logger.name), "
            f"one of {', '.join(LOGGERS)}; a run is named by its directory (hydra.run.dir)"
        )
    if option.module is not None and importlib.util.find_spec(option.module) is None:
        raise ConfigError(
            f"logger={settings.name} needs the {option.module} package, which is not installed: "
            f"pip install -e '.[{option.extra}]' (or choose logger=tensorboard)"
        )
    if option.ready is not None:
        option.ready()


def unread_settings(settings: Any) -> list[str]:
    """The logger.* settings given a value other than their default that the chosen logger does not use
    (`logger.project=x` with TensorBoard): legal, and without effect, so the run says so."""
    from src.cli.schema import LoggerConfig

    defaults = LoggerConfig()
    reads = LOGGERS[settings.name].reads if settings.name in LOGGERS else ()
    return [
        f"logger.{key}={settings[key]}"
        for key in ("project", "tracking_uri")
        if key not in reads and settings.get(key) != getattr(defaults, key)
    ]


def build_loggers(settings: Any, run_dir: Path, run_name: str) -> list:
    """The Lightning loggers for `logger=<settings.name>`, TensorBoard's first (the dashboards look for it)."""
    option = LOGGERS[settings.name]
    loggers = [build_tensorboard(settings, run_dir, run_name)] if option.with_tensorboard else []
    if option.build is not None:
        loggers.append(option.build(settings, run_dir, run_name))
    return loggers
