"""Model size: parameter count and an estimate of FLOPs per token, for the run's start-up summary."""

from __future__ import annotations

from torch import nn

from .config import TransformerConfig
from .feedforward import build_feedforward


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Unique parameters (a tied embedding/output matrix counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def ffn_weight_entries(cfg: TransformerConfig) -> int:
    """The entries of one layer's feed-forward weight matrices (its FLOPs per position are twice this): 2 D F, SwiGLU
    3 D F; 0 in an attention-only model (model.ffn=false), whose layers have none."""
    if not cfg.ffn:
        return 0
    ffn = build_feedforward(cfg.activation, cfg.d_model, cfg.d_ff, 0.0)
    return sum(p.numel() for p in ffn.parameters() if p.dim() == 2)


def flops_per_token(cfg: TransformerConfig, src_len: int, tgt_len: int) -> float:
    """Forward-pass FLOPs per *output* token (a multiply-add counts 2; norms, softmax and biases are
    ignored as small). Training costs about 3x this (the backward pass is about twice the forward).

    Per-sequence costs, with D = d_model, G = KVH * Dh the width of K (and of V: D in multi-head attention, less
    with grouped-query attention, model.kv_heads), F = d_ff (SwiGLU has three F-sized matrices), S/T lengths:
      self-attention over n tokens: projections 2 * n * (2D^2 + 2DG) (Q and W^O: D x D each; K and V: D x G
      each), scores and weighted sum 2 * 2 * n^2 * D (every query head scores every key: grouping saves no
      attention FLOPs, only the K/V projections and the cache's memory)
      cross-attention: 2 * T * 2D^2 (Q, out) + 2 * S * 2DG (K, V of the memory) + 2 * 2 * T * S * D
      feed-forward over n tokens: 2 * n * (its weight-matrix entries), none in an attention-only model
      (model.ffn=false); output projection 2 * T * D * V
    """
    d = cfg.d_model
    g = cfg.kv_head_count * cfg.head_dim  # the columns of K, and of V
    ffn_weights = ffn_weight_entries(cfg)

    def self_attention(n: int) -> float:
        return 2 * n * (2 * d * d + 2 * d * g) + 4 * n * n * d

    def ffn(n: int) -> float:
        return 2 * n * ffn_weights

    if cfg.arch == "encoder_only":
        encoder = cfg.enc_layers * (self_attention(src_len) + ffn(src_len))
        return encoder / src_len
    decoder = cfg.dec_layers * (self_attention(tgt_len) + ffn(tgt_len))
    total = decoder + 2 * tgt_len * d * cfg.tgt_vocab_size
    if cfg.arch == "encoder_decoder":
        cross = 2 * tgt_len * 2 * d * d + 2 * src_len * 2 * d * g + 4 * tgt_len * src_len * d
        total += cfg.dec_layers * cross + cfg.enc_layers * (self_attention(src_len) + ffn(src_len))
    return total / tgt_len
