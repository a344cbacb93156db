"""Hyperparameters: the run appears in TensorBoard's HPARAMS tab with its flat config and metric columns."""

import pytest

from src.dashboard import HParamsLogger, flatten_config, read_events

from .conftest import ARCH_BY_KIND, HEADS


@pytest.mark.parametrize("kind", ["seq2seq", "lm", "classification"])
def test_the_session_has_the_flat_config_and_the_metric_columns(tmp_path, fit, kind):
    fit(kind, [HParamsLogger(metric_tags=["val/loss", "val/exact_match"])])
    events = read_events(tmp_path)

    # The session is there, with our flat params and the metric columns, and those metrics were logged as
    # scalars under exactly those tags (that is what the HPARAMS tab reads).
    assert events.has_hparams
    assert events.hparams["model.heads"] == HEADS and events.hparams["model.pos_encoding"] == "rope"
    assert events.hparams["model.arch"] == ARCH_BY_KIND[kind]  # resolved, not the config's "auto"
    assert events.hparam_metrics == ["val/loss", "val/exact_match"]
    assert {"val/loss", "val/exact_match"} <= events.scalar_tags
    assert all(value == value for _, value in events.scalars["val/loss"])  # no NaN placeholder points


def test_flatten_config_makes_tensorboard_friendly_scalars():
    nested = {
        "model": {"heads": 8, "dropout": 0.1, "rope": True, "window": None, "sizes": [2, 4]},
        "task": {"name": "copy"},
    }
    assert flatten_config(nested) == {
        "model.heads": 8,
        "model.dropout": 0.1,
        "model.rope": True,
        "model.window": "None",
        "model.sizes": "[2, 4]",
        "task.name": "copy",
    }


def test_bad_arguments_are_explained():
    with pytest.raises(TypeError, match="list of tags"):
        HParamsLogger("val/loss")


def test_a_sweeps_varied_settings_lead_and_the_rest_stays_out(tmp_path, fit):
    """TensorBoard shows 5 hparams by default, ordered by "differs" then name: the varied settings are marked so
    and come first; only the curated axes join them (the whole config is in the run's .hydra/config.yaml)."""
    fit("seq2seq", [HParamsLogger(metric_tags=["val/loss"], varied=["model.layers"])])
    events = read_events(tmp_path)
    assert events.hparams_first == ["model.layers"]
    assert set(events.hparams) == {"model.layers", "model.heads", "model.pos_encoding", "model.arch"}
    assert "train.lr" not in events.hparams  # neither varied nor curated


def test_a_group_sweep_shows_each_runs_option(tmp_path, fit):
    """`-m optimizer=adamw_cosine,adam_noam` varies a group, not one field: the column is the group's name with
    the option this run chose (Hydra's runtime.choices), so the two runs differ in the table. Groups the sweep
    does not vary stay out."""
    choices = {"optimizer": "adam_noam", "model": "tiny", "hydra/launcher": "basic"}
    fit("seq2seq", [HParamsLogger(metric_tags=["val/loss"], varied=["optimizer", "seed"], choices=choices)])
    events = read_events(tmp_path)
    assert events.hparams["optimizer"] == "adam_noam"
    assert events.hparams_first == ["optimizer"]  # seed is not in this config: nothing to show
    assert "model" not in events.hparams and "hydra/launcher" not in events.hparams
