"""Optimizers and learning-rate schedules, selected by `optimizer.name`.

Both schedules are LambdaLR multipliers stepped once per optimizer step (Lightning's `interval: "step"`), so the
learning rate at optimizer step s (1-based) is `optimizer.lr * multiplier(s)`.

A time budget (`trainer.max_time`, Lightning's own) ends training at whichever comes first, the budget or
`trainer.max_steps`; a schedule that decays towards an end (cosine) then measures its progress by whichever of the
two is further along, so its decay finishes when the budget runs out. That learning rate depends on the machine's
speed: runs on a time budget are not bit-reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from torch import nn


def noam_multiplier(step: int, d_model: int, warmup_steps: int) -> float:
    """The paper's schedule (section 5.3): d_model^-0.5 * min(step^-0.5, step * warmup^-1.5).

    Linear warm-up for `warmup_steps`, then decay with the inverse square root of the step; the peak, at
    step == warmup_steps, is (d_model * warmup_steps)^-0.5. `step` is 1-based (step 0 would divide by zero).
    """
    step = max(step, 1)
    return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def warmup_cosine_multiplier(
    step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0, time_fraction: float = 0.0
) -> float:
    """Linear warm-up from 0 to 1 over `warmup_steps`, then half a cosine from 1 down to `min_ratio` at
    `total_steps` (and `min_ratio` after it). `step` is 1-based. `time_fraction`: the share of a time budget
    already spent; the decay is as far along as the larger of the two fractions."""
    if warmup_steps > 0 and step <= warmup_steps:
        return step / warmup_steps
    progress = min(1.0, max((step - warmup_steps) / max(1, total_steps - warmup_steps), time_fraction))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


Multiplier = Callable[[int], float]  # 1-based optimizer step -> learning-rate factor
TimeFraction = Callable[[], float]  # the share of the time budget spent so far (0 without a budget)


def no_time_budget() -> float:
    return 0.0


def update_kernel(params, mixed_precision: bool) -> dict:
    """How the optimizer updates the parameters. PyTorch's fused kernel does the whole update in one call where the
    parameters' device has it, 4x faster than its default loop over tensors on a CPU (about 1 ms of a default
    training step; results differ only by float rounding). Under mixed precision Lightning refuses gradient
    clipping with a fused optimizer, so there the multi-tensor ("foreach") update is used, 1.4x faster."""
    if not mixed_precision and {p.device.type for p in params} <= {"cpu", "cuda"}:
        return {"fused": True}
    return {"foreach": True}


# The optimizer.* settings Adam and AdamW both read (their constructor's arguments).
ADAM_SETTINGS = ("lr", "betas", "eps", "weight_decay")


def adam_settings(opt_cfg, kernel: dict) -> dict:
    """The optimizer.* fields Adam and AdamW share (ADAM_SETTINGS), and the update kernel (see ``update_kernel``)."""
    settings = {key: opt_cfg[key] for key in ADAM_SETTINGS}
    settings["betas"] = tuple(settings["betas"])  # a list in the config
    return {**settings, **kernel}


def adam_noam(
    params, opt_cfg, d_model: int, total_steps: int, time_fraction: TimeFraction, kernel: dict
) -> tuple[torch.optim.Optimizer, Multiplier]:
    """The paper: Adam with the inverse-square-root schedule. No weight decay was used there; a nonzero
    weight_decay here is L2 added to the gradient. The schedule has no end, so a time budget does not change it."""
    optimizer = torch.optim.Adam(params, **adam_settings(opt_cfg, kernel))
    warmup = opt_cfg["warmup_steps"]
    return optimizer, lambda step: noam_multiplier(step, d_model, warmup)


def adamw_cosine(
    params, opt_cfg, d_model: int, total_steps: int, time_fraction: TimeFraction, kernel: dict
) -> tuple[torch.optim.Optimizer, Multiplier]:
    """AdamW, linear warm-up to the peak lr, then cosine decay to min_lr_ratio * lr at the last step (or at the
    end of the time budget, if that comes first)."""
    optimizer = torch.optim.AdamW(params, **adam_settings(opt_cfg, kernel))
    warmup, ratio = opt_cfg["warmup_steps"], opt_cfg["min_lr_ratio"]
    return optimizer, lambda step: warmup_cosine_multiplier(step, warmup, total_steps, ratio, time_fraction())


@dataclass(frozen=True)
class Recipe:
    # (params, opt_cfg, d_model, total_steps, time_fraction, kernel) -> (optimizer, multiplier), as the two above
    build: Callable[..., tuple[torch.optim.Optimizer, Multiplier]]
    # The optimizer.* settings (besides name) that `build` reads. The schema has one field set for every recipe, so
    # a field another recipe reads is legal here and without effect: src.run warns when one is given
    # (src/cli/validation.py, warn_unread_settings), naming the recipes that do read it.
    reads: tuple[str, ...]
    min_warmup_steps: int = 0  # adam_noam's schedule divides by warmup_steps
    # Why a setting another recipe reads means nothing to this one, said in that warning (setting -> reason).
    why_unread: Mapping[str, str] = field(default_factory=dict)


# `optimizer.name`: name -> recipe. A new one is a function like those above and one entry here.
OPTIMIZERS: dict[str, Recipe] = {
    "adam_noam": Recipe(
        adam_noam,
        reads=(*ADAM_SETTINGS, "warmup_steps"),
        min_warmup_steps=1,
        why_unread={"min_lr_ratio": "its schedule has no end"},  # the inverse square root decays for ever
    ),
    "adamw_cosine": Recipe(adamw_cosine, reads=(*ADAM_SETTINGS, "warmup_steps", "min_lr_ratio")),
}


def build_optimizer(
    model: nn.Module,
    opt_cfg,
    d_model: int,
    total_steps: int,
    time_fraction: TimeFraction = no_time_budget,
    mixed_precision: bool = False,
) -> dict:
    """What LightningModule.configure_optimizers returns: the optimizer and a per-step LR scheduler."""
    # One parameter group, so LearningRateMonitor logs a single "train/lr" curve (several would log one per group);
    # weight decay then applies to every parameter, as torch.optim.AdamW does by default.
    params = [p for p in model.parameters() if p.requires_grad]
    recipe = OPTIMIZERS[opt_cfg["name"]]
    kernel = update_kernel(params, mixed_precision)
    optimizer, multiplier = recipe.build(params, opt_cfg, d_model, total_steps, time_fraction, kernel)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda index: multiplier(index + 1))  # index is 0-based
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1, "name": "train/lr"},
    }


def schedule_length(trainer) -> int:
    """The whole run's optimizer steps, whether trainer.max_steps or trainer.max_epochs bounds it. A run bounded by
    trainer.max_time alone (max_steps=-1, no max_epochs) has no step count: its schedule follows the time budget
    (time_budget_fraction), and the step count is taken as never reached."""
    total = trainer.estimated_stepping_batches
    return int(total) if math.isfinite(total) else 2**62


def time_budget_fraction(trainer) -> TimeFraction:
    """The share of `trainer.max_time` spent so far, read from the Timer callback Lightning adds for it (whose state
    checkpoints keep, so a resumed run goes on spending the same budget); no budget: always 0."""
    from lightning.pytorch.callbacks import Timer

    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is None or timer.time_remaining() is None:
        return no_time_budget

    def fraction() -> float:
        elapsed, remaining = timer.time_elapsed(), timer.time_remaining()
        return min(1.0, elapsed / max(elapsed + remaining, 1e-9))

    return fraction
