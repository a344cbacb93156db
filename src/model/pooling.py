"""How an encoder-only classifier turns its (B, S, D) outputs into one (B, D) vector per sequence."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MeanPooling(nn.Module):
    """The mean of the non-pad positions: works with any task's data, which need no [CLS] token."""

    linear = True  # pooling a sum is the sum of the poolings (direct logit attribution, src/analysis/lens.py)

    def __init__(self, d_model: int):
        super().__init__()

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """x (B, S, D), keep (B, S) True for real tokens -> (B, D)."""
        weights = keep.unsqueeze(-1).to(x.dtype)  # (B, S, 1)
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class FirstTokenPooler(nn.Module):
    """BERT's pooler (Devlin et al. 2019, section 3): tanh(W h_0 + b) on the first token's output, which is
    [CLS] in BERT's inputs (pre-trained by next-sentence prediction to summarise the pair)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        return torch.tanh(self.dense(x[:, 0]))  # (B, D)


# `model.pooling`: name -> the pooling module's class (constructed with d_model).
POOLINGS: dict[str, type[nn.Module]] = {"mean": MeanPooling, "first_token": FirstTokenPooler}


def build_pooling(pooling: str, d_model: int) -> nn.Module:
    """The one place that reads `model.pooling`."""
    return POOLINGS[pooling](d_model)
