"""Mistral (Jiang et al. 2023) as our decoder-only transformer.

Mistral is Llama's architecture (llama.py) with grouped-query attention in every model and, in 7B v0.1, a sliding
window: a query sees the `sliding_window` keys up to itself, our `mask=window` (window: that many positions,
itself included; later versions have none). Its weights have Llama's names: the conversion is llama.convert.
"""

from __future__ import annotations

from typing import Any

from src.model import TransformerConfig

from .llama import CONFIG_FIELDS as CONFIG_FIELDS  # its config.json names Llama's settings as Llama's does
from .llama import convert, decoder_config

__all__ = ["convert", "model_config"]


def model_config(hf: Any, num_classes: int = 0) -> TransformerConfig:
    """Our TransformerConfig from a transformers MistralConfig."""
    window = getattr(hf, "sliding_window", None)
    mask = {"type": "window", "window": int(window)} if window else {"type": "standard"}
    return decoder_config(hf, "Mistral", mask=mask)
