"""Fused linear layers: several linear maps of one input computed as one matrix product.

Self-attention projects its input with W^Q, W^K and W^V; cross-attention projects the encoder's memory with W^K and
W^V; a gated feed-forward network computes a gate and a value (feedforward.py). Each group reads the same input, so
its matrices are stacked row-wise into one weight and applied in one matrix product, which is faster than several
small ones. The matrices stay separate things, though: Xavier's bound depends on a matrix's own fan-out, so each is
initialised as the matrix it stands for (TransformerBase._init_weights), as the pretrained conversions
(src/pretrained) fuse a checkpoint's separate matrices into one. A FusedLinear knows its parts, so nothing has to
recognise one by its parameter's name, and the forward passes split its output by them (split_outputs).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class FusedLinear(nn.Linear):
    """One nn.Linear holding the maps `parts` (their output sizes, in order) side by side: a (sum(parts), in) weight
    and, with `bias`, a bias of sum(parts) entries, which is exactly what nn.Linear keeps, under the same names.
    Its output is the parts' outputs concatenated along the last dimension."""

    def __init__(self, in_features: int, parts: Sequence[int], bias: bool = True):
        # nn.Linear's own initialisation draws over the whole matrix, as before this class: the model's initialisation
        # then draws each part (keeping the draws as they were keeps every seed's weights bit for bit)
        super().__init__(in_features, sum(parts), bias=bias)
        self.parts = tuple(parts)

    def split_outputs(self, x: Tensor) -> tuple[Tensor, ...]:
        """Each map's output for the input x (..., in_features), in order: the one matrix product, split along its
        last dimension into the parts (views, (..., part) each)."""
        return self(x).split(self.parts, dim=-1)

    def matrices(self) -> tuple[Tensor, ...]:
        """The weight's matrices, (part, in_features) each, in order: views of the weight's storage (without
        autograd), so that writing one in place (an initialisation) writes the weight."""
        return self.weight.detach().split(self.parts, dim=0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, parts={self.parts}"
