"""BERT (Devlin et al. 2019) as our encoder-only classifier.

BERT is a post-LN encoder with learned positions, token-type (segment) embeddings, a LayerNorm on the summed
embeddings, the exact (erf) GELU, LayerNorm eps 1e-12 and no final norm; a classifier reads its pooler
(dense + tanh on [CLS]). Q, K and V are separate Linear layers, fused here into our qkv_proj.
A pre-training checkpoint (bert-base-uncased) has no classifier: the task's head starts from random weights,
and its masked-LM and next-sentence heads are set aside. A masked-LM checkpoint (BertForMaskedLM) has no pooler
either: it starts new too, as in transformers' BertForSequenceClassification.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from src.model import ConfigError, TransformerConfig

from .convert import Weights, fuse

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "relu": "relu", "silu": "silu"}


def model_config(hf: Any, num_classes: int = 0) -> TransformerConfig:
    """Our TransformerConfig from a transformers BertConfig; num_classes 0 = the checkpoint's own num_labels."""
    if hf.hidden_act not in ACTIVATIONS:
        raise ConfigError(f"BERT activation {hf.hidden_act!r} is not supported: one of {list(ACTIVATIONS)}")
    if getattr(hf, "position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"BERT position_embedding_type={hf.position_embedding_type!r}: only 'absolute' is supported")
    if hf.num_labels < 2 or getattr(hf, "problem_type", None) in ("regression", "multi_label_classification"):
        raise ConfigError(
            f"BERT with a {getattr(hf, 'problem_type', None) or 'regression'} head ({hf.num_labels} labels) is not "
            "supported: only single-label classification (num_labels >= 2)"
        )
    pad = hf.pad_token_id if hf.pad_token_id is not None else 0
    return TransformerConfig(
        arch="encoder_only",
        d_model=hf.hidden_size,
        heads=hf.num_attention_heads,
        enc_layers=hf.num_hidden_layers,
        dec_layers=0,
        d_ff=hf.intermediate_size,
        dropout=hf.hidden_dropout_prob,
        attention_dropout=hf.attention_probs_dropout_prob,
        ffn_dropout=0.0,  # BERT's intermediate layer has no dropout of its own
        max_len=hf.max_position_embeddings,
        pos_encoding="learned",
        norm_position="post",
        norm_type="layernorm",
        norm_eps=hf.layer_norm_eps,
        activation=ACTIVATIONS[hf.hidden_act],
        tie_embeddings=False,
        scale_embeddings=False,
        embedding_norm=True,
        token_types=hf.type_vocab_size,
        final_norm=False,
        pooling="first_token",
        src_vocab_size=hf.vocab_size,
        num_classes=num_classes or hf.num_labels,
        pad_id=pad,
        # [CLS] and [SEP] open and close every input; an encoder never generates, so they are only recorded.
        bos_id=hf.bos_token_id if hf.bos_token_id is not None else pad,
        eos_id=hf.eos_token_id if hf.eos_token_id is not None else pad,
    )


def _norm(weights: Weights, name: str, d: int) -> tuple[Tensor, Tensor]:
    """A LayerNorm's gain and shift; the original TensorFlow-converted checkpoints call them gamma and beta."""
    if weights.has(f"{name}.gamma"):
        return weights.take(f"{name}.gamma", (d,)), weights.take(f"{name}.beta", (d,))
    return weights.take(f"{name}.weight", (d,)), weights.take(f"{name}.bias", (d,))


def convert(weights: Weights, cfg: TransformerConfig) -> dict[str, Tensor]:
    """BertForSequenceClassification's, BertForPreTraining's, BertForMaskedLM's or BertModel's weights -> our
    EncoderClassifier's state dict. Without a classifier in the checkpoint, or with one for another number of classes
    than cfg.num_classes (fine-tuning on a new label set), `head.*` is missing: the loader keeps the new head (and
    `pooling.*` without a pooler)."""
    d, ff = cfg.d_model, cfg.d_ff
    weights.set_aside(r"embeddings\.position_ids")  # a buffer of 0..max_len-1
    weights.set_aside(r"cls\..*")  # pre-training heads: masked LM and next-sentence prediction
    ours: dict[str, Tensor] = {
        "src_embed.token.weight": weights.take("embeddings.word_embeddings.weight", (cfg.src_vocab_size, d)),
        "src_embed.token_type.weight": weights.take("embeddings.token_type_embeddings.weight", (cfg.token_types, d)),
        "positional.embedding.weight": weights.take("embeddings.position_embeddings.weight", (cfg.max_len, d)),
    }
    ours["src_embed.norm.weight"], ours["src_embed.norm.bias"] = _norm(weights, "embeddings.LayerNorm", d)
    for i in range(cfg.enc_layers):
        hf, layer = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        attention = hf + "attention.self."
        ours[layer + "self_attn.qkv_proj.weight"] = fuse(
            *(weights.take(f"{attention}{p}.weight", (d, d)) for p in ("query", "key", "value"))
        )
        ours[layer + "self_attn.qkv_proj.bias"] = fuse(
            *(weights.take(f"{attention}{p}.bias", (d,)) for p in ("query", "key", "value"))
        )
        ours[layer + "self_attn.out_proj.weight"] = weights.take(hf + "attention.output.dense.weight", (d, d))
        ours[layer + "self_attn.out_proj.bias"] = weights.take(hf + "attention.output.dense.bias", (d,))
        norm = _norm(weights, hf + "attention.output.LayerNorm", d)
        ours[layer + "attn_block.norm.weight"], ours[layer + "attn_block.norm.bias"] = norm
        ours[layer + "ffn.linear1.weight"] = weights.take(hf + "intermediate.dense.weight", (ff, d))
        ours[layer + "ffn.linear1.bias"] = weights.take(hf + "intermediate.dense.bias", (ff,))
        ours[layer + "ffn.linear2.weight"] = weights.take(hf + "output.dense.weight", (d, ff))
        ours[layer + "ffn.linear2.bias"] = weights.take(hf + "output.dense.bias", (d,))
        norm = _norm(weights, hf + "output.LayerNorm", d)
        ours[layer + "ffn_block.norm.weight"], ours[layer + "ffn_block.norm.bias"] = norm
    if weights.has("pooler.dense.weight"):  # BertForMaskedLM has none: the loader starts it new (NEW_PARTS)
        ours["pooling.dense.weight"] = weights.take("pooler.dense.weight", (d, d))
        ours["pooling.dense.bias"] = weights.take("pooler.dense.bias", (d,))
    if weights.has("classifier.weight") and weights.state["classifier.weight"].size(0) != cfg.num_classes:
        weights.set_aside(r"classifier\.(weight|bias)")  # another label set: the task's head starts new
    if weights.has("classifier.weight"):
        ours["head.1.weight"] = weights.take("classifier.weight", (cfg.num_classes, d))
        ours["head.1.bias"] = weights.take("classifier.bias", (cfg.num_classes,))
    weights.finish()
    return ours
