"""What the dashboard callbacks share: when they may write, and the fixed probe batch they look at.

Every callback does nothing (and costs nothing beyond an integer check) unless the trainer has a
``TensorBoardLogger``, this is global rank 0, it is not Lightning's sanity check, and it is a logging step. Only on
a logging step is the model run with ``need_weights=True``, on a small fixed probe batch, so training steps keep
the fast attention path.

From the datamodule they need ``kind`` (a task kind's name: src/data/registry.py KINDS) and ``probe_batch(n)``;
from the LightningModule, its network as ``pl_module.model``, which they look at through the read-only views of
``src.training.inference``. Each feature's module says what else it reads.
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from src.training import inference


def tensorboard_logger(trainer: Trainer) -> TensorBoardLogger | None:
    """The trainer's TensorBoardLogger, or None (no logger, or only other kinds): callbacks then do nothing."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger
    return None


def event_step(trainer: Trainer) -> int:
    """The step our events are filed under in TensorBoard: the steps done, as the run counts them everywhere (the
    scalars too: src/training/tensorboard_logger.py), so images, head statistics and text line up with the
    validation points on the step axis."""
    return trainer.global_step


def can_log(trainer: Trainer) -> bool:
    """Rank 0, not the sanity check, a TensorBoardLogger to write to and a datamodule to take probes from."""
    return (
        trainer.is_global_zero
        and not trainer.sanity_checking
        and tensorboard_logger(trainer) is not None
        and getattr(trainer, "datamodule", None) is not None
    )


class ProbeCallback(Callback):
    """Runs ``_log(trainer, pl_module, step)`` every ``every_n_steps`` optimizer steps and once at the end.

    The probe batch (``trainer.datamodule.probe_batch(probe_size)``) is fetched once and kept on the CPU.
    """

    def __init__(self, every_n_steps: int, probe_size: int, log_at_end: bool) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps={every_n_steps} must be >= 0 (0 = only at the end of training)")
        if probe_size < 1:
            raise ValueError(f"the probe batch needs at least one example, got {probe_size}")
        self.every_n_steps = every_n_steps
        self.probe_size = probe_size
        self.log_at_end = log_at_end
        self._probe: dict[str, Any] | None = None
        self._last_logged_step: int | None = None
        self.logged_steps: list[int] = []  # for tests and curious users
        self.seconds_logging = 0.0  # wall time spent logging: run.json's speed reports the dashboards' share

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._probe = None  # a new fit may come with another datamodule
        self._last_logged_step = None

    def probe_batch(self, trainer: Trainer) -> dict[str, Any]:
        if self._probe is None:
            self._probe = dict(trainer.datamodule.probe_batch(self.probe_size))
        return self._probe

    def is_logging_step(self, trainer: Trainer) -> bool:
        step = trainer.global_step
        return (
            self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0 and step != self._last_logged_step
        )  # several batch ends share a step under grad accumulation

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        if self.is_logging_step(trainer) and can_log(trainer):
            self._log_now(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.log_at_end and trainer.global_step != self._last_logged_step and can_log(trainer):
            self._log_now(trainer, pl_module)

    def _log_now(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step = trainer.global_step
        self._last_logged_step = step
        self.logged_steps.append(step)
        started = time.perf_counter()
        self._log(trainer, pl_module, event_step(trainer))
        self.seconds_logging += time.perf_counter() - started

    def _attention_weights(self, trainer: Trainer, pl_module: LightningModule):
        """(probe batch on the CPU, {site: [(B, H, Tq, Tk) CPU float tensors per layer]})."""
        batch = self.probe_batch(trainer)
        output = inference.attention_maps(pl_module.model, trainer.datamodule.kind, batch)
        attentions = {site: [layer.float().cpu() for layer in layers] for site, layers in output.attentions.items()}
        return batch, attentions

    def _log(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        raise NotImplementedError
