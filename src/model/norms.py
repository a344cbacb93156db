"""Normalisation layers, written out, and where they sit in a residual block (sequential, or a parallel layer's)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dropout import Dropout
from .points import ActivationPoint


def layer_norm_explicit(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """LayerNorm (Ba et al. 2016), written out: normalise each position's D features to zero mean and
    unit variance, then scale and shift:  y = (x - mean) / sqrt(var + eps) * gamma + beta  (biased var)."""
    var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)  # (B, T, 1) each
    return (x - mean) * torch.rsqrt(var + eps) * weight + bias


def rms_norm_explicit(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm (Zhang & Sennrich 2019), written out: no centring, no shift:
    y = x / sqrt(mean(x^2) + eps) * gamma."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


class LayerNorm(nn.Module):
    """LayerNorm with learned gain gamma and shift beta; the math is `layer_norm_explicit` above.

    Like attention, it has two paths that compute the same thing (tested equal): the written-out one
    to read, and PyTorch's fused kernel to run, because on a CPU the written-out version's extra passes
    over memory cost about 10x the fused kernel, 17 times per training step.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # gamma
        self.bias = nn.Parameter(torch.zeros(d_model))  # beta

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D)
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)

    def as_linear(self, whole: Tensor, part: Tensor) -> Tensor:
        """`part` of the stream `whole` through this norm with its scale frozen at `whole`'s, without the shift:
        centring is linear, so these parts sum (with beta) to the norm of `whole` (direct logit attribution)."""
        scale = torch.rsqrt(whole.var(dim=-1, unbiased=False, keepdim=True) + self.eps)  # (B, T, 1)
        return (part - part.mean(dim=-1, keepdim=True)) * scale * self.weight


class RMSNorm(nn.Module):
    """RMSNorm with learned gain gamma; the math is `rms_norm_explicit`, run by the fused kernel."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D)
        return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)

    def as_linear(self, whole: Tensor, part: Tensor) -> Tensor:
        """`part` of the stream `whole` through this norm with its scale frozen at `whole`'s (LayerNorm.as_linear)."""
        return part * torch.rsqrt(whole.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


# A sublayer as a residual block runs it: a function of the (normalised) input returning (output, extra).
Sublayer = Callable[[Tensor], tuple[Tensor, Tensor | None]]

# `model.norm_type`: name -> the norm's class (constructed with d_model and eps).
NORMS: dict[str, type[nn.Module]] = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}

# `model.norm_position`: name -> whether the sublayer's input is normalised (pre-LN) or its residual sum (post-LN).
NORM_POSITIONS: dict[str, bool] = {"post": False, "pre": True}


def build_norm(norm_type: str, d_model: int, eps: float) -> nn.Module:
    """The one place that reads `model.norm_type`."""
    return NORMS[norm_type](d_model, eps)


class Residual(nn.Module):
    """A sublayer wrapped in a residual connection and a norm, in one of two placements:

    post-LN (the paper):  x = Norm(x + Dropout(Sublayer(x)))
    pre-LN (GPT-2 etc.):  x = x + Dropout(Sublayer(Norm(x)))   (the stack then needs a final Norm)

    `removed = True` ablates the whole sublayer: its output leaves the residual stream (x + 0; post-LN still
    normalises). The sublayer still runs, so its attention weights and key/value cache stay available; it is an
    intervention for analysis, not a way to save compute. Not a parameter; off by default (see ablation.py).

    The residual stream entering the block, the sublayer's output and the stream leaving the block pass through
    the activation points resid_pre, out and resid_post (points.py), named by the layer that holds the block.
    """

    def __init__(self, norm: nn.Module | None, dropout: float, pre_norm: bool):
        """norm None: a block of a parallel layer that reads another block's norm (parallel_residual)."""
        super().__init__()
        self.norm = norm
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm
        self.removed = False
        self.resid_pre_point = ActivationPoint()
        self.out_point = ActivationPoint()
        self.resid_post_point = ActivationPoint()

    def forward(self, x: Tensor, sublayer: Sublayer) -> tuple[Tensor, Tensor | None]:
        """sublayer: a function of the (normalised) input returning (output, extra); extra is passed
        through (the attention weights)."""
        x = self.resid_pre_point(x)  # (B, T, D)
        assert self.norm is not None, "a block without a norm of its own runs in parallel_residual"
        if self.pre_norm:
            out, extra = sublayer(self.norm(x))
            out = self.out_point(out)
            return self.resid_post_point(x if self.removed else x + self.dropout(out)), extra
        out, extra = sublayer(x)
        out = self.out_point(out)
        return self.resid_post_point(self.norm(x if self.removed else x + self.dropout(out))), extra


def parallel_residual(x: Tensor, parts: list[tuple[Residual, Sublayer]]) -> tuple[Tensor, list[Tensor | None]]:
    """A parallel layer (GPT-J, Wang & Komatsuzaki 2021; PaLM, Chowdhery et al. 2022): its sublayers read one norm
    of the same input and their outputs are added to it side by side,

        y = x + Dropout(Attn(Norm(x))) + Dropout(FFN(Norm(x)))         (sequential pre-LN: FFN reads x + Attn(...))

    so the FFN need not wait for the attention (one pass over the layer's input: PaLM trains 15% faster at scale).
    `parts`: (block, sublayer) in the layer's order; the first block's norm is the layer's one norm (the others have
    none). Pre-LN only (config.validate).

    The activation points keep a sequential layer's meaning where they can (points.py; docs/model.md):
    - every block's resid_pre is the layer's input x: one activation, passed through each block's point in turn,
      so an edit at any of them changes what every sublayer and the residual sum read;
    - out is each sublayer's own output;
    - resid_post accumulates in the layer's order: the attention's is x + its output (the stream as it would be
      without the FFN), the FFN's adds the FFN's output to that, so the last block's resid_post is the layer's
      output, what the next layer receives, as in a sequential layer (the logit lens reads it there).
    A removed block (ablation.py) adds nothing, as in Residual. Returns the output (B, T, D) and each sublayer's
    extra (the attention weights), in order."""
    for block, _ in parts:  # (B, T, D): the layer's input, under each sublayer's resid_pre name
        x = block.resid_pre_point(x)
    norm = parts[0][0].norm
    assert norm is not None, "a parallel layer's first block holds its norm"
    normed = norm(x)  # (B, T, D): what every sublayer reads
    stream = x  # the residual sum so far
    extras: list[Tensor | None] = []
    for block, sublayer in parts:
        out, extra = sublayer(normed)
        out = block.out_point(out)
        stream = block.resid_post_point(stream if block.removed else stream + block.dropout(out))
        extras.append(extra)
    return stream, extras
