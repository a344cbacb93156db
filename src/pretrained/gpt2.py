"""GPT-2 (Radford et al. 2019) as our decoder-only transformer.

GPT-2 is a pre-LN decoder with learned positions, the tanh GELU, LayerNorm eps 1e-5, a final LayerNorm (ln_f),
tied input and output embeddings and no scaling of the embeddings. Its projections are `Conv1D` layers whose
weights are stored (in, out): each is transposed for nn.Linear. Q, K and V are one fused `c_attn`, in our
qkv_proj's order. It has no pad token: we pad with <|endoftext|>, its bos and eos (see TransformerConfig).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from src.model import ConfigError, TransformerConfig

from .convert import Weights

ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def model_config(hf: Any, num_classes: int = 0) -> TransformerConfig:
    """Our TransformerConfig from a transformers GPT2Config."""
    if hf.activation_function not in ACTIVATIONS:
        raise ConfigError(f"GPT-2 activation {hf.activation_function!r} is not supported: one of {list(ACTIVATIONS)}")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if getattr(hf, flag, False):
            raise ConfigError(f"GPT-2 with {flag}=true is not supported (it changes the attention scores)")
    if not getattr(hf, "scale_attn_weights", True):
        raise ConfigError("GPT-2 with scale_attn_weights=false is not supported (scores without 1/sqrt(d_head))")
    eos = hf.eos_token_id
    return TransformerConfig(
        arch="decoder_only",
        d_model=hf.n_embd,
        heads=hf.n_head,
        enc_layers=0,
        dec_layers=hf.n_layer,
        d_ff=hf.n_inner or 4 * hf.n_embd,
        dropout=hf.resid_pdrop,
        attention_dropout=hf.attn_pdrop,
        ffn_dropout=0.0,  # GPT-2's MLP drops only its output
        max_len=hf.n_positions,
        pos_encoding="learned",
        norm_position="pre",
        norm_type="layernorm",
        norm_eps=hf.layer_norm_epsilon,
        activation=ACTIVATIONS[hf.activation_function],
        tie_embeddings=True,
        scale_embeddings=False,
        tgt_vocab_size=hf.vocab_size,
        pad_id=eos,  # no pad token: <|endoftext|> pads (decoder padding is the trailing run, masks.py)
        bos_id=hf.bos_token_id,
        eos_id=eos,
    )


def convert(weights: Weights, cfg: TransformerConfig) -> dict[str, Tensor]:
    """GPT2LMHeadModel's or GPT2Model's weights -> our DecoderOnly's state dict."""
    d, ff, vocab = cfg.d_model, cfg.d_ff, cfg.tgt_vocab_size
    # Buffers older checkpoints store: the causal mask and the value that filled masked scores.
    weights.set_aside(r"h\.\d+\.attn\.(bias|masked_bias)")
    ours: dict[str, Tensor] = {
        "tgt_embed.token.weight": weights.take("wte.weight", (vocab, d)),
        "positional.embedding.weight": weights.take("wpe.weight", (cfg.max_len, d)),
        "decoder.final_norm.weight": weights.take("ln_f.weight", (d,)),
        "decoder.final_norm.bias": weights.take("ln_f.bias", (d,)),
    }
    weights.take_copy_of("lm_head.weight", ours["tgt_embed.token.weight"])  # tied: absent from most files
    ours["out_proj.weight"] = ours["tgt_embed.token.weight"]
    for i in range(cfg.dec_layers):
        hf, layer = f"h.{i}.", f"decoder.layers.{i}."
        names = {  # ours <- theirs, (shape stored by Conv1D: (in, out)), transposed when it is a matrix
            "self_block.norm.weight": ("ln_1.weight", (d,)),
            "self_block.norm.bias": ("ln_1.bias", (d,)),
            "self_attn.qkv_proj.weight": ("attn.c_attn.weight", (d, 3 * d)),
            "self_attn.qkv_proj.bias": ("attn.c_attn.bias", (3 * d,)),
            "self_attn.out_proj.weight": ("attn.c_proj.weight", (d, d)),
            "self_attn.out_proj.bias": ("attn.c_proj.bias", (d,)),
            "ffn_block.norm.weight": ("ln_2.weight", (d,)),
            "ffn_block.norm.bias": ("ln_2.bias", (d,)),
            "ffn.linear1.weight": ("mlp.c_fc.weight", (d, ff)),
            "ffn.linear1.bias": ("mlp.c_fc.bias", (ff,)),
            "ffn.linear2.weight": ("mlp.c_proj.weight", (ff, d)),
            "ffn.linear2.bias": ("mlp.c_proj.bias", (d,)),
        }
        for ours_name, (theirs, shape) in names.items():
            tensor = weights.take(hf + theirs, shape)
            ours[layer + ours_name] = tensor.t() if tensor.dim() == 2 else tensor  # Conv1D (in, out) -> (out, in)
    weights.finish()
    return ours
