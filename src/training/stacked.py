"""Seeds trained together (hydra/launcher=stacked): the jobs of a sweep that differ only in `seed` train as one
stacked model (src/model/stacked.py) in one Lightning run, and each member writes its own job directory.

What a member keeps of its own, as its seed gives it when trained alone:
- its initialisation: each member's TransformerLitModule is built after `seed_everything(member's seed)`, as in
  src.run, and its model's weights become that member's slice of the stack;
- its data: each member has its own datamodule (data and order are functions of its seed); a step stacks the
  members' batches, each padded to the group's longest sequence (padding is never attended to or scored);
- its optimizer state (Adam's moments are per element, so per member), gradient clipping by its own norm
  (`configure_gradient_clipping`), its validation metrics, its best checkpoint, its early stopping
  (+callbacks.EarlyStopping, its own) and its divergence: a member whose loss becomes non-finite is frozen and
  recorded as diverged while the others go on.

What each member's directory gets, as a separate job's: .hydra/ (the launcher), run.json, run.log, metrics.json,
its own TensorBoard run (train/ and val/ scalars at a solo run's steps, and the dashboards: MemberDashboards), and
checkpoints/best.ckpt and last.ckpt (and step-<N>.ckpt with checkpoint.every_n_train_steps) that src.eval,
src.predict and src.analyze read as any other. A member's checkpoints hold its weights and settings, not a training
state: the group's training state (the stacked weights, the optimizer, the loops and every member's data position,
the random generators, and which members still train) is one Lightning checkpoint of the whole group, saved when
the members' last.ckpt are (after each validation, at an interrupt, every checkpoint.every_n_train_steps) in the
sweep's directory (src/sweep/stacked.py: group_state_path). The group resumes from it, bit-exact.

Batches (stacked, members first): the keys of the task kind's batches (src/training/module.py), each (M, B, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.model.stacked import StackedModel, clip_grad_norm_per_member

from .callbacks import (
    HostCopy,
    RestoreRandomState,
    SaveOnInterrupt,
    TrainingInterrupted,
    ctrl_c_held,
    validates_after_this_step,
    weights_are_finite,
)
from .inference import forward_batch, scored_target
from .metrics_file import RecordValidations
from .module import TransformerLitModule
from .optim import build_optimizer, schedule_length, time_budget_fraction
from .report import print_warning

# How each batch key is padded to the group's longest sequence: token ids with the pad id, masks with False.
# Labels (classification) have no length.
PADDED_WITH_PAD_ID = ("src", "tgt_in", "tgt_out")
PADDED_WITH_FALSE = ("tgt_real",)
GROUP_KEY = "stacked_group"  # a group's training state (a Lightning checkpoint of StackedLitModule) holds this key


def stack_batches(batches: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """The members' batches as one: each key (M, B, ...), sequences padded on the right to the longest member's
    length. Members' batch sizes must agree (the same task settings give the same sizes). "padded" (a bool each
    member's batch has, read on the host: TransformerLitModule.on_before_batch_transfer) is True when any member's
    batch holds padding, or gets some here; without it, the stacked batch counts as padded."""
    stacked: dict[str, Any] = {}
    padded = any(batch.get("padded", True) for batch in batches)
    for key in batches[0]:
        if key == "padded":
            continue
        tensors = [batch[key] for batch in batches]
        if key in PADDED_WITH_PAD_ID or key in PADDED_WITH_FALSE:
            width = max(t.size(1) for t in tensors)
            padded = padded or any(t.size(1) != width for t in tensors)
            fill: Any = pad_id if key in PADDED_WITH_PAD_ID else False
            tensors = [F.pad(t, (0, width - t.size(1)), value=fill) for t in tensors]
        stacked[key] = torch.stack(tensors)  # (M, B, ...)
    stacked["padded"] = padded
    return stacked


class MemberOutputs:
    """What one member writes in its job directory while the group trains: metrics.json, its loggers' scalars and
    its checkpoints (best by the task's main metric, and last)."""

    def __init__(self, run_dir: Path, module: TransformerLitModule, loggers: list, objective: str | None):
        self.run_dir = Path(run_dir)
        self.module = module
        self.loggers = loggers
        self.recorder = RecordValidations(run_dir, module.monitor, module.monitor_mode, objective=objective)
        self.best_score: float | None = None
        self.diverged_at: int | None = None  # the step whose loss was not finite
        self.diverged_loss = math.nan
        self.early_stopping: Any = None  # a Lightning EarlyStopping of its own (+callbacks.EarlyStopping...)
        self.stopped: dict[str, Any] | None = None  # why it stopped early, as run.json's `stopped` says it

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics(values, step=step)

    def log_hyperparams(self) -> None:
        """What Lightning does with a separate job's loggers as its training starts (loggers/utilities.py
        _log_hyperparams): the module's hyperparameters as it was built (the whole config, the model's, the
        numerics), then save, which writes TensorBoard's hparams.yaml (a resumed run's is kept as it is)."""
        for logger in self.loggers:
            logger.log_hyperparams(dict(self.module.hparams_initial))
            logger.log_graph(self.module)
            logger.save()

    def improved(self, score: float) -> bool:
        if not math.isfinite(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.module.monitor_mode == "max" else score < self.best_score

    def save_checkpoint(self, name: str, step: int, epoch: int) -> Path | None:
        """checkpoints/<name>.ckpt in the form src.run's checkpoints have (state_dict, hyper_parameters, the step,
        and for best.ckpt the monitored metric and its score); never non-finite weights."""
        if not weights_are_finite(self.module):
            return None
        directory = self.run_dir / "checkpoints"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.ckpt"
        best_path = directory / "best.ckpt"
        checkpoint = {
            "state_dict": self.module.state_dict(),
            "hyper_parameters": dict(self.module.hparams),
            "global_step": step,
            "epoch": epoch,
            "pytorch-lightning_version": L.__version__,
            "callbacks": {
                f"ModelCheckpoint{{'monitor': '{self.module.monitor}', 'mode': '{self.module.monitor_mode}'}}": {
                    "monitor": self.module.monitor,
                    "best_model_score": None if self.best_score is None else torch.tensor(self.best_score),
                    "best_model_path": str(best_path) if self.best_score is not None else "",
                }
            },
            "stacked": True,  # trained as a member of a stacked group: no optimizer or loop state to resume from
        }
        partial = path.with_suffix(".ckpt.part")
        torch.save(checkpoint, partial)
        partial.replace(path)  # never half written
        return path

    def finalize(self) -> None:
        for logger in self.loggers:
            logger.finalize("success")


class StackedLitModule(L.LightningModule):
    """The group's training: `members` are the members' TransformerLitModules (built one per seed, as src.run
    builds its module); their models' weights are stacked into `self.model` (the one set of parameters the
    optimizer updates), and copied back into each member's model for validation and checkpoints."""

    def __init__(self, members: Sequence[TransformerLitModule], outputs: Sequence[MemberOutputs]):
        super().__init__()
        first = members[0]
        self.members = nn.ModuleList(members)
        self.outputs = list(outputs)
        self.model = StackedModel([member.model for member in members])
        self.kind = first.kind
        self.config = first.config
        self.model_cfg = first.model_cfg
        self.label_smoothing = first.label_smoothing
        self.max_loss = first.config.get("max_loss")  # a member whose loss passes it diverged, as a solo run
        checkpoint = first.config.get("checkpoint") or {}
        self.save_best, self.save_last = checkpoint.get("save_best", True), checkpoint.get("save_last", True)
        self.monitor, self.monitor_mode = first.monitor, first.monitor_mode
        # Which members still train, as the host last read it: False once a member diverged or stopped early.
        self.training_members = [True] * len(members)
        # The same on the device, where each step's divergence check runs without the host (`check_members`):
        # which members train, and the step (0: none) and loss at which each diverged. Made at the first step,
        # on the group's device; the host reads them through `flags`, a step late on a GPU (read_member_flags).
        self.training_mask: Tensor | None = None  # (M,) bool
        self.diverged_step: Tensor | None = None  # (M,) float32: the step, exactly, up to 2^24 steps
        self.diverged_loss: Tensor | None = None  # (M,) float32
        self.flags = HostCopy()
        # Each stacked parameter as it was after the last step: a member that no longer trains is put back to it
        # after every optimizer step (Adam's moments and weight decay would still move it: hold_stopped_members)
        self.held: list[Tensor] = []
        self.frozen: dict[int, dict[str, Tensor]] = {}  # a group state saved before `held` existed: put back once
        # the last validation's line for the progress output (ProgressLines): each training member's values, as
        # a separate job's line has its own; the group logs no val/ metric of its own to read them from
        self.validation_line = ""

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Each member's batch marked, on the host, with whether it holds padding (as a solo run's is): a training
        step's list of the members' batches, or one member's validation batch (dataloader_idx: the member)."""
        if isinstance(batch, dict):
            return self.members[dataloader_idx].on_before_batch_transfer(batch, dataloader_idx)
        return [member.on_before_batch_transfer(b, 0) for member, b in zip(self.members, batch)]

    def setup(self, stage: str) -> None:
        for member in self.members:  # their _evaluate reads trainer.datamodule (decoding for BLEU)
            member.trainer = self.trainer

    def on_fit_start(self) -> None:
        # Lightning logs the hyperparameters of the module it trains, the group, which has no loggers of its own:
        # each member's loggers get the member's, as a separate job's loggers get its module's
        if getattr(self.trainer, "enable_autolog_hparams", True):
            for output in self.outputs:
                output.log_hyperparams()

    # --- the group's training state (a resume continues every member where it was) -----------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Beside Lightning's state (weights, optimizer, loops, callbacks): what the group knows of each member,
        and the first member's settings, so that a resume is checked as a single run's is (src/cli/preflight.py)."""
        self.read_member_flags()  # the last step's divergences belong in the state
        checkpoint[GROUP_KEY] = {
            "members": [str(output.run_dir) for output in self.outputs],
            "training": list(self.training_members),
            "outputs": [
                {
                    "best_score": output.best_score,
                    "diverged_at": output.diverged_at,
                    "diverged_loss": output.diverged_loss,
                    "stopped": output.stopped,
                    "early_stopping": output.early_stopping.state_dict() if output.early_stopping else None,
                }
                for output in self.outputs
            ],
        }
        checkpoint["hyper_parameters"] = dict(self.members[0].hparams)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint[GROUP_KEY]
        if len(state["members"]) != len(self.outputs):
            raise ValueError(
                f"the group's saved state has {len(state['members'])} members, this group {len(self.outputs)}"
            )
        self.training_members = list(state["training"])
        # A stopped member's weights are the stacked ones in the state; an older state kept them beside it
        self.frozen = {int(member): frozen for member, frozen in state.get("frozen", {}).items()}
        self.training_mask = None  # made again from training_members, on the group's device
        for output, saved in zip(self.outputs, state["outputs"]):
            output.best_score, output.stopped = saved["best_score"], saved["stopped"]
            output.diverged_at, output.diverged_loss = saved["diverged_at"], saved["diverged_loss"]
            if output.early_stopping is not None and saved["early_stopping"] is not None:
                output.early_stopping.load_state_dict(saved["early_stopping"])

    # --- training -----------------------------------------------------------------------------------------------

    def training_step(self, batches: Sequence[dict[str, Tensor]], batch_idx: int) -> dict[str, Tensor]:
        batch = stack_batches(batches, self.model_cfg.pad_id)
        padded = batch.pop("padded")  # a bool, not a tensor with a member dimension: given to each member below
        kind, smoothing, loss_of = self.kind, self.label_smoothing, self.members[0].loss

        def member_loss(model: nn.Module, member_batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
            # a member's masks cannot look at its tokens under vmap to learn whether any is padding: it is told
            logits = forward_batch(model, kind, {**member_batch, "padded": padded}).logits  # (B, T, V) or (B, C)
            if logits.dtype in (torch.float16, torch.bfloat16):  # autocast's float32 loss does not apply under vmap
                logits = logits.float()
            return loss_of(logits, scored_target(model, kind, member_batch), smoothing)

        self.model.template.train(self.training)  # the template is outside the module tree: follow its mode
        losses, targets = self.model.call(member_loss, batch)  # (M,), (M,)
        step = self.global_step + 1
        training = self.check_members(losses.detach(), step)  # (M,) bool, on the device: no read
        total = torch.where(training, losses, torch.zeros_like(losses)).sum()
        trainer = self._trainer
        logging_step = trainer is not None and step % trainer.log_every_n_steps == 0
        if trainer is not None and (logging_step or step == trainer.max_steps):
            # As a solo run's are filed (src/training/tensorboard_logger.py): at the steps done, this one included,
            # train/lr on the logging steps only (LearningRateMonitor), train/loss also on the last.
            # The one read of this step, on a step that logs (a solo run's self.log reads there too).
            values, logged = losses.detach().tolist(), training.tolist()
            scalars = {"train/loss": 0.0, "train/epoch": float(self.current_epoch)}
            if logging_step:
                scalars["train/lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
            for member, output in enumerate(self.outputs):
                if logged[member]:
                    output.log_scalars({**scalars, "train/loss": values[member]}, step)
        return {"loss": total, "targets": (targets * training).sum()}

    # --- members that stop: divergence and early stopping, decided on the device ---------------------------------

    def start_member_flags(self, device: torch.device) -> None:
        """The device's copy of which members train (from the host's, which a resume restored), and each
        parameter's held copy; before the first step."""
        self.training_mask = torch.tensor(self.training_members, device=device)
        # only members still training can diverge from here on (those stopped before are recorded in `outputs`)
        self.diverged_step = torch.zeros(len(self.training_members), device=device)
        self.diverged_loss = torch.full((len(self.training_members),), math.nan, device=device)
        self.flags.prepare(device, (3, len(self.outputs)))
        for member, state in self.frozen.items():
            self.model.set_member(member, state)
        self.frozen = {}
        self.held = [p.detach().clone() for p in self.model.stacked_params]

    def on_train_start(self) -> None:
        self.start_member_flags(self.device)

    def check_members(self, losses: Tensor, step: int) -> Tensor:
        """The divergence check of step `step`, on the device: a member still training whose loss (M,) is not
        finite, or above max_loss, stops now, before its weights take this step's update; the step and the loss
        are recorded beside it. Returns which members train on (M,) bool. Nothing is read back: the host learns
        of it through read_member_flags, on a GPU a step later, while a solo run's StopOnDivergence reads its own
        loss a step late; here the member is stopped at the right step all the same."""
        if self.training_mask is None:
            self.start_member_flags(losses.device)
        assert self.training_mask is not None and self.diverged_step is not None and self.diverged_loss is not None
        fine = torch.isfinite(losses)
        if self.max_loss is not None:
            fine = fine & (losses <= self.max_loss)
        diverged = self.training_mask & ~fine
        self.diverged_step = torch.where(diverged, float(step), self.diverged_step)
        self.diverged_loss = torch.where(diverged, losses.float(), self.diverged_loss)
        self.training_mask = self.training_mask & fine
        return self.training_mask

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        """Lightning's step (the closure runs training_step, backward and the gradients' clipping), then the
        members that no longer train put back as they were, and the flags sent to the host."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.hold_stopped_members()
        self.read_member_flags()  # on a GPU, the previous step's: copied while this step ran
        assert self.training_mask is not None and self.diverged_step is not None and self.diverged_loss is not None
        self.flags.copy(torch.stack([self.training_mask.float(), self.diverged_step, self.diverged_loss]))
        if self.flags.done_at_once:  # on the CPU: the copy is the read
            self.read_member_flags()

    @torch.no_grad()
    def hold_stopped_members(self) -> None:
        """After an optimizer step: every member that no longer trains gets back its weights of the step before
        (`held`), on the device, whether it stopped at this step or long ago; then `held` becomes this step's
        weights. Two elementwise passes over the parameters, instead of a read of the flags every step."""
        assert self.training_mask is not None
        for parameter, held in zip(self.model.stacked_params, self.held):
            training = self.training_mask.view(-1, *([1] * (parameter.dim() - 1)))  # (M, 1, ...)
            parameter.copy_(torch.where(training, parameter, held))
            held.copy_(parameter)

    def read_member_flags(self) -> None:
        """What the device decided, as far as it was copied out (a step late on a GPU: this waits for that copy
        only): members that stopped are recorded (a diverged one with its step and loss, as a solo run's
        TrainingDiverged names them); when none trains on, the group stops."""
        flags = self.flags.read()  # (3, M): training, diverged step, diverged loss
        if flags is None:
            return
        diverged = []
        for member, (training, step, loss) in enumerate(flags.T.tolist()):
            if self.training_members[member] and not training:
                self.training_members[member] = False
                if step > 0:  # diverged (a member stopped early was recorded by check_early_stopping)
                    self.outputs[member].diverged_at, self.outputs[member].diverged_loss = int(step), loss
                    diverged.append(member)
        # said as soon as the host knows it (the group's error lines come only when it ends, maybe hours later)
        go_on = "the other members go on" if any(self.training_members) else "no member trains on: the group stops"
        for member in diverged:
            output = self.outputs[member]
            bound = (
                f", above max_loss={self.max_loss}"
                if self.max_loss is not None and math.isfinite(output.diverged_loss)
                else ""
            )
            print_warning(
                f"{output.run_dir.name} diverged at step {output.diverged_at} (loss {output.diverged_loss}{bound}); "
                f"{go_on}"
            )
        if not any(self.training_members) and self._trainer is not None:
            self.trainer.should_stop = True

    def check_early_stopping(self, member: int, values: dict[str, float]) -> None:
        """Lightning's EarlyStopping, the member's own, on the member's validation: when it says stop, the member
        trains no further (as a separate job would end there) and run.json's `stopped` says why."""
        from src.training.stock_callbacks import why_training_stopped

        output = self.outputs[member]
        view = MemberView(self.trainer, output.loggers, None, {k: torch.tensor(v) for k, v in values.items()})
        output.early_stopping._run_early_stopping_check(view)
        if not view.should_stop:
            return
        view.callbacks = [output.early_stopping]
        output.stopped = why_training_stopped(
            view, {"max_steps": self.trainer.max_steps}, output.recorder.content["history"]
        )
        self.training_members[member] = False
        if self.training_mask is not None:
            self.training_mask[member] = False  # held from the next step on at this validation's weights
        if not any(self.training_members):
            self.trainer.should_stop = True

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Each member's gradients clipped by its own norm (trainer.gradient_clip_val, by norm as Lightning's
        default), never by the whole stack's; a stopped member's gradients are zeroed (on the device: a diverged
        member's may be NaN, and must not reach the others' norms or Adam's moments)."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.training_mask is not None:
            for p in params:
                assert p.grad is not None
                stopped = ~self.training_mask.view(-1, *([1] * (p.dim() - 1)))
                p.grad.masked_fill_(stopped, 0.0)
        if gradient_clip_val:
            if gradient_clip_algorithm not in (None, "norm"):
                raise ValueError("stacked seeds clip gradients by norm only (trainer.gradient_clip_algorithm=norm)")
            clip_grad_norm_per_member(params, float(gradient_clip_val))

    def on_train_end(self) -> None:
        self.read_member_flags()  # the last step's, when nothing read them since

    def save_members(self, name: str, step: int, epoch: int) -> None:
        """Each member still training saves its weights as checkpoints/<name>.ckpt (a stopped member keeps the
        checkpoints it had when it stopped)."""
        self.read_member_flags()  # a member that diverged at the step just made saves nothing
        for member, (module, output) in enumerate(zip(self.members, self.outputs)):
            if self.training_members[member]:
                self.model.load_member(member, module.model)
                output.save_checkpoint(name, step, epoch)

    def configure_optimizers(self):
        total_steps = schedule_length(self.trainer)  # max_steps, max_epochs or (alone) max_time bounds the run
        budget = time_budget_fraction(self.trainer)
        mixed = str(self.trainer.precision).endswith("-mixed")
        return build_optimizer(
            self.model, self.config["optimizer"], self.model_cfg.d_model, total_steps, budget, mixed_precision=mixed
        )

    # --- validation: member by member, each with its own weights and metrics -----------------------------------

    def on_validation_epoch_start(self) -> None:
        self.read_member_flags()  # a member that diverged at the last step is not validated as training
        for member, module in enumerate(self.members):
            self.model.load_member(member, module.model)
            module.model.eval()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.members[dataloader_idx]._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        step, epoch = self.global_step, self.current_epoch
        sanity = self.trainer.sanity_checking
        by_member: dict[int, dict[str, float]] = {}
        for member, (module, output) in enumerate(zip(self.members, self.outputs)):
            metrics = module.split_metrics["val"]
            if metrics.loss.update_count == 0:
                continue
            # float32, as Lightning's self.log keeps a separate job's values (its metrics.json holds those)
            values = {f"val/{name}": float(torch.as_tensor(value).float()) for name, value in metrics.compute().items()}
            metrics.reset()
            if sanity:
                continue
            if not self.training_members[member]:
                continue  # diverged or stopped early: its last validation was its final one, as a separate job's
            by_member[member] = values
            output.recorder.record(step, values)
            output.log_scalars({**values, "train/epoch": float(epoch)}, step)  # the steps done, as above
            score = values.get(self.monitor, math.nan)
            if output.improved(score):
                output.best_score = score
                if self.save_best:
                    output.save_checkpoint("best", step, epoch)
            if self.save_last:
                output.save_checkpoint("last", step, epoch)
            if output.early_stopping is not None:
                self.check_early_stopping(member, values)
        self.validation_line = validation_line(by_member, [module.config["seed"] for module in self.members])


def validation_line(by_member: dict[int, dict[str, float]], seeds: list) -> str:
    """The progress line of a group's validation: each metric with every member's value, by seed
    ("val/loss 1.2345 (seed 0) 1.2401 (seed 1)"); members that no longer train are left out."""
    names = sorted({name for values in by_member.values() for name in values})
    return "  ".join(
        f"{name} "
        + " ".join(f"{values[name]:.4f} (seed {seeds[m]})" for m, values in by_member.items() if name in values)
        for name in names
    )


def save_group_state(trainer: L.Trainer, group: StackedLitModule, path: Path) -> Path | None:
    """The whole group's training state (Lightning's checkpoint of the group: the stacked weights, the optimizer,
    the loops with every member's data position, the callbacks' state with the random generators, and the group's
    own: StackedLitModule.on_save_checkpoint) to `path`, never half written and never with non-finite weights."""
    if not weights_are_finite(group):
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".ckpt.part")
    trainer.save_checkpoint(partial)
    partial.replace(path)
    return path


class SaveGroupState(L.Callback):
    """The group's training state saved whenever its members' checkpoints are: after each validation (each member
    has just saved its last.ckpt and maybe best.ckpt), and every `every_n_train_steps` steps, when each member also
    saves its weights as checkpoints/step-<N>.ckpt, as a separate job's checkpoint.every_n_train_steps does."""

    def __init__(self, path: Path, every_n_train_steps: int = 0):
        self.path = Path(path)
        self.every_n_train_steps = every_n_train_steps

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if not trainer.sanity_checking:  # after StackedLitModule.on_validation_epoch_end saved the members'
            save_group_state(trainer, pl_module, self.path)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_train_steps <= 0 or step % self.every_n_train_steps != 0:
            return
        group: StackedLitModule = pl_module
        group.save_members(f"step-{step}", step, trainer.current_epoch)
        if not validates_after_this_step(trainer):  # else saved after the validation (on_validation_end)
            save_group_state(trainer, group, self.path)


class SaveMembersOnInterrupt(SaveOnInterrupt):
    """Ctrl-C or SIGTERM while a group trains: the current step finishes, every member's weights at that step go
    to its checkpoints/last.ckpt (as a member's checkpoints always are: weights and settings, which src.eval,
    src.predict and src.analyze read), the group's training state to `checkpoint_path` (save_group_state), and
    training stops with TrainingInterrupted; the group resumes exactly from there (src.run says how)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._received_anywhere(trainer) is not None and not validates_after_this_step(trainer):
            self.stop(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        """A signal that came during a step followed by a validation stops the group after that validation (its
        members' metrics, early stopping and best checkpoints as the uninterrupted group has them)."""
        if not trainer.sanity_checking and self._received_anywhere(trainer) is not None:
            self.stop(trainer, pl_module)

    def stop(self, trainer: L.Trainer, pl_module) -> None:
        received = self._received_anywhere(trainer)
        assert received is not None
        group: StackedLitModule = pl_module
        # Ctrl-C held for the save, as a single run's (SaveOnInterrupt): a second one between the members' last.ckpt
        # and the group's state would leave members at a step their group state does not hold
        with ctrl_c_held():
            group.save_members("last", trainer.global_step, trainer.current_epoch)
            saved = save_group_state(trainer, group, self.checkpoint_path)
        raise TrainingInterrupted(received, trainer.global_step, saved)


class MemberView:
    """A member's view of the group's trainer, for the dashboards' callbacks (src/dashboard): the group's progress
    (step, epoch, sanity check, rank) with the member's own loggers and data. What they read of a trainer is only
    this (src/dashboard/probe.py)."""

    def __init__(self, trainer: L.Trainer, loggers: list, datamodule: Any, metrics: dict[str, Tensor] | None = None):
        self._trainer, self.loggers, self.datamodule = trainer, loggers, datamodule
        # What Lightning's EarlyStopping reads and sets (a member's early stopping, StackedLitModule.validated)
        self.callback_metrics = metrics or {}
        self.should_stop = False
        self.fast_dev_run = False
        self.strategy = trainer.strategy
        self.callbacks: list = []
        self.max_epochs = trainer.max_epochs

    @property
    def logger(self):
        return self.loggers[0] if self.loggers else None

    @property
    def global_step(self) -> int:
        return self._trainer.global_step

    @property
    def current_epoch(self) -> int:
        return self._trainer.current_epoch

    @property
    def sanity_checking(self) -> bool:
        return self._trainer.sanity_checking

    @property
    def is_global_zero(self) -> bool:
        return self._trainer.is_global_zero


class MemberDashboards(L.Callback):
    """Each member's dashboards (attention maps, head statistics, text samples, HPARAMS), drawn into its own
    TensorBoard run from its own weights, by the callbacks a separate job would run (`per_member[m]`). The members'
    weights are copied out of the stack just before a callback looks at them."""

    def __init__(self, per_member: Sequence[Sequence[L.Callback]], datamodules: Sequence[Any]):
        self.per_member = [list(callbacks) for callbacks in per_member]
        self.datamodules = list(datamodules)

    def _each(self, trainer: L.Trainer, group: StackedLitModule, load: bool = False):
        for member, callbacks in enumerate(self.per_member):
            if not group.training_members[member]:  # diverged or stopped early: a separate job has ended there
                continue
            if load:
                group.model.load_member(member, group.members[member].model)
            view = MemberView(trainer, group.outputs[member].loggers, self.datamodules[member])
            yield view, group.members[member], callbacks

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        for view, module, callbacks in self._each(trainer, pl_module):
            for callback in callbacks:
                callback.setup(view, module, stage)  # type: ignore[arg-type]

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        for view, module, callbacks in self._each(trainer, pl_module, load=True):
            for callback in callbacks:
                callback.on_train_start(view, module)  # type: ignore[arg-type]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        from src.dashboard.probe import ProbeCallback, can_log

        due = [isinstance(c, ProbeCallback) and c.is_logging_step(trainer) for c in self.per_member[0]]
        if not any(due) or not can_log(MemberView(trainer, pl_module.outputs[0].loggers, self.datamodules[0])):
            return
        pl_module.read_member_flags()  # a step that draws may wait: no dashboards of a member that just diverged
        for view, module, callbacks in self._each(trainer, pl_module, load=True):
            for callback in callbacks:
                callback.on_train_batch_end(view, module, outputs, batch, batch_idx)  # type: ignore[arg-type]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        for view, module, callbacks in self._each(trainer, pl_module):  # the weights were copied for validation
            for callback in callbacks:
                callback.on_validation_epoch_end(view, module)  # type: ignore[arg-type]

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        pl_module.read_member_flags()  # before the module's own hook: no end dashboards of a member that diverged
        for view, module, callbacks in self._each(trainer, pl_module, load=True):
            for callback in callbacks:
                callback.on_train_end(view, module)  # type: ignore[arg-type]

    @property
    def seconds_logging(self) -> float:  # TrainingSpeed's dashboard share (src/training/callbacks.py)
        return sum(getattr(c, "seconds_logging", 0.0) for callbacks in self.per_member for c in callbacks)


class StackedDataModule(L.LightningDataModule):
    """The members' datamodules as one: training batches are the members' batches side by side (one list per
    step, each member's in its own seeded order), validation runs each member's loader in turn (dataloader_idx =
    the member)."""

    def __init__(self, members: Sequence[Any]):
        super().__init__()
        self.members = list(members)

    def train_dataloader(self):
        from lightning.pytorch.utilities import CombinedLoader

        # min_size: the members' loaders have the same length (the same task settings); a step takes one of each
        return CombinedLoader([member.train_dataloader() for member in self.members], mode="min_size")

    def val_dataloader(self):
        return [member.val_dataloader() for member in self.members]

    def decode_tgt(self, ids) -> str:  # the members share their task's vocabulary (checked in train_stacked)
        return self.members[0].decode_tgt(ids)


class StackedMember:
    """One member of a group, as the launcher hands it over: its composed config (no `hydra` node) and its job
    directory, already made with its .hydra/."""

    def __init__(self, cfg: Any, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)


class NotStackable(Exception):
    """The members' data gave models of different shapes (a task that splits its data by the seed learns a
    vocabulary per seed), so they cannot share one stacked model: the launcher runs them as separate jobs. Raised as
    soon as a member's shape is known (its data built), before the group printed or recorded anything; the member
    directories then hold only what their data wrote (their vocabularies), which the caller removes."""


def shape_difference(model_cfgs: Sequence[Any]) -> str | None:
    """What differs between the members' model configs ("src_vocab_size 138, 136"), None when nothing does."""
    from dataclasses import asdict

    configs = [asdict(model_cfg) for model_cfg in model_cfgs]
    differing = [key for key in configs[0] if any(c[key] != configs[0][key] for c in configs[1:])]
    if not differing:
        return None
    return "; ".join(f"{key} {', '.join(str(c[key]) for c in configs)}" for key in differing)


def train_stacked(
    members: Sequence[StackedMember],
    objective: str | None,
    group_state: Path,
    resume: bool = False,
    launched_at: float | None = None,
    dashboards: Callable[[Any, TransformerLitModule], list] | None = None,
    started: Callable[[], None] | None = None,
) -> tuple[list[dict[str, float]], list[MemberOutputs], dict[str, Any]]:
    """Train the group; returns each member's final validation metrics, its outputs (diverged_at says whether it
    diverged) and the group's speed (run.json's `speed`). `group_state`: where the group's training state is saved
    (SaveGroupState), and with `resume` the state it continues from. `dashboards(cfg, module)`: the dashboard
    callbacks a separate job with this config would run (src.run's), made once per member. `started()`: called
    once the members are built and can be stacked, before the group prints or writes anything of its own; before
    it, NotStackable when their data gave models of different shapes."""
    from dataclasses import asdict

    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf import OmegaConf

    from src.cli.preflight import check_analysis_target
    from src.cli.schema import model_config_for, to_plain
    from src.cli.validation import (
        check_ablation,
        validate_config,
        warn_if_every_head_ablated,
        warn_if_warmup_outlasts_training,
        warn_unread_settings,
    )
    from src.data import absolute_task_paths, build_datamodule
    from src.model import ConfigError
    from src.training.callbacks import ProgressLines, TrainingSpeed, ValidateAtLastStep
    from src.training.checkpoint import numeric_settings
    from src.training.loggers import build_loggers
    from src.training.report import print_run_start
    from src.training.stock_callbacks import build_stock_callbacks, why_training_stopped

    first = members[0].cfg  # the members differ only in their seed: warn once for the group
    placeholder = model_config_for(first)  # the vocabulary sizes are placeholders: the ablation needs the layout
    ablation = check_ablation(first.ablate, placeholder, training=True)
    modules: list[TransformerLitModule] = []
    datamodules: list[Any] = []
    model_cfgs: list[Any] = []  # each member's TransformerConfig
    for member in members:
        cfg = member.cfg
        validate_config(cfg)
        check_analysis_target(member.run_dir, cfg.analyze_after_fit)
        # As src.run: the seed, then the data, then the model (so the member's initialisation is the solo run's)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        absolute_task_paths(cfg.task)
        datamodule = build_datamodule(
            cfg.task,
            cfg.batch_size,
            cfg.seed,
            member.run_dir,
            num_workers=cfg.num_workers,
            bucket_by_length=cfg.bucket_by_length,
        )
        model_cfg = model_config_for(cfg, datamodule.src_vocab_size, datamodule.tgt_vocab_size, datamodule.num_classes)
        # the earliest a shape is known: no further member is built once one differs from the first's
        difference = shape_difference([model_cfgs[0], model_cfg]) if model_cfgs else None
        if difference is not None:
            names = f"{members[0].run_dir.name} and {member.run_dir.name}"
            raise NotStackable(
                f"the data of {names} gave models of different shapes ({difference}): a task that splits its data "
                "by the seed learns a vocabulary of its own for each seed"
            )
        model_cfg.validate()
        config = to_plain(cfg)
        module = TransformerLitModule(
            config, asdict(model_cfg), datamodule.kind, str(member.run_dir), numeric_settings(config)
        )
        modules.append(module)
        datamodules.append(datamodule)
        model_cfgs.append(model_cfg)
    if started is not None:
        started()
    warn_if_every_head_ablated(ablation, placeholder)
    warn_unread_settings(first)
    warn_if_warmup_outlasts_training(first)
    # Each member's loggers, once the group is known to stack (a separate job's would make the same files)
    outputs = [
        MemberOutputs(
            member.run_dir,
            module,
            build_loggers(member.cfg.logger, member.run_dir, run_name=member.run_dir.name),
            objective,
        )
        for member, module in zip(members, modules)
    ]
    # The group's one config (as a plain copy: the schema's `seed` is a number), with the members' seeds
    shown = OmegaConf.create(OmegaConf.to_container(first, resolve=True))
    shown.seed = ", ".join(str(member.cfg.seed) for member in members)
    print_run_start(
        shown, modules[0].model_cfg, modules[0], datamodules[0], members[0].run_dir, [m.run_dir for m in members]
    )
    for member, output in zip(members, outputs):  # +callbacks.EarlyStopping...: each member its own
        stoppers = build_stock_callbacks(member.cfg.callbacks, output.module.monitor, output.module.monitor_mode)
        output.early_stopping = next(iter(stoppers), None)
    # The group's own randomness (dropout masks) starts from the first member's seed (src/model/stacked.py).
    L.seed_everything(members[0].cfg.seed, workers=True, verbose=False)
    group = StackedLitModule(modules, outputs)
    cfg = members[0].cfg
    speed = TrainingSpeed(launched_at=launched_at)
    callbacks: list = [
        ValidateAtLastStep(),
        RestoreRandomState(),  # a resumed group draws the dropout masks the uninterrupted one drew
        SaveGroupState(group_state, cfg.checkpoint.every_n_train_steps),
        SaveMembersOnInterrupt(group_state),
        speed,
    ]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(ProgressLines(cfg.progress_every_n_steps))
    if dashboards is not None and any(output.loggers for output in outputs):
        per_member = [dashboards(member.cfg, module) for member, module in zip(members, modules)]
        callbacks.append(MemberDashboards(per_member, datamodules))
    trainer_settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(trainer_settings, dict)
    trainer_settings["enable_checkpointing"] = False  # each member saves its own (MemberOutputs)
    try:
        trainer = L.Trainer(
            **trainer_settings, logger=False, callbacks=callbacks, default_root_dir=str(members[0].run_dir)
        )
    except (MisconfigurationException, ValueError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ConfigError(f"trainer settings rejected by Lightning: {first_line}") from None
    # weights_only=True: the group's state is read as a single run's checkpoint is; nothing in it may run code
    ckpt_path = str(group_state) if resume else None
    trainer.fit(group, datamodule=StackedDataModule(datamodules), ckpt_path=ckpt_path, weights_only=True)
    finals = []
    for output, datamodule in zip(outputs, datamodules):
        history = output.recorder.content["history"]
        if output.stopped is None and output.diverged_at is None:  # the group's time budget or epochs ended it
            output.stopped = why_training_stopped(trainer, cfg.trainer, history)
        final = {key: value for key, value in (history[-1] if history else {}).items() if key != "step"}
        if cfg.test_after_fit and output.diverged_at is None:
            final.update(test_member(output, datamodule, cfg))
        output.recorder.add_final(final)
        output.finalize()
        finals.append(final)
    # The group's speed, in each member's run.json: its tokens per second count every member's tokens
    return finals, outputs, {**speed.summary(), "stacked_members": len(members)}


def test_member(output: MemberOutputs, datamodule: Any, cfg: Any) -> dict[str, float]:
    """test_after_fit for one member, as src.run tests a separate job: the checkpoint its directory stands for
    (best.ckpt, else last.ckpt) on the test splits, logged to its own loggers, and sacreBLEU where the task has raw
    references. Returns the test metrics."""
    from src.training.bleu import has_references, score_split
    from src.training.checkpoint import best_checkpoint_of

    module = output.module
    chosen = best_checkpoint_of(output.run_dir)
    if chosen is not None:
        module.load_state_dict(torch.load(chosen, map_location="cpu", weights_only=True)["state_dict"])
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        logger=output.loggers or False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(output.run_dir),
    )
    metrics: dict[str, float] = {}
    for per_loader in trainer.test(module, datamodule=datamodule, verbose=False):
        metrics.update({key: float(value) for key, value in per_loader.items()})
    if has_references(datamodule, "test"):
        metrics.update(score_split(module, datamodule, "test", cfg.decode, batch_size=cfg.batch_size).metrics())
    return metrics
