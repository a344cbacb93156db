"""Qwen2 (Yang et al. 2024; Qwen2.5 shares the architecture) as our decoder-only transformer.

Qwen2 is Llama's architecture (llama.py) with biases on the query, key and value projections (none on the output
projection or the feed-forward network), a larger RoPE base (1,000,000) and, in the small models, tied embeddings.
Its weights have Llama's names: the conversion is llama.convert. A sliding window on some layers only
(use_sliding_window, max_window_layers) is refused: our window applies to every layer. Its embedding has more rows
than its tokenizer has tokens (151,936 for 151,646: src/data/pretrained_tokenizer.py PADDING_ROWS).
"""

from __future__ import annotations

from typing import Any

from src.model import ConfigError, TransformerConfig

from .llama import CONFIG_FIELDS as CONFIG_FIELDS  # its config.json names Llama's settings as Llama's does
from .llama import convert, decoder_config

__all__ = ["convert", "model_config"]


def model_config(hf: Any, num_classes: int = 0) -> TransformerConfig:
    """Our TransformerConfig from a transformers Qwen2Config."""
    if getattr(hf, "use_sliding_window", False):
        raise ConfigError(
            "Qwen2 with use_sliding_window=true is not supported: its window covers only the layers from "
            "max_window_layers on, and ours (mask=window) covers every layer"
        )
    return decoder_config(hf, "Qwen2", attention_bias="qkv", ffn_bias=False)
