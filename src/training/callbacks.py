"""Small Lightning callbacks the run wires up (the TensorBoard ones live in src/dashboard)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, without "Epoch 12/-2" when only max_steps bounds training."""

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is None or self.trainer.max_epochs < 0:
            return f"Epoch {current_epoch}"
        return super()._get_train_description(current_epoch)


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
