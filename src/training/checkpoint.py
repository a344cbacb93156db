"""Reading checkpoints back: what eval, predict and resuming need, with one-line errors for bad paths.

A checkpoint stores the run's composed config and the model's TransformerConfig in its hyperparameters, so a
checkpoint alone is enough to rebuild the model, the datamodule (vocabularies are reloaded from the run
directory) and the decoding settings.
"""

from __future__ import annotations

import difflib
import pickle
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from src.cli.schema import AUTO_PRECISION
from src.data import task_spec
from src.data.files import resolve_path
from src.data.registry import task_kind
from src.model import ConfigError, TransformerConfig
from src.model.masks import MASK_SCHEMES
from src.provenance import RUN_FILE, read_record, shell_override
from src.training.report import print_note, print_warning

CHECKPOINTS_DIR = "checkpoints"  # <run>/checkpoints/: best.ckpt, last.ckpt, step-<n>.ckpt
BEST_FILE = "best.ckpt"
# The key read_any_checkpoint adds to the checkpoint it returns: the file it was read from, which a run directory
# or a moved checkpoint does not tell (run_dir_of finds the run's vocabularies from it). Never saved back.
READ_FROM = "read_from"
# The key under which read_any_checkpoint leaves the line that says which checkpoint a run directory stood for:
# load_run prints it once the model and data are loaded, so that a command that refuses its input before any work
# prints its one `error:` line alone.
TO_SAY = "to_say"
# What every command that reads a trained model accepts as `ckpt=` (src.eval, src.predict; src.analyze also takes
# a sweep directory): the words of its errors.
CHECKPOINT_FORMS = "a .ckpt file, a run directory (its best checkpoint) or hf:<model>"
# run.json's statuses of a run that did not end well, as a sentence's verb: its checkpoints are used with a warning.
UNFINISHED = {
    "failed": "failed",
    "diverged": "diverged",
    "interrupted": "was interrupted",
    "running": "is still running (or was killed)",
}


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
        # settings and progress, src/cli/preflight.py) does not read its weights.
        checkpoint = torch.load(resolved, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        found = refused_global(str(error))
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


def refused_global(message: str) -> str | None:
    """The object torch's safe unpickler refused, from its message ("Unsupported global: GLOBAL posix.system")."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return f"a reference to {match.group(1)!r}" if match else None


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The most recently written checkpoint of a run directory (after an interrupt: the interrupted step)."""
    # Written at the same step, best.ckpt and last.ckpt hold the same weights: prefer last.ckpt, the name a user
    # who typed ckpt_path=last expects to read back.
    found = sorted(
        (run_dir / "checkpoints").glob("*.ckpt"), key=lambda p: (p.stat().st_mtime_ns // 10**6, p.name == "last.ckpt")
    )
    return found[-1] if found else None


def resolve_resume_checkpoint(ckpt_path: str, run_dir: Path) -> Path:
    """`ckpt_path` as a file: `last` is the newest checkpoint of this run's own directory (hydra.run.dir), a run
    directory stands for its newest checkpoint, a file is itself. Resuming continues where a run stopped, hence
    its newest checkpoint; reading a trained model (read_any_checkpoint) takes a run's best one."""
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
        if newest is None and is_sweep_dir(path):
            raise ConfigError(
                f"ckpt_path={ckpt_path} is a sweep directory: resume one of its runs in its own directory, "
                "hydra.run.dir=<run directory> ckpt_path=last"
            )
        if newest is None:
            runs = sorted(p.parent.parent for p in path.glob(f"*/{CHECKPOINTS_DIR}/*.ckpt"))
            if runs:
                raise ConfigError(
                    f"ckpt_path={ckpt_path} is a folder of runs, not a run: give one of them, e.g. "
                    f"{shell_override('ckpt_path', runs[0])}"
                )
            raise ConfigError(f"ckpt_path={ckpt_path} holds no checkpoints: give a run directory or a .ckpt file")
        return newest
    if not path.exists():
        raise ConfigError(_missing(ckpt_path, path, "ckpt_path", "a .ckpt file or a run directory (its newest)"))
    return check_checkpoint_file(ckpt_path, "ckpt_path")


def numeric_settings(config: dict, threads: int | None = None) -> dict[str, Any]:
    """What else changes the numbers of a run, beyond its config's must-match settings: recorded in checkpoints
    and checked on resume. On the CPU the thread count changes the order of reductions, and so the weights
    (`threads`: the count the run will use, when it is not yet set in this process).

    trainer.precision as the run trains in it: validate_config settles `auto` in the run's config where the run
    trains. A config still saying `auto` is checked before it gets there (src/cli/preflight.py, on this machine or on a
    cluster's submitting host): its precision is left out then, and compared when the run starts."""
    trainer = config["trainer"]
    settings = {
        "trainer.accelerator": trainer["accelerator"],
        "trainer.precision": str(trainer["precision"]),
        "trainer.devices": str(trainer["devices"]),
        "compile": bool(config.get("compile", False)),
    }
    if settings["trainer.precision"] == AUTO_PRECISION:
        del settings["trainer.precision"]
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
            keys = [key for key in keys if not key.startswith(("model.", "mask.")) or key == "model.pretrained"]
            # and the mask it attended with, as its model config recorded it (its run config said the composed
            # mask=standard beside Mistral's window until src.run recorded a pretrained model's own mask there)
            trained, mask = checkpoint["hyper_parameters"]["model_config"].get("mask") or {}, config.get("mask") or {}
            for key in dict.fromkeys([*trained, *mask]):
                if trained.get(key) != mask.get(key):
                    raise trained_otherwise(field_name, f"mask.{key}", trained.get(key), mask.get(key))
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
    if saved_numerics.get("trainer.accelerator") == "auto" and (numerics or {}).get("trainer.accelerator") == "cpu":
        # an older CPU run recorded `auto` before it was settled (src/cli/validation.py): it trained on the CPU too
        saved_numerics = {k: v for k, v in saved_numerics.items() if k != "trainer.accelerator"}
    for key, value in (numerics or {}).items():
        if key in saved_numerics and saved_numerics[key] != value:
            raise ConfigError(
                f"{field_name} was trained with {key}={saved_numerics[key]}, this run has {key}={value}, which "
                f"changes the numbers: resume with {key}={saved_numerics[key]} for an exact continuation"
            )


def run_dir_of(checkpoint_path: str, checkpoint: dict) -> Path:
    """The training run's directory (vocabularies live there): <run>/checkpoints/x.ckpt -> <run>; else the
    directory recorded at training time. The file read_any_checkpoint read counts over `checkpoint_path`, which
    may name a run directory instead of a file."""
    path = Path(checkpoint.get(READ_FROM) or checkpoint_path).resolve()
    if path.parent.name == "checkpoints":
        return path.parent.parent
    return Path(checkpoint["hyper_parameters"].get("run_dir") or path.parent)


def load_run(
    checkpoint_path: str, batch_size: int | None = None, field_name: str = "ckpt", checkpoint: dict | None = None
):
    """(module, datamodule) rebuilt from a checkpoint (read here unless already read): the trained model in eval
    mode and the run's data. Once both are built, the line read_any_checkpoint left is printed (which checkpoint a
    run directory stood for)."""
    if checkpoint is None:
        checkpoint = read_any_checkpoint(checkpoint_path, field_name=field_name)
    module, datamodule = _rebuild(checkpoint_path, checkpoint, batch_size, field_name)
    say_which_checkpoint(checkpoint)  # the command's input was accepted: the work starts here
    return module, datamodule


def _rebuild(checkpoint_path: str, checkpoint: dict[str, Any], batch_size: int | None, field_name: str):
    """load_run's work: the module with the checkpoint's weights, and the datamodule of its task."""
    from src.data import build_datamodule
    from src.training.module import TransformerLitModule

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
    classifies = not task_kind(hparams["kind"]).predicts_tokens  # one label per example, from a head of classes
    if classifies and datamodule.num_classes != module.model_cfg.num_classes:
        raise ConfigError(
            f"{field_name}={checkpoint_path} classifies into {module.model_cfg.num_classes} classes and "
            f"task={config['task']['name']} has {datamodule.num_classes}: fine-tune it on the task with src.run"
        )
    if hparams.get("pretrained"):  # ckpt=hf:<model> on a task: what our own runs checked when they trained
        from src.pretrained.fit import align_head, check_length

        name = hparams["pretrained"]["name"]
        check_length(name, module.model_cfg, max(datamodule.max_src_len, datamodule.max_tgt_len))
        if classifies:
            align_head(module.model, hparams["pretrained"]["label_names"], datamodule.label_names, name)
    return module, datamodule


def read_any_checkpoint(
    ckpt: str, task: Any = None, field_name: str = "ckpt", forms: str = CHECKPOINT_FORMS
) -> dict[str, Any]:
    """What `ckpt=` names, read: a checkpoint file of ours, a run directory (its best checkpoint: locate_checkpoint;
    load_run says which in one line), or a pretrained model given as `hf:<name or directory>`
    (src/pretrained/checkpoint.py) on `task` (the command's task=..., a DictConfig) or on none (reading text only).
    Our checkpoints bring their own task: a task given with one is refused. `forms`: what the command accepts, for
    the error lines.

    The one place src.eval, src.predict and src.analyze turn `ckpt=` into a checkpoint, so that the same argument
    means the same thing in each. The returned dict holds the file it was read from under READ_FROM."""
    if str(ckpt).startswith("hf:"):
        from src.pretrained.checkpoint import pretrained_checkpoint

        task_dict = OmegaConf.to_container(task, resolve=True) if task is not None else None
        return pretrained_checkpoint(str(ckpt), task_dict, field_name)  # type: ignore[arg-type]
    if task is not None:
        raise ConfigError(
            f"task= is for {field_name}=hf:<model>: {field_name}={ckpt} was trained on its own task, which it brings: "
            "leave task= out"
        )
    path, named_run = locate_checkpoint(str(ckpt), field_name, forms)
    # A file keeps the name the user typed in read_checkpoint's errors; a run's checkpoint is named by its path.
    checkpoint = read_checkpoint(str(ckpt) if named_run is None else str(path), field_name)
    if "stacked_group" in checkpoint:  # src/training/stacked.py: GROUP_KEY, the training state of several models
        members = checkpoint["stacked_group"]["members"]
        raise ConfigError(
            f"{field_name}={ckpt} is the training state of a stacked group of {len(members)} seeds, not one model: "
            f"give one of its members, e.g. {shell_override(field_name, members[0])}"
        )
    checkpoint[READ_FROM] = str(path)
    said = _which_line(path, named_run, checkpoint)
    if said is not None:
        checkpoint[TO_SAY] = said
    return checkpoint


def best_checkpoint_of(run_dir: Path) -> Path | None:
    """The checkpoint a run directory stands for wherever one is read (src.eval, src.predict, src.analyze, the
    analysis after training): its best.ckpt (the best validation of the task's main metric), or without one
    (checkpoint.save_best=false, a run stopped before its first validation) its newest checkpoint."""
    best = run_dir / CHECKPOINTS_DIR / BEST_FILE
    return best if best.is_file() else newest_checkpoint(run_dir)


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a run's directory: it has checkpoints/ or a run.json (a run that saved nothing has that)."""
    return (path / CHECKPOINTS_DIR).is_dir() or (path / RUN_FILE).is_file()


def is_sweep_dir(path: Path) -> bool:
    """Whether `path` is a multirun's sweep directory: its jobs are folders directly in it whose Hydra config says
    they ran in MULTIRUN mode. A folder that merely holds single runs (a day's outputs/<date>/) is not one."""
    for hydra_file in path.glob("*/.hydra/hydra.yaml"):
        try:
            if str(OmegaConf.load(hydra_file).hydra.mode).endswith("MULTIRUN"):
                return True
        except Exception:  # an unreadable job config: not evidence of a sweep
            continue
    return False


def locate_checkpoint(ckpt: str, field_name: str = "ckpt", forms: str = CHECKPOINT_FORMS) -> tuple[Path, Path | None]:
    """(the checkpoint file `ckpt` names, the run directory when it named one): a file is itself; a run directory
    (or its checkpoints/ folder) stands for best_checkpoint_of. ConfigError, one line with the fix, for the rest:
    nothing there (with the nearest name when one is close), a run that saved no checkpoint (and why, from its
    run.json), a sweep or a folder of runs (one of its runs is named), any other folder."""
    if not str(ckpt).strip():  # `ckpt=` would resolve to the working directory
        raise ConfigError(f"{field_name} is empty: give {forms}, e.g. {field_name}=outputs/<date>/<time>")
    path = resolve_path(ckpt)
    if path.is_file():
        return path, None
    if not path.exists():
        raise ConfigError(_missing(ckpt, path, field_name, forms))
    run_dir = path.parent if path.name == CHECKPOINTS_DIR and is_run_dir(path.parent) else path
    if is_run_dir(run_dir):
        found = best_checkpoint_of(run_dir)
        if found is None:
            raise ConfigError(f"{field_name}={ckpt} is a run that saved no checkpoint: {_why_nothing(run_dir)}")
        return found, run_dir
    # The example named: a run that saved a checkpoint, when there is one (a failed job is no example to follow).
    runs = sorted(
        (p for p in path.iterdir() if p.is_dir() and is_run_dir(p)), key=lambda p: (not best_checkpoint_of(p), p)
    )
    example = f"e.g. {shell_override(field_name, runs[0])}" if runs else ""
    if is_sweep_dir(path):
        raise ConfigError(
            f"{field_name}={ckpt} is a sweep directory: give one of its runs, {example} "
            f"(src.analyze {field_name}=<sweep> analyses every run of a sweep)"
        )
    if runs:
        raise ConfigError(f"{field_name}={ckpt} is a folder of runs, not a run: give one of them, {example}")
    raise ConfigError(
        f"{field_name}={ckpt} is a directory that is neither a run (no {CHECKPOINTS_DIR}/, no {RUN_FILE}) nor a "
        f"checkpoint: give {forms}"
    )


def _missing(ckpt: str, path: Path, field_name: str, forms: str) -> str:
    """The line for a path that does not exist, with the nearest existing name when a part of it looks mistyped
    (outputs/2026-01-0/12-00 -> outputs/2026-01-01/12-00)."""
    found = path
    while not found.parent.exists() and found.parent != found:
        found = found.parent
    parent = found.parent
    if parent.is_dir():
        names = [p.name for p in parent.iterdir()]
        close = difflib.get_close_matches(found.name, names, n=1)
        if close:
            guess = parent / close[0] / path.relative_to(found)
            if guess.exists():
                mean = shell_override(field_name, guess)
                return f"{field_name}={ckpt} does not exist (looked at {path}): did you mean {mean}?"
    return f"{field_name}={ckpt} does not exist (looked at {path}): give {forms}"


def _why_nothing(run_dir: Path) -> str:
    """Why a run directory holds no checkpoint, and what to do, from its run.json."""
    record = read_record(run_dir) or {}
    status = record.get("status")
    reason = str(record.get("error") or "").strip().splitlines()
    because = f" ({reason[0]})" if reason else ""
    if status in ("failed", "diverged"):
        return f"it {status}{because} (see {run_dir / RUN_FILE}): fix that and run it again"
    if status == "running":
        return "it is still running (or was killed) before its first validation: wait for one, which saves best.ckpt"
    if status == "interrupted":
        return f"it was interrupted before its first checkpoint{because}: run it again"
    return (
        "it ended before its first validation, or ran with checkpoint.save_best=false checkpoint.save_last=false: "
        "run it again with checkpoints kept (the default)"
    )


def _best_score(checkpoint: dict[str, Any]) -> tuple[str | None, float | None]:
    """(monitored metric, its best value) recorded by the callback that saved best.ckpt (Lightning's ModelCheckpoint
    keeps both in its state, set before it saves); (None, None) when the checkpoint does not say."""
    for state in (checkpoint.get("callbacks") or {}).values():
        if isinstance(state, dict) and Path(str(state.get("best_model_path") or "")).name == BEST_FILE:
            score = state.get("best_model_score")
            return state.get("monitor"), float(score) if score is not None else None
    return None, None


def which_checkpoint(path: Path, checkpoint: dict[str, Any]) -> str:
    """What a run directory's checkpoint is, in words: "the best val/loss, 1.234 at step 400" for best.ckpt."""
    step = checkpoint.get("global_step")
    at = f"step {step}" if step is not None else "its step not recorded"
    if path.name != BEST_FILE:
        return f"the run has no {BEST_FILE}: its newest checkpoint, {at}"
    monitor, score = _best_score(checkpoint)
    if monitor is None:
        try:  # best.ckpt is saved by the task's main metric (src/run.py)
            monitor = task_spec(checkpoint["hyper_parameters"]["config"]["task"]["name"]).main_metric[0]
        except (KeyError, TypeError, ValueError):  # a task no longer registered (DataError)
            monitor = "validation"
    if monitor.endswith("/bleu"):  # not the sacreBLEU src.eval prints (src/training/metrics.py)
        monitor += " (training's quick BLEU)"
    value = f"{score:.4g} " if score is not None else ""
    return f"the best {monitor}, {value}at {at}"


def _which_line(path: Path, named_run: Path | None, checkpoint: dict[str, Any]) -> tuple[bool, str] | None:
    """(whether a warning, the line) that says which checkpoint a run directory stood for; a warning instead when
    the checkpoint's run did not complete (failed, diverged, interrupted, still running), whether the run or one of
    its files was named; None when there is nothing to say (a file of a completed run, or of no run)."""
    run_dir = named_run or (path.parent.parent if path.parent.name == CHECKPOINTS_DIR else None)
    record = read_record(run_dir) if run_dir is not None else None
    unfinished = UNFINISHED.get((record or {}).get("status"))
    if named_run is None:
        if unfinished and run_dir is not None:
            return True, f"{run_dir} {unfinished} (see its {RUN_FILE}): using {path.name} all the same"
        return None
    line = f"using {path} ({which_checkpoint(path, checkpoint)})"
    return (True, f"{named_run} {unfinished} (see its {RUN_FILE}): {line}") if unfinished else (False, line)


def say_which_checkpoint(checkpoint: dict[str, Any]) -> None:
    """Print the line read_any_checkpoint left (once): on stderr, so that src.predict's stdout stays only its
    predictions."""
    said = checkpoint.pop(TO_SAY, None)
    if said is not None:
        warning, line = said
        (print_warning if warning else print_note)(line)


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
    stops = tuple(model.get("stop_ids") or ())  # a checkpoint saved before stop_ids has none
    specials = SpecialIds(pad=model["pad_id"], bos=model["bos_id"], eos=model["eos_id"], stops=stops)
    vocab_size = max(model["src_vocab_size"], model["tgt_vocab_size"])
    if run_dir is not None and (run_dir / SAVED_DIR).is_dir():
        return PretrainedTokenizer.load(run_dir / SAVED_DIR, specials, vocab_size, name)
    if source.get("directory"):
        return PretrainedTokenizer.load(Path(source["directory"]), specials, vocab_size, name)
    from src.pretrained.hub import resolve

    return PretrainedTokenizer.load(resolve(name), specials, vocab_size, name)
