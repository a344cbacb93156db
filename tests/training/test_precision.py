"""trainer.precision=auto: the precision that suits the device, settled before Lightning, the checkpoints or the
resume check see it (src/cli/schema.py resolve_precision, src/cli/validation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.cli.schema import resolve_precision
from src.cli.validation import validate_config
from src.model import ConfigError
from src.training.checkpoint import check_resumable_settings, numeric_settings


def a_gpu(monkeypatch, bf16: bool) -> None:
    """This machine as one with a CUDA GPU that does (Ampere or newer) or does not compute in bf16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr("src.cli.trainer_checks._cuda_available", lambda: True)


def test_auto_is_32_true_on_this_cpu_and_other_values_stay_as_given():
    assert not torch.cuda.is_available()  # the machine the suite runs on
    for accelerator in ("cpu", "auto"):
        assert resolve_precision("auto", accelerator) == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision(64, "cpu") == 64


@pytest.mark.parametrize("bf16,expected", [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_is_mixed_precision_on_a_gpu_bf16_where_it_computes_in_bf16(monkeypatch, bf16, expected):
    a_gpu(monkeypatch, bf16)
    for accelerator in ("gpu", "cuda", "auto"):
        assert resolve_precision("auto", accelerator) == expected
    assert resolve_precision("auto", "cpu") == "32-true"  # a CPU run on a GPU machine


def test_bf16_emulated_on_an_older_gpu_does_not_count(monkeypatch):
    asked = {}

    def is_bf16_supported(including_emulation=True):
        asked["including_emulation"] = including_emulation
        return including_emulation  # an older GPU: bf16 only emulated

    a_gpu(monkeypatch, True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert resolve_precision("auto", "gpu") == "16-mixed"
    assert asked == {"including_emulation": False}


def test_the_trainer_options_say_auto_for_devices_and_32_true_for_the_cpu(compose):
    assert compose("trainer=gpu").trainer.precision == "auto"
    assert compose("trainer=ddp").trainer.precision == "auto"
    assert compose().trainer.precision == "32-true"  # trainer=cpu, the default


def test_validation_settles_auto_where_the_run_trains_and_only_there(compose, monkeypatch):
    cfg = compose("trainer.precision=auto")
    validate_config(cfg)
    assert cfg.trainer.precision == "32-true"

    a_gpu(monkeypatch, bf16=True)
    cfg = compose("trainer=gpu")
    validate_config(cfg)
    assert cfg.trainer.precision == "bf16-mixed"
    # a SLURM sweep's job checked on the submitting host: settled on the node that trains it
    cfg = compose("trainer=gpu")
    validate_config(cfg, runs_here=False)
    assert cfg.trainer.precision == "auto"


def test_accelerator_auto_is_recorded_as_the_cpu_it_trains_on_so_a_resume_checks_the_threads(compose, monkeypatch):
    """trainer=ddp on CPU processes: Lightning's auto picks the CPU, and the run records cpu, with the thread count
    that changes its numbers (a resume with another count is refused); on a GPU machine auto stays auto."""
    cfg = compose("trainer=ddp")
    validate_config(cfg)
    assert cfg.trainer.accelerator == "cpu"
    assert "torch_threads" in numeric_settings(OmegaConf.to_container(cfg), threads=2)
    # a checkpoint that recorded auto (before it was settled) resumes here
    older = saved_with("32-true")
    older["hyper_parameters"]["numerics"]["trainer.accelerator"] = "auto"
    check_resumable_settings(older, "reverse", numerics={"trainer.accelerator": "cpu", "trainer.precision": "32-true"})
    cfg = compose("trainer=ddp")
    validate_config(cfg, runs_here=False)  # a SLURM job checked on the submitting host: settled on its node
    assert cfg.trainer.accelerator == "auto"
    a_gpu(monkeypatch, bf16=True)
    cfg = compose("trainer=ddp")
    validate_config(cfg)
    assert cfg.trainer.accelerator == "auto"


def test_an_unknown_precision_is_refused_in_one_line_with_the_choices(compose):
    with pytest.raises(ConfigError) as refused:
        validate_config(compose("trainer.precision=bf32"))
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith("trainer.precision=bf32 is not known: choose one of auto, 32-true")
    assert "auto: bf16-mixed on a GPU with bf16, 16-mixed on an older one, 32-true on the CPU" in line


def saved_with(precision: str) -> dict:
    """A checkpoint's hyper_parameters as far as the resume check reads them."""
    config = {"task": {"name": "reverse"}, "trainer": {"precision": precision}}
    numerics = {"trainer.accelerator": "gpu", "trainer.precision": precision, "trainer.devices": "1", "compile": False}
    return {"hyper_parameters": {"config": config, "numerics": numerics}}


def test_a_resume_compares_the_resolved_precision(compose, monkeypatch):
    a_gpu(monkeypatch, bf16=False)  # an older GPU than the one the checkpoint was trained on
    cfg = compose("trainer=gpu")
    # before the run reaches its machine (src/cli/preflight.py): `auto` is not compared yet
    assert "trainer.precision" not in numeric_settings(OmegaConf.to_container(cfg))
    check_resumable_settings(
        saved_with("bf16-mixed"), "reverse", numerics=numeric_settings(OmegaConf.to_container(cfg))
    )
    # where it trains, resolved: 16-mixed here, and the checkpoint's bf16-mixed is named as the fix
    validate_config(cfg)
    numerics = numeric_settings(OmegaConf.to_container(cfg))
    assert numerics["trainer.precision"] == "16-mixed"
    with pytest.raises(
        ConfigError, match="trained with trainer.precision=bf16-mixed, this run has trainer.precision=16"
    ):
        check_resumable_settings(saved_with("bf16-mixed"), "reverse", numerics=numerics)
    check_resumable_settings(saved_with("16-mixed"), "reverse", numerics=numerics)


def test_a_run_records_the_precision_it_trained_in(capsys, tmp_path):
    from tests.test_bad_inputs import TINY, run_command

    result = run_command("src.run", [*TINY, "trainer.precision=auto", f"hydra.run.dir={tmp_path}"], capsys)
    assert result.code == 0, result.err
    checkpoint = torch.load(Path(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["numerics"]["trainer.precision"] == "32-true"
    assert hparams["config"]["trainer"]["precision"] == "32-true"
    assert OmegaConf.load(Path(tmp_path) / ".hydra" / "config.yaml").trainer.precision == "auto"  # as it was given
