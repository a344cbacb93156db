"""Train one experiment: `python -m src.run [overrides]`, or a sweep: `python -m src.run -m model.heads=1,2,4,8`.

What happens, in order (nothing heavy is built before the config is known to be sound):
  1. Hydra composes conf/config.yaml with the command-line overrides and checks types and keys (schema in
     src/config.py); the composed config is saved in <run dir>/.hydra/.
  2. `validate_config` checks the values that must agree (one-line `error: ...`, exit status 2, otherwise).
  3. The datamodule is built (vocabularies are learned and saved in the run directory), then the model.
  4. Lightning trains; TensorBoard events, checkpoints and the config all land in the run directory.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.config import (
    absolute_task_paths,
    model_config_for,
    register_configs,
    resolve_path,
    to_plain,
    validate_config,
)
from src.cli import EXIT_USER_ERROR, USER_ERRORS
from src.model import ConfigError
from src.training.report import quiet_lightning

register_configs()
quiet_lightning()




def build_callbacks(cfg: DictConfig, run_dir: Path, module, with_logger: bool) -> list:
    import lightning.pytorch.callbacks as cb

    from src.training.callbacks import RestoreRandomState, StepProgressBar, ValidateAtLastStep

    ckpt_dir = run_dir / "checkpoints"
    callbacks: list = [ValidateAtLastStep(), RestoreRandomState()]
    # After every validation (and so after the last step, see ValidateAtLastStep):
    if cfg.checkpoint.save_best:  # checkpoints/best.ckpt, by the task's main metric
        callbacks.append(
            cb.ModelCheckpoint(
                dirpath=ckpt_dir, filename="best", monitor=module.monitor, mode=module.monitor_mode, save_top_k=1,
                auto_insert_metric_name=False, enable_version_counter=False,
            )
        )
    if cfg.checkpoint.save_last:
        # checkpoints/last.ckpt: the latest state. Its own callback without a monitor, because Lightning's
        # save_last=True refreshes last.ckpt only when the monitored metric improved.
        callbacks.append(
            cb.ModelCheckpoint(
                dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False,
            )
        )
    if cfg.checkpoint.every_n_train_steps > 0:
        callbacks.append(
            cb.ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="step-{step}",
                every_n_train_steps=cfg.checkpoint.every_n_train_steps,
                save_top_k=-1,  # keep them all: resume from any of them
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    if cfg.trainer.enable_progress_bar:
        callbacks.append(StepProgressBar())
    if with_logger:
        callbacks.append(cb.LearningRateMonitor(logging_interval="step"))
        callbacks += dashboard_callbacks(cfg, module.metric_tags)
    return callbacks


def dashboard_callbacks(cfg: DictConfig, metric_tags: list[str]) -> list:
    """TensorBoard content beyond scalars (src/dashboard): attention maps, head statistics, text, hparams."""
    from src import dashboard

    d = cfg.dashboard
    callbacks = []
    if d.attention_maps:
        callbacks.append(
            dashboard.AttentionMapLogger(every_n_steps=d.attention_every_n_steps, num_examples=d.attention_examples)
        )
    if d.attention_stats:
        callbacks.append(dashboard.AttentionStatsLogger(every_n_steps=d.attention_every_n_steps, probe_size=d.probe_size))
    if d.text_samples:
        callbacks.append(dashboard.TextSampleLogger(num_examples=d.text_examples))
    if d.hparams:
        callbacks.append(dashboard.HParamsLogger(metric_tags=metric_tags))
    return callbacks


def train(cfg: DictConfig, run_dir: Path) -> float | None:
    """Train the configured experiment in `run_dir`; returns the final value of the task's main validation
    metric (what a sweeper such as Optuna would optimise)."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.loggers import TensorBoardLogger

    from src.data import build_datamodule
    from src.training.checkpoint import check_resumable, read_checkpoint
    from src.training.module import TransformerLitModule
    from src.training.report import print_run_start, print_run_end

    validate_config(cfg, multirun=is_multirun())  # before any data or model is built
    checkpoint = read_checkpoint(cfg.ckpt_path, "ckpt_path") if cfg.ckpt_path is not None else None
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    absolute_task_paths(cfg)
    datamodule = build_datamodule(cfg.task, cfg.batch_size, cfg.seed, run_dir=run_dir, num_workers=cfg.num_workers)
    model_cfg = model_config_for(cfg, datamodule.src_vocab_size, datamodule.tgt_vocab_size, datamodule.num_classes)
    longest = max(datamodule.max_src_len, datamodule.max_tgt_len)
    if model_cfg.max_len < longest:
        raise ConfigError(
            f"model.max_len={model_cfg.max_len} is shorter than the task's longest sequence ({longest} tokens): "
            f"set model.max_len={longest} or more (or lower task.max_len)"
        )
    model_cfg.validate()  # again, now with the real vocabulary sizes

    if checkpoint is not None:
        check_resumable(checkpoint, model_cfg, cfg.task.name, config=to_plain(cfg))
        del checkpoint  # Lightning reads it again, with the loop and data-loader state

    module = TransformerLitModule(to_plain(cfg), asdict(model_cfg), datamodule.kind, str(run_dir))
    print_run_start(cfg, model_cfg, module, datamodule, run_dir)

    with_logger = cfg.logger.name == "tensorboard"
    logger: Any = False
    if with_logger:
        # name="" and version="": event files go straight into the run directory (no lightning_logs/version_0).
        logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)
    try:
        trainer = L.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            logger=logger,
            callbacks=build_callbacks(cfg, run_dir, module, with_logger),
            default_root_dir=str(run_dir),
        )
    except (MisconfigurationException, ValueError) as error:  # Lightning's own checks of trainer.*
        first_line = str(error).strip().splitlines()[0]
        raise ConfigError(f"trainer settings rejected by Lightning: {first_line}") from None
    ckpt_path = str(resolve_path(cfg.ckpt_path)) if cfg.ckpt_path is not None else None
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if trainer.is_global_zero:
        print_run_end(run_dir, metrics, module.monitor, with_logger, multirun=is_multirun())
    return metrics.get(module.monitor)


def is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # Hydra not initialised (called from Python)
        return False


FAILED_JOBS: list[str] = []  # sweep jobs that failed in this process (the basic launcher runs them all here)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra's entry point: one run, or one job of a sweep."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = is_multirun()
    job = f"job {HydraConfig.get().job.num} ({HydraConfig.get().job.override_dirname or 'defaults'})" if multirun else ""
    try:
        return train(cfg, run_dir)
    except USER_ERRORS as error:
        if multirun and cfg.sweep_catch_errors:
            # One bad combination must not end the sweep: report it and let the launcher go on.
            print(f"error: {job}: {error}", file=sys.stderr)
            (run_dir / "error.txt").write_text(f"{error}\n")
            FAILED_JOBS.append(job)
            return None
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception:
        if multirun and cfg.sweep_catch_errors:
            trace = traceback.format_exc()
            (run_dir / "error.txt").write_text(trace)
            print(f"error: {job} failed; traceback in {run_dir / 'error.txt'}", file=sys.stderr)
            FAILED_JOBS.append(job)
            return None
        raise


def cli() -> None:
    main()
    if FAILED_JOBS:
        print(f"error: {len(FAILED_JOBS)} sweep job(s) failed: {', '.join(FAILED_JOBS)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli()
