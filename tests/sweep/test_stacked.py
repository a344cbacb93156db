"""src/sweep/stacked.py: which jobs of a sweep form a stacked group, and which groups cannot be stacked (each
reason is the one line of the launcher's warning)."""

from __future__ import annotations

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from src.cli import CONF_DIR
from src.schema import register_configs
from src.sweep.stacked import stack_groups, why_not_stacked, without_seed


def composed(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return GlobalHydra.instance().hydra.compose_config("config", list(overrides), run_mode=RunMode.MULTIRUN)


def test_jobs_that_differ_only_in_seed_form_one_group_in_sweep_order():
    jobs = [
        ["model.heads=1", "seed=0"],
        ["model.heads=1", "seed=1"],
        ["model.heads=2", "seed=0"],
        ["model.heads=2", "seed=1"],
        ["model.heads=1", "+seed=2"],
    ]
    assert stack_groups(jobs) == [[0, 1, 4], [2, 3]]
    assert without_seed(["seed=3", "task=sort", "seeds_note=x"]) == ("task=sort", "seeds_note=x")
    assert stack_groups([["task=sort"], ["task=reverse"]]) == [[0], [1]]  # no seed axis: nothing to stack


def test_the_default_experiment_can_be_stacked_on_a_cpu_and_on_one_gpu():
    assert why_not_stacked(composed()) is None
    assert why_not_stacked(composed("trainer=gpu")) is None


@pytest.mark.parametrize(
    "override, reason",
    [
        ("trainer.devices=2", "trainer.devices=2 (a stacked group trains on one device)"),
        ("trainer.strategy=ddp", "trainer.strategy=ddp (a stacked group trains in one process)"),
        ("compile=true", "compile=true"),
        ("trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches is not 1"),
        ("+trainer.gradient_clip_algorithm=value", "trainer.gradient_clip_algorithm=value (members clip by norm)"),
        ("+callbacks.StochasticWeightAveraging.swa_lrs=0.01", "callbacks.StochasticWeightAveraging (a stacked group"),
        ("checkpoint.every_n_train_steps=10", "checkpoint.every_n_train_steps > 0"),
    ],
)
def test_a_group_that_cannot_be_stacked_is_named_with_its_reason(override, reason):
    assert why_not_stacked(composed(override)).startswith(reason)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "true"])
def test_max_members_must_be_a_number_of_seeds(value):
    from src.model import ConfigError
    from src.preflight import check_stacked_launcher

    config = composed("hydra/launcher=stacked", f"hydra.launcher.max_members={value}")
    with pytest.raises(ConfigError, match=r"hydra.launcher.max_members=.* must be a number of seeds, 1 or more"):
        check_stacked_launcher(config.hydra.launcher)
    check_stacked_launcher(composed("hydra/launcher=stacked", "hydra.launcher.max_members=2").hydra.launcher)
