"""T5 (Raffel et al. 2020; T5 v1.1 and Flan-T5, Chung et al. 2022, share the architecture) as our encoder-decoder
transformer.

T5 is a pre-LN encoder-decoder with RMSNorm (T5LayerNorm: no bias, no centring, eps 1e-6) before every sublayer and a
final norm at the end of each stack, no biases in any projection, and no position vectors: the self-attention of each
stack adds a learned scalar per head and bucket of the query-key distance (our `t5_relative` positions, one table per
stack, stored by T5 in its first block's self-attention). One `shared` embedding reads the source and the target,
unscaled. The decoder starts from the pad token (decoder_start_token_id). Two styles, both loaded:

- the original T5 (t5-small ... t5-11b): a ReLU feed-forward network (`wi`, `wo`), and an output matrix tied to the
  embedding, with the decoder's output scaled by d_model^-0.5 before it (Mesh TensorFlow's rule for a tied softmax);
- T5 v1.1 and Flan-T5: the gated-GELU network (`wi_0` through GELU's tanh approximation, times `wi_1`, into `wo`: our
  `geglu_tanh`), an lm_head of its own and no scaling, and heads that need not tile d_model (Flan-T5-small: 6 heads
  of 64 in d_model 512: our model.head_dim).

Two of T5's choices are folded into the weights, so that our modules compute exactly T5's function:
- T5 does not divide the attention scores by sqrt(d_kv) (its initialisation absorbs the factor); ours does, so W^Q
  is multiplied by sqrt(d_kv) here, in self- and cross-attention alike. Exact where sqrt(d_kv) is a power of two
  (d_kv 64, as t5-small and Flan-T5), else within a rounding of the weights;
- the tied output's d_model^-0.5 is folded into the decoder's final norm gain (the norm's output goes only to the
  output matrix), so that the output matrix stays the embedding itself: model.tie_embeddings=true, and fine-tuning
  keeps them one matrix as T5 does, with T5's parameter count.

Q, K and V are separate Linear layers (out, in) as ours: fused into our qkv_proj (self-attention) and q_proj + kv_proj
(cross-attention, K | V), as gate | value into our GeGLU's gate_value. T5 also drops the stacks' outputs after their
final norm while training, which ours do not (the same function in eval mode).

Refused, by name: a T5 without a decoder (T5EncoderModel, is_encoder_decoder=false), the classification and
question-answering heads, and a feed-forward network other than relu and gated-gelu.

Two things about T5's text are not the model's and live elsewhere: its embedding has more rows than its tokenizer has
tokens (32,128 for 32,100; src/data/pretrained_tokenizer.py PADDING_ROWS), and it was trained with a prefix in front of
every source naming the task, which config.json lists (task_specific_params) and task.src_prefix gives
(src/data/tasks/translation.py; fit.known_prefixes).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from src.model import ConfigError, TransformerConfig
from src.model.feedforward import is_gated
from src.model.names import DECODER, ENCODER, STACKS

from .convert import Weights, fuse

# transformers' feed_forward_proj -> our model.activation ("gated-gelu" runs transformers' gelu_new: the tanh GELU)
FEED_FORWARDS = {"relu": "relu", "gated-gelu": "geglu_tanh"}
# The classes whose checkpoints hold what we map: the base model, with or without its LM head.
ARCHITECTURES = ("T5ForConditionalGeneration", "T5Model")
# Our model settings -> the config.json fields they are read from (src/pretrained/__init__.py unloadable_line)
CONFIG_FIELDS = {
    "d_model": "d_model",
    "heads": "num_heads",
    "head_dim": "d_kv",
    "enc_layers": "num_layers",
    "dec_layers": "num_decoder_layers",
    "d_ff": "d_ff",
    "dropout": "dropout_rate",
    "attention_dropout": "dropout_rate",
    "ffn_dropout": "dropout_rate",
    "relative_buckets": "relative_attention_num_buckets",
    "relative_max_distance": "relative_attention_max_distance",
    "norm_eps": "layer_norm_epsilon",
    "tgt_vocab_size": "vocab_size",
    "src_vocab_size": "vocab_size",
}


def scales_its_output(hf: Any) -> bool:
    """Whether the decoder's output is multiplied by d_model^-0.5 before a tied output matrix (the original T5), or
    meets an lm_head of its own unscaled (v1.1, Flan-T5). transformers 4 reads both from tie_word_embeddings;
    transformers 5 keeps the scaling apart as scale_decoder_outputs (and writes tie_word_embeddings true always)."""
    scale = getattr(hf, "scale_decoder_outputs", None)
    return bool(hf.tie_word_embeddings if scale is None else scale)


def model_config(hf: Any, num_classes: int = 0) -> TransformerConfig:
    """Our TransformerConfig from a transformers T5Config."""
    if not getattr(hf, "is_encoder_decoder", True):
        raise ConfigError(
            "T5 with is_encoder_decoder=false (T5EncoderModel) is not supported: T5 loads as an encoder-decoder only"
        )
    unsupported = [a for a in getattr(hf, "architectures", None) or [] if a not in ARCHITECTURES]
    if unsupported:
        raise ConfigError(f"T5 as {unsupported[0]} is not supported: supported are {', '.join(ARCHITECTURES)}")
    if hf.feed_forward_proj not in FEED_FORWARDS:
        raise ConfigError(
            f"T5 with feed_forward_proj={hf.feed_forward_proj!r} is not supported: supported are "
            f"{', '.join(FEED_FORWARDS)}"
        )
    eos = hf.eos_token_id[0] if isinstance(hf.eos_token_id, list) else hf.eos_token_id  # the first ends decoding
    start = getattr(hf, "decoder_start_token_id", None)
    start = hf.pad_token_id if start is None else start  # T5's decoder starts from its pad token
    head_dim = hf.d_kv
    return TransformerConfig(
        arch="encoder_decoder",
        d_model=hf.d_model,
        heads=hf.num_heads,
        head_dim=head_dim if head_dim * hf.num_heads != hf.d_model else None,  # Flan-T5-small: 6 x 64 in 512
        enc_layers=hf.num_layers,
        dec_layers=hf.num_decoder_layers or hf.num_layers,
        d_ff=hf.d_ff,
        dropout=hf.dropout_rate,  # T5's one rate: embeddings, sublayer outputs, attention weights, inside the FFN
        attention_dropout=hf.dropout_rate,
        ffn_dropout=hf.dropout_rate,
        # No position table to outgrow: the buckets read any length. 512 is the length T5 was trained on
        # (n_positions in older config.json files), our model.max_len the longest sequence we accept.
        max_len=getattr(hf, "n_positions", None) or 512,
        pos_encoding="t5_relative",
        relative_buckets=hf.relative_attention_num_buckets,
        relative_max_distance=hf.relative_attention_max_distance,
        norm_position="pre",
        norm_type="rmsnorm",
        norm_eps=hf.layer_norm_epsilon,
        final_norm=True,
        activation=FEED_FORWARDS[hf.feed_forward_proj],
        attention_bias="none",
        ffn_bias=False,
        tie_embeddings=scales_its_output(hf),  # the scale itself goes into the decoder's final norm (convert)
        scale_embeddings=False,
        share_src_tgt_embeddings=True,
        output_bias=False,
        src_vocab_size=hf.vocab_size,
        tgt_vocab_size=hf.vocab_size,
        pad_id=hf.pad_token_id,
        bos_id=start,
        eos_id=eos,
    )


# Per layer, our norms <- T5's. A T5 block numbers its sublayers, each with its RMSNorm: `layer.0` self-attention,
# then in the decoder `layer.1` cross-attention, and last the feed-forward network.
NORMS = {
    ENCODER: {"attn_block.norm": "layer.0.layer_norm", "ffn_block.norm": "layer.1.layer_norm"},
    DECODER: {
        "self_block.norm": "layer.0.layer_norm",
        "cross_block.norm": "layer.1.layer_norm",
        "ffn_block.norm": "layer.2.layer_norm",
    },
}
# Per layer, our attentions <- T5's, and whether Q, K, V fuse into one matrix (self-attention) or Q stays apart from
# a fused K | V (cross-attention, whose keys and values come from the encoder).
ATTENTIONS = {
    ENCODER: {"self_attn": ("layer.0.SelfAttention", True)},
    DECODER: {"self_attn": ("layer.0.SelfAttention", True), "cross_attn": ("layer.1.EncDecAttention", False)},
}
FEED_FORWARD = {ENCODER: "layer.1.DenseReluDense", DECODER: "layer.2.DenseReluDense"}
# Each stack's relative position bias (buckets, H) <- its first block's self-attention (the other blocks reuse it).
RELATIVE_BIAS = "block.0.layer.0.SelfAttention.relative_attention_bias.weight"


def _attention(weights: Weights, hf: str, cfg: TransformerConfig, fused_qkv: bool) -> dict[str, Tensor]:
    """One attention's q, k, v, o -> ours, W^Q times sqrt(Dh): T5's scores are not divided by sqrt(Dh), ours are."""
    d, inner = cfg.d_model, cfg.q_dim  # inner: the heads side by side, H * d_kv
    q = weights.take(f"{hf}.q.weight", (inner, d)) * cfg.head_size**0.5
    k, v = weights.take(f"{hf}.k.weight", (inner, d)), weights.take(f"{hf}.v.weight", (inner, d))
    ours = {"out_proj.weight": weights.take(f"{hf}.o.weight", (d, inner))}
    if fused_qkv:
        ours["qkv_proj.weight"] = fuse(q, k, v)  # (3 H Dh, D): Q | K | V
    else:
        ours |= {"q_proj.weight": q, "kv_proj.weight": fuse(k, v)}  # (H Dh, D) and (2 H Dh, D): K | V
    return ours


def _feed_forward(weights: Weights, hf: str, cfg: TransformerConfig) -> dict[str, Tensor]:
    """ReLU: wi, wo -> our linear1, linear2. Gated GELU: wi_0 (the gate, through GELU) | wi_1 (the value it
    multiplies) -> our gate_value, wo -> linear2."""
    d, ff = cfg.d_model, cfg.d_ff
    ours = {"linear2.weight": weights.take(f"{hf}.wo.weight", (d, ff))}
    if is_gated(cfg.activation):
        ours["gate_value.weight"] = fuse(
            weights.take(f"{hf}.wi_0.weight", (ff, d)), weights.take(f"{hf}.wi_1.weight", (ff, d))
        )
    else:
        ours["linear1.weight"] = weights.take(f"{hf}.wi.weight", (ff, d))
    return ours


def convert(weights: Weights, cfg: TransformerConfig) -> dict[str, Tensor]:
    """T5ForConditionalGeneration's or T5Model's weights -> our EncoderDecoder's state dict."""
    d, vocab = cfg.d_model, cfg.tgt_vocab_size
    # A relative bias some older checkpoints hold for the first cross-attention, which T5 never reads.
    weights.set_aside(r"decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight")
    shared = weights.take("shared.weight", (vocab, d))
    ours: dict[str, Tensor] = {"src_embed.token.weight": shared}  # the source's, the target's (shared) ...
    for copy in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        weights.take_copy_of(copy, shared)  # tied to the shared embedding; absent from most files
    for side in (ENCODER, DECODER):  # our stacks, which T5's modules are named as
        bias = weights.take(f"{side}.{RELATIVE_BIAS}", (cfg.relative_buckets, cfg.heads))
        ours[f"positional.stacks.{side}.embedding.weight"] = bias
        ours[f"{side}.final_norm.weight"] = weights.take(f"{side}.final_layer_norm.weight", (d,))
        for i in range(STACKS[side].layers(cfg)):
            hf, layer = f"{side}.block.{i}.", f"{side}.layers.{i}."
            for ours_name, theirs in NORMS[side].items():
                ours[f"{layer}{ours_name}.weight"] = weights.take(f"{hf}{theirs}.weight", (d,))
            for ours_site, (theirs, fused_qkv) in ATTENTIONS[side].items():
                for name, tensor in _attention(weights, hf + theirs, cfg, fused_qkv).items():
                    ours[f"{layer}{ours_site}.{name}"] = tensor
            for name, tensor in _feed_forward(weights, hf + FEED_FORWARD[side], cfg).items():
                ours[f"{layer}ffn.{name}"] = tensor
    if cfg.tie_embeddings:  # ... and the output's: logits = (h d^-0.5) E^T, with d^-0.5 in the final norm's gain
        weights.take_copy_of("lm_head.weight", shared)  # tied: absent from most files
        ours["decoder.final_norm.weight"] = ours["decoder.final_norm.weight"] * d**-0.5
    else:  # v1.1, Flan-T5: an lm_head of its own (a file without one is tied unscaled, as transformers 5 reads it)
        ours["out_proj.weight"] = (
            weights.take("lm_head.weight", (vocab, d)) if weights.has("lm_head.weight") else shared
        )
    weights.finish()
    return ours
