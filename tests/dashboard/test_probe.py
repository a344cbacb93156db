"""What all dashboard callbacks share: when they log, and that without a TensorBoardLogger nothing runs."""

import pytest
from lightning.pytorch.loggers import CSVLogger

from src.dashboard import AttentionMapLogger, AttentionStatsLogger, HParamsLogger, TextSampleLogger, read_events


def test_end_of_training_log_when_the_last_step_is_off_cadence(tmp_path, fit):
    map_logger = AttentionMapLogger(every_n_steps=3, log_masks=False)
    fit("lm", [map_logger])
    events = read_events(tmp_path)
    assert events.image_steps("val_attention/decoder_self:0") == [3, 4]  # after steps 3 and 4
    assert not events.tags_with_prefix("val_mask/")
    assert map_logger.seconds_logging > 0  # what run.json's speed reports as the dashboards' share


@pytest.mark.parametrize("logger", [False, "csv"])
def test_without_a_tensorboard_logger_nothing_runs(tmp_path, fit, logger):
    if logger == "csv":
        logger = CSVLogger(tmp_path)
    callbacks = [
        AttentionMapLogger(every_n_steps=1),
        AttentionStatsLogger(every_n_steps=1),
        TextSampleLogger(),
        HParamsLogger(["val/loss"]),
    ]
    module = fit("seq2seq", callbacks, logger=logger, max_steps=2)
    assert module.model.attention_map_calls == 0
    assert all(getattr(callback, "seconds_logging", 0.0) == 0.0 for callback in callbacks)
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
