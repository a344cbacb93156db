"""Lightning's TensorBoardLogger with two changes: the epoch counter is filed under ``train/``, and the run directory
is taken literally.

Lightning adds an ``epoch`` scalar to every step it logs. TensorBoard lists tag groups (the part of a tag before the
first "/") in name order, and SCALARS opens only the first groups: a top-level ``epoch`` group came first and pushed
the learning curves (``train/``, ``val/``) into collapsed groups further down. As ``train/epoch`` it sits with them.

Lightning expands environment variables and `~` in the log directory: a run directory whose name holds `$HOME`
had its events written into another directory (`.../$HOME` became `.../root`), where neither the printed
TensorBoard command nor the sweep report found them. The run directory is already a full path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Optional

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

EPOCH_TAG = "train/epoch"


class RunTensorBoardLogger(TensorBoardLogger):
    @property
    def log_dir(self) -> str:
        """Lightning's log directory (save_dir/name/version), without expanding `$...` or `~` in it."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        return os.path.join(self.root_dir, version)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        renamed = {(EPOCH_TAG if name == "epoch" else name): value for name, value in metrics.items()}
        super().log_metrics(renamed, step)
