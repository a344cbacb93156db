"""Reading checkpoints back: what eval, predict and resuming need, with one-line errors for bad paths.

A checkpoint stores the run's composed config and the model's TransformerConfig in its hyperparameters, so a
checkpoint alone is enough to rebuild the model, the datamodule (vocabularies are reloaded from the run
directory) and the decoding settings.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from src.data import task_spec
from src.data.files import resolve_path
from src.model import ConfigError, TransformerConfig
from src.model.masks import MASK_SCHEMES
from src.provenance import shell_override


def check_checkpoint_file(path: str, field_name: str = "ckpt") -> Path:
    """A checkpoint path must name an existing file (loading it is checked where it is loaded)."""
    if not str(path).strip():  # `ckpt=` would resolve to the working directory
        raise ConfigError(
            f"{field_name} is empty: give a checkpoint file, e.g. {field_name}=<run>/checkpoints/best.ckpt"
        )
    resolved = resolve_path(path)
    if resolved.is_dir():
        hint = resolved / "checkpoints" / "best.ckpt"
        raise ConfigError(
            f"{field_name}={path} is a directory: give a .ckpt file"
            + (
                f", e.g. {shell_override(field_name, hint)}"
                if hint.is_file()
                else " (a run keeps them in <run>/checkpoints/)"
            )
        )
    if not resolved.is_file():
        raise ConfigError(f"{field_name}={path} does not exist (looked at {resolved}): give a .ckpt file of a run")
    return resolved


def read_checkpoint(path: str, field_name: str = "ckpt") -> dict[str, Any]:
    """The checkpoint's content (on CPU). ConfigError when the file is missing or is not one of ours."""
    resolved = check_checkpoint_file(path, field_name)
    try:
        # weights_only=True: tensors and plain Python values only. Unpickling anything else could run code
        # hidden in the file, and checkpoints are shared; ours need nothing more (a test proves both).
        # mmap: tensors are read from the file only when used, so checking a checkpoint before a resume (its
        # settings and progress, src/preflight.py) does not read its weights.
        checkpoint = torch.load(resolved, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        found = _refused_global(str(error))
        if found is None:  # not a pickle at all (a text file, a truncated download)
            raise ConfigError(
                f"{field_name}={path} is not a readable checkpoint: "
                "give a .ckpt file from a run's checkpoints/ directory"
            ) from None
        raise ConfigError(
            f"{field_name}={path} was refused: it holds {found}, and loading it could run code; "
            "use a checkpoint written by src.run (only tensors and plain values are read)"
        ) from None
    except Exception as error:  # truncated file, a text file, another format ...
        raise ConfigError(
            f"{field_name}={path} is not a readable checkpoint ({type(error).__name__}): "
            "give a .ckpt file from a run's checkpoints/ directory"
        ) from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    needed = ("config", "model_config", "kind")
    if not isinstance(hparams, dict) or any(k not in hparams for k in needed) or "state_dict" not in checkpoint:
        raise ConfigError(
            f"{field_name}={path} is not a checkpoint written by src.run: "
            "give a .ckpt file from a run's checkpoints/ directory"
        )
    hparams["model_config"] = _with_mask_scheme(hparams["model_config"])
    return checkpoint


def checkpoint_model_config(checkpoint: dict[str, Any]) -> TransformerConfig:
    """The trained model's own config (its layers, heads and sites: what an `ablate` spec is checked against), from a
    checkpoint `read_checkpoint` returned, without building the model."""
    return TransformerConfig(**checkpoint["hyper_parameters"]["model_config"])


def _with_mask_scheme(model_config: dict) -> dict:
    """Checkpoints written before masks became schemes kept `mask_type`, `window` and `prefix_len` as model
    fields: read them as today's `mask` settings."""
    if "mask_type" not in model_config:
        return model_config
    model_config = dict(model_config)
    old = {
        "type": model_config.pop("mask_type"),
        "window": model_config.pop("window"),
        "prefix_len": model_config.pop("prefix_len"),
    }
    settings = {f.name for f in fields(MASK_SCHEMES[old["type"]])}
    model_config["mask"] = {key: value for key, value in old.items() if key == "type" or key in settings}
    return model_config


def _refused_global(message: str) -> str | None:
    """The object torch's safe unpickler refused, from its message ("Unsupported global: GLOBAL posix.system")."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return f"a reference to {match.group(1)!r}" if match else None


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The most recently written checkpoint of a run directory (after an interrupt: the interrupted step)."""
    found = sorted((run_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_resume_checkpoint(ckpt_path: str, run_dir: Path) -> Path:
    """`ckpt_path` as a file: `last` is the newest checkpoint of this run's own directory (hydra.run.dir), a run
    directory stands for its newest checkpoint, a file is itself."""
    if ckpt_path == "last":
        newest = newest_checkpoint(run_dir)
        if newest is None:
            raise ConfigError(
                f"ckpt_path=last: {run_dir} has no checkpoints: give the interrupted run's directory, "
                "hydra.run.dir=<run directory> ckpt_path=last"
            )
        return newest
    path = resolve_path(ckpt_path)
    if path.is_dir():
        newest = newest_checkpoint(path) or newest_checkpoint(path.parent)  # a run, or its checkpoints/ folder
        if newest is None:
            raise ConfigError(f"ckpt_path={ckpt_path} holds no checkpoints: give a run directory or a .ckpt file")
        return newest
    return check_checkpoint_file(ckpt_path, "ckpt_path")


def numeric_settings(config: dict, threads: int | None = None) -> dict[str, Any]:
    """What else changes the numbers of a run, beyond its config's must-match settings: recorded in checkpoints
    and checked on resume. On the CPU the thread count changes the order of reductions, and so the weights
    (`threads`: the count the run will use, when it is not yet set in this process)."""
    trainer = config["trainer"]
    settings = {
        "trainer.accelerator": trainer["accelerator"],
        "trainer.precision": str(trainer["precision"]),
        "trainer.devices": str(trainer["devices"]),
        "compile": bool(config.get("compile", False)),
    }
    if trainer["accelerator"] == "cpu":
        settings["torch_threads"] = threads or torch.get_num_threads()
    return settings


# What a resumed run must share with the run that wrote the checkpoint, beyond the model: the data (its
# content and order come from these) and the optimisation. Training length (trainer.max_steps) may change.
RESUME_MUST_MATCH = ("seed", "batch_size", "label_smoothing", "optimizer", "trainer.accumulate_grad_batches")


def _lookup(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def check_resumable(
    checkpoint: dict,
    model_cfg: TransformerConfig,
    task_name: str,
    field_name: str = "ckpt_path",
    config: dict | None = None,
    numerics: dict | None = None,
) -> None:
    """Resuming needs the same model, task, data, optimisation and numerics: report the first difference as the line
    to fix."""
    check_resumable_settings(checkpoint, task_name, field_name, config, numerics)
    saved = checkpoint["hyper_parameters"]["model_config"]
    for key, value in asdict(model_cfg).items():
        if key in saved and saved[key] != value:
            raise trained_otherwise(field_name, key, saved[key], value)


def trained_otherwise(field_name: str, key: str, saved, value) -> ConfigError:
    """The refusal of a resume whose setting `key` differs from the checkpoint's."""
    return ConfigError(
        f"{field_name} was trained with {key}={saved}, this run has {key}={value}: "
        f"resume with the same settings (see the run's .hydra/config.yaml) or drop {field_name}"
    )


def _specs(value) -> set[str]:
    """An `ablate.heads`/`ablate.sublayers` value as a set of specs (a list, one string, or nothing)."""
    if not value:
        return set()
    return {value.strip()} if isinstance(value, str) else {str(v).strip() for v in value}


def check_resumable_settings(
    checkpoint: dict,
    task_name: str,
    field_name: str = "ckpt_path",
    config: dict | None = None,
    numerics: dict | None = None,
) -> None:
    """What check_resumable checks that the config alone tells (no data or model built): the task, the data and
    optimisation settings, the numerics, and the model's and mask's settings as configured. src.run checks these
    before Hydra writes into the run directory, so a refused resume leaves the run's files as they were."""
    saved_config = checkpoint["hyper_parameters"]["config"]
    saved_task = saved_config["task"]["name"]
    if saved_task != task_name:
        raise ConfigError(
            f"{field_name} was trained on task={saved_task}, this run has task={task_name}: "
            f"resume with task={saved_task} or drop {field_name}"
        )
    if config is not None:
        places = task_spec(saved_task).path_fields  # data may move between the runs; settings may not
        keys = list(RESUME_MUST_MATCH) + [f"task.{k}" for k in saved_config["task"] if k not in places]
        # The model's and mask's settings as configured (those both configs have: a checkpoint may predate a field).
        keys += [
            f"{group}.{k}"
            for group in ("model", "mask")
            for k in saved_config.get(group, {})
            if k in (config.get(group) or {})
        ]
        if (saved_config.get("model") or {}).get("pretrained"):  # its config.json decides: compare the name only
            keys = [key for key in keys if not key.startswith("model.") or key == "model.pretrained"]
        for key in keys:
            saved_value, value = _lookup(saved_config, key), _lookup(config, key)
            if saved_value != value:
                raise trained_otherwise(field_name, key, saved_value, value)
        # The heads and sublayers trained without (a checkpoint from before ablations had none off).
        for key in ("heads", "sublayers"):
            saved_specs = _specs((saved_config.get("ablate") or {}).get(key))
            specs = _specs((config.get("ablate") or {}).get(key))
            if saved_specs != specs:
                raise trained_otherwise(field_name, f"ablate.{key}", sorted(saved_specs), sorted(specs))
    saved_numerics = checkpoint["hyper_parameters"].get("numerics") or {}  # older checkpoints did not record them
    for key, value in (numerics or {}).items():
        if key in saved_numerics and saved_numerics[key] != value:
            raise ConfigError(
                f"{field_name} was trained with {key}={saved_numerics[key]}, this run has {key}={value}, which "
                f"changes the numbers: resume with {key}={saved_numerics[key]} for an exact continuation"
            )


def run_dir_of(checkpoint_path: str, checkpoint: dict) -> Path:
    """The training run's directory (vocabularies live there): <run>/checkpoints/x.ckpt -> <run>; else the
    directory recorded at training time."""
    path = Path(checkpoint_path).resolve()
    if path.parent.name == "checkpoints":
        return path.parent.parent
    return Path(checkpoint["hyper_parameters"].get("run_dir") or path.parent)


def load_run(
    checkpoint_path: str, batch_size: int | None = None, field_name: str = "ckpt", checkpoint: dict | None = None
):
    """(module, datamodule) rebuilt from a checkpoint (read here unless already read): the trained model in eval
    mode and the run's data."""
    from src.data import build_datamodule
    from src.training.module import TransformerLitModule

    if checkpoint is None:
        checkpoint = read_any_checkpoint(checkpoint_path, field_name=field_name)
    hparams = checkpoint["hyper_parameters"]
    module = TransformerLitModule(
        hparams["config"], hparams["model_config"], hparams["kind"], hparams.get("run_dir"), hparams.get("numerics")
    )
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    config = hparams["config"]
    run_dir = None if hparams.get("pretrained") else run_dir_of(checkpoint_path, checkpoint)
    tokenizer = pretrained_tokenizer_of(checkpoint, run_dir)
    if (hparams.get("pretrained") or {}).get("reading_only"):
        from src.data.datamodule import reading_datamodule

        label_names = hparams["pretrained"].get("label_names", [])
        return module, reading_datamodule(hparams["kind"], tokenizer, module.model_cfg.max_len, label_names)
    datamodule = build_datamodule(
        OmegaConf.create(config["task"]),
        batch_size=config["batch_size"] if batch_size is None else batch_size,
        seed=config["seed"],
        run_dir=run_dir,
        tokenizer=tokenizer,
    )
    if hparams["kind"] == "classification" and datamodule.num_classes != module.model_cfg.num_classes:
        raise ConfigError(
            f"{field_name}={checkpoint_path} classifies into {module.model_cfg.num_classes} classes and "
            f"task={config['task']['name']} has {datamodule.num_classes}: fine-tune it on the task with src.run"
        )
    if hparams.get("pretrained"):  # ckpt=hf:<model> on a task: what our own runs checked when they trained
        from src.pretrained.fit import align_head, check_length

        name = hparams["pretrained"]["name"]
        check_length(name, module.model_cfg, max(datamodule.max_src_len, datamodule.max_tgt_len))
        if hparams["kind"] == "classification":
            align_head(module.model, hparams["pretrained"]["label_names"], datamodule.label_names, name)
    return module, datamodule


def read_any_checkpoint(ckpt: str, task: Any = None, field_name: str = "ckpt") -> dict[str, Any]:
    """A checkpoint of ours (read_checkpoint), or a pretrained model given as `hf:<name or directory>`
    (src/pretrained/checkpoint.py), on `task` (the command's task=..., a DictConfig) or on none (reading text only).
    Our checkpoints bring their own task: a task given with one is refused."""
    if str(ckpt).startswith("hf:"):
        from src.pretrained.checkpoint import pretrained_checkpoint

        task_dict = OmegaConf.to_container(task, resolve=True) if task is not None else None
        return pretrained_checkpoint(str(ckpt), task_dict, field_name)  # type: ignore[arg-type]
    if task is not None:
        raise ConfigError(
            f"task= is for {field_name}=hf:<model>: {field_name}={ckpt} was trained on its own task, which it brings: "
            "leave task= out"
        )
    return read_checkpoint(ckpt, field_name)


def pretrained_tokenizer_of(checkpoint: dict[str, Any], run_dir: Path | None):
    """The pretrained tokenizer a checkpoint reads text with (None: a vocabulary of its task's own): a fine-tuned
    run's copy (run_dir/pretrained_tokenizer/), else the pretrained model's own files."""
    from src.data.pretrained_tokenizer import SAVED_DIR, PretrainedTokenizer
    from src.model.tokens import SpecialIds

    hparams = checkpoint["hyper_parameters"]
    source = hparams.get("pretrained") or {}
    name = source.get("name") or (hparams["config"].get("model") or {}).get("pretrained")
    if not name:
        return None
    model = hparams["model_config"]
    specials = SpecialIds(pad=model["pad_id"], bos=model["bos_id"], eos=model["eos_id"])
    vocab_size = max(model["src_vocab_size"], model["tgt_vocab_size"])
    if run_dir is not None and (run_dir / SAVED_DIR).is_dir():
        return PretrainedTokenizer.load(run_dir / SAVED_DIR, specials, vocab_size, name)
    if source.get("directory"):
        return PretrainedTokenizer.load(Path(source["directory"]), specials, vocab_size, name)
    from src.pretrained.hub import resolve

    return PretrainedTokenizer.load(resolve(name), specials, vocab_size, name)
