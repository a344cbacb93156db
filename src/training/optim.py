"""Optimizers and learning-rate schedules, selected by `optimizer.name`.

Both schedules are LambdaLR multipliers stepped once per optimizer step (Lightning's `interval: "step"`), so the
learning rate at optimizer step s (1-based) is `optimizer.lr * multiplier(s)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


def noam_multiplier(step: int, d_model: int, warmup_steps: int) -> float:
    """The paper's schedule (section 5.3): d_model^-0.5 * min(step^-0.5, step * warmup^-1.5).

    Linear warm-up for `warmup_steps`, then decay with the inverse square root of the step; the peak, at
    step == warmup_steps, is (d_model * warmup_steps)^-0.5. `step` is 1-based (step 0 would divide by zero).
    """
    step = max(step, 1)
    return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def warmup_cosine_multiplier(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warm-up from 0 to 1 over `warmup_steps`, then half a cosine from 1 down to `min_ratio` at
    `total_steps` (and `min_ratio` after it). `step` is 1-based."""
    if warmup_steps > 0 and step <= warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


Multiplier = Callable[[int], float]  # 1-based optimizer step -> learning-rate factor


def adam_settings(opt_cfg) -> dict:
    """The optimizer.* fields Adam and AdamW share."""
    keys = ("lr", "eps", "weight_decay")
    return {"betas": tuple(opt_cfg["betas"]), **{key: opt_cfg[key] for key in keys}}


def adam_noam(params, opt_cfg, d_model: int, total_steps: int) -> tuple[torch.optim.Optimizer, Multiplier]:
    """The paper: Adam with the inverse-square-root schedule. No weight decay was used there; a nonzero
    weight_decay here is L2 added to the gradient."""
    optimizer = torch.optim.Adam(params, **adam_settings(opt_cfg))
    warmup = opt_cfg["warmup_steps"]
    return optimizer, lambda step: noam_multiplier(step, d_model, warmup)


def adamw_cosine(params, opt_cfg, d_model: int, total_steps: int) -> tuple[torch.optim.Optimizer, Multiplier]:
    """AdamW, linear warm-up to the peak lr, then cosine decay to min_lr_ratio * lr at the last step."""
    optimizer = torch.optim.AdamW(params, **adam_settings(opt_cfg))
    warmup, ratio = opt_cfg["warmup_steps"], opt_cfg["min_lr_ratio"]
    return optimizer, lambda step: warmup_cosine_multiplier(step, warmup, total_steps, ratio)


@dataclass(frozen=True)
class Recipe:
    build: Callable[..., tuple[torch.optim.Optimizer, Multiplier]]
    min_warmup_steps: int = 0  # adam_noam's schedule divides by warmup_steps


# `optimizer.name`: name -> recipe. A new one is a function like those above and one entry here.
OPTIMIZERS: dict[str, Recipe] = {
    "adam_noam": Recipe(adam_noam, min_warmup_steps=1),
    "adamw_cosine": Recipe(adamw_cosine),
}


def build_optimizer(model: nn.Module, opt_cfg, d_model: int, total_steps: int) -> dict:
    """What LightningModule.configure_optimizers returns: the optimizer and a per-step LR scheduler."""
    # One parameter group, so LearningRateMonitor logs a single "lr" curve (several groups would log lr/pg1, lr/pg2);
    # weight decay then applies to every parameter, as torch.optim.AdamW does by default.
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, multiplier = OPTIMIZERS[opt_cfg["name"]].build(params, opt_cfg, d_model, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda index: multiplier(index + 1))  # index is 0-based
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1, "name": "lr"},
    }
