"""Small Lightning callbacks the run wires up (the TensorBoard ones live in src/dashboard)."""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, without "Epoch 12/-2" when only max_steps bounds training, and with the
    training loss of the last step that logged it. It is read on those steps only: on a GPU a read waits for the
    device, which is why the module does not hand the loss to Lightning's progress bar (module.training_step)."""

    def __init__(self) -> None:
        super().__init__()
        self._loss: float | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if (step % trainer.log_every_n_steps == 0 or step == trainer.max_steps) and isinstance(outputs, dict):
            self._loss = float(outputs["loss"])
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: L.Trainer, pl_module) -> dict[str, int | str | float | dict[str, float]]:
        metrics = super().get_metrics(trainer, pl_module)
        return metrics if self._loss is None else {"train/loss": self._loss, **metrics}

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

    Lightning validates every `val_check_interval` steps but does not validate when `max_steps` (or the last
    batch of the last epoch, with `max_epochs`) ends training between two checks, so the final weights would be
    neither measured nor saved. Asking the trainer to stop at the last step makes Lightning validate first (see
    `_should_check_val_fx`: a requested stop triggers a validation); when the last step is a validation step
    anyway, nothing changes.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True
        last_epoch = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
        if last_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            trainer.should_stop = True


# --- runs that cannot go on: divergence and interrupts -------------------------------------------------------------


class TrainingDiverged(RuntimeError):
    """The training loss became non-finite or passed the configured bound: the run stops at that step."""

    def __init__(self, step: int, loss: float, max_loss: float | None):
        bound = f" (above max_loss={max_loss})" if max_loss is not None and math.isfinite(loss) else ""
        super().__init__(
            f"training diverged at step {step}: loss {loss}{bound}; no weights from that point were saved: "
            "lower optimizer.lr, raise optimizer.warmup_steps, or keep trainer.gradient_clip_val on"
        )
        self.step, self.loss = step, loss


def weights_are_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


class HostCopy:
    """The latest value of a small device tensor (a loss, the members' flags), copied to host memory without making
    the host wait for the device, and read there without calling torch (a numpy view of the buffer):
    - on the CPU the copy is the read: `read` returns it at once;
    - on a CUDA device the copy is asynchronous (non_blocking, into pinned memory, followed by an event), and
      `read` waits for that one copy, not for the whole device. Read at the end of the next step, by when the
      host has already queued that step, it costs the device nothing;
    - on other devices (MPS, ...) the copy waits for the device, as a plain read does.
    `read` gives each copied value once: None when nothing was copied since the last read."""

    def __init__(self) -> None:
        self._host = torch.zeros(())  # float32, in host memory (pinned for a CUDA device)
        self._value = self._host.numpy()  # ... as a numpy array sharing that memory: read without torch
        self._copied: torch.cuda.Event | None = None  # on CUDA: recorded after the copy; None: the copy is done
        self._device: torch.device | None = None  # the device the buffers are for
        self.pending = False  # a copy not yet read

    def prepare(self, device: torch.device, shape: tuple[int, ...] = ()) -> None:
        """The buffers for tensors of `shape` on `device`: made before the first step, not inside one (pinning
        memory is itself a wait). For a CUDA device, a pinned buffer (an asynchronous copy needs one) and an
        event; the CPU's otherwise."""
        cuda = device.type == "cuda"
        self._host = torch.zeros(shape, pin_memory=cuda)
        self._value = self._host.numpy()
        self._copied = torch.cuda.Event() if cuda else None
        self._device = device
        self.pending = False

    def copy(self, tensor: torch.Tensor) -> None:
        """Start copying `tensor` (float32 on the host) out; the copy not read before is dropped."""
        if self._device != tensor.device or tuple(self._host.shape) != tuple(tensor.shape):
            self.prepare(tensor.device, tuple(tensor.shape))  # no prepare: a test calling a hook alone
        self._host.copy_(tensor.detach().float(), non_blocking=self._copied is not None)
        if self._copied is not None:
            self._copied.record()
        self.pending = True

    @property
    def done_at_once(self) -> bool:
        """Whether a copy is done when `copy` returns (no event to wait for: the CPU, MPS)."""
        return self._copied is None

    def read(self) -> np.ndarray | None:
        """The value copied last, once (None if nothing was copied since); on CUDA this waits for its copy, and so
        for the step that made it."""
        if not self.pending:
            return None
        if self._copied is not None:
            self._copied.synchronize()
        self.pending = False
        return self._value.copy()


class StopOnDivergence(L.Callback):
    """Stops training at the first step whose loss is NaN, infinite or above `max_loss` (None: no bound).

    Without making the host wait for the device at every step: a read such as `float(loss)` would (the GPU then
    idles while the host catches up, and the host while the GPU works). Each step's loss goes to host memory through
    a HostCopy instead: on the CPU the run stops at the step that diverged, as it always did; on a CUDA device the
    loss is read at the end of the next step, and the run stops one step late, naming the step that diverged (its
    number is kept with the copy). The weights of that extra step are never saved: a validation, the end of
    training and every checkpoint (FiniteModelCheckpoint, SaveOnInterrupt: `check_divergence`) read the copied loss
    first, and checkpoints also refuse non-finite weights.
    """

    def __init__(self, max_loss: float | None = None):
        self.max_loss = max_loss
        self.loss = HostCopy()
        self._pending_step: int | None = None  # the step whose loss is in the buffer and not yet checked

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self.loss.prepare(pl_module.device)  # before the first step, not inside it

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.check()  # on CUDA: the previous step's loss, copied while this step ran
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # the step was skipped
            return
        self.loss.copy(loss)
        self._pending_step = trainer.global_step
        if self.loss.done_at_once:  # the copy is done: read it now
            self.check()

    def on_validation_start(self, trainer: L.Trainer, pl_module) -> None:
        self.check()  # no validation of weights that diverged (validation may wait for the device anyway)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        self.check()  # the last step's loss, when nothing read it since

    def check(self) -> None:
        """Raise TrainingDiverged if the loss copied last (and not yet checked) is non-finite or too large; on
        CUDA this waits for its copy, and so for the step that copied it."""
        value = self.loss.read()
        if value is None:
            return
        step, self._pending_step = self._pending_step, None
        loss = float(value)
        if not math.isfinite(loss) or (self.max_loss is not None and loss > self.max_loss):
            raise TrainingDiverged(step, loss, self.max_loss)


def check_divergence(trainer: L.Trainer) -> None:
    """Before weights are saved: the loss StopOnDivergence copied but has not read yet (on a GPU, that of the
    step just done) is read now, so that no checkpoint holds the weights of a step after the run diverged."""
    for callback in getattr(trainer, "callbacks", ()):
        if isinstance(callback, StopOnDivergence):
            callback.check()


class FiniteModelCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, refusing to save weights that are not finite (they would be saved as "best" or
    "last" and handed to eval, predict or a resumed run): the run stops as diverged instead."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        check_divergence(trainer)
        if not weights_are_finite(trainer.lightning_module):
            raise TrainingDiverged(trainer.global_step, math.nan, None)
        super()._save_checkpoint(trainer, filepath)


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: the state after the last finished step is in `checkpoint`."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path | None):
        super().__init__(f"{signal_name} at step {step}")
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint


def scheduler_signal() -> signal.Signals | None:
    """The signal SLURM sends a job that submitit started, some time before the job's time limit (sbatch's
    `--signal`, hydra.launcher.signal_delay_s): submitit answers it by requeueing the job. None elsewhere."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return None
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, name if name.startswith("SIG") else f"SIG{name}", None)


def validates_after_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning validates right after the step that has just ended (its own test, in
    loops/training_epoch_loop.py: every val_check_interval, at an epoch's end, when a stop was asked for). A state
    saved at on_train_batch_end of such a step resumes past that validation: Lightning fast-forwards over it rather
    than run it again."""
    return trainer.fit_loop.epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher)


@contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Ctrl-C ignored for the length of the block: the checkpoint of an interrupted run is being saved, and a second
    Ctrl-C there would cut it short (a truncated file). While the step finishes it still stops at once; after the
    save, Python's Ctrl-C is back (src.run ignores it again while it records the run's end)."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class SaveOnInterrupt(L.Callback):
    """On Ctrl-C (SIGINT) or SIGTERM (what a cluster scheduler sends before it kills a job), finish the current
    step, save it to `checkpoint_path` and stop; the run then resumes exactly from there.

    While training runs, this callback owns both signals. Lightning's own SIGTERM handler would instead make its
    loops raise `SIGTERMException` (a `SystemExit` with exit status 0) at whichever point they next look, mid-
    validation included: a run stopped that way would neither save its step nor say it was interrupted. Under
    DDP the ranks agree after every step whether any of them received a signal (Lightning does the same check for
    its own handler), so all of them stop at the same step. A second Ctrl-C stops at once, without saving.

    A signal during a step that Lightning validates after (`validates_after_this_step`) stops the run after that
    validation, when `last_saved_after_validation` (checkpoint.save_last: FiniteModelCheckpoint writes
    `checkpoint_path` then, with the validation's metrics, best checkpoint and state): a state saved before the
    validation would resume past it (Lightning does not run it again), and the run's metrics.json and best.ckpt
    would miss it. The validation of the last step ends the run anyway: it then ends as completed.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    @staticmethod
    def signals() -> tuple[int, ...]:
        """Ctrl-C, SIGTERM, and in a job that submitit started on SLURM the signal SLURM sends there before the
        job's time limit (submitit's preemption signal, USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise): the
        step is saved first, then submitit's own handler requeues the job (src/run.py), which resumes from it."""
        scheduler = scheduler_signal()
        return (*SaveOnInterrupt.SIGNALS, scheduler) if scheduler is not None else SaveOnInterrupt.SIGNALS

    def __init__(self, checkpoint_path: Path, last_saved_after_validation: bool = False):
        self.checkpoint_path = checkpoint_path
        self.last_saved_after_validation = last_saved_after_validation
        self._received: str | None = None
        self._stop_after_validation: str | None = None  # the signal, held until the step's validation is done
        self._previous_handlers: dict[int, Any] = {}

    def _on_signal(self, signum, frame) -> None:
        self._received = signal.Signals(signum).name
        if signum == signal.SIGINT:  # the next Ctrl-C interrupts at once
            signal.signal(signal.SIGINT, self._previous_handlers[signal.SIGINT])

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self._received = self._stop_after_validation = None
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in self.signals():
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)
        self._previous_handlers = {}

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        self._restore()

    def _received_anywhere(self, trainer: L.Trainer) -> str | None:
        if getattr(trainer, "world_size", 1) > 1:
            if trainer.strategy.reduce_boolean_decision(self._received is not None, all=False):
                return self._received or "SIGTERM"  # another rank was signalled: a scheduler stopping the job
            return None
        return self._received

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx) -> None:
        """The step before was validated, and its state saved after the validation: the run stops there."""
        if self._stop_after_validation is None:
            return
        check_divergence(trainer)
        saved = self.checkpoint_path if Path(self.checkpoint_path).is_file() else None
        raise TrainingInterrupted(self._stop_after_validation, trainer.global_step, saved)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        received = self._received_anywhere(trainer)
        if received is None:
            return
        if self.last_saved_after_validation and validates_after_this_step(trainer):
            self._stop_after_validation = received
            return
        check_divergence(trainer)  # a run that diverged ends so, interrupted or not, and saves nothing of it
        saved = None
        if weights_are_finite(pl_module):
            # The whole training state (optimizer, loops, generators), as ModelCheckpoint saves it: the run resumes
            # exactly from here.
            with ctrl_c_held():
                trainer.save_checkpoint(self.checkpoint_path)
            saved = self.checkpoint_path
        raise TrainingInterrupted(received, trainer.global_step, saved)


class ProgressLines(ProgressBar):
    """The progress bar for output that is not a terminal (a log file, a cluster job, a pipe): a line every
    `every_n_steps` training steps and one after each validation, instead of a bar redrawn in place."""

    def __init__(self, every_n_steps: int = 100):
        super().__init__()
        self.every_n_steps = every_n_steps
        self._enabled = True
        self._started = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, trainer: L.Trainer, text: str) -> None:
        if self._enabled and trainer.is_global_zero:
            from .report import console

            of = f"/{trainer.max_steps}" if trainer.max_steps > 0 else ""  # -1: epochs or a time budget bound it
            console.print(f"step {trainer.global_step}{of}  {text}  ({time.monotonic() - self._started:.0f} s)")

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self._started = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # this step's, logged or not
            self._print(trainer, f"train/loss {float(loss):.4f}" if loss is not None else "")

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        values = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        # seeds trained together log each member's values, not the group's: the group's module words them
        line = "  ".join(f"{k} {float(v):.4f}" for k, v in sorted(values.items()))
        line = line or getattr(pl_module, "validation_line", "")
        if line:  # nothing validated (every member of a group stopped): no line
            self._print(trainer, line)


# --- how fast the run went -----------------------------------------------------------------------------------------


def process_start_time() -> float:
    """When this process started (Unix time): Linux tells exactly; elsewhere, when this module was imported."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED


_IMPORTED = time.time()


class TrainingSpeed(L.Callback):
    """How fast this run trained, for run.json: the seconds from its launch to its first training step,
    and training steps and scored target tokens per second once `skip_steps` steps have warmed up, with the time
    spent validating left out (the dashboards' logging steps are counted: they are part of training's cost).

    Tokens are summed on the device and read once at the end, so measuring adds no per-step host sync.

    `launched_at` (Unix time): when the run was launched; None = when this process started. A sweep's later jobs,
    which run in the same process one after another, pass their own start."""

    def __init__(self, skip_steps: int = 5, launched_at: float | None = None):
        self.skip_steps = skip_steps
        self.launched_at = launched_at
        self.first_step_at: float | None = None  # Unix time
        self._steps = 0  # training steps seen in this session
        self._timed_from: float | None = None  # perf_counter() at the start of the first timed step
        self._timed_until = 0.0  # ... and at the end of the last one
        self._timed_steps = 0
        self._tokens: torch.Tensor | None = None
        self._validations: list[tuple[float, float]] = []
        self._validation_started = 0.0
        self._dashboard_s = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.time()
        if self._timed_from is None and self._steps >= self.skip_steps:
            self._timed_from = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._steps += 1
        if self._timed_from is None:
            return
        # the scored targets, as TransformerLitModule.training_step counted them (none if a batch was skipped)
        tokens = outputs.get("targets") if isinstance(outputs, Mapping) else None
        if tokens is None:
            return
        self._tokens = tokens if self._tokens is None else self._tokens + tokens
        self._timed_steps += 1
        self._timed_until = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, pl_module) -> None:
        self._validation_started = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        self._validations.append((self._validation_started, time.perf_counter()))

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        # The dashboard callbacks (src/dashboard) each count the seconds they spent logging.
        self._dashboard_s = sum(getattr(callback, "seconds_logging", 0.0) for callback in trainer.callbacks)

    def summary(self) -> dict[str, float | int]:
        result: dict[str, float | int] = {}
        if self.first_step_at is not None:
            launched_at = self.launched_at if self.launched_at is not None else process_start_time()
            result["launch_to_first_step_s"] = round(self.first_step_at - launched_at, 3)
        if self._timed_from is not None and self._tokens is not None:
            start, end = self._timed_from, self._timed_until
            validating = sum(b - a for a, b in self._validations if a >= start and b <= end)  # between timed steps
            seconds = end - start - validating
            result["training_s"] = round(end - start, 1)  # the timed steps' wall time, validations included
            result["timed_steps"] = self._timed_steps
            result["steps_per_s"] = round(self._timed_steps / seconds, 3)
            result["tokens_per_s"] = round(float(self._tokens) / seconds, 1)
            if self._dashboard_s:  # attention maps, head statistics, text samples: their share of training time
                result["dashboard_s"] = round(self._dashboard_s, 2)
                result["dashboard_share"] = round(self._dashboard_s / seconds, 4)
        return result
