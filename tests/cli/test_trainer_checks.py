"""The trainer.* settings (src/cli/trainer_checks.py), checked through validate_config as the commands check them:
what Lightning's Trainer would refuse only after the run directory exists, with a traceback, or never."""

from __future__ import annotations

import pytest
import torch

from src.cli import trainer_checks
from src.cli.validation import validate_config
from src.model import ConfigError


@pytest.mark.parametrize(
    "devices, words",
    [
        ("2", "trainer.devices=2 asks for 2 GPUs, and 1 is visible here: give trainer.devices=1"),
        ("[1]", "trainer.devices=[1] asks for GPU 1, and 1 is visible here (ids 0 to 0)"),
        ("'0,1'", "asks for GPU 1"),
    ],
)
def test_gpus_this_machine_lacks_are_refused_unless_the_run_trains_elsewhere(compose, monkeypatch, devices, words):
    """Lightning refuses more GPUs than are visible only once its Trainer is made, after the run directory exists:
    refused before. A SLURM sweep's jobs train on the cluster's nodes, so its submitting machine (often without a
    GPU) checks none of this (src/cli/preflight.py on_a_cluster)."""
    monkeypatch.setattr("src.cli.trainer_checks._cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = compose("trainer=gpu", f"trainer.devices={devices}")
    with pytest.raises(ConfigError) as refused:
        validate_config(cfg)
    assert words in str(refused.value)
    monkeypatch.setattr("src.cli.trainer_checks._cuda_available", lambda: False)
    validate_config(cfg, runs_here=False)
    validate_config(compose("trainer=gpu", "trainer.devices=[0]"), runs_here=False)


@pytest.mark.parametrize(
    "overrides, on_gpus",
    [
        (["trainer=cpu", "trainer.devices=2", "trainer.strategy=single_device"], False),
        (["trainer=gpu", "trainer.devices=[0,1]", "trainer.strategy=single_device"], True),
        (["trainer=gpu", "trainer.devices='0,1'", "trainer.strategy=single_device"], True),
    ],
)
def test_several_devices_with_a_one_device_strategy_are_refused(compose, monkeypatch, overrides, on_gpus):
    """Lightning trains on one device when its strategy says single_device, whatever trainer.devices asks for
    (Trainer(accelerator='cpu', devices=2, strategy='single_device').num_devices is 1): refused in one line with
    both ways out."""
    monkeypatch.setattr("src.cli.trainer_checks._cuda_available", lambda: on_gpus)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError) as refused:
        validate_config(compose(*overrides))
    message = str(refused.value)
    assert "with trainer.strategy=single_device would train on one device only" in message, message
    assert "give trainer.devices=1 for one, or trainer.strategy=auto (or ddp) to train on 2" in message, message
    assert "\n" not in message


@pytest.mark.parametrize("devices", ["1", "auto"])
def test_one_device_with_a_one_device_strategy_is_taken(compose, devices):
    validate_config(compose("trainer=cpu", f"trainer.devices={devices}", "trainer.strategy=single_device"))


# --- trainer.*: what Lightning refuses only once the Trainer is made (after the run directory), or with a traceback -

TRAINER_REFUSED = [
    # tracebacks: torch_xla missing, a division by zero in training, a string where torch wants a bool
    (["trainer.accelerator=tpu"], "trainer.accelerator=tpu: this machine has no tpu device"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0 must be >= 1"),
    (["+trainer.detect_anomaly=yes"], "trainer.detect_anomaly=yes is not what Lightning's Trainer takes"),
    # refused by Lightning after the run directory
    (["trainer.accelerator=mps"], "trainer.accelerator=mps: this machine has no mps device"),
    (["trainer.strategy=fsdp"], "trainer.strategy=fsdp shards the model over CUDA GPUs"),
    (["trainer.val_check_interval=0.5"], "trainer.val_check_interval=0.5 is a fraction of an epoch"),
    (["trainer.max_epochs=-2"], "trainer.max_epochs=-2 must be >= 1, or -1"),
    # the same kinds, found beside them
    (["trainer.strategy=xla"], "trainer.strategy=xla runs on TPUs only"),
    (["trainer.strategy=single_tpu"], "trainer.strategy=single_tpu runs on TPUs only"),
    (["trainer.val_check_interval=2.0"], "write the count of steps, trainer.val_check_interval=2"),
    (["trainer.val_check_interval=1.5", "trainer.check_val_every_n_epoch=1"], "in (0, 1]"),
    (["trainer.val_check_interval=10min"], "is neither a count of training steps nor a time"),
    (["trainer.log_every_n_steps=-1"], "trainer.log_every_n_steps=-1 must be >= 1"),
    (["trainer.num_sanity_val_steps=-5"], "trainer.num_sanity_val_steps=-5 must be >= -1"),
    (["trainer.deterministic=yes"], "(true or false, warn or null)"),
    (["trainer.limit_val_batches=1.5"], "trainer.limit_val_batches=1.5 is neither a fraction"),
    (["+trainer.sync_batchnorm=maybe"], "trainer.sync_batchnorm=maybe is not what"),
    (["+trainer.num_nodes=two"], "trainer.num_nodes=two is not what Lightning's Trainer takes for num_nodes"),
    (["+trainer.num_nodes=0"], "trainer.num_nodes=0 must be >= 1"),
    (["+trainer.fast_dev_run=-1"], "trainer.fast_dev_run=-1 must be >= 0"),
    (["+trainer.reload_dataloaders_every_n_epochs=-1"], "must be >= 0"),
    (["+trainer.overfit_batches=-1"], "trainer.overfit_batches=-1 is neither a fraction"),
    (["+trainer.limit_test_batches=-2"], "trainer.limit_test_batches=-2 is neither a fraction"),
    (["+trainer.min_epochs=-1"], "trainer.min_epochs=-1 must be >= 0"),
    (["+trainer.min_steps=2000", "trainer.max_steps=10"], "trainer.min_steps=2000 is more than trainer.max_steps=10"),
    (["+trainer.profiler=foo"], "trainer.profiler=foo is not a profiler Lightning knows"),
    (["+trainer.profiler=xla"], "trainer.profiler=xla profiles TPUs"),
    (["+trainer.barebones=true"], "trainer.barebones=true turns off the checkpoints"),
    (["+trainer.enable_checkpointing=false"], "trainer.enable_checkpointing=false beside the run's own checkpoints"),
    (["+trainer.logger=false"], "trainer.logger is given to Lightning's Trainer by the run itself: choose the loggers"),
    (["+trainer.default_root_dir=x"], "hydra.run.dir"),
]


@pytest.mark.parametrize("overrides,line", TRAINER_REFUSED, ids=[" ".join(o) for o, _ in TRAINER_REFUSED])
def test_a_trainer_setting_lightning_would_refuse_late_is_one_line_before_anything_is_written(
    compose, monkeypatch, overrides, line
):
    """validate_config runs in the preflight, before Hydra writes the run directory (src/cli/preflight.py)."""
    monkeypatch.setattr(trainer_checks, "_cuda_available", lambda: False)  # the machine the lines describe
    monkeypatch.setattr(trainer_checks, "_mps_available", lambda: False)
    with pytest.raises(ConfigError) as refused:
        validate_config(compose(*overrides))
    assert line in str(refused.value) and "\n" not in str(refused.value)


def test_an_accelerator_this_machine_lacks_names_those_it_has(compose, monkeypatch):
    """Lightning's accelerator classes say what is here (is_available); one whose library is missing is not."""
    monkeypatch.setattr(trainer_checks, "accelerator_available", lambda name: name in ("auto", "cpu", "tpu"))
    validate_config(compose("trainer.accelerator=tpu", "trainer.strategy=xla"))  # a TPU machine: taken
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"no tpu device .*: choose one of auto, cpu \(or trainer=cpu\)$"):
        validate_config(compose("trainer.accelerator=tpu"))
    # a run trained elsewhere (a SLURM job) is checked where it runs
    validate_config(compose("trainer.accelerator=mps"), runs_here=False)


@pytest.mark.parametrize(
    "overrides",
    [
        ["+trainer.detect_anomaly=true"],
        ["trainer.deterministic=warn"],
        ["trainer.val_check_interval=0.5", "trainer.check_val_every_n_epoch=1"],
        ["trainer.val_check_interval=00:00:10:00"],
        ["trainer.max_epochs=-1", "trainer.max_steps=10"],
        ["+trainer.profiler=simple"],
        ["+trainer.num_nodes=1"],
        ["+trainer.min_steps=5", "trainer.max_steps=10"],
        ["trainer.limit_val_batches=0.5"],
        ["trainer.strategy=ddp"],
    ],
)
def test_trainer_settings_lightning_takes_are_taken(compose, overrides):
    validate_config(compose(*overrides))
