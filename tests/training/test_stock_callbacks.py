"""Lightning's stock callbacks by config: early stopping stops a run whose main metric stopped improving."""

from __future__ import annotations

import json

from tests.test_bad_inputs import TINY, run_command


def test_early_stopping_watches_the_main_metric_and_ends_the_run_early(tmp_path, capsys):
    # 60 steps, a validation every 2; a learning rate of 1e-9 keeps the exact match flat at 0: patience runs out.
    args = [o for o in TINY if not o.startswith(("trainer.max_steps=", "optimizer.warmup_steps="))]
    args += ["trainer.max_steps=60", "optimizer.lr=1e-9", "optimizer.warmup_steps=0"]
    args += ["+callbacks.EarlyStopping.patience=2", f"hydra.run.dir={tmp_path}"]
    result = run_command("src.run", args, capsys)
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "run.json").read_text())
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert record["status"] == "completed"
    assert [entry["step"] for entry in history] == [2, 4, 6]  # the first, then two without improvement


def test_early_stopping_on_another_metric_takes_that_metrics_direction():
    """The task's main metric (exact match) is maximised; a monitored val/loss is minimised unless mode= says."""
    from src.training.stock_callbacks import build_stock_callbacks

    (on_loss,) = build_stock_callbacks({"EarlyStopping": {"monitor": "val/loss"}}, "val/exact_match", "max")
    (on_main,) = build_stock_callbacks({"EarlyStopping": {}}, "val/exact_match", "max")
    (told,) = build_stock_callbacks({"EarlyStopping": {"monitor": "val/loss", "mode": "max"}}, "val/exact_match", "max")
    assert (on_loss.monitor, on_loss.mode) == ("val/loss", "min")
    assert (on_main.monitor, on_main.mode) == ("val/exact_match", "max")
    assert told.mode == "max"
