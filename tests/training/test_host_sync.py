"""No training step waits for the device (issue 25): on a GPU, reading a device tensor on the host (`.item()`,
`float(t)`, `if t:`, `.tolist()`, `.cpu()`, printing it, a boolean mask's data-dependent shape) makes the host wait
until the device has done everything queued so far, and the device then idles while the host prepares the next
step. Only the steps that log, print or validate may read values back.

These tests count such reads during real training steps of `src.run.train` on the CPU, where a read costs nothing
but is made by the same code: each torch.Tensor method that reads a value back is wrapped by a counter, which notes
the calls made from the first on_train_batch_start hook of a step to the end of its loop iteration (Lightning's
on_advance_end: after the step's logging, and its validation if it has one). Reads inside torch's C++ are no Python
calls and escape this counter (a copy from pageable memory, a kernel that needs a size from the device). On a GPU,
torch.cuda.set_sync_debug_mode("error") raises on every such CUDA call: the divergence guard's device path is tested
under it below (CUDA only); whole training steps are not yet, as no GPU has run these tests.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.trainer import call

from src.cli.command_line import compose_run_config

ROOT = Path(__file__).resolve().parents[2]

# The torch.Tensor methods through which Python code reads a value back to the host.
READS = (
    "item",
    "tolist",
    "cpu",
    "numpy",
    "__array__",  # np.asarray(t)
    "__bool__",  # if t: ...
    "__float__",
    "__int__",
    "__index__",  # range(t), a list indexed by t
    "__format__",  # f"{t:.4f}"
    "__repr__",  # print(t), str(t)
)

# Reads that cost no sync on any device. Behind a test of the device, on the CPU alone: the feed-forward networks
# skip the padding (a data-dependent shape, which would wait for another device), and a mask looks whether any key
# is padding. Of a tensor always made on the CPU: a mask structure's form, read once per shape.
CPU_ONLY = {
    ("src/model/feedforward.py", "at_real_positions"),
    ("src/model/masks.py", "keys_padded"),
    ("src/model/masks.py", "form_of"),
}


@dataclass(frozen=True)
class Read:
    step: int  # the optimizer step the batch makes (global_step + 1)
    what: str  # the method, or "boolean mask" for t[mask]
    where: str  # the caller: path:line function

    @property
    def function(self) -> str:
        return self.where.rsplit(" ", 1)[-1]


class HostReads:
    """The reads made inside training steps, once `install`ed (pytest's monkeypatch undoes it after the test)."""

    def __init__(self) -> None:
        self.reads: list[Read] = []
        self.step: int | None = None  # the step being made; None between steps
        self._depth = 0  # a read made by another (f"{t}" calls t.item()) counts once

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in READS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(name, getattr(torch.Tensor, name)))
        for name in ("__getitem__", "__setitem__"):  # t[mask]: its shape is the number of True values
            monkeypatch.setattr(torch.Tensor, name, self._counted_if_masked(getattr(torch.Tensor, name)))

        call_hooks = call._call_callback_hooks

        def call_callback_hooks(trainer, hook_name, *args, **kwargs):
            if hook_name == "on_train_batch_start":  # the batch is on the device: the step begins
                self.step = trainer.global_step + 1
            return call_hooks(trainer, hook_name, *args, **kwargs)

        advance_end = _TrainingEpochLoop.on_advance_end

        def on_advance_end(loop, *args, **kwargs):
            try:
                return advance_end(loop, *args, **kwargs)
            finally:
                self.step = None

        monkeypatch.setattr(call, "_call_callback_hooks", call_callback_hooks)
        monkeypatch.setattr(_TrainingEpochLoop, "on_advance_end", on_advance_end)

    def _note(self, what: str) -> None:
        if self.step is None or self._depth:
            return
        frame = sys._getframe(2)  # the caller of the wrapper
        path = Path(frame.f_code.co_filename)
        shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        if (shown, frame.f_code.co_name) not in CPU_ONLY:
            self.reads.append(Read(self.step, what, f"{shown}:{frame.f_lineno} {frame.f_code.co_name}"))

    def _counted(self, name: str, method):
        def counted(tensor, *args, **kwargs):
            self._note(name)
            self._depth += 1
            try:
                return method(tensor, *args, **kwargs)
            finally:
                self._depth -= 1

        return counted

    def _counted_if_masked(self, method):
        def counted(tensor, index, *args):
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in _indices(index)):
                self._note("boolean mask")
            self._depth += 1
            try:
                return method(tensor, index, *args)
            finally:
                self._depth -= 1

        return counted


def _indices(index) -> tuple:
    return index if isinstance(index, tuple) else (index,)


@pytest.fixture
def host_reads(monkeypatch) -> HostReads:
    reads = HostReads()
    reads.install(monkeypatch)
    return reads


def test_the_counter_sees_every_kind_of_read(host_reads):
    t = torch.arange(3.0)
    host_reads.step = 1
    t.sum().item()
    float(t.sum())
    int(t.sum())
    if t.any():
        pass
    [0, 1, 2][t[1].long()]
    t.tolist()
    t.cpu()
    t.numpy()
    np.asarray(t)
    f"{t.sum():.2f}"
    str(t)
    t[t > 0]
    t[t > 0] = 0.0
    t[1:]  # no read: the shape does not depend on the values
    host_reads.step = None
    t.sum().item()  # between steps: not counted
    assert [read.what for read in host_reads.reads] == [
        "item",
        "__float__",
        "__int__",
        "__bool__",
        "__index__",
        "tolist",
        "cpu",
        "numpy",
        "__array__",
        "__format__",
        "__repr__",
        "boolean mask",
        "boolean mask",
    ]
    assert {read.function for read in host_reads.reads} == {"test_the_counter_sees_every_kind_of_read"}


class ReadsOnce(L.Callback):
    """A deliberate read in the middle of one step (between backward and the optimizer's update): the counter must
    report it, and it alone."""

    def __init__(self, step: int):
        self.step = step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step + 1 == self.step:
            next(pl_module.parameters()).grad.norm().item()


# Every 5th step logs (train/loss, the learning rate), prints a progress line and draws the dashboards; step 12,
# the last, also validates and saves the checkpoints. The other steps must read nothing.
SPEAKING_STEPS = {5, 10, 12}
RUN = [
    "model.d_model=16",
    "model.heads=2",
    "model.layers=1",
    "model.d_ff=32",
    "model.dropout=0.0",
    "batch_size=8",
    # 6 batches an epoch: steps 6 and 11 follow a logging step in the same epoch, where Lightning read the logged
    # loss again for its progress bar at every batch end (fixed in module.training_step)
    "task.train_size=48",
    "task.val_size=8",
    "task.test_size=8",
    "test_after_fit=false",
    "trainer.max_steps=12",
    "trainer.val_check_interval=12",
    "trainer.log_every_n_steps=5",
    "trainer.enable_progress_bar=true",
    "progress_every_n_steps=5",
    "dashboard.attention_every_n_steps=5",
    "optimizer.warmup_steps=2",
    "max_loss=100.0",  # StopOnDivergence with a bound: both of its tests run
    "torch_threads=1",
]


@pytest.mark.parametrize("progress", ["lines", "bar"])
def test_only_the_steps_that_log_read_values_back(tmp_path, monkeypatch, host_reads, progress):
    """`lines`: ProgressLines, the progress of a log file; `bar`: StepProgressBar, on a terminal."""
    from src.run import train

    monkeypatch.setattr(sys.stdout, "isatty", lambda: progress == "bar")
    train(compose_run_config(*RUN), tmp_path, callbacks=[ReadsOnce(step=3)])

    assert any(read.step == 5 for read in host_reads.reads)  # the logging steps' reads are seen, and allowed
    silent = [read for read in host_reads.reads if read.step not in SPEAKING_STEPS]
    assert [(read.step, read.what, read.function) for read in silent] == [(3, "item", "on_before_optimizer_step")], (
        "\n".join(f"step {read.step}: {read.what} at {read.where}" for read in silent)
    )


class EventStandIn:
    """torch.cuda.Event's two calls, for a CPU: a copy there is done before copy_ returns."""

    def record(self) -> None:
        pass

    def synchronize(self) -> None:
        pass


@pytest.mark.parametrize(
    "device",
    [
        "cpu",  # the CUDA path, run on the CPU: the event is a stand-in, so only the one-step-late logic is tested
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
    ],
)
def test_on_a_gpu_the_divergence_check_reads_the_loss_a_step_late_without_a_sync(device):
    """Each step's loss goes to pinned memory without waiting and is read at the end of the next step, which names
    the step that diverged; a checkpoint reads the last copy first. No call waits for the device meanwhile."""
    from src.training.callbacks import StopOnDivergence, TrainingDiverged, check_divergence

    def guard_on_the_device():
        guard = StopOnDivergence(max_loss=10.0)
        guard.on_train_start(None, SimpleNamespace(device=torch.device(device)))
        if device == "cpu":
            guard.loss._copied = EventStandIn()
        return guard, SimpleNamespace(global_step=0, callbacks=[guard])

    losses = [torch.full((), value, device=device) for value in (2.0, math.nan, 1.0, 50.0)]  # made before the check
    late, late_trainer = guard_on_the_device()
    saving, saving_trainer = guard_on_the_device()
    if device == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        for step in (1, 2):
            late_trainer.global_step = step
            late.on_train_batch_end(late_trainer, None, {"loss": losses[step - 1]}, None, 0)  # 2's NaN: not read yet
        late_trainer.global_step = 3
        with pytest.raises(TrainingDiverged, match="at step 2: loss nan"):
            late.on_train_batch_end(late_trainer, None, {"loss": losses[2]}, None, 0)

        saving_trainer.global_step = 1
        saving.on_train_batch_end(saving_trainer, None, {"loss": losses[3]}, None, 0)
        with pytest.raises(TrainingDiverged, match="at step 1: loss 50.0 \\(above max_loss=10.0\\)"):
            check_divergence(saving_trainer)  # as FiniteModelCheckpoint and SaveOnInterrupt do before they save
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode(0)


def test_a_stacked_group_reads_values_back_only_on_the_steps_that_log(tmp_path, host_reads):
    """Seeds trained together (src/training/stacked.py): each step's divergence check runs on the device and its
    flags reach the host through a copy read without torch (on a GPU a step late), so a group's silent steps read
    nothing either; the logging steps read every member's loss (counted, allowed)."""
    from src.run import dashboard_callbacks
    from src.training.stacked import StackedMember, train_stacked

    members = []
    for seed in (0, 1):
        run_dir = tmp_path / f"seed-{seed}"
        run_dir.mkdir()
        members.append(StackedMember(compose_run_config(*RUN, f"seed={seed}"), run_dir))
    _, outputs, _ = train_stacked(
        members,
        None,
        tmp_path / "group.ckpt",
        dashboards=lambda cfg, module: dashboard_callbacks(cfg, module.metric_tags),
    )

    assert all(output.diverged_at is None for output in outputs)
    assert {read.step for read in host_reads.reads} >= {5, 10}  # the counter saw the group's logging steps
    silent = [read for read in host_reads.reads if read.step not in SPEAKING_STEPS]
    assert silent == [], "\n".join(f"step {read.step}: {read.what} at {read.where}" for read in silent)
