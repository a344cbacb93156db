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
