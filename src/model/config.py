"""One dataclass configures the whole model: `ModelAxes` holds every ablation axis a user chooses, and
`TransformerConfig` adds what the data decides (vocabulary sizes) and the attention-mask scheme.

The framework's Hydra schema for `model` (src/cli/schema.py) is a subclass of `ModelAxes`, so the two cannot drift:
a new axis is one field here (and the code that reads it). This module has no Hydra or Lightning dependency, so
the model can be read, tested and reused on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, get_type_hints

from .attention import ATTENTION_BIASES
from .errors import ConfigError
from .feedforward import FEEDFORWARDS
from .masks import MaskScheme, build_mask_scheme
from .names import DECODER, ENCODER
from .norms import NORM_POSITIONS, NORMS
from .pooling import POOLINGS
from .positional import POSITIONAL_SCHEMES, rope_scaling_defaults
from .tokens import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:  # annotations only: transformer.py imports this module
    from .transformer import TransformerBase


@dataclass(frozen=True)
class Architecture:
    """What one `model.arch` is: the stacks it builds, the kind of task it does, whether it ends in a classifier, the
    class that builds it, and what a reader calls it. Code that depends on the architecture asks these, never its
    name."""

    stacks: tuple[str, ...]  # the stacks it builds (names.STACKS), in the order the data flows
    task_kind: str  # the task kind it does (a task's TaskSpec.kind): what model.arch=auto picks it for
    classifies: bool  # it ends in a classification head over num_classes, not a projection onto a vocabulary
    class_name: str  # its model class in transformer.py, by name: transformer.py imports this module
    title: str  # what messages and the attention page call it: "decoder-only"

    @property
    def has_encoder(self) -> bool:
        return ENCODER in self.stacks

    @property
    def has_decoder(self) -> bool:
        return DECODER in self.stacks

    @property
    def has_cross_attention(self) -> bool:
        """Both stacks: the decoder reads the encoder's output (and has two vocabularies, source and target)."""
        return self.has_encoder and self.has_decoder

    def model_class(self) -> type[TransformerBase]:
        from . import transformer  # imported here: transformer.py imports this module at its top

        return getattr(transformer, self.class_name)


# `model.arch`: name -> the architecture. The one place that names them: the model's checks, build_model, the
# attention sites of ablation.layout_of, src.cli's layer counts and model.arch=auto, and the pretrained models'
# task checks all ask the entry.
ARCHITECTURES: dict[str, Architecture] = {
    "encoder_decoder": Architecture(
        (ENCODER, DECODER), task_kind="seq2seq", classifies=False, class_name="EncoderDecoder", title="encoder-decoder"
    ),
    "decoder_only": Architecture(
        (DECODER,), task_kind="lm", classifies=False, class_name="DecoderOnly", title="decoder-only"
    ),
    "encoder_only": Architecture(
        (ENCODER,), task_kind="classification", classifies=True, class_name="EncoderClassifier", title="encoder-only"
    ),
}


def unknown_choice(setting: str, value: Any, allowed: Iterable[str], names: str = "", hint: str = "") -> ConfigError:
    """The one line for `setting=value` not among `allowed`: `names` says what the setting names, `hint` follows
    the choices. A setting that names something, typed true or false on the command line, reaches here as 'True' or
    'False' (Hydra reads a boolean, the schema's str field keeps its str()): it is shown as typed, and said to be no
    switch, rather than echoed back as a word the user never wrote."""
    if value in ("True", "False"):
        shown, what = value.lower(), f": it is not a switch{f' but names {names}' if names else ''}"
    else:
        shown, what = repr(value), ""
    return ConfigError(f"{setting}={shown} is not known{what}: choose one of {', '.join(allowed)}{hint}")


@dataclass
class ModelAxes:
    """The model's shape and its ablation axes: what `model.<field>=...` sets on the command line."""

    arch: str = "encoder_decoder"  # a key of ARCHITECTURES: encoder_decoder | decoder_only | encoder_only
    d_model: int = 128
    heads: int = 4
    # Each head's size Dh; null = d_model / heads, the paper's. Gemma, Qwen3 and T5 choose it apart from d_model
    # (Flan-T5-small: d_model 512, 6 heads of 64), so the heads side by side (H * Dh) need not be d_model wide:
    # W^Q maps D -> H * Dh, W^K and W^V D -> KVH * Dh, W^O H * Dh -> D. When set, heads need not divide d_model.
    head_dim: Optional[int] = None
    # Key/value heads (grouped-query attention, Ainslie et al. 2023): the query heads share them in kv_heads groups
    # of heads/kv_heads; 1 = multi-query attention; null = as many as heads (multi-head attention). Must divide heads.
    kv_heads: Optional[int] = None
    # Which attention projections add a bias (a key of attention.ATTENTION_BIASES): all (W^Q, W^K, W^V and W^O: the
    # paper, GPT-2, BERT, Marian), qkv (W^Q, W^K, W^V: Qwen2) or none (Llama, Mistral, T5)
    attention_bias: str = "all"
    # QK-norm: a norm (norm_type, norm_eps) on each head's query and key, after the projection and before rotary
    # positions, with one gain of Dh entries for the queries and one for the keys, shared by the heads (Qwen3)
    qk_norm: bool = False
    enc_layers: int = 2
    dec_layers: int = 2
    d_ff: int = 512
    # false: attention-only layers (Elhage et al. 2021; Olsson et al. 2022): no feed-forward sublayer, so d_ff,
    # activation and ffn_dropout are unread (src.run warns when they are given) and there is no *_ffn site
    ffn: bool = True
    dropout: float = 0.1  # on the embeddings and every sublayer's output (section 5.4)
    # Dropout on the attention weights and inside the feed-forward network (after its activation); null = dropout.
    # GPT-2 and BERT drop no FFN activations; Marian MT neither, and no attention weights either.
    attention_dropout: Optional[float] = None
    ffn_dropout: Optional[float] = None
    max_len: int = 256  # longest sequence the positional tables cover (must fit the task's longest)
    pos_encoding: str = "sinusoidal"  # a key of positional.POSITIONAL_SCHEMES
    # pos_encoding=rope only: the frequencies' base (the paper's 10000; Llama 3: 500000), the share of each head's
    # dimensions that turn (partial rotary, GPT-NeoX's rotary_pct), and a frequency scaling as the pretrained
    # families store it, e.g. {type: llama3, factor: 8} (positional.ROPE_SCALINGS; {}: none; an empty dict, not
    # null, so that `model.rope_scaling={type:linear,factor:2}` merges into it on the command line)
    rope_theta: float = 10000.0
    rope_fraction: float = 1.0
    rope_scaling: dict[str, Any] = field(default_factory=dict)
    # pos_encoding=t5_relative only: T5's buckets of the query-key distance, and the distance the last one starts at
    relative_buckets: int = 32
    relative_max_distance: int = 128
    norm_position: str = "post"  # "post": x = norm(x + f(x)) as in the paper; "pre": x = x + f(norm(x))
    # Parallel layers (GPT-J, PaLM): x + Attn(Norm(x)) + FFN(Norm(x)), the two sublayers side by side on one norm
    # of the layer's input; pre-LN only, and not in an encoder-decoder (its decoder's cross-attention has no place)
    parallel_layers: bool = False
    norm_type: str = "layernorm"  # a key of norms.NORMS
    norm_eps: float = 1e-5
    activation: str = "relu"  # a key of feedforward.FEEDFORWARDS
    ffn_bias: bool = True  # biases on the feed-forward network's linear layers (false: Llama, Qwen2, Mistral, T5)
    tie_embeddings: bool = True  # share decoder input embedding and output projection
    scale_embeddings: bool = True  # token embeddings x sqrt(d_model), as the paper (GPT-2 and BERT: false)
    share_src_tgt_embeddings: bool = False  # one embedding for both sides (needs equal vocabularies)
    embedding_norm: bool = False  # a norm (model.norm_type) on the summed embeddings, before dropout (BERT)
    token_types: int = 0  # token-type (segment) embeddings added to the input embeddings (BERT: 2); 0 = none
    # Whether each stack ends with a norm; null = the placement's own choice (pre-LN: yes, post-LN: no).
    final_norm: Optional[bool] = None  # Optional[...]: OmegaConf reads it at runtime
    output_bias: bool = False  # a bias on the output projection (Marian's final_logits_bias)
    pooling: str = "mean"  # classifier: a key of pooling.POOLINGS (mean of the tokens | BERT's first-token pooler)


# The axes that hold a real number (and the rope scaling's, a dict): TransformerConfig.validate refuses nan and inf in
# any of them, read or not, since every range check written as a comparison lets nan through (nan <= 1 is false).
FLOAT_AXES = tuple(name for name, hint in get_type_hints(ModelAxes).items() if hint in (float, Optional[float]))


@dataclass
class TransformerConfig(ModelAxes):
    src_vocab_size: int = 0  # encoder input vocabulary (encoder_decoder, encoder_only)
    tgt_vocab_size: int = 0  # decoder vocabulary (encoder_decoder, decoder_only)
    num_classes: int = 0  # classification head size (encoder_only)
    # The attention-mask scheme and its settings, e.g. {"type": "window", "window": 4} (see masks.py).
    mask: dict[str, Any] = field(default_factory=lambda: {"type": "standard"})
    # The special token ids of the tokenizer (our own vocabularies: 0, 1, 2). bos_id is the token the decoder
    # starts from (Marian: its pad token; GPT-2: <|endoftext|>, which is also its eos and the pad we use).
    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    # Further ids that end a text as eos_id does, where a model lists several (Llama 3.1's and 3.2's instruct
    # models: <|eom_id|> and <|eot_id|> beside <|end_of_text|>); generate() stops at any of them.
    stop_ids: list[int] = field(default_factory=list)
    # Whether decoding may output the BOS token. Ours never see it as a target, so decoding forbids it; a pretrained
    # language model trained on concatenated documents (Llama's <s>) may predict it, as transformers lets it.
    bos_is_output: bool = False

    @property
    def head_size(self) -> int:
        """Dh, each head's size: model.head_dim when set, else d_model // heads (the paper's). Read this, not the
        field: the field keeps what was asked for (None: unset), so a config with other heads stays right."""
        return self.d_model // self.heads if self.head_dim is None else self.head_dim

    @property
    def q_dim(self) -> int:
        """H * Dh: the query heads side by side, W^Q's outputs and W^O's inputs (d_model unless model.head_dim)."""
        return self.heads * self.head_size

    @property
    def kv_dim(self) -> int:
        """KVH * Dh: the columns K takes, and V (q_dim in multi-head attention, less with grouped-query)."""
        return self.kv_head_count * self.head_size

    @property
    def kv_head_count(self) -> int:
        """KVH, the key/value heads (KV groups) of every attention layer: model.kv_heads, or H when unset."""
        return self.heads if self.kv_heads is None else self.kv_heads

    @property
    def pre_norm(self) -> bool:
        return NORM_POSITIONS[self.norm_position]

    @property
    def attention_dropout_p(self) -> float:
        return self.dropout if self.attention_dropout is None else self.attention_dropout

    @property
    def ffn_dropout_p(self) -> float:
        return self.dropout if self.ffn_dropout is None else self.ffn_dropout

    @property
    def has_final_norm(self) -> bool:
        """A pre-LN stack's residual stream is never normalised unless the stack ends with a norm; a post-LN
        stack's already is (its last sublayer ends with one), so only some models (e.g. mBART) add one there."""
        return self.pre_norm if self.final_norm is None else self.final_norm

    @property
    def dedicated_pad(self) -> bool:
        """Whether the pad id is a token of its own. GPT-2 has no pad token: we pad with <|endoftext|>, a real
        token the model must read, predict and learn, so its embedding has no padding_idx
        (transformer.Embeddings) and decoding does not forbid it."""
        return self.pad_id not in (self.bos_id, self.eos_id)

    def mask_scheme(self) -> MaskScheme:
        return build_mask_scheme(self.mask, self.max_len)

    def check_finite(self) -> None:
        """ConfigError (one line) for nan or inf in a float axis (FLOAT_AXES) or a setting of model.rope_scaling."""
        settings = [(f"model.{name}", getattr(self, name), getattr(ModelAxes, name)) for name in FLOAT_AXES]
        defaults = rope_scaling_defaults(self.rope_scaling)
        settings += [
            (f"model.rope_scaling.{key}", value, defaults.get(key))
            for key, value in self.rope_scaling.items()
            if isinstance(value, float)
        ]
        for setting, value, default in settings:
            if value is not None and not math.isfinite(value):
                default_text = " (or null)" if default is None else f" (the default: {default})"
                raise ConfigError(f"{setting}={value} is not a finite number: give one{default_text}")

    def validate(self) -> TransformerConfig:
        """Raise ConfigError (one line: the field and the fix) for values that cannot work together."""

        def choice(name: str, value: str, allowed, names: str, hint: str = "") -> None:
            if value not in allowed:
                raise unknown_choice(f"model.{name}", value, allowed, names, hint)

        choice("arch", self.arch, ARCHITECTURES, "the architecture")
        choice("pos_encoding", self.pos_encoding, POSITIONAL_SCHEMES, "the positional scheme", " (none: no positions)")
        choice("norm_position", self.norm_position, NORM_POSITIONS, "where the norms sit")
        choice("norm_type", self.norm_type, NORMS, "the norm")
        choice(
            "attention_bias", self.attention_bias, ATTENTION_BIASES, "the projections with biases", " (none: no biases)"
        )
        if self.ffn:  # an attention-only model reads no model.activation, model.d_ff or model.ffn_dropout
            choice("activation", self.activation, FEEDFORWARDS, "the feed-forward network's activation")
        choice("pooling", self.pooling, POOLINGS, "the classifier's pooling")
        self.check_finite()
        if self.norm_eps <= 0:  # every model has norms (post-LN or pre-LN), so it is always read
            raise ConfigError(
                f"model.norm_eps={self.norm_eps} must be > 0: it keeps each norm's 1 / sqrt(variance + eps) finite "
                "on a constant input (the default 1e-05; Llama's 1e-06)"
            )
        if self.token_types < 0:
            raise ConfigError(f"model.token_types={self.token_types} must be >= 0 (0 = no token-type embeddings)")

        for name in ("d_model", "heads", "d_ff", "max_len"):
            if name == "d_ff" and not self.ffn:
                continue
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}={getattr(self, name)} must be a positive integer")
        if self.head_dim is not None and self.head_dim < 1:
            raise ConfigError(f"model.head_dim={self.head_dim} must be a positive integer (or null: d_model / heads)")
        if self.head_dim is None and self.d_model % self.heads != 0:  # a head size of its own needs no division
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0 and h <= 64]
            raise ConfigError(
                f"model.heads={self.heads} does not divide model.d_model={self.d_model}: "
                f"choose heads in {divisors}, change d_model, or set model.head_dim (each head's size)"
            )
        if self.kv_heads is not None and (self.kv_heads < 1 or self.heads % self.kv_heads != 0):
            choices = ", ".join(str(k) for k in range(1, self.heads + 1) if self.heads % k == 0)
            problem = "must be a positive integer dividing" if self.kv_heads < 1 else "does not divide"
            raise ConfigError(
                f"model.kv_heads={self.kv_heads} {problem} model.heads={self.heads}: choose one of {choices} "
                "(or null: as many as heads)"
            )
        POSITIONAL_SCHEMES[self.pos_encoding].check(self)  # e.g. rope needs an even head size
        for name in ("dropout", "attention_dropout", "ffn_dropout"):
            if name == "ffn_dropout" and not self.ffn:
                continue
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(
                    f"model.{name}={value} must be in [0, 1)" + (" (or null)" if name != "dropout" else "")
                )
        self.mask_scheme()  # its own settings (mask.window >= 1, ...)

        arch = ARCHITECTURES[self.arch]
        uses_encoder, uses_decoder = arch.has_encoder, arch.has_decoder
        if self.parallel_layers and not self.pre_norm:
            raise ConfigError(
                f"model.parallel_layers=true needs pre-LN (model.norm_position={self.norm_position} normalises the "
                "sum after each sublayer, a parallel layer its input once): set model.norm_position=pre"
            )
        if self.parallel_layers and arch.has_cross_attention:
            raise ConfigError(
                f"model.parallel_layers=true is not defined for arch={self.arch}: its decoder layers' cross-attention "
                "has no place beside self-attention and FFN; use arch=decoder_only or encoder_only, or set "
                "model.parallel_layers=false"
            )
        if uses_encoder and self.enc_layers < 1:
            raise ConfigError(f"model.enc_layers={self.enc_layers} must be >= 1 for arch={self.arch}")
        if uses_decoder and self.dec_layers < 1:
            raise ConfigError(f"model.dec_layers={self.dec_layers} must be >= 1 for arch={self.arch}")
        if uses_encoder and self.src_vocab_size < 5:
            raise ConfigError(f"src_vocab_size={self.src_vocab_size} is too small: the task must set it")
        if uses_decoder and self.tgt_vocab_size < 5:
            raise ConfigError(f"tgt_vocab_size={self.tgt_vocab_size} is too small: the task must set it")
        vocab = max(self.src_vocab_size, self.tgt_vocab_size)
        for name in ("pad_id", "bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < vocab:
                raise ConfigError(f"{name}={getattr(self, name)} is not a token of the vocabulary of {vocab}")
        for stop in self.stop_ids:
            if not 0 <= stop < vocab:
                raise ConfigError(f"stop_ids holds {stop}, which is not a token of the vocabulary of {vocab}")
        if arch.classifies and self.num_classes < 2:
            raise ConfigError(f"num_classes={self.num_classes}: arch={self.arch} needs a classification task")
        if self.share_src_tgt_embeddings and arch.has_cross_attention and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError(
                "model.share_src_tgt_embeddings=true needs one joint vocabulary "
                f"(src {self.src_vocab_size} != tgt {self.tgt_vocab_size}): set it to false"
            )
        return self
