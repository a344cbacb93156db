"""A transformer written from scratch, one small module per concept (read in this order):

    config.py       TransformerConfig: every ablation axis, validated
    masks.py        boolean masks (True = may attend) and which site gets which
    positional.py   sinusoidal, learned, rotary, ALiBi, none
    attention.py    scaled dot-product attention (explicit and fused) and multi-head attention
    norms.py        LayerNorm, RMSNorm, post-LN / pre-LN residual blocks
    feedforward.py  ReLU / GELU / SwiGLU feed-forward networks
    layers.py       encoder layer, decoder layer
    transformer.py  stacks; encoder-decoder, decoder-only, encoder-only classifier; build_model
    decoding.py     greedy, beam search, sampling with a key/value cache
    summary.py      parameter count, FLOPs per token
"""

from .config import BOS_ID, EOS_ID, PAD_ID, UNK_ID, ConfigError, TransformerConfig
from .decoding import generate
from .summary import count_parameters, flops_per_token
from .transformer import DecoderOnly, EncoderClassifier, EncoderDecoder, ModelOutput, build_model

__all__ = [
    "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "ConfigError", "TransformerConfig", "build_model", "generate",
    "count_parameters", "flops_per_token", "EncoderDecoder", "DecoderOnly", "EncoderClassifier", "ModelOutput",
]
