"""Model size: parameter count and an estimate of FLOPs per token, for the run's start-up summary."""

from __future__ import annotations

from torch import nn

from .config import TransformerConfig
from .feedforward import build_feedforward


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Unique parameters (a tied embedding/output matrix counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_token(cfg: TransformerConfig, src_len: int, tgt_len: int) -> float:
    """Forward-pass FLOPs per *output* token (a multiply-add counts 2; norms, softmax and biases are
    ignored as small). Training costs about 3x this (the backward pass is about twice the forward).

    Per-sequence costs, with D = d_model, F = d_ff (SwiGLU has three F-sized matrices), S/T lengths:
      self-attention over n tokens: projections 2 * n * 4D^2, scores and weighted sum 2 * 2 * n^2 * D
      cross-attention: 2 * T * 2D^2 (Q, out) + 2 * S * 2D^2 (K, V of the memory) + 2 * 2 * T * S * D
      feed-forward over n tokens: 2 * n * (its weight-matrix entries); output projection 2 * T * D * V
    """
    d = cfg.d_model
    ffn_weights = sum(
        p.numel() for p in build_feedforward(cfg.activation, d, cfg.d_ff, 0.0).parameters() if p.dim() == 2
    )

    def self_attention(n: int) -> float:
        return 2 * n * 4 * d * d + 4 * n * n * d

    def ffn(n: int) -> float:
        return 2 * n * ffn_weights

    if cfg.arch == "encoder_only":
        encoder = cfg.enc_layers * (self_attention(src_len) + ffn(src_len))
        return encoder / src_len
    decoder = cfg.dec_layers * (self_attention(tgt_len) + ffn(tgt_len))
    total = decoder + 2 * tgt_len * d * cfg.tgt_vocab_size
    if cfg.arch == "encoder_decoder":
        cross = 2 * tgt_len * 2 * d * d + 2 * src_len * 2 * d * d + 4 * tgt_len * src_len * d
        total += cfg.dec_layers * cross + cfg.enc_layers * (self_attention(src_len) + ffn(src_len))
    return total / tgt_len
