"""Reading checkpoints back: what eval, predict and resuming need, with one-line errors for bad paths.

A checkpoint stores the run's composed config and the model's TransformerConfig in its hyperparameters, so a
checkpoint alone is enough to rebuild the model, the datamodule (vocabularies are reloaded from the run
directory) and the decoding settings.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from src.config import check_checkpoint_file
from src.model import ConfigError, TransformerConfig


def read_checkpoint(path: str, field_name: str = "ckpt") -> dict[str, Any]:
    """The checkpoint's content (on CPU). ConfigError when the file is missing or is not one of ours."""
    resolved = check_checkpoint_file(path, field_name)
    try:
        checkpoint = torch.load(resolved, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated file, a text file, another format ...
        raise ConfigError(
            f"{field_name}={path} is not a readable checkpoint ({type(error).__name__}): "
            "give a .ckpt file from a run's checkpoints/ directory"
        ) from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "model_config" not in hparams or "state_dict" not in checkpoint:
        raise ConfigError(
            f"{field_name}={path} is not a checkpoint written by src.run: "
            "give a .ckpt file from a run's checkpoints/ directory"
        )
    return checkpoint


# What a resumed run must share with the run that wrote the checkpoint, beyond the model: the data (its
# content and order come from these) and the optimisation. Training length (trainer.max_steps) may change.
RESUME_MUST_MATCH = ("seed", "batch_size", "label_smoothing", "optimizer", "trainer.accumulate_grad_batches")


def _lookup(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def check_resumable(
    checkpoint: dict, model_cfg: TransformerConfig, task_name: str, field_name: str = "ckpt_path", config: dict | None = None
) -> None:
    """Resuming needs the same model, task, data and optimisation: report the first difference as the line to fix."""
    saved_config = checkpoint["hyper_parameters"]["config"]
    saved_task = saved_config["task"]["name"]
    if saved_task != task_name:
        raise ConfigError(
            f"{field_name} was trained on task={saved_task}, this run has task={task_name}: "
            f"resume with task={saved_task} or drop {field_name}"
        )
    if config is not None:
        keys = list(RESUME_MUST_MATCH) + [f"task.{k}" for k in saved_config["task"] if not k.endswith(("path", "_src", "_tgt", "data_dir"))]
        for key in keys:
            saved_value, value = _lookup(saved_config, key), _lookup(config, key)
            if saved_value != value:
                raise ConfigError(
                    f"{field_name} was trained with {key}={saved_value}, this run has {key}={value}: "
                    f"resume with the same settings (see the run's .hydra/config.yaml) or drop {field_name}"
                )
    saved = checkpoint["hyper_parameters"]["model_config"]
    for key, value in asdict(model_cfg).items():
        if key in saved and saved[key] != value:
            raise ConfigError(
                f"{field_name} was trained with {key}={saved[key]}, this run has {key}={value}: "
                f"resume with the same settings (see the run's .hydra/config.yaml) or drop {field_name}"
            )


def run_dir_of(checkpoint_path: str, checkpoint: dict) -> Path:
    """The training run's directory (vocabularies live there): <run>/checkpoints/x.ckpt -> <run>; else the
    directory recorded at training time."""
    path = Path(checkpoint_path).resolve()
    if path.parent.name == "checkpoints":
        return path.parent.parent
    return Path(checkpoint["hyper_parameters"].get("run_dir") or path.parent)


def load_run(checkpoint_path: str, batch_size: int | None = None, field_name: str = "ckpt"):
    """(module, datamodule) rebuilt from a checkpoint: the trained model in eval mode and the run's data."""
    from src.data import build_datamodule
    from src.training.module import TransformerLitModule

    checkpoint = read_checkpoint(checkpoint_path, field_name)
    hparams = checkpoint["hyper_parameters"]
    module = TransformerLitModule(hparams["config"], hparams["model_config"], hparams["kind"], hparams.get("run_dir"))
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    config = hparams["config"]
    datamodule = build_datamodule(
        OmegaConf.create(config["task"]),
        batch_size=config["batch_size"] if batch_size is None else batch_size,
        seed=config["seed"],
        run_dir=run_dir_of(checkpoint_path, checkpoint),
    )
    return module, datamodule
