"""A transformer written from scratch, one small module per concept (read in this order):

tokens.py       the special token ids (PAD, BOS, EOS, UNK)
config.py       ModelAxes / TransformerConfig: every ablation axis, validated
masks.py        boolean masks (True = may attend); mask schemes: which site gets which
positional.py   sinusoidal, learned, rotary, ALiBi, none
attention.py    scaled dot-product attention (explicit and fused) and multi-head attention, with head gates
head_mask.py    head masks: switch heads off (or scale them) by site, layer and head
names.py        how a head, a layer and a site are named everywhere (cross:1:2, counted from 0)
norms.py        LayerNorm, RMSNorm, post-LN / pre-LN residual blocks
feedforward.py  ReLU / GELU / SwiGLU feed-forward networks
layers.py       encoder layer, decoder layer
transformer.py  stacks; encoder-decoder, decoder-only, encoder-only classifier; build_model
decoding.py     greedy, beam search, sampling with a key/value cache
summary.py      parameter count, FLOPs per token
"""

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
