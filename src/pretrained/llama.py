"""Llama (Touvron et al. 2023; Llama 2 and 3; TinyLlama and SmolLM share the architecture) as our decoder-only
transformer.

Llama is a pre-LN decoder with RMSNorm (no bias), SwiGLU feed-forward networks (gate, up and down projections), rotary
positions (the rotate-half pairing, as ours) with its base `rope_theta` and, in Llama 3.1 and later, the llama3
frequency scaling, grouped-query attention (num_key_value_heads), no biases in any projection (attention_bias and
mlp_bias false, unless a variant sets them), no scaling of the embeddings and no absolute positions. TinyLlama has
untied embeddings, SmolLM tied ones. Its projections are nn.Linear, stored (out, in) as ours: Q, K and V are fused
into our qkv_proj (Q | K | V rows), the gate and up projections into our SwiGLU's gate_value (gate | value rows).

Qwen2 and Mistral share these weight names (qwen2.py, mistral.py): their `model_config` differs, their conversion is
this one.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from src.model import ConfigError, TransformerConfig
from src.model.attention import ATTENTION_BIASES

from .convert import Weights, fuse

# transformers' rope_type -> our model.rope_scaling (its settings renamed: positional.ROPE_SCALINGS)
ROPE_SCALINGS = {"linear": ("linear", ("factor",)), "llama3": ("llama3", ("factor", "low_freq_factor",
                                                                          "high_freq_factor"))}  # fmt: skip


def rope_settings(hf: Any, family: str) -> tuple[float, dict]:
    """(rope_theta, our rope_scaling) of a transformers config. transformers 5 gives both in one dict,
    `rope_parameters`; transformers 4 (pyproject allows >= 4.45) has no `rope_parameters` but two fields,
    `rope_theta` and `rope_scaling` (None when unscaled), read in its place. A scaling we have not built (dynamic
    NTK, YaRN, LongRoPE) is refused by name."""
    parameters = getattr(hf, "rope_parameters", None)
    if parameters is None:  # transformers 4: the scaling's own dict, the base beside it
        parameters = getattr(hf, "rope_scaling", None) or {}
    parameters = dict(parameters)
    theta = float(parameters.get("rope_theta", getattr(hf, "rope_theta", 10000.0)))
    kind = parameters.get("rope_type", parameters.get("type", "default"))
    if kind == "default":
        return theta, {}
    if kind not in ROPE_SCALINGS:
        raise ConfigError(
            f"{family} with RoPE scaling {kind!r} is not supported: supported are default, {', '.join(ROPE_SCALINGS)}"
        )
    # transformers' Llama-shaped models read partial_rotary_factor only inside a scaling's frequencies, and then
    # rotate whole heads with too few of them: the forward fails. (Without a scaling they ignore it, as we do.)
    partial = parameters.get("partial_rotary_factor", getattr(hf, "partial_rotary_factor", None))
    if partial is not None and float(partial) != 1.0:
        raise ConfigError(
            f"{family} with partial_rotary_factor={partial} and RoPE scaling {kind!r} is not supported: transformers' "
            f"own {family} cannot run it (its scaled frequencies cover part of each head, its rotation all of it)"
        )
    ours, keys = ROPE_SCALINGS[kind]
    scaling = {"type": ours, **{key: float(parameters[key]) for key in keys}}
    if ours == "llama3":
        scaling["original_max_len"] = int(parameters["original_max_position_embeddings"])
    return theta, scaling


def first_id(value: int | list[int] | None) -> int | None:
    """A token id a config may give as a list (Llama 3.1 instruct's several eos ids): the first, which our
    generation stops at."""
    return value[0] if isinstance(value, list) else value


# Our model settings -> the config.json fields they are read from: a config we cannot build (num_key_value_heads not
# dividing num_attention_heads) is refused in the file's own names (src/pretrained/__init__.py unloadable_line)
CONFIG_FIELDS = {
    "d_model": "hidden_size",
    "heads": "num_attention_heads",
    "kv_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "dec_layers": "num_hidden_layers",
    "d_ff": "intermediate_size",
    "attention_dropout": "attention_dropout",
    "max_len": "max_position_embeddings",
    "rope_theta": "rope_theta",
    "rope_scaling": "rope_scaling",
    "norm_eps": "rms_norm_eps",
    "tgt_vocab_size": "vocab_size",
}


def decoder_config(hf: Any, family: str, **family_settings) -> TransformerConfig:
    """Our TransformerConfig of a Llama-shaped transformers config (Llama, Qwen2, Mistral): what they share, with
    `family_settings` overriding (Qwen2's biases on Q, K and V; Mistral's sliding window)."""
    if hf.hidden_act != "silu":
        raise ConfigError(f"{family} with hidden_act={hf.hidden_act!r} is not supported: its gate is SiLU (SwiGLU)")
    if (getattr(hf, "pretraining_tp", 1) or 1) != 1:
        raise ConfigError(f"{family} with pretraining_tp={hf.pretraining_tp} is not supported: re-save it with 1")
    theta, scaling = rope_settings(hf, family)
    heads = hf.num_attention_heads
    kv_heads = getattr(hf, "num_key_value_heads", None) or heads
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // heads
    eos = first_id(hf.eos_token_id)
    pad = hf.pad_token_id if hf.pad_token_id is not None else eos  # most have no pad token: pad with eos, as GPT-2
    settings = dict(
        arch="decoder_only",
        d_model=hf.hidden_size,
        heads=heads,
        kv_heads=kv_heads if kv_heads != heads else None,
        head_dim=head_dim if head_dim != hf.hidden_size // heads else None,
        enc_layers=0,
        dec_layers=hf.num_hidden_layers,
        d_ff=hf.intermediate_size,
        dropout=0.0,  # no dropout on the embeddings or the sublayers' outputs
        attention_dropout=float(getattr(hf, "attention_dropout", 0.0) or 0.0),
        ffn_dropout=0.0,
        max_len=hf.max_position_embeddings,
        pos_encoding="rope",
        rope_theta=theta,
        rope_scaling=scaling,
        norm_position="pre",
        norm_type="rmsnorm",
        norm_eps=hf.rms_norm_eps,
        activation="swiglu",
        attention_bias="all" if getattr(hf, "attention_bias", False) else "none",
        ffn_bias=bool(getattr(hf, "mlp_bias", False)),
        tie_embeddings=bool(hf.tie_word_embeddings),
        scale_embeddings=False,
        tgt_vocab_size=hf.vocab_size,
        pad_id=pad,
        bos_id=first_id(hf.bos_token_id) if hf.bos_token_id is not None else eos,
        eos_id=eos,
        # config.json may list several eos ids (Llama 3.1 instruct: <|end_of_text|>, <|eom_id|>, <|eot_id|>)
        stop_ids=list(hf.eos_token_id[1:]) if isinstance(hf.eos_token_id, list) else [],
        bos_is_output=True,  # trained on documents joined by <s>: transformers' generate may pick it
    )
    settings.update(family_settings)
    return TransformerConfig(**settings)


def model_config(hf: Any, num_classes: int = 0) -> TransformerConfig:
    """Our TransformerConfig from a transformers LlamaConfig."""
    return decoder_config(hf, "Llama")


def convert(weights: Weights, cfg: TransformerConfig) -> dict[str, Tensor]:
    """LlamaForCausalLM's (or LlamaModel's, Qwen2's, Mistral's) weights -> our DecoderOnly's state dict."""
    d, ff, vocab = cfg.d_model, cfg.d_ff, cfg.tgt_vocab_size
    q_dim, kv_dim = cfg.q_dim, cfg.kv_dim
    biases = ATTENTION_BIASES[cfg.attention_bias]  # which projections have one
    weights.set_aside(r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq|rotary_emb\.inv_freq")  # buffers, recomputed
    ours: dict[str, Tensor] = {
        "tgt_embed.token.weight": weights.take("embed_tokens.weight", (vocab, d)),
        "decoder.final_norm.weight": weights.take("norm.weight", (d,)),
    }
    if cfg.tie_embeddings:
        weights.take_copy_of("lm_head.weight", ours["tgt_embed.token.weight"])  # tied: absent from most files
    else:
        ours["out_proj.weight"] = weights.take("lm_head.weight", (vocab, d))
    for i in range(cfg.dec_layers):
        hf, layer = f"layers.{i}.", f"decoder.layers.{i}."

        def take(name: str, shape: tuple[int, ...], hf: str = hf) -> Tensor:
            return weights.take(hf + name, shape)

        ours[layer + "self_block.norm.weight"] = take("input_layernorm.weight", (d,))
        ours[layer + "ffn_block.norm.weight"] = take("post_attention_layernorm.weight", (d,))
        ours[layer + "self_attn.qkv_proj.weight"] = fuse(  # (H Dh + 2 KVH Dh, D): Q | K | V
            take("self_attn.q_proj.weight", (q_dim, d)),
            take("self_attn.k_proj.weight", (kv_dim, d)),
            take("self_attn.v_proj.weight", (kv_dim, d)),
        )
        ours[layer + "self_attn.out_proj.weight"] = take("self_attn.o_proj.weight", (d, q_dim))
        if biases.qkv:  # Qwen2's Q, K, V biases; a Llama with attention_bias=true has O's too
            ours[layer + "self_attn.qkv_proj.bias"] = fuse(
                take("self_attn.q_proj.bias", (q_dim,)),
                take("self_attn.k_proj.bias", (kv_dim,)),
                take("self_attn.v_proj.bias", (kv_dim,)),
            )
        if biases.out:
            ours[layer + "self_attn.out_proj.bias"] = take("self_attn.o_proj.bias", (d,))
        ours[layer + "ffn.gate_value.weight"] = fuse(  # (2F, D): SiLU's gate | the value it multiplies
            take("mlp.gate_proj.weight", (ff, d)), take("mlp.up_proj.weight", (ff, d))
        )
        ours[layer + "ffn.linear2.weight"] = take("mlp.down_proj.weight", (d, ff))
        if cfg.ffn_bias:
            gate, up = take("mlp.gate_proj.bias", (ff,)), take("mlp.up_proj.bias", (ff,))
            ours[layer + "ffn.gate_value.bias"] = fuse(gate, up)
            ours[layer + "ffn.linear2.bias"] = take("mlp.down_proj.bias", (d,))
    weights.finish()
    return ours
