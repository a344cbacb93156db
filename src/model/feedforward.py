"""Position-wise feed-forward networks: the same two-layer MLP applied at every position."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dropout import Dropout
from .fused import FusedLinear


class FeedForward(nn.Module):
    """FFN(x) = W2 Dropout(act(W1 x + b1)) + b2, with act = ReLU (the paper), GELU (BERT: the exact, erf form),
    GELU's tanh approximation (GPT-2's `gelu_new`) or SiLU (x sigmoid(x)). bias=False (`model.ffn_bias=false`, as
    Llama, Qwen2, Mistral and T5) drops b1 and b2."""

    def __init__(
        self, d_model: int, d_ff: int, dropout: float, activation: Callable[[Tensor], Tensor], bias: bool = True
    ):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = Dropout(dropout)
        self.activation = activation
        self.per_member = False  # set by StackedModel: see at_real_positions

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class SwiGLUFeedForward(nn.Module):
    """SwiGLU (Shazeer 2020): FFN(x) = W2 (SiLU(W x) * V x). The gate W and value V are one fused
    (D -> 2 d_ff) matrix. Note it has 1.5x the parameters of the ReLU FFN at the same d_ff; lower
    model.d_ff to 2/3 of it for a parameter-matched comparison. The models that use it (Llama, Qwen2, Mistral)
    have no biases here: `model.ffn_bias=false` (bias=False)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, bias: bool = True):
        super().__init__()
        self.gate_value = FusedLinear(d_model, (d_ff, d_ff), bias=bias)  # the gate's rows, then the value's
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = Dropout(dropout)
        self.per_member = False  # set by StackedModel: see at_real_positions

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        gate, value = self.gate_value.split_outputs(x)  # 2 x (B, T, d_ff)
        return self.linear2(self.dropout(F.silu(gate) * value))


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU's tanh approximation, as GPT-2 computes it (PyTorch's own kernel)."""
    return F.gelu(x, approximate="tanh")


class GeGLUFeedForward(SwiGLUFeedForward):
    """GeGLU (Shazeer 2020) with GELU's tanh approximation: FFN(x) = W2 (GELU_tanh(W x) * V x), T5 v1.1's and
    Flan-T5's "gated-gelu" (transformers' `gelu_new` on `wi_0`, times `wi_1`, into `wo`). SwiGLU with another gate:
    the same fused gate | value matrix (D -> 2 d_ff, the gate's rows first), initialised as the two matrices it
    holds, and the same 1.5x the parameters of the two-layer FFN at the same d_ff. T5 has no biases here
    (`model.ffn_bias=false`)."""

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        gate, value = self.gate_value.split_outputs(x)  # 2 x (B, T, d_ff)
        return self.linear2(self.dropout(gelu_tanh(gate) * value))


def with_activation(activation: Callable[[Tensor], Tensor]) -> Callable[..., nn.Module]:
    """The constructor (d_model, d_ff, dropout, bias=True) of the two-layer FFN with this activation."""

    def build(d_model: int, d_ff: int, dropout: float, bias: bool = True) -> nn.Module:
        return FeedForward(d_model, d_ff, dropout, activation, bias)

    return build


# `model.activation`: name -> a constructor (d_model, d_ff, dropout, bias=True) -> the feed-forward module.
FEEDFORWARDS: dict[str, Callable[..., nn.Module]] = {
    "relu": with_activation(F.relu),
    "gelu": with_activation(F.gelu),
    # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (Hendrycks and Gimpel 2016): GPT-2 was trained with it
    "gelu_tanh": with_activation(gelu_tanh),
    "silu": with_activation(F.silu),
    "swiglu": SwiGLUFeedForward,
    "geglu_tanh": GeGLUFeedForward,  # the gate through GELU's tanh approximation: T5 v1.1, Flan-T5
}


def is_gated(activation: str) -> bool:
    """Whether `model.activation`'s network is gated (SwiGLU and GeGLU, which share SwiGLU's layout): one fused
    gate | value matrix, `gate_value`, where the two-layer network has `linear1`. A weight conversion asks it to know
    which of the two it fills."""
    build = FEEDFORWARDS[activation]
    return isinstance(build, type) and issubclass(build, SwiGLUFeedForward)


def at_real_positions(ffn: nn.Module, x: Tensor, real: Tensor | None) -> Tensor:
    """The position-wise FFN applied only where there is a token: x (B, T, D), real (B, T) bool (None: every
    position) -> (B, T, D), zero at the padding. Exact at the real positions, since the FFN reads each position
    alone; it skips the padding's share of the layer's largest matrix products (a quarter of a batch of mixed
    lengths is often padding). On the CPU only: elsewhere the data-dependent shape costs a device sync that is
    dearer than the padded rows. Nor in a stacked model (seeds trained together, src/model/stacked.py): under vmap
    a shape may not depend on the data. Nor under torch.compile (compile=true), where a shape that depends on the
    data splits the compiled graph in two at every layer."""
    if real is None or x.device.type != "cpu" or getattr(ffn, "per_member", False) or torch.compiler.is_compiling():
        return ffn(x)
    if bool(real.all()):  # no padding in the batch
        return ffn(x)
    inner = ffn(x[real])  # (N_real, D): under autocast possibly in a lower precision than x
    out = inner.new_zeros(x.shape)
    out[real] = inner
    return out


def build_feedforward(activation: str, d_model: int, d_ff: int, dropout: float, bias: bool = True) -> nn.Module:
    """The one place that reads `model.activation`; bias: `model.ffn_bias`."""
    return FEEDFORWARDS[activation](d_model, d_ff, dropout, bias)
