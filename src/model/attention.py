"""Scaled dot-product attention and multi-head attention.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + bias, masked) V          (Vaswani et al. 2017, eq. 1)

Two paths compute the same thing:
- `explicit_attention` writes every step out and can return the attention weights (for the maps);
- `fused_attention` calls `torch.nn.functional.scaled_dot_product_attention`, which is faster and
  lighter on memory but does not expose the weights.
`attend` picks the fused path whenever the weights are not requested.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .positional import PositionalScheme


def explicit_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """q (B, H, Tq, Dh), k and v (B, H, Tk, Dh); mask True = may attend, broadcast to (B, H, Tq, Tk).

    Returns the output (B, H, Tq, Dh) and the attention weights (B, H, Tq, Tk) before dropout.
    A query whose keys are all masked gets zero weights and a zero output (not NaN).
    """
    scale = q.size(-1) ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    if mask is not None:
        # The dtype's most negative finite value, not -inf: a fully masked row then softmaxes to a
        # harmless uniform row (zeroed just below) instead of NaN, in the forward and backward pass.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    return torch.matmul(dropped, v), weights  # (B, H, Tq, Dh), (B, H, Tq, Tk)


def fused_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """The same computation through PyTorch's fused kernel (fully masked rows also give zeros)."""
    attn_mask = mask
    if bias is not None:
        attn_mask = bias.to(q.dtype) if mask is None else bias.to(q.dtype).masked_fill(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)


def attend(q, k, v, mask=None, bias=None, dropout_p=0.0, need_weights=False, scale=None):
    """Use the fused kernel unless the caller wants to see the weights."""
    if need_weights:
        return explicit_attention(q, k, v, mask, bias, dropout_p, scale)
    return fused_attention(q, k, v, mask, bias, dropout_p, scale), None


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, D) -> (B, H, T, D/H): each head works in its own D/H-dimensional subspace."""
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, Dh) -> (B, T, H*Dh): concatenate the heads again."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W^O,  head_h = Attention(Q W^Q_h, K W^K_h, V W^V_h).

    Self-attention projects Q, K and V with one fused (D -> 3D) matrix; cross-attention projects the
    decoder queries with W^Q and the encoder memory with one fused (D -> 2D) matrix for K and V.
    Rotary and ALiBi positions act in self-attention only.

    Head gates (Michel et al. 2019, "Are Sixteen Heads Really Better than One?", eq. 2): with `head_gate` set to a
    (H,) tensor g, head h's output is scaled by g_h before W^O (1 = kept, 0 = ablated), and with `head_fill` set
    to (H, Dh) an ablated head outputs that instead (mean ablation: its mean output over reference data):
        head_h' = g_h head_h + (1 - g_h) fill_h
    A float gate that requires grad makes d loss / d g_h the head's importance. A (B, H) gate and a (B, H, Dh)
    fill give every batch row its own mask: several ablations scored in one batch (src/analysis). Neither is a
    parameter or in the state dict; unset (None, the default), the forward pass is unchanged. See head_mask.py.
    """

    def __init__(self, d_model: int, heads: int, dropout: float, is_self_attention: bool):
        super().__init__()
        if d_model % heads != 0:
            raise ValueError(f"heads={heads} must divide d_model={d_model}")
        self.heads = heads
        self.d_model = d_model
        self.dropout = dropout
        self.is_self_attention = is_self_attention
        if is_self_attention:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        else:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.head_gate: Tensor | None = None  # (H,) or (B, H): per-head scale before W^O; None = every head as it is
        self.head_fill: Tensor | None = None  # (H, Dh) or (B, H, Dh): what an ablated head outputs; None = zeros
        # Set by StackedModel (seeds trained together): under vmap PyTorch's fused CPU kernel has no batched form
        # and runs member by member, so the explicit computation (batched matmuls and softmax) is used instead.
        self.per_member = False

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        positional: PositionalScheme | None = None,
        cache: dict | None = None,
        start: int = 0,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, Tq, D) queries; memory (B, Tk, D) for cross-attention.

        cache: a dict kept by the caller across decoding steps. Self-attention appends this step's
        keys/values to it; cross-attention projects the memory once and reuses it.
        start: absolute position of x's first token (for rotary/ALiBi and cached decoding).
        Returns the output (B, Tq, D) and, if need_weights, the weights (B, H, Tq, Tk).
        """
        if self.is_self_attention:
            q, k, v = self.qkv_proj(x).split(self.d_model, dim=-1)  # 3 x (B, T, D)
            q, k, v = (split_heads(t, self.heads) for t in (q, k, v))  # 3 x (B, H, T, Dh)
            if positional is not None:
                q, k = positional.rotate(q, k, start)
            if cache is not None:
                if "k" in cache:
                    k = torch.cat([cache["k"], k], dim=2)  # (B, H, start + T, Dh)
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        else:
            q = split_heads(self.q_proj(x), self.heads)  # (B, H, Tq, Dh)
            if cache is not None and "k" in cache:
                k, v = cache["k"], cache["v"]
            else:
                k, v = self.kv_proj(memory).split(self.d_model, dim=-1)  # 2 x (B, Tk, D)
                k, v = split_heads(k, self.heads), split_heads(v, self.heads)  # 2 x (B, H, Tk, Dh)
                if cache is not None:
                    cache["k"], cache["v"] = k, v

        bias = None
        if self.is_self_attention and positional is not None:
            bias = positional.attention_bias(q.size(2), k.size(2), start)  # (H, Tq, Tk) or None
        dropout_p = self.dropout if self.training else 0.0
        out, weights = attend(q, k, v, mask, bias, dropout_p, need_weights or self.per_member)  # (B, H, Tq, Dh)
        weights = weights if need_weights else None
        if self.head_gate is not None:
            out = self.gate_heads(out)
        return self.out_proj(merge_heads(out)), weights  # (B, Tq, D)

    def gate_heads(self, out: Tensor) -> Tensor:
        """out (B, H, Tq, Dh) -> each head scaled by its gate, the rest filled from `head_fill` (see the class)."""
        assert self.head_gate is not None
        rows = self.head_gate.size(0) if self.head_gate.dim() == 2 else 1  # one mask per batch row, or one for all
        # .to(out): the gates follow the model's device and dtype (they are not buffers, so .to() never moved them)
        gate = self.head_gate.to(out).view(rows, self.heads, 1, 1)  # (1|B, H, 1, 1)
        if self.head_fill is None:
            return out * gate
        fill_rows = self.head_fill.size(0) if self.head_fill.dim() == 3 else 1  # one fill for all rows, or one each
        fill = self.head_fill.to(out).view(fill_rows, self.heads, 1, -1)  # (1|B, H, 1, Dh)
        return out * gate + (1 - gate) * fill
