"""The callbacks that end a run that cannot go on: divergence and interrupts."""

from __future__ import annotations

import math
import os
import signal
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn

from src.training.callbacks import (
    FiniteModelCheckpoint,
    SaveOnInterrupt,
    StopOnDivergence,
    TrainingDiverged,
    TrainingInterrupted,
)


def fake_trainer(step: int = 7, module: nn.Module | None = None):
    saved = []
    return SimpleNamespace(
        global_step=step,
        lightning_module=module,
        save_checkpoint=lambda path: saved.append(path),
        saved=saved,
    )


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_stops_at_that_step(loss):
    with pytest.raises(TrainingDiverged, match="training diverged at step 7") as raised:
        StopOnDivergence().on_train_batch_end(fake_trainer(), None, {"loss": torch.tensor(loss)}, None, 0)
    assert "lower optimizer.lr" in str(raised.value) and "\n" not in str(raised.value)


def test_a_loss_above_the_bound_stops_and_a_finite_one_goes_on():
    guard = StopOnDivergence(max_loss=10.0)
    guard.on_train_batch_end(fake_trainer(), None, {"loss": torch.tensor(9.5)}, None, 0)
    with pytest.raises(TrainingDiverged, match="above max_loss=10.0"):
        guard.on_train_batch_end(fake_trainer(), None, {"loss": torch.tensor(12.0)}, None, 0)


def test_non_finite_weights_are_never_saved(tmp_path):
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = math.nan
    callback = FiniteModelCheckpoint(dirpath=tmp_path, filename="last")
    with pytest.raises(TrainingDiverged):
        callback._save_checkpoint(fake_trainer(module=model), str(tmp_path / "last.ckpt"))
    assert not (tmp_path / "last.ckpt").exists()


def test_ctrl_c_finishes_the_step_saves_it_and_stops(tmp_path):
    model = nn.Linear(2, 2)
    callback = SaveOnInterrupt(tmp_path / "last.ckpt")
    trainer = fake_trainer(step=12, module=model)
    before = signal.getsignal(signal.SIGINT)
    callback.on_train_start(trainer, model)
    try:
        callback.on_train_batch_end(trainer, model, None, None, 0)  # nothing received: training goes on
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the handler only notes it
        assert signal.getsignal(signal.SIGINT) is before  # a second Ctrl-C would stop at once
        with pytest.raises(TrainingInterrupted) as raised:
            callback.on_train_batch_end(trainer, model, None, None, 0)
    finally:
        callback.on_exception(trainer, model, RuntimeError())
    assert (raised.value.signal_name, raised.value.step, raised.value.checkpoint) == (
        "SIGINT",
        12,
        tmp_path / "last.ckpt",
    )
    assert trainer.saved == [tmp_path / "last.ckpt"]
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_saves_too_and_keeps_lightnings_handler_out_of_training(tmp_path):
    """Lightning's SIGTERM handler would make its loops exit with status 0 wherever they next look; while training
    runs, SIGTERM is ours, and Lightning's handler is back afterwards."""
    model = nn.Linear(2, 2)
    callback = SaveOnInterrupt(tmp_path / "last.ckpt")
    trainer = fake_trainer(step=3, module=model)
    before = signal.getsignal(signal.SIGTERM)
    callback.on_train_start(trainer, model)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler may repeat it: still only noted
        with pytest.raises(TrainingInterrupted, match="SIGTERM at step 3"):
            callback.on_train_batch_end(trainer, model, None, None, 0)
    finally:
        callback.on_exception(trainer, model, RuntimeError())
    assert trainer.saved == [tmp_path / "last.ckpt"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_under_ddp_every_rank_stops_when_any_rank_was_signalled(tmp_path):
    model = nn.Linear(2, 2)
    callback = SaveOnInterrupt(tmp_path / "last.ckpt")
    asked = []

    def any_rank(decision: bool, all: bool) -> bool:
        asked.append((decision, all))
        return True  # another rank received SIGTERM; this one did not

    trainer = fake_trainer(step=5, module=model)
    trainer.world_size = 2
    trainer.strategy = SimpleNamespace(reduce_boolean_decision=any_rank)
    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 5"):
        callback.on_train_batch_end(trainer, model, None, None, 0)
    assert asked == [(False, False)]


def test_training_speed_counts_timed_steps_and_leaves_validation_out(monkeypatch):
    from src.training import callbacks

    clock = [100.0]
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: clock[0])
    module = SimpleNamespace()
    outputs = {"loss": torch.tensor(2.0), "targets": torch.tensor(50)}  # as TransformerLitModule.training_step
    speed = callbacks.TrainingSpeed(skip_steps=2)
    for step in range(6):  # 2 warm-up steps, then 4 timed steps of 1 s and 50 tokens each
        speed.on_train_batch_start(None, module, None, step)
        clock[0] += 1.0
        speed.on_train_batch_end(None, module, outputs, None, step)
        if step == 3:  # a validation of 10 s between two timed steps: not training time
            speed.on_validation_start(None, module)
            clock[0] += 10.0
            speed.on_validation_end(None, module)
    speed.on_validation_start(None, module)  # the final validation, after the last step
    clock[0] += 5.0
    speed.on_validation_end(None, module)
    summary = speed.summary()
    assert summary["timed_steps"] == 4 and summary["steps_per_s"] == pytest.approx(1.0)
    assert summary["tokens_per_s"] == pytest.approx(50.0) and summary["training_s"] == pytest.approx(14.0)
    assert summary["launch_to_first_step_s"] > 0  # this pytest process started before the first step
    assert "dashboard_share" not in summary  # no dashboards, no figure

    # The dashboard callbacks' own logging time, as a share of the training time (validations excluded).
    dashboards = [SimpleNamespace(seconds_logging=0.3), SimpleNamespace(seconds_logging=0.1), SimpleNamespace()]
    speed.on_train_end(SimpleNamespace(callbacks=dashboards), module)
    assert speed.summary()["dashboard_s"] == pytest.approx(0.4)
    assert speed.summary()["dashboard_share"] == pytest.approx(0.4 / 4.0)


def test_launch_to_first_step_counts_from_the_job_when_a_sweep_runs_several_in_one_process(monkeypatch):
    from src import run
    from src.training import callbacks

    monkeypatch.setattr(run, "JOBS_STARTED", [])
    assert run.job_launch_time() is None  # the first job: from the process's start, imports included
    second_job = run.job_launch_time()
    assert second_job is not None
    speed = callbacks.TrainingSpeed(skip_steps=0, launched_at=second_job)
    monkeypatch.setattr(callbacks.time, "time", lambda: second_job + 2.5)
    module = SimpleNamespace()
    speed.on_train_batch_start(None, module, None, 0)
    speed.on_train_batch_end(None, module, {"loss": torch.tensor(2.0), "targets": torch.tensor(50)}, None, 0)
    assert speed.summary()["launch_to_first_step_s"] == pytest.approx(2.5)


def test_training_speed_counts_no_targets_for_a_skipped_batch():
    from src.training import callbacks

    speed = callbacks.TrainingSpeed(skip_steps=0)
    module = SimpleNamespace()
    speed.on_train_batch_start(None, module, None, 0)
    speed.on_train_batch_end(None, module, None, None, 0)  # Lightning's outputs when a batch is skipped
    speed.on_train_batch_start(None, module, None, 1)
    speed.on_train_batch_end(None, module, {"loss": torch.tensor(2.0), "targets": torch.tensor(7)}, None, 1)
    assert speed._timed_steps == 1 and int(speed._tokens) == 7


class SignalAt(L.Callback):
    """Sends Ctrl-C to this process while step `step` runs (Lightning counts steps from 1 here)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step + 1 == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_a_signal_during_a_validated_step_stops_after_its_validation_and_resumes_as_if_never_stopped(tmp_path):
    """Step 8 is followed by a validation: the run stops after it (metrics.json and last.ckpt have it), and the
    resumed run ends with the uninterrupted run's weights and validations (dropout on: the random state too)."""
    import json

    from src.cli.command_line import compose_run_config
    from src.run import train

    run = [
        *("model.d_model=16", "model.heads=2", "model.layers=1", "model.d_ff=32", "model.dropout=0.1"),
        *("task.train_size=64", "task.val_size=8", "task.test_size=8", "batch_size=8", "torch_threads=1"),
        *("trainer.max_steps=12", "trainer.val_check_interval=4", "trainer.enable_progress_bar=false"),
        *("optimizer.warmup_steps=2", "logger=none", "test_after_fit=false"),
    ]
    (tmp_path / "whole").mkdir()
    (tmp_path / "stopped").mkdir()
    train(compose_run_config(*run), tmp_path / "whole")
    with pytest.raises(TrainingInterrupted) as raised:
        train(compose_run_config(*run), tmp_path / "stopped", callbacks=[SignalAt(8)])
    assert (raised.value.step, raised.value.checkpoint) == (8, tmp_path / "stopped/checkpoints/last.ckpt")
    history = json.loads((tmp_path / "stopped/metrics.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [4, 8]  # step 8's validation ran before the stop
    train(compose_run_config(*run, "ckpt_path=last"), tmp_path / "stopped")

    def weights(run_dir):
        return torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]

    whole, resumed = weights(tmp_path / "whole"), weights(tmp_path / "stopped")
    assert all(torch.equal(resumed[name], tensor) for name, tensor in whole.items())
    mine = json.loads((tmp_path / "stopped/metrics.json").read_text())["history"]
    assert mine == json.loads((tmp_path / "whole/metrics.json").read_text())["history"]
