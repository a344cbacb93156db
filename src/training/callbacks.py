"""Small Lightning callbacks the run wires up (the TensorBoard ones live in src/dashboard)."""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, without "Epoch 12/-2" when only max_steps bounds training."""

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is None or self.trainer.max_epochs < 0:
            return f"Epoch {current_epoch}"
        return super()._get_train_description(current_epoch)


def _numpy_state_as_plain(state: tuple) -> tuple:
    """numpy's generator state with its key array as a tensor: checkpoints are read with weights_only=True,
    which loads tensors and plain Python values but no numpy objects."""
    name, keys, position, has_gauss, cached_gaussian = state
    return name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gaussian)


class RestoreRandomState(L.Callback):
    """Exact resume, random part: the checkpoint carries the random generators' states and a resumed run
    restores them just before its first training step, so dropout draws the masks the uninterrupted run drew.

    (The data order has its own seeded generators, see src/data/resumable.py; only the model uses these.)
    Restoring at the first step rather than at load time skips what Lightning does in between (starting the
    data iterators, for instance) whatever it draws.
    """

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state_as_plain(np.random.get_state()),
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        name, keys, position, has_gauss, cached_gaussian = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
        random.setstate(state["python"])


class ValidateAtLastStep(L.Callback):
    """Run validation (and so the checkpoint callbacks) after the last training step.

    Lightning validates every `val_check_interval` steps but does not validate when `max_steps` ends training
    between two checks, so the final weights would be neither measured nor saved. Asking the trainer to stop at
    the last step makes Lightning validate first (see `_should_check_val_fx`: a requested stop triggers a
    validation); when the last step is a validation step anyway, nothing changes.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True
