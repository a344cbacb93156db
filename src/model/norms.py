"""Normalisation layers, written out, and where they sit in a residual block."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LayerNorm(nn.Module):
    """LayerNorm (Ba et al. 2016): normalise each position's D features to zero mean and unit variance,
    then scale and shift:  y = (x - mean) / sqrt(var + eps) * gamma + beta   (biased variance)."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # gamma
        self.bias = nn.Parameter(torch.zeros(d_model))  # beta

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D)
        var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)  # (B, T, 1) each
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019): no centring, no shift:  y = x / sqrt(mean(x^2) + eps) * gamma."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D)
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


def build_norm(norm_type: str, d_model: int, eps: float) -> nn.Module:
    """The one place that reads `model.norm_type`."""
    if norm_type == "layernorm":
        return LayerNorm(d_model, eps)
    if norm_type == "rmsnorm":
        return RMSNorm(d_model, eps)
    raise ValueError(f"unknown norm type {norm_type!r}")


class Residual(nn.Module):
    """A sublayer wrapped in a residual connection and a norm, in one of two placements:

        post-LN (the paper):  x = Norm(x + Dropout(Sublayer(x)))
        pre-LN (GPT-2 etc.):  x = x + Dropout(Sublayer(Norm(x)))   (the stack then needs a final Norm)
    """

    def __init__(self, norm: nn.Module, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm = norm
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: Tensor, sublayer) -> tuple[Tensor, object]:
        """sublayer: a function of the (normalised) input returning (output, extra); extra is passed
        through (the attention weights)."""
        if self.pre_norm:
            out, extra = sublayer(self.norm(x))
            return x + self.dropout(out), extra
        out, extra = sublayer(x)
        return self.norm(x + self.dropout(out)), extra
