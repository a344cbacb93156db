"""Lightning's TensorBoardLogger with three changes: steps are counted as the run counts them, the epoch counter is
filed under ``train/``, and the run directory is taken literally.

While training, Lightning files what it logs under the number of steps done before the one that logged it: the
10th step's loss, and the validation after it, under 9. Everything else of a run counts the steps done (the
console's "step 10/20", metrics.json, checkpoints, run.json, the analyses' events), so while fitting (`fitting`, set
by the StepsAsTheRunCounts callback) this logger files them under the step that logged them: 10. Evaluation after
training (the test split) is filed as Lightning files it, under the steps done.

Lightning adds an ``epoch`` scalar to every step it logs. TensorBoard lists tag groups (the part of a tag before the
first "/") in name order, and SCALARS opens only the first groups: a top-level ``epoch`` group came first and pushed
the learning curves (``train/``, ``val/``) into collapsed groups further down. As ``train/epoch`` it sits with them,
once per step: a step that logs its training loss and then its validation would otherwise file the same epoch twice
under one step, which TensorBoard draws as two points.

Lightning expands environment variables and `~` in the log directory: a run directory whose name holds `$HOME`
had its events written into another directory (`.../$HOME` became `.../root`), where neither the printed
TensorBoard command nor the sweep report found them. The run directory is already a full path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Optional

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

EPOCH_TAG = "train/epoch"


class RunTensorBoardLogger(TensorBoardLogger):
    fitting = False  # Lightning's steps while fitting are one behind the run's count (see the module docstring)
    _epoch_filed: Optional[tuple[Optional[int], float]] = None  # the (step, epoch) last filed under train/epoch

    @property
    def log_dir(self) -> str:
        """Lightning's log directory (save_dir/name/version), without expanding `$...` or `~` in it."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        return os.path.join(self.root_dir, version)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        step = step + 1 if self.fitting and step is not None else step
        renamed = {(EPOCH_TAG if name == "epoch" else name): value for name, value in metrics.items()}
        if EPOCH_TAG in renamed:
            if (step, renamed[EPOCH_TAG]) == self._epoch_filed:
                del renamed[EPOCH_TAG]  # already filed at this step
            else:
                self._epoch_filed = (step, renamed[EPOCH_TAG])
        if renamed:
            super().log_metrics(renamed, step)


class StepsAsTheRunCounts(L.Callback):
    """Marks the run's TensorBoard loggers as fitting for the length of `fit` (RunTensorBoardLogger.fitting)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(trainer, True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(trainer, False)

    @staticmethod
    def _mark(trainer: L.Trainer, fitting: bool) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, RunTensorBoardLogger):
                logger.fitting = fitting
