"""Lightning's TensorBoardLogger with one change: the epoch counter is filed under ``train/``.

Lightning adds an ``epoch`` scalar to every step it logs. TensorBoard lists tag groups (the part of a tag before the
first "/") in name order, and SCALARS opens only the first groups: a top-level ``epoch`` group came first and pushed
the learning curves (``train/``, ``val/``) into collapsed groups further down. As ``train/epoch`` it sits with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

EPOCH_TAG = "train/epoch"


class RunTensorBoardLogger(TensorBoardLogger):
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        renamed = {(EPOCH_TAG if name == "epoch" else name): value for name, value in metrics.items()}
        super().log_metrics(renamed, step)
