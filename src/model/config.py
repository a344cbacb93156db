"""One dataclass configures the whole model; every ablation axis is one field here.

The framework's Hydra schema (src/config.py) mirrors these fields; this module has no Hydra or
Lightning dependency so the model can be read, tested and reused on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

# Special token ids shared by every task's vocabulary and by the model (padding, decoding).
PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3

ARCHITECTURES = ("encoder_decoder", "decoder_only", "encoder_only")
POSITIONAL_ENCODINGS = ("sinusoidal", "learned", "rope", "alibi", "none")
NORM_POSITIONS = ("post", "pre")
NORM_TYPES = ("layernorm", "rmsnorm")
ACTIVATIONS = ("relu", "gelu", "swiglu")
MASK_TYPES = ("standard", "causal", "window", "prefix", "none")


class ConfigError(ValueError):
    """A configuration that cannot work; the message is one line naming the field and the fix."""


@dataclass
class TransformerConfig:
    arch: str = "encoder_decoder"
    src_vocab_size: int = 0  # encoder input vocabulary (encoder_decoder, encoder_only)
    tgt_vocab_size: int = 0  # decoder vocabulary (encoder_decoder, decoder_only)
    num_classes: int = 0  # classification head size (encoder_only)

    d_model: int = 128
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    max_len: int = 512  # longest sequence the positional tables cover

    pos_encoding: str = "sinusoidal"
    norm_position: str = "post"  # "post": x = norm(x + f(x)) as in the paper; "pre": x = x + f(norm(x))
    norm_type: str = "layernorm"
    norm_eps: float = 1e-5
    activation: str = "relu"

    mask_type: str = "standard"
    window: int = 4  # sliding-window width for mask_type="window" (1 = attend to self only)
    prefix_len: int = 0  # bidirectional prefix length for mask_type="prefix"

    tie_embeddings: bool = True  # share decoder input embedding and output projection
    share_src_tgt_embeddings: bool = False  # one embedding for both sides (needs equal vocabularies)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    def validate(self) -> "TransformerConfig":
        """Raise ConfigError (one line: the field and the fix) for values that cannot work together."""

        def choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise ConfigError(f"model.{field}={value!r} is not known: choose one of {', '.join(allowed)}")

        choice("arch", self.arch, ARCHITECTURES)
        choice("pos_encoding", self.pos_encoding, POSITIONAL_ENCODINGS)
        choice("norm_position", self.norm_position, NORM_POSITIONS)
        choice("norm_type", self.norm_type, NORM_TYPES)
        choice("activation", self.activation, ACTIVATIONS)
        if self.mask_type not in MASK_TYPES:
            raise ConfigError(f"mask={self.mask_type!r} is not known: choose one of {', '.join(MASK_TYPES)}")

        for field in ("d_model", "heads", "d_ff", "max_len"):
            if getattr(self, field) < 1:
                raise ConfigError(f"model.{field}={getattr(self, field)} must be a positive integer")
        if self.d_model % self.heads != 0:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0 and h <= 64]
            raise ConfigError(
                f"model.heads={self.heads} does not divide model.d_model={self.d_model}: "
                f"choose heads in {divisors} or change d_model"
            )
        if self.pos_encoding == "rope" and self.head_dim % 2 != 0:
            raise ConfigError(
                f"model.pos_encoding=rope needs an even head size, got d_model/heads={self.head_dim}: "
                "change model.d_model or model.heads"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout} must be in [0, 1)")
        if self.mask_type == "window" and self.window < 1:
            raise ConfigError(f"mask.window={self.window} must be at least 1 (1 = each token sees only itself)")
        if self.mask_type == "prefix" and self.prefix_len < 0:
            raise ConfigError(f"mask.prefix_len={self.prefix_len} must be >= 0")

        uses_encoder = self.arch in ("encoder_decoder", "encoder_only")
        uses_decoder = self.arch in ("encoder_decoder", "decoder_only")
        if uses_encoder and self.enc_layers < 1:
            raise ConfigError(f"model.enc_layers={self.enc_layers} must be >= 1 for arch={self.arch}")
        if uses_decoder and self.dec_layers < 1:
            raise ConfigError(f"model.dec_layers={self.dec_layers} must be >= 1 for arch={self.arch}")
        if uses_encoder and self.src_vocab_size < 5:
            raise ConfigError(f"src_vocab_size={self.src_vocab_size} is too small: the task must set it")
        if uses_decoder and self.tgt_vocab_size < 5:
            raise ConfigError(f"tgt_vocab_size={self.tgt_vocab_size} is too small: the task must set it")
        if self.arch == "encoder_only" and self.num_classes < 2:
            raise ConfigError(f"num_classes={self.num_classes}: arch=encoder_only needs a classification task")
        if self.share_src_tgt_embeddings and self.arch == "encoder_decoder" and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError(
                "model.share_src_tgt_embeddings=true needs one joint vocabulary "
                f"(src {self.src_vocab_size} != tgt {self.tgt_vocab_size}): set it to false"
            )
        return self
