"""Dropout (Srivastava et al. 2014), with a cheaper random mask on the CPU.

Training zeroes each element with probability p and scales the survivors by 1 / (1 - p), so every
element keeps its expected value; evaluation is the identity.

Why not nn.Dropout: on the CPU PyTorch draws one number from its random generator per element,
one after another, and for this model that was a quarter of a training step. Here one 64-bit draw
is cut into four 16-bit numbers, so the generator runs four times less. `random_()` gives 63-bit
integers (the top bit is always 0), so each 16-bit piece keeps only its low 15 bits, which are
uniform; an element survives when they are >= p * 2^15. p is thus rounded to a multiple of 2^-15,
and the scale uses the rounded value so the expectation stays exact. On other devices PyTorch's
fused dropout kernel is already fast and is used. Seeded by torch.manual_seed like everything else.

Inside a stacked model (seeds trained together, src/model/stacked.py) the same cheap mask is drawn into a tensor
made like the activation (`empty_like`), which under vmap carries the member dimension, so that each member draws
its own mask (vmap's randomness="different"): a tensor made from a bare shape would be one mask shared by all.
On a 2-core CPU this took a five-member stack's step from 270 to 190 ms; PyTorch's F.dropout under vmap draws one
number per element (`bernoulli_`), a third of that step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 2**15  # 15 uniform bits per 16-bit piece


def cpu_dropout_keep_mask(shape: torch.Size, p: float, device=None, like: Tensor | None = None) -> tuple[Tensor, float]:
    """A boolean mask (True = keep) with P(keep) = 1 - p, and the survivors' scale. `like`: a tensor of `shape` to
    make the draws like (under vmap: one mask per member, see the module's docstring)."""
    n = math.prod(shape)
    if like is None:
        draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    else:
        draws = torch.empty_like(like.flatten()[: (n + 3) // 4], dtype=torch.int64)
    draws.random_()  # 63 random bits each
    bits = draws.view(torch.int16)[:n].view(shape) & (_LEVELS - 1)  # uniform in [0, 2^15)
    threshold = min(round(p * _LEVELS), _LEVELS - 1)
    return bits >= threshold, _LEVELS / (_LEVELS - threshold)


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability {p} must be in [0, 1)")
        self.p = p
        self.per_member = False  # set by StackedModel: draw one mask per member (the module's docstring)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        keep, scale = cpu_dropout_keep_mask(x.shape, self.p, x.device, like=x if self.per_member else None)
        return x * (keep.to(x.dtype) * scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"
