"""The run's TensorBoard logger (src/training/tensorboard_logger.py): steps as the run counts them, and the epoch
counter filed once per step under train/epoch."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.training.tensorboard_logger import EPOCH_TAG, RunTensorBoardLogger


def scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(log_dir)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_the_epoch_is_filed_once_per_step_under_the_runs_step(tmp_path):
    """Lightning logs the training loss and then the validation of one step separately, each with the epoch: the
    epoch is filed once at that step (TensorBoard drew two points), under the step the run counts while fitting."""
    logger = RunTensorBoardLogger(save_dir=str(tmp_path), name="", version="")
    logger.fitting = True
    logger.log_metrics({"train/loss": 2.0, "epoch": 0}, step=9)  # Lightning's step: one behind the run's 10
    logger.log_metrics({"val/loss": 1.5, "epoch": 0}, step=9)
    logger.log_metrics({"epoch": 0}, step=9)  # nothing left to file
    logger.log_metrics({"train/loss": 1.0, "epoch": 1}, step=19)
    logger.log_metrics({"val/loss": 0.5, "epoch": 1}, step=19)
    logger.fitting = False
    logger.log_metrics({"test/loss": 0.75, "epoch": 1}, step=20)  # after fitting: Lightning's step, the steps done
    logger.finalize("success")
    found = scalars(logger.log_dir)
    assert found[EPOCH_TAG] == [(10, 0.0), (20, 1.0)]
    assert found["train/loss"] == [(10, 2.0), (20, 1.0)] and found["val/loss"] == [(10, 1.5), (20, 0.5)]
    assert found["test/loss"] == [(20, 0.75)] and "epoch" not in found
