"""Marian MT (Junczys-Dowmunt et al. 2018; the OPUS-MT models, Tiedemann and Thottingal 2020) as our
encoder-decoder transformer.

Marian is the paper's post-LN transformer with fixed sinusoidal positions laid out in two halves (all sines, then
all cosines: `sinusoidal_halves`), embeddings scaled by sqrt(d_model) (`scale_embedding` in config.json), one
embedding shared by source, target and output, no final norm, and a `final_logits_bias` added to the logits.
The decoder starts from the pad token. Q, K and V are separate Linear layers: fused here into qkv_proj (self)
and q_proj + kv_proj (cross). The sinusoidal tables some checkpoints store are checked against ours, not loaded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from src.model import ConfigError, TransformerConfig
from src.model.names import DECODER, ENCODER, STACKS
from src.model.positional import SinusoidalPositions

from .convert import Weights, fuse

ACTIVATIONS = {"swish": "silu", "silu": "silu", "gelu": "gelu", "gelu_new": "gelu_tanh", "relu": "relu"}


def model_config(hf: Any, num_classes: int = 0) -> TransformerConfig:
    """Our TransformerConfig from a transformers MarianConfig."""
    if hf.activation_function not in ACTIVATIONS:
        raise ConfigError(f"Marian activation {hf.activation_function!r} is not supported: one of {list(ACTIVATIONS)}")
    if hf.encoder_attention_heads != hf.decoder_attention_heads or hf.encoder_ffn_dim != hf.decoder_ffn_dim:
        raise ConfigError("Marian with different encoder and decoder heads or ffn sizes is not supported")
    decoder_vocab = getattr(hf, "decoder_vocab_size", None) or hf.vocab_size
    if not getattr(hf, "share_encoder_decoder_embeddings", True) or decoder_vocab != hf.vocab_size:
        raise ConfigError("Marian with separate source and target vocabularies is not supported yet")
    return TransformerConfig(
        arch="encoder_decoder",
        d_model=hf.d_model,
        heads=hf.encoder_attention_heads,
        enc_layers=hf.encoder_layers,
        dec_layers=hf.decoder_layers,
        d_ff=hf.encoder_ffn_dim,
        dropout=hf.dropout,
        attention_dropout=hf.attention_dropout,
        ffn_dropout=hf.activation_dropout,
        max_len=hf.max_position_embeddings,
        pos_encoding="sinusoidal_halves",
        norm_position="post",
        norm_type="layernorm",
        norm_eps=1e-5,  # transformers' Marian uses nn.LayerNorm's default
        activation=ACTIVATIONS[hf.activation_function],
        tie_embeddings=True,
        scale_embeddings=bool(hf.scale_embedding),
        share_src_tgt_embeddings=True,
        final_norm=False,
        output_bias=True,
        src_vocab_size=hf.vocab_size,
        tgt_vocab_size=decoder_vocab,
        pad_id=hf.pad_token_id,
        bos_id=hf.decoder_start_token_id,  # the pad token in every OPUS-MT model
        eos_id=hf.eos_token_id,
    )


# Per layer, ours <- Marian's: the residual blocks' norms and the feed-forward network (the attentions: _attention).
ENCODER_LAYER = {
    "attn_block.norm": "self_attn_layer_norm",
    "ffn.linear1": "fc1",
    "ffn.linear2": "fc2",
    "ffn_block.norm": "final_layer_norm",
}
DECODER_LAYER = {
    "self_block.norm": "self_attn_layer_norm",
    "cross_block.norm": "encoder_attn_layer_norm",
    "ffn.linear1": "fc1",
    "ffn.linear2": "fc2",
    "ffn_block.norm": "final_layer_norm",
}

# Per layer, our attention <- Marian's, and whether its Q, K, V fuse into one matrix (self-attention) or Q stays apart
# from a fused K|V (cross-attention, whose keys and values come from the encoder).
ENCODER_ATTENTION = {"self_attn": ("self_attn", True)}
DECODER_ATTENTION = {"self_attn": ("self_attn", True), "cross_attn": ("encoder_attn", False)}


def _attention(weights: Weights, hf: str, d: int, fused_qkv: bool) -> dict[str, Tensor]:
    """One attention's q/k/v/out projections -> ours: self-attention fuses Q|K|V, cross-attention K|V."""
    w = {p: weights.take(f"{hf}.{p}_proj.weight", (d, d)) for p in ("q", "k", "v", "out")}
    b = {p: weights.take(f"{hf}.{p}_proj.bias", (d,)) for p in ("q", "k", "v", "out")}
    ours = {"out_proj.weight": w["out"], "out_proj.bias": b["out"]}
    if fused_qkv:
        ours |= {"qkv_proj.weight": fuse(w["q"], w["k"], w["v"]), "qkv_proj.bias": fuse(b["q"], b["k"], b["v"])}
    else:
        ours |= {"q_proj.weight": w["q"], "q_proj.bias": b["q"]}
        ours |= {"kv_proj.weight": fuse(w["k"], w["v"]), "kv_proj.bias": fuse(b["k"], b["v"])}
    return ours


def _check_positions(weights: Weights, name: str, cfg: TransformerConfig) -> None:
    """A stored sinusoidal table must be ours (sines, then cosines): then it is redundant and dropped."""
    if weights.has(name):
        stored = weights.take(name, (cfg.max_len, cfg.d_model))
        table = SinusoidalPositions(cfg.d_model, cfg.max_len, interleaved=False).table
        if not stored.is_meta and not torch.allclose(stored.float(), table, atol=1e-4):  # meta: shapes only
            raise ConfigError(f"{weights.source}: {name!r} is not the sinusoidal table Marian uses")


def convert(weights: Weights, cfg: TransformerConfig) -> dict[str, Tensor]:
    """MarianMTModel's or MarianModel's weights -> our EncoderDecoder's state dict."""
    d, ff, vocab = cfg.d_model, cfg.d_ff, cfg.tgt_vocab_size
    shared = weights.take("shared.weight", (vocab, d))
    ours: dict[str, Tensor] = {"src_embed.token.weight": shared, "out_proj.weight": shared}
    for copy in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        weights.take_copy_of(copy, shared)  # tied to the shared embedding; absent from most files
    ours["out_proj.bias"] = (
        weights.take("final_logits_bias", (1, vocab))[0] if weights.has("final_logits_bias") else torch.zeros(vocab)
    )
    for side in (ENCODER, DECODER):  # our stacks, which Marian's modules are named as
        _check_positions(weights, f"{side}.embed_positions.weight", cfg)
    shapes = {"fc1": ((ff, d), (ff,)), "fc2": ((d, ff), (d,))}  # the other tensors here are LayerNorms: (d,), (d,)
    sides = ((ENCODER, ENCODER_LAYER, ENCODER_ATTENTION), (DECODER, DECODER_LAYER, DECODER_ATTENTION))
    for side, names, attentions in sides:
        for i in range(STACKS[side].layers(cfg)):
            prefix = f"{side}.layers.{i}."  # the same in both models
            for ours_name, theirs in names.items():
                weight_shape, bias_shape = shapes.get(theirs, ((d,), (d,)))
                ours[f"{prefix}{ours_name}.weight"] = weights.take(f"{prefix}{theirs}.weight", weight_shape)
                ours[f"{prefix}{ours_name}.bias"] = weights.take(f"{prefix}{theirs}.bias", bias_shape)
            for ours_site, (theirs, fused_qkv) in attentions.items():
                for name, tensor in _attention(weights, prefix + theirs, d, fused_qkv).items():
                    ours[f"{prefix}{ours_site}.{name}"] = tensor
    weights.finish()
    return ours
