"""A transformer written from scratch, one small module per concept. docs/model.md lists every file in the order to
read them (tokens.py and config.py first, then masks, positions, attention, layers and the whole models)."""

from .config import ModelAxes, TransformerConfig
from .decoding import generate
from .errors import ConfigError, ModelWarning
from .summary import count_parameters, flops_per_token
from .tokens import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from .transformer import DecoderOnly, EncoderClassifier, EncoderDecoder, ModelOutput, build_model

__all__ = [
    "PAD_ID",
    "BOS_ID",
    "EOS_ID",
    "UNK_ID",
    "ConfigError",
    "ModelWarning",
    "ModelAxes",
    "TransformerConfig",
    "build_model",
    "generate",
    "count_parameters",
    "flops_per_token",
    "EncoderDecoder",
    "DecoderOnly",
    "EncoderClassifier",
    "ModelOutput",
]
