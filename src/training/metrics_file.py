"""metrics.json: a run's metrics in a small file, so that reports read them without TensorBoard's event files.

{
  "main_metric": "val/exact_match", "mode": "max",
  "history": [{"step": 250, "val/loss": 1.2, ...}, ...],   one entry per validation
  "final": {"val/loss": 0.1, ..., "test/loss": 0.2, ...}     the last validation, and the test splits if run
}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L

METRICS_FILE = "metrics.json"


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_metrics(run_dir: Path, content: dict[str, Any]) -> None:
    path = Path(run_dir) / METRICS_FILE
    partial = path.with_suffix(".json.part")
    partial.write_text(json.dumps(content, indent=1) + "\n")
    partial.replace(path)  # never half written, even when a report reads it during the run


def _plain(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None  # JSON has no NaN


class RecordValidations(L.Callback):
    """Appends each validation's metrics to metrics.json (rank 0; not the sanity check)."""

    def __init__(self, run_dir: Path, main_metric: str, mode: str, objective: str | None = None):
        self.run_dir = Path(run_dir)
        earlier = read_metrics(self.run_dir) or {}  # a resumed run continues its own history
        self.content: dict[str, Any] = {"main_metric": main_metric, "mode": mode, "history": [], "final": {}}
        if objective and objective != main_metric:  # what a sweep ranked this run by (`objective=`)
            self.content["objective"] = objective
        self.content["history"] = earlier.get("history", [])

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        self.record(trainer.global_step, trainer.callback_metrics)

    def record(self, step: int, metrics: dict[str, Any]) -> None:
        """One validation's val/ metrics at `step` (a stacked group's members record theirs so: src/training/
        stacked.py)."""
        values = {k: _plain(v) for k, v in metrics.items() if k.startswith("val/")}
        history = [entry for entry in self.content["history"] if entry["step"] < step]  # a resumed run redoes these
        self.content["history"] = [*history, {"step": step, **values}]
        self.content["final"] = values
        write_metrics(self.run_dir, self.content)

    def add_final(self, metrics: dict[str, float]) -> None:
        """The run's final metrics (validation and, if run, test), once training has ended."""
        self.content["final"] = {k: _plain(v) for k, v in metrics.items()}
        write_metrics(self.run_dir, self.content)
