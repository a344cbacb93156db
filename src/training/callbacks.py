"""Small Lightning callbacks the run wires up (the TensorBoard ones live in src/dashboard)."""

from __future__ import annotations

import lightning as L


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
