"""The `trainer.*` settings, checked before anything is written: Lightning's Trainer takes most of them as they
are and refuses the bad ones only once the data and the model are built (after the run directory exists), or never
(a flag typed as text it reads as true, a minimum above the maximum it silently ignores).

`check_trainer(trainer, runs_here)` is what validate_config (validation.py) calls: the keys against Trainer's own
arguments, each typed flag against Trainer.__init__'s annotations, the counts against their least values, the
accelerator, strategy, devices and precision against what this machine and the installed packages offer (with
`runs_here`; a job sent to a cluster is checked where it runs), the validation interval, the profiler, and the
settings the run sets itself. Each refusal is one `ConfigError` line naming the setting and its fix.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from omegaconf import ListConfig, OmegaConf

from src.cli.schema import AUTO_PRECISION, resolve_precision
from src.model import ConfigError

PRECISIONS = (
    AUTO_PRECISION,
    "32-true",
    "32",
    "64-true",
    "64",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "transformer-engine",
)


def _mps_available() -> bool:
    """An Apple GPU, which accelerator=auto would train on."""
    import torch

    return torch.backends.mps.is_available()


def check_gradient_clip_algorithm(algorithm: Any) -> None:
    """+trainer.gradient_clip_algorithm: Lightning's names (norm, value; any case, as Lightning reads them), which it
    checks only when training starts."""
    from lightning.pytorch.utilities import GradClipAlgorithmType

    names = [kind.value for kind in GradClipAlgorithmType]
    if algorithm is not None and str(algorithm).lower() not in names:
        raise ConfigError(
            f"trainer.gradient_clip_algorithm={algorithm} is not known to Lightning: choose one of {', '.join(names)}"
        )


def trainer_arguments() -> set[str]:
    """The arguments of Lightning's Trainer a `trainer.*` setting may give (the run sets its loggers, callbacks and
    directory itself)."""
    import inspect

    from lightning import Trainer

    return set(inspect.signature(Trainer.__init__).parameters) - {"self", "logger", "callbacks", "default_root_dir"}


def check_trainer(trainer, runs_here: bool = True) -> None:
    """The Trainer arguments Lightning would reject late (after data and model are built) or never; with
    `runs_here`, also GPUs this machine does not have."""
    # A key added with + (`+trainer.max_step=5`) reaches Lightning's Trainer as a keyword it does not take.
    accepted = trainer_arguments()
    for key in trainer:
        if key in SET_BY_THE_RUN:
            raise ConfigError(f"trainer.{key} is given to Lightning's Trainer by the run itself: {SET_BY_THE_RUN[key]}")
        if key not in accepted:
            close = difflib.get_close_matches(str(key), sorted(accepted), n=1, cutoff=0.75)
            hint = f"did you mean trainer.{close[0]} (without +)?" if close else "check Lightning's Trainer arguments"
            raise ConfigError(f"trainer.{key} is not an argument of Lightning's Trainer: {hint}")
    # Lightning checks these names only when the Trainer is made, after the run directory and the data: from its
    # own registries, here. (Where they are not text, an object Lightning checks itself.)
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if isinstance(trainer.strategy, str) and trainer.strategy.lower() not in strategies:
        close = difflib.get_close_matches(trainer.strategy.lower(), strategies, n=1)
        fix = (
            f"did you mean trainer.strategy={close[0]}?" if close else "choose auto, ddp or ddp_spawn (or trainer=ddp)"
        )
        raise ConfigError(f"trainer.strategy={trainer.strategy} is not a strategy Lightning knows: {fix}")
    check_gradient_clip_algorithm(trainer.get("gradient_clip_algorithm"))
    accelerators = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
    if isinstance(trainer.accelerator, str) and trainer.accelerator not in accelerators:
        raise ConfigError(
            f"trainer.accelerator={trainer.accelerator} is not an accelerator Lightning knows: choose one of "
            f"{', '.join(accelerators)} (or trainer=cpu, trainer=gpu)"
        )
    check_trainer_types(trainer)
    # gpu and cuda: check_gpus_visible, which also counts them
    if runs_here and trainer.accelerator in accelerators and trainer.accelerator not in ("gpu", "cuda"):
        if not accelerator_available(trainer.accelerator):
            here = [name for name in accelerators if accelerator_available(name)]
            raise ConfigError(
                f"trainer.accelerator={trainer.accelerator}: this machine has no {trainer.accelerator} device "
                f"(Lightning's {accelerator_class(trainer.accelerator)} is not available here): choose one of "
                f"{', '.join(here)} (or trainer=cpu)"
            )
    check_strategy(trainer, runs_here)
    check_trainer_counts(trainer)
    check_profiler(trainer.get("profiler"), runs_here)
    # accelerator=auto picks the CPU where no GPU is visible (here, when the run trains here)
    on_cpu = trainer.accelerator == "cpu" or (runs_here and trainer.accelerator == "auto" and not _cuda_available())
    check_devices(trainer.devices, on_cpu)
    check_one_device_strategy(trainer.strategy, trainer.devices)
    if trainer.check_val_every_n_epoch is not None and trainer.check_val_every_n_epoch < 1:
        raise ConfigError(
            f"trainer.check_val_every_n_epoch={trainer.check_val_every_n_epoch} must be >= 1 (or null: validate every "
            "trainer.val_check_interval steps)"
        )
    full_name = {"16": "16-mixed", "bf16": "bf16-mixed"}.get(str(trainer.precision))  # Lightning's short names
    if full_name is not None:  # one name per precision in the run's files, the report's columns and the resume check
        raise ConfigError(
            f"trainer.precision={trainer.precision} is Lightning's short name for {full_name}: write "
            f"trainer.precision={full_name}"
        )
    if str(trainer.precision) not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={trainer.precision} is not known: choose one of {', '.join(PRECISIONS)} "
            "(auto: bf16-mixed on a GPU with bf16, 16-mixed on an older one, 32-true on the CPU)"
        )
    if on_cpu and str(trainer.precision) in ("16-mixed", "16"):  # Lightning would train in bf16 and say so in passing
        raise ConfigError(
            f"trainer.precision={trainer.precision}: fp16 mixed precision is for GPUs, the CPU has no fp16 autocast: "
            "use trainer.precision=bf16-mixed (or 32-true) on the CPU"
        )
    if runs_here and trainer.accelerator in ("gpu", "cuda"):
        check_gpus_visible(trainer)
    if runs_here:  # settled here, before anything reads it: the Trainer, the checkpoints' numerics, the resume check
        trainer.precision = resolve_precision(trainer.precision, trainer.accelerator)
        if on_cpu and trainer.accelerator == "auto" and not _mps_available():
            # what Lightning picks here, recorded as such: a resume then checks the thread count too, as trainer=cpu's
            # (checkpoint.numeric_settings)
            trainer.accelerator = "cpu"
    check_val_check_interval(trainer.val_check_interval, trainer.check_val_every_n_epoch)
    if trainer.limit_val_batches == 0:
        raise ConfigError("trainer.limit_val_batches=0 skips validation, so no checkpoint would be saved: use > 0")
    if trainer.accumulate_grad_batches < 1:
        raise ConfigError(f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches} must be >= 1")
    if trainer.gradient_clip_val is not None and trainer.gradient_clip_val < 0:
        raise ConfigError(
            f"trainer.gradient_clip_val={trainer.gradient_clip_val} must be >= 0 (0 or null turn clipping off)"
        )
    if trainer.max_time is not None and not re.fullmatch(r"\d+:\d+:\d+:\d+", str(trainer.max_time)):
        raise ConfigError(
            f"trainer.max_time={trainer.max_time} is not a duration: write days:hours:minutes:seconds, "
            "e.g. trainer.max_time=00:00:30:00 for 30 minutes"
        )
    # Limits that train nothing: Lightning would return at once and the run end "completed" with no metrics.
    if trainer.max_steps == 0:
        raise ConfigError("trainer.max_steps=0 trains nothing: set trainer.max_steps > 0 (or -1: no step limit)")
    if trainer.max_steps < -1:
        raise ConfigError(f"trainer.max_steps={trainer.max_steps} must be > 0, or -1 for no step limit")
    if trainer.max_epochs is not None and trainer.max_epochs == 0:
        raise ConfigError("trainer.max_epochs=0 trains nothing: set trainer.max_epochs >= 1, or leave it out")
    if trainer.max_epochs is not None and trainer.max_epochs < -1:
        raise ConfigError(
            f"trainer.max_epochs={trainer.max_epochs} must be >= 1, or -1 for no epoch limit (or leave it out)"
        )
    check_minimum_training(trainer)
    if trainer.max_time is not None and all(int(part) == 0 for part in str(trainer.max_time).split(":")):
        raise ConfigError(
            f"trainer.max_time={trainer.max_time} is no time at all: give a budget, e.g. trainer.max_time=00:00:30:00"
        )
    no_batches = trainer.get("limit_train_batches")
    if no_batches is not None and float(no_batches) == 0:
        raise ConfigError("trainer.limit_train_batches=0 trains nothing: leave it out, or give a fraction or count > 0")
    if trainer.max_steps < 1 and trainer.max_epochs in (None, -1) and trainer.max_time is None:
        raise ConfigError("training never stops: set trainer.max_steps > 0, trainer.max_epochs or trainer.max_time")


# Trainer arguments the run gives Lightning itself (src/run.py), and the settings that choose them.
SET_BY_THE_RUN = {
    "logger": "choose the loggers with logger=<name> (logger=none: none)",
    "callbacks": "add a Lightning callback with +callbacks.<Name>.<argument>=<value>",
    "default_root_dir": "the run writes into its directory, hydra.run.dir: set that",
}


def accelerator_class(name: str) -> str:
    """The class of Lightning's accelerator `name` (AcceleratorRegistry), for a message."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    return AcceleratorRegistry[name]["accelerator"].__name__ if name in AcceleratorRegistry else name


def accelerator_available(name: str) -> bool:
    """Whether this machine has the device of Lightning's accelerator `name`, as its class says (is_available): tpu
    without torch_xla is not available, nor is an accelerator whose check fails to import what it needs. gpu is
    CUDA or Apple's MPS (what Lightning picks for it); auto is always available (the CPU, at least)."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    if name == "auto":
        return True
    if name == "gpu":
        return accelerator_available("cuda") or accelerator_available("mps")
    if name not in AcceleratorRegistry:
        return False
    try:
        return bool(AcceleratorRegistry[name]["accelerator"].is_available())
    except Exception:  # noqa: BLE001 (a library it needs is missing or broken: not available here)
        return False


def _accepted_values(annotation: Any) -> tuple[set[type], set[Any], bool] | None:
    """What a Trainer argument's annotation takes, where it is made of bool, int, Literal words and None only:
    (types, words, whether None is taken). None for any other annotation (a float, a string, an object): not
    checked here."""
    import typing

    parts = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)
    types: set[type] = set()
    words: set[Any] = set()
    optional = False
    for part in parts:
        if part is type(None):
            optional = True
        elif typing.get_origin(part) is typing.Literal:
            words |= set(typing.get_args(part))
        elif part in (bool, int):
            types.add(part)
        else:
            return None
    return types, words, optional


def check_trainer_types(trainer) -> None:
    """A Trainer argument given a value of a type Lightning does not take, read from the annotations of Lightning's
    Trainer.__init__ (so an argument added with + is checked too): a bool flag (`+trainer.detect_anomaly=yes`, which
    reaches torch as a string and fails with a traceback once training starts; `+trainer.sync_batchnorm=maybe`,
    which Lightning takes as true), a whole number (`+trainer.num_nodes=two`), or one of its words
    (`trainer.deterministic=yes`: true, false or warn). Arguments typed otherwise (float, text, objects) are left to
    their own checks; trainer.precision has its own (auto is this project's)."""
    import typing

    from lightning import Trainer

    from src.cli.command_line import as_written

    hints = typing.get_type_hints(Trainer.__init__)
    for key in trainer:
        if key == "precision" or key not in hints:
            continue
        accepted = _accepted_values(hints[key])
        if accepted is None:
            continue
        types, words, optional = accepted
        value = trainer[key]
        if value is None and optional:
            continue
        if isinstance(value, bool) and bool in types:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and int in types:
            continue
        if not isinstance(value, bool) and value in words:
            continue
        kinds = ["true or false"] * (bool in types) + ["a whole number"] * (int in types)
        kinds += [as_written(word) for word in sorted(words, key=str)] + ["null"] * optional
        example = "true" if bool in types else "1" if int in types else as_written(sorted(words, key=str)[0])
        raise ConfigError(
            f"trainer.{key}={as_written(value)} is not what Lightning's Trainer takes for {key} "
            f"({', '.join(kinds[:-1]) + ' or ' + kinds[-1] if len(kinds) > 1 else kinds[0]}): give one, "
            f"e.g. trainer.{key}={example}"
        )


# Trainer arguments that count something, the least value Lightning reads as meant, and what they count. Lightning
# refuses some below it only when the Trainer is made (num_nodes, fast_dev_run, reload_dataloaders_every_n_epochs),
# and reads the others without a word: log_every_n_steps=0 divides by zero in training (src/training/module.py), a
# negative one logs every step, num_sanity_val_steps=-5 runs no check, a negative minimum is no minimum.
TRAINER_COUNTS = {
    "log_every_n_steps": (1, "training steps between logged values"),
    "num_nodes": (1, "the machines the run trains on"),
    "num_sanity_val_steps": (-1, "validation batches run before training; 0: none, -1: all of them"),
    "min_steps": (0, "training steps before an early stop may end training"),
    "min_epochs": (0, "epochs before an early stop may end training"),
    "reload_dataloaders_every_n_epochs": (0, "0: never"),
    "fast_dev_run": (0, "batches of a quick check run instead of training; 0: off"),
}
# Trainer arguments Lightning reads as a fraction of the batches (a float in [0, 1]) or a count of them (an int).
BATCH_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def check_trainer_counts(trainer) -> None:
    """The counts of TRAINER_COUNTS at least their least value, the batch limits a fraction in [0, 1] or a count
    (Lightning refuses 1.5 only when the Trainer is made, after the run directory), and trainer.barebones (which
    turns off what a run is: its checkpoints, logs and progress)."""
    for key, (least, what) in TRAINER_COUNTS.items():
        value = trainer.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < least:
            raise ConfigError(f"trainer.{key}={value} must be >= {least} ({what})")
    for key in (*BATCH_LIMITS, "overfit_batches"):
        value = trainer.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # a bool or a text: Lightning's own words (check_trainer_types leaves them to it)
        if value < 0 or (isinstance(value, float) and value > 1 and not value.is_integer()):
            raise ConfigError(
                f"trainer.{key}={value} is neither a fraction of the batches in [0, 1] nor a count of them: give "
                f"one, e.g. trainer.{key}=0.5 or trainer.{key}=10"
            )
    if trainer.get("overfit_batches") not in (None, 0, 0.0):
        # Lightning swaps the training loader's sampler for a sequential one, which our resumable loader (resuming
        # mid-epoch exactly) does not let it rebuild: refused here rather than as its traceback once training starts
        raise ConfigError(
            f"trainer.overfit_batches={trainer.overfit_batches} is not supported by this framework's resumable data "
            "loaders: to train on a few batches over and over, give +trainer.limit_train_batches=N"
        )
    if trainer.get("barebones"):
        raise ConfigError(
            "trainer.barebones=true turns off the checkpoints, logs and progress a run is made of: leave it out "
            "(logger=none and trainer.enable_progress_bar=false make a run lighter)"
        )


# Lightning's profiler names (lightning/pytorch/trainer/setup.py, _init_profiler); xla's profiles TPUs only.
PROFILERS = ("simple", "advanced", "pytorch", "xla")


def check_profiler(profiler: Any, runs_here: bool = True) -> None:
    """+trainer.profiler=<name>: one Lightning knows (it refuses another once the Trainer is made, after the run
    directory), and xla only on a machine with TPUs (without, Lightning fails with a traceback when training
    starts)."""
    if not isinstance(profiler, str):
        return  # null (none), or an object Lightning checks itself
    usable = ", ".join(name for name in PROFILERS if name != "xla")
    if profiler.lower() not in PROFILERS:
        raise ConfigError(f"trainer.profiler={profiler} is not a profiler Lightning knows: choose one of {usable}")
    if profiler.lower() == "xla" and runs_here and not accelerator_available("tpu"):
        raise ConfigError(f"trainer.profiler={profiler} profiles TPUs, and none is here: choose one of {usable}")


def check_minimum_training(trainer) -> None:
    """trainer.min_steps (min_epochs) beyond trainer.max_steps (max_epochs): Lightning stops at the maximum, so the
    minimum would silently not be honoured."""
    for unit in ("steps", "epochs"):
        least, most = trainer.get(f"min_{unit}"), trainer.get(f"max_{unit}")
        if isinstance(least, int) and isinstance(most, int) and most >= 1 and least > most:
            raise ConfigError(
                f"trainer.min_{unit}={least} is more than trainer.max_{unit}={most}, where training ends whatever "
                f"the minimum: lower trainer.min_{unit}, or raise trainer.max_{unit}"
            )


def check_strategy(trainer, runs_here: bool = True) -> None:
    """A strategy Lightning knows but cannot run with this accelerator, or here, refused before anything is written
    (Lightning refuses it when the Trainer is made, after the run directory; the XLA ones with a traceback): FSDP
    shards over CUDA GPUs only; the XLA strategies run on TPUs only; DeepSpeed needs its package; the fork-started
    DDP strategies need a platform that forks; Apple's MPS takes no DDP strategy."""
    import torch
    from lightning.fabric.strategies.deepspeed import _DEEPSPEED_AVAILABLE
    from lightning.pytorch.strategies import (
        DeepSpeedStrategy,
        FSDPStrategy,
        ParallelStrategy,
        SingleDeviceXLAStrategy,
        StrategyRegistry,
        XLAStrategy,
    )
    from lightning.pytorch.trainer.connectors.accelerator_connector import _DDP_FORK_ALIASES

    strategy, accelerator = trainer.strategy, trainer.accelerator
    if not isinstance(strategy, str) or strategy.lower() not in StrategyRegistry:
        return  # auto, or an object Lightning checks itself
    name = strategy.lower()
    kind = StrategyRegistry[name]["strategy"]
    if issubclass(kind, FSDPStrategy) and accelerator not in ("gpu", "cuda"):
        raise ConfigError(
            f"trainer.strategy={strategy} shards the model over CUDA GPUs, and trainer.accelerator={accelerator}: "
            "give trainer.accelerator=gpu (trainer=gpu) with it, or trainer.strategy=ddp to train in several "
            "processes on the CPU"
        )
    if issubclass(kind, (XLAStrategy, SingleDeviceXLAStrategy)) and accelerator != "tpu":
        raise ConfigError(
            f"trainer.strategy={strategy} runs on TPUs only, and trainer.accelerator={accelerator}: choose "
            "trainer.strategy=auto (or ddp), or trainer.accelerator=tpu on a machine with TPUs"
        )
    if issubclass(kind, DeepSpeedStrategy) and runs_here and not _DEEPSPEED_AVAILABLE:
        raise ConfigError(
            f"trainer.strategy={strategy} needs the deepspeed package, which is not installed here: install it "
            "(pip install deepspeed), or choose trainer.strategy=ddp"
        )
    if name in _DDP_FORK_ALIASES and "fork" not in torch.multiprocessing.get_all_start_methods():
        raise ConfigError(f"trainer.strategy={strategy} forks processes, which this platform cannot: use ddp_spawn")
    parallel = issubclass(kind, ParallelStrategy) or "ddp" in name or "deepspeed" in name
    if runs_here and parallel and accelerator in ("mps", "auto", "gpu") and _mps_available():
        raise ConfigError(
            f"trainer.strategy={strategy} does not run on Apple's MPS, which trainer.accelerator={accelerator} "
            "trains on here: give trainer.accelerator=cpu to train in several processes, or leave the strategy out"
        )


def check_val_check_interval(interval: Any, every_n_epochs: int | None) -> None:
    """trainer.val_check_interval as Lightning takes it (its _DataConnector.on_trainer_init and setup.py
    _determine_batch_limits): a count of training steps; a float, a fraction of an epoch, only with
    trainer.check_val_every_n_epoch set (this project trains by trainer.max_steps, with
    check_val_every_n_epoch=null, where Lightning refuses a float once the Trainer is made, after the run
    directory); a wall-clock time, DD:HH:MM:SS; or null, Lightning's default (validate at each epoch's end)."""
    if interval is None:
        return
    if isinstance(interval, bool):
        raise ConfigError(
            f"trainer.val_check_interval={str(interval).lower()} is not a count of training steps: give one, e.g. "
            "trainer.val_check_interval=250"
        )
    if isinstance(interval, int):
        if interval < 1:
            raise ConfigError(
                f"trainer.val_check_interval={interval} must be >= 1 (training steps between validations)"
            )
        return
    if isinstance(interval, float):
        if every_n_epochs is None and interval.is_integer() and interval >= 1:
            raise ConfigError(
                f"trainer.val_check_interval={interval} is a float, which Lightning reads as a fraction of an epoch "
                "(and refuses where the run validates by steps): write the count of steps, "
                f"trainer.val_check_interval={int(interval)}"
            )
        if every_n_epochs is None:
            raise ConfigError(
                f"trainer.val_check_interval={interval} is a fraction of an epoch, and this run validates every so "
                "many training steps (trainer.check_val_every_n_epoch=null: it trains to trainer.max_steps): give a "
                "count of steps, e.g. trainer.val_check_interval=250, or add "
                f"trainer.check_val_every_n_epoch=1 to validate {interval} of the way through each epoch"
            )
        if interval <= 0 or (interval > 1 and not interval.is_integer()):
            raise ConfigError(
                f"trainer.val_check_interval={interval} must be a fraction of an epoch in (0, 1], or a count of "
                "training steps: give e.g. trainer.val_check_interval=0.5"
            )
        return
    if isinstance(interval, str):
        if not re.fullmatch(r"\d+:\d+:\d+:\d+", interval.strip()):
            raise ConfigError(
                f"trainer.val_check_interval={interval} is neither a count of training steps nor a time: give "
                "steps, e.g. trainer.val_check_interval=250, or days:hours:minutes:seconds, e.g. 00:00:10:00"
            )
        if all(int(part) == 0 for part in interval.split(":")):
            raise ConfigError(
                f"trainer.val_check_interval={interval} is no time at all: give one, e.g. 00:00:10:00 (ten minutes)"
            )


def check_devices(devices, on_cpu: bool) -> None:
    """trainer.devices as Lightning takes it: a count, "auto", or (on GPUs) -1 for every device or a list of device
    ids; what Lightning refuses only once the Trainer is made (after the run directory), some of it with a
    traceback, is refused here. `on_cpu`: the run trains on the CPU, where only a count of processes is taken."""
    from src.cli.command_line import as_written

    fix = (
        "give a count of processes, such as trainer.devices=2, or trainer.devices=auto"
        if on_cpu
        else "give a count such as trainer.devices=2, -1 (every GPU), auto, or device ids such as trainer.devices=[0,1]"
    )
    shown = as_written(devices)
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, bool) or not isinstance(devices, (int, str)) and not OmegaConf.is_list(devices):
        raise ConfigError(f"trainer.devices={shown} is not a device count: {fix}")
    if isinstance(devices, int):
        if devices >= 1 or (devices == -1 and not on_cpu):
            return
        raise ConfigError(f"trainer.devices={shown} is no device{' count on the CPU' if on_cpu else ''}: {fix}")
    if devices == "auto" or (not on_cpu and isinstance(devices, str) and re.fullmatch(r"\d+(,\d+)*,?", devices)):
        return
    ids = list(devices) if OmegaConf.is_list(devices) else []
    if not on_cpu and ids and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        return
    raise ConfigError(f"trainer.devices={shown} is not a device count{'' if on_cpu else ' or list'}: {fix}")


def check_one_device_strategy(strategy, devices) -> None:
    """A one-device strategy (single_device, single_xla, single_tpu) with trainer.devices asking for several:
    Lightning takes the strategy's word and trains on one device without a word (its num_devices is 1), so the
    run would not be the run asked for. Refused where the count is known from the setting alone: a count above 1,
    or several device ids (-1 and auto count the devices the run finds, which one device serves)."""
    from src.cli.command_line import as_written

    if not isinstance(strategy, str) or not strategy.lower().startswith("single_"):
        return
    shown = as_written(devices)
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, str) and "," in devices:  # Lightning's "0,1": device ids
        devices = [i for i in devices.split(",") if i.strip()]
    count = len(devices) if isinstance(devices, (ListConfig, list)) else devices
    if isinstance(count, int) and not isinstance(count, bool) and count > 1:
        raise ConfigError(
            f"trainer.devices={shown} with trainer.strategy={strategy} would train on one device only: give "
            f"trainer.devices=1 for one, or trainer.strategy=auto (or ddp) to train on {count}"
        )


def check_gpus_visible(trainer) -> None:
    """trainer.accelerator=gpu: a CUDA GPU is visible, and as many as trainer.devices asks for (Lightning refuses
    more only once the Trainer is made)."""
    if not _cuda_available():
        raise ConfigError(f"trainer.accelerator={trainer.accelerator} but no CUDA GPU is visible: use trainer=cpu")
    import torch

    from src.cli.command_line import as_written

    visible = torch.cuda.device_count()
    if visible == 0:  # CUDA said available, but counts none (a test standing in for a GPU machine): nothing to compare
        return
    devices = trainer.devices
    here = f"{visible} {'is' if visible == 1 else 'are'} visible here"
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > visible:
        raise ConfigError(
            f"trainer.devices={devices} asks for {devices} GPUs, and {here}: give trainer.devices={visible} or "
            "fewer (or -1: all of them)"
        )
    ids = list(devices) if OmegaConf.is_list(devices) else None
    if isinstance(devices, str) and "," in devices:  # Lightning's "0,1": device ids
        ids = [int(i) for i in devices.split(",") if i.strip()]
    if ids and max(ids) >= visible:
        raise ConfigError(
            f"trainer.devices={as_written(devices)} asks for GPU {max(ids)}, and {here} (ids 0 to {visible - 1}): "
            f"give ids below {visible}, or a count: trainer.devices={min(len(ids), visible)}"
        )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# The decode.* settings each strategy reads (decode.max_new_tokens: every one): any other strategy ignores them.
