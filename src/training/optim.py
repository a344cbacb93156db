"""Optimizers and learning-rate schedules, selected by `optimizer.name`.

Both schedules are LambdaLR multipliers stepped once per optimizer step (Lightning's `interval: "step"`), so the
learning rate at optimizer step s (1-based) is `optimizer.lr * multiplier(s)`.
"""

from __future__ import annotations

import math

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


def build_optimizer(model: nn.Module, opt_cfg, d_model: int, max_steps: int) -> dict:
    """What LightningModule.configure_optimizers returns: the optimizer and a per-step LR scheduler."""
    betas = tuple(opt_cfg["betas"])
    # One parameter group, so LearningRateMonitor logs a single "lr" curve (several groups would log lr/pg1, lr/pg2);
    # weight decay then applies to every parameter, as torch.optim.AdamW does by default.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = opt_cfg["weight_decay"]
    name = opt_cfg["name"]
    if name == "adam_noam":
        # Plain Adam: the paper used no weight decay; a nonzero weight_decay here is L2 added to the gradient.
        optimizer = torch.optim.Adam(params, lr=opt_cfg["lr"], betas=betas, eps=opt_cfg["eps"], weight_decay=decay)
        warmup = opt_cfg["warmup_steps"]
        multiplier = lambda index: noam_multiplier(index + 1, d_model, warmup)  # noqa: E731 (index is 0-based)
    elif name == "adamw_cosine":
        optimizer = torch.optim.AdamW(params, lr=opt_cfg["lr"], betas=betas, eps=opt_cfg["eps"], weight_decay=decay)
        warmup, ratio = opt_cfg["warmup_steps"], opt_cfg["min_lr_ratio"]
        multiplier = lambda index: warmup_cosine_multiplier(index + 1, warmup, max_steps, ratio)  # noqa: E731
    else:
        raise ValueError(f"optimizer.name={name!r} is not known: choose adam_noam or adamw_cosine")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1, "name": "lr"}}
