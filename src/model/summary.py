"""Model size: parameter count and an estimate of FLOPs per token, for the run's start-up summary."""

from __future__ import annotations

import torch
from torch import nn

from .config import ARCHITECTURES, TransformerConfig
from .feedforward import build_feedforward


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Unique parameters (a tied embedding/output matrix counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def ffn_weight_entries(cfg: TransformerConfig) -> int:
    """The entries of one layer's feed-forward weight matrices (its FLOPs per position are twice this): 2 D F, gated
    (SwiGLU, GeGLU) 3 D F; 0 in an attention-only model (model.ffn=false), whose layers have none."""
    if not cfg.ffn:
        return 0
    with torch.device("meta"):  # shapes only: no memory, no initialisation (d_ff can be large)
        ffn = build_feedforward(cfg.activation, cfg.d_model, cfg.d_ff, 0.0)
    return sum(p.numel() for p in ffn.parameters() if p.dim() == 2)


def flops_per_token(cfg: TransformerConfig, src_len: int, tgt_len: int) -> float:
    """Forward-pass FLOPs per *output* token (a multiply-add counts 2; norms, softmax and biases are
    ignored as small). Training costs about 3x this (the backward pass is about twice the forward).

    Per-sequence costs, with D = d_model, A = H * Dh the width of the query heads side by side (W^Q's outputs, W^O's
    inputs: D unless model.head_dim sets Dh apart from D/H), G = KVH * Dh the width of K (and of V: A in multi-head
    attention, less with grouped-query attention, model.kv_heads), F = d_ff (SwiGLU, GeGLU: three F-sized matrices), S/T
    lengths:
      self-attention over n tokens: projections 2 * n * (2DA + 2DG) (Q: D x A, W^O: A x D; K and V: D x G each),
      scores and weighted sum 2 * 2 * n^2 * A (each of the H query heads: n^2 Dh each; grouping saves no
      attention FLOPs, only the K/V projections and the cache's memory)
      cross-attention: 2 * T * 2DA (Q, out) + 2 * S * 2DG (K, V of the memory) + 2 * 2 * T * S * A
      feed-forward over n tokens: 2 * n * (its weight-matrix entries), none in an attention-only model
      (model.ffn=false); output projection 2 * T * D * V
    Neither QK-norm (a norm), the biases (model.attention_bias, model.ffn_bias) nor parallel layers (the same
    products, side by side) change the count.
    """
    d = cfg.d_model
    a = cfg.q_dim  # H * Dh: the query heads side by side
    g = cfg.kv_dim  # KVH * Dh: the columns of K, and of V
    ffn_weights = ffn_weight_entries(cfg)

    def self_attention(n: int) -> float:
        return 2 * n * (2 * d * a + 2 * d * g) + 4 * n * n * a

    def ffn(n: int) -> float:
        return 2 * n * ffn_weights

    arch = ARCHITECTURES[cfg.arch]
    if not arch.has_decoder:  # a classifier: per source token, and its head is negligible
        encoder = cfg.enc_layers * (self_attention(src_len) + ffn(src_len))
        return encoder / src_len
    decoder = cfg.dec_layers * (self_attention(tgt_len) + ffn(tgt_len))
    total = decoder + 2 * tgt_len * d * cfg.tgt_vocab_size
    if arch.has_cross_attention:
        cross = 2 * tgt_len * 2 * d * a + 2 * src_len * 2 * d * g + 4 * tgt_len * src_len * a
        total += cfg.dec_layers * cross + cfg.enc_layers * (self_attention(src_len) + ffn(src_len))
    return total / tgt_len
