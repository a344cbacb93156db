"""Positional information: how the model learns where a token is.

Each scheme is one small class. A scheme acts at (at most) one of three places, so the model calls
all three hooks and the scheme fills in the one it needs:

    add_to_embeddings(x, start)   absolute schemes add a vector per position     (sinusoidal, learned)
    rotate(q, k, start)           rotary rotates queries and keys by position    (rope)
    attention_bias(tq, tk, start) ALiBi adds a distance penalty to the scores    (alibi)

`start` is the absolute position of the first token (non-zero in cached decoding). Rotary and ALiBi
act inside self-attention only; cross-attention has no notion of relative position between the two
sequences, so it gets neither.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .names import DECODER, ENCODER

if TYPE_CHECKING:  # annotations only: config.py imports this module for its registry
    from .config import TransformerConfig


class PositionalScheme(nn.Module):
    """No positional information ('none'): the bag-of-tokens ablation. The base of every scheme."""

    # The model.* settings of its own the scheme reads (src.run warns about those given to another scheme).
    settings: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> PositionalScheme:
        return cls()

    @staticmethod
    def check(cfg: TransformerConfig) -> None:
        """Raise ConfigError (one line) when the model's shape does not suit the scheme."""

    def add_to_embeddings(self, x: Tensor, start: int = 0) -> Tensor:  # x (B, T, D)
        return x

    def rotate(self, q: Tensor, k: Tensor, start: int = 0) -> tuple[Tensor, Tensor]:  # (B, H, T, Dh)
        return q, k

    def attention_bias(self, tq: int, tk: int, q_start: int = 0) -> Tensor | None:
        return None

    def for_stack(self, stack: str) -> PositionalScheme:
        """The scheme as the stack `stack` ("encoder" or "decoder") uses it: the scheme itself, but for one with a
        part of its own per stack (T5's relative position bias: a table per stack)."""
        return self


class SinusoidalPositions(PositionalScheme):
    """The paper's fixed encoding: PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...).

    `interleaved=False` stores the same sines and cosines in two halves instead, PE[pos, i] = sin(...) and
    PE[pos, d/2 + i] = cos(...) ('sinusoidal_halves': Marian MT and fairseq's layout). The two carry the same
    information, but a model trained with one reads garbage from the other."""

    table: Tensor  # (max_len, D), a buffer

    def __init__(self, d_model: int, max_len: int, interleaved: bool = True):
        super().__init__()
        # Computed in float64, stored in float32 (Apple's mps has no float64), cast to the input's dtype.
        position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (L, 1)
        inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
        sines = torch.sin(position * inv_freq)  # (L, ceil(D/2))
        cosines = torch.cos(position * inv_freq[: d_model // 2])  # (L, floor(D/2)): an odd D has one cos fewer
        table = torch.zeros(max_len, d_model, dtype=torch.float64)  # (L, D)
        if interleaved:
            table[:, 0::2], table[:, 1::2] = sines, cosines
        else:
            table[:, : sines.size(1)], table[:, sines.size(1) :] = sines, cosines
        self.register_buffer("table", table.float(), persistent=False)

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> SinusoidalPositions:
        return cls(cfg.d_model, cfg.max_len)

    def add_to_embeddings(self, x: Tensor, start: int = 0) -> Tensor:
        return x + self.table[start : start + x.size(1)].to(x.dtype)  # (B, T, D) + (T, D)


class SinusoidalHalvesPositions(SinusoidalPositions):
    """'sinusoidal_halves': the sines in the first half of the vector, the cosines in the second (Marian)."""

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> SinusoidalPositions:
        return cls(cfg.d_model, cfg.max_len, interleaved=False)


class LearnedPositions(PositionalScheme):
    """A trained vector per absolute position (BERT, GPT-2)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        self.embedding = nn.Embedding(max_len, d_model)

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> LearnedPositions:
        return cls(cfg.d_model, cfg.max_len)

    def add_to_embeddings(self, x: Tensor, start: int = 0) -> Tensor:
        positions = torch.arange(start, start + x.size(1), device=x.device)
        return x + self.embedding(positions)


# --- RoPE's frequency scalings, as the pretrained families store them (`model.rope_scaling`) -----------------------


@dataclass(frozen=True)
class LinearRopeScaling:
    """Position interpolation (Chen et al. 2023): every frequency divided by `factor`, so a sequence `factor` times
    longer than the trained ones turns through the angles the model trained on (transformers' rope_type "linear")."""

    factor: float = 1.0

    def check(self) -> None:
        if self.factor <= 0:
            raise ConfigError(f"model.rope_scaling.factor={self.factor} must be > 0")

    def scales_nothing(self) -> bool:
        """Every frequency divided by 1: the unscaled RoPE (legal, as a sweep's baseline; src.run warns)."""
        return self.factor == 1

    def scale(self, inv_freq: Tensor) -> Tensor:  # (Dr/2,)
        return inv_freq / self.factor


@dataclass(frozen=True)
class Llama3RopeScaling:
    """Llama 3.1's scaling (transformers' rope_type "llama3"): frequencies whose wavelength is longer than
    original_max_len / low_freq_factor are divided by `factor` (interpolated), those shorter than
    original_max_len / high_freq_factor are kept, and the band between is blended smoothly."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_len: int = 8192  # transformers' original_max_position_embeddings

    def check(self) -> None:
        if self.factor <= 0 or self.original_max_len < 1:
            raise ConfigError(
                f"model.rope_scaling: factor={self.factor} must be > 0 and original_max_len={self.original_max_len} "
                ">= 1"
            )
        if not 0 < self.low_freq_factor < self.high_freq_factor:
            raise ConfigError(
                f"model.rope_scaling: low_freq_factor={self.low_freq_factor} must be > 0 and below "
                f"high_freq_factor={self.high_freq_factor}"
            )

    def scales_nothing(self) -> bool:
        """factor 1: the slow frequencies divided by 1, and the band between blends two equal values, whatever the
        other settings: the unscaled RoPE (legal, as a sweep's baseline; src.run warns)."""
        return self.factor == 1

    def scale(self, inv_freq: Tensor) -> Tensor:  # (Dr/2,)
        low_freq_wavelen = self.original_max_len / self.low_freq_factor  # longer than this: interpolated
        high_freq_wavelen = self.original_max_len / self.high_freq_factor  # shorter than this: kept
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / self.factor, inv_freq)
        smooth = (self.original_max_len / wavelen - self.low_freq_factor) / (
            self.high_freq_factor - self.low_freq_factor
        )
        blended = (1 - smooth) * scaled / self.factor + smooth * scaled
        between = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        return torch.where(between, blended, scaled)


# `model.rope_scaling.type`: name -> the scaling's settings class (its fields are the other keys).
ROPE_SCALINGS: dict[str, type] = {"linear": LinearRopeScaling, "llama3": Llama3RopeScaling}


def rope_scaling_defaults(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults of the scaling `settings` names ({"type": "llama3", ...} -> {"factor": 8.0, ...}); {} for none or an
    unknown type."""
    name = (settings or {}).get("type")
    cls = ROPE_SCALINGS.get(name) if isinstance(name, str) else None
    return {} if cls is None else {f.name: f.default for f in fields(cls)}


def build_rope_scaling(settings: Mapping[str, Any] | None) -> LinearRopeScaling | Llama3RopeScaling | None:
    """`model.rope_scaling` ({"type": "llama3", "factor": 8.0, ...}; empty or None: no scaling) as its class, checked:
    ConfigError (one line) for an unknown type or setting. The one place that reads it."""
    if not settings:
        return None
    settings = dict(settings)
    name = settings.pop("type", None)
    if name not in ROPE_SCALINGS:
        from .config import unknown_choice  # config.py imports this module for its registries

        raise unknown_choice(
            "model.rope_scaling.type",
            name,
            ROPE_SCALINGS,
            "a scaling of the frequencies",
            " (or model.rope_scaling={} for none)",
        )
    cls = ROPE_SCALINGS[name]
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(
            f"model.rope_scaling: {', '.join(unknown)} is not a setting of type={name}: it takes {', '.join(known)}"
        )
    scaling = cls(**settings)
    scaling.check()
    return scaling


class RotaryPositions(PositionalScheme):
    """RoPE (Su et al. 2021): rotate each pair of query/key dimensions by an angle proportional to the
    position, so q_i . k_j depends on positions only through i - j. Uses the rotate-half pairing
    (dimension d is paired with d + Dr/2), as in GPT-NeoX and LLaMA.

    Pair i turns at frequency base^(-2i/Dr): `model.rope_theta` is the base (10,000 in the paper; Llama 3 500,000),
    and `model.rope_scaling` may rescale the frequencies (LinearRopeScaling, Llama3RopeScaling). Partial rotary
    (`model.rope_fraction` < 1, GPT-NeoX's rotary_pct): only the first Dr = fraction * Dh dimensions of each head
    turn; the rest pass unchanged, carrying no position."""

    settings = ("rope_theta", "rope_fraction", "rope_scaling")
    cos: Tensor  # (max_len, Dr), buffers
    sin: Tensor

    def __init__(
        self,
        head_dim: int,
        max_len: int,
        base: float = 10000.0,
        fraction: float = 1.0,
        scaling: LinearRopeScaling | Llama3RopeScaling | None = None,
    ):
        super().__init__()
        self.rotary_dim = rotary_dim(head_dim, fraction)  # Dr
        dims = self.rotary_dim
        # In float32, as transformers and the models' reference code compute them: a pretrained model's angles are
        # exactly these (at long positions float32's rounding is part of what it learned)
        inv_freq = 1.0 / base ** (torch.arange(0, dims, 2, dtype=torch.int64).float() / dims)  # (Dr/2,)
        if scaling is not None:
            inv_freq = scaling.scale(inv_freq)
        angles = torch.arange(max_len).float()[:, None] * inv_freq[None, :]  # (L, Dr/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, Dr)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> RotaryPositions:
        scaling = build_rope_scaling(cfg.rope_scaling)
        return cls(cfg.head_size, cfg.max_len, cfg.rope_theta, cfg.rope_fraction, scaling)

    @staticmethod
    def check(cfg: TransformerConfig) -> None:
        if cfg.rope_theta <= 1:
            raise ConfigError(f"model.rope_theta={cfg.rope_theta} must be > 1 (the paper's 10000, Llama 3's 500000)")
        if not 0 < cfg.rope_fraction <= 1:
            raise ConfigError(f"model.rope_fraction={cfg.rope_fraction} must be in (0, 1]: the share of each head's "
                              "dimensions that turn")  # fmt: skip
        dims = rotary_dim(cfg.head_size, cfg.rope_fraction)
        if dims < 2 or dims % 2 != 0:
            raise ConfigError(
                f"model.pos_encoding=rope turns pairs of dimensions: model.rope_fraction={cfg.rope_fraction} of the "
                f"head size {cfg.head_size} gives {dims}: choose a fraction (or head size) that gives an "
                "even number >= 2"
            )
        build_rope_scaling(cfg.rope_scaling)

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        first, second = x.chunk(2, dim=-1)
        return torch.cat([-second, first], dim=-1)

    def _turn(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """x (B, H, T, Dh): its first Dr dimensions turned, the rest as they are."""
        if self.rotary_dim == x.size(-1):
            return x * cos + self._rotate_half(x) * sin
        turned, kept = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        return torch.cat([turned * cos + self._rotate_half(turned) * sin, kept], dim=-1)

    def rotate(self, q: Tensor, k: Tensor, start: int = 0) -> tuple[Tensor, Tensor]:
        t = q.size(-2)
        cos = self.cos[start : start + t].to(q.dtype)  # (T, Dr), broadcast over (B, H)
        sin = self.sin[start : start + t].to(q.dtype)
        return self._turn(q, cos, sin), self._turn(k, cos, sin)


def rotary_dim(head_dim: int, fraction: float) -> int:
    """The dimensions of each head that RoPE turns: int(fraction * Dh), as transformers counts them."""
    return int(head_dim * fraction)


class ALiBiPositions(PositionalScheme):
    """ALiBi (Press et al. 2022): no position vectors; each head h adds -m_h * |i - j| to its scores,
    with slopes m_h = 2^(-8h/H), a geometric sequence, so some heads look far and some near.
    (For H not a power of two the paper interleaves two such sequences; we use the formula as is.)
    |i - j| makes it symmetric for bidirectional attention; under a causal mask only i >= j remains."""

    slopes: Tensor  # (H,), a buffer

    def __init__(self, heads: int):
        super().__init__()
        slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)])
        self.register_buffer("slopes", slopes, persistent=False)  # (H,)

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> ALiBiPositions:
        return cls(cfg.heads)

    def attention_bias(self, tq: int, tk: int, q_start: int = 0) -> Tensor:
        q_pos = torch.arange(q_start, q_start + tq, device=self.slopes.device)[:, None]
        k_pos = torch.arange(tk, device=self.slopes.device)[None, :]
        distance = (q_pos - k_pos).abs()  # (Tq, Tk)
        return -self.slopes[:, None, None] * distance  # (H, Tq, Tk)


def relative_position_bucket(relative: Tensor, bidirectional: bool, buckets: int, max_distance: int) -> Tensor:
    """T5's buckets (Raffel et al. 2020, section 2.1; Mesh TensorFlow's): the distance key - query as one of
    `buckets` classes. Half of them (per direction, when bidirectional) are exact distances 0, 1, 2, ...; the other
    half grow logarithmically up to max_distance, beyond which every distance shares the last bucket. A decoder
    (not bidirectional) sees only keys at or before the query: a later key (relative > 0) falls in bucket 0."""
    bucket = torch.zeros_like(relative)
    if bidirectional:
        buckets //= 2
        bucket = bucket + (relative > 0).long() * buckets  # keys after the query: the upper half
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)  # how far back the key is
    exact = buckets // 2  # exact_distances(); max_distance must exceed it (T5RelativePositions.check)
    # log-spaced buckets for the larger distances (computed where distance >= exact only: clamp keeps log finite)
    far = (
        exact
        + (
            torch.log(distance.clamp(min=exact).float() / exact) / math.log(max_distance / exact) * (buckets - exact)
        ).long()
    )
    far = far.clamp(max=buckets - 1)
    return bucket + torch.where(distance < exact, distance, far)


def exact_distances(buckets: int, bidirectional: bool) -> int:
    """How many distances relative_position_bucket gives a bucket of their own, per direction: half of each
    direction's buckets (an encoder's: buckets/4; a decoder's, one-way: buckets/2)."""
    return (buckets // 2 if bidirectional else buckets) // 2


class RelativePositionBias(PositionalScheme):
    """One stack's T5 relative position bias: a learned scalar per head and bucket of the distance from query to key
    (relative_position_bucket), added to the attention scores of every self-attention layer of the stack (T5
    computes it in the first layer and passes it on: the same table)."""

    def __init__(self, heads: int, buckets: int, max_distance: int, bidirectional: bool):
        super().__init__()
        self.buckets, self.max_distance, self.bidirectional = buckets, max_distance, bidirectional
        self.embedding = nn.Embedding(buckets, heads)  # (buckets, H)

    def attention_bias(self, tq: int, tk: int, q_start: int = 0) -> Tensor:
        device = self.embedding.weight.device
        query = torch.arange(q_start, q_start + tq, device=device)[:, None]  # absolute positions (cached decoding)
        key = torch.arange(tk, device=device)[None, :]
        bucket = relative_position_bucket(key - query, self.bidirectional, self.buckets, self.max_distance)  # (Tq, Tk)
        return self.embedding(bucket).permute(2, 0, 1)  # (H, Tq, Tk)


class T5RelativePositions(PositionalScheme):
    """T5's relative position buckets (`model.pos_encoding=t5_relative`): no position vectors; each stack's
    self-attention adds a learned per-head bias of the bucketed distance from query to key. The encoder's buckets
    tell earlier keys from later ones (bidirectional), a decoder's see only earlier keys (its mask hides the rest).
    Cross-attention gets none. `model.relative_buckets` (32) and `model.relative_max_distance` (128) as T5's."""

    settings = ("relative_buckets", "relative_max_distance")

    def __init__(self, heads: int, buckets: int, max_distance: int, stacks: tuple[str, ...]):
        super().__init__()
        self.stacks = nn.ModuleDict()  # one table per stack; the encoder's buckets tell before from after
        for stack in stacks:
            self.stacks[stack] = RelativePositionBias(heads, buckets, max_distance, bidirectional=stack == ENCODER)

    @staticmethod
    def stacks_of(cfg: TransformerConfig) -> tuple[str, ...]:
        """The stacks the architecture has ("encoder", "decoder"), each with a table for its self-attention."""
        from .config import ARCHITECTURES  # imported here: config.py imports this module at its top

        return ARCHITECTURES[cfg.arch].stacks

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> T5RelativePositions:
        return cls(cfg.heads, cfg.relative_buckets, cfg.relative_max_distance, cls.stacks_of(cfg))

    @staticmethod
    def check(cfg: TransformerConfig) -> None:
        # Any count is T5's (transformers takes any, and so do we, with its integer halvings), as long as every
        # stack keeps at least one exact distance: the log-spaced buckets are measured from the last one. An
        # encoder's buckets are halved twice (per direction, then exact), a decoder's once.
        one_way = DECODER in T5RelativePositions.stacks_of(cfg)
        fewest = 2 if one_way and ENCODER not in T5RelativePositions.stacks_of(cfg) else 4
        if cfg.relative_buckets < fewest:
            stack = "the encoder" if fewest == 4 else "the decoder"
            raise ConfigError(
                f"model.relative_buckets={cfg.relative_buckets} leaves {stack} no exact distance: "
                f"give model.relative_buckets={fewest} or more (T5's is 32)"
            )
        # The log-spaced buckets grow from the last exact distance up to max_distance: at or below it, the log's base
        # max_distance / exact is <= 1 and the buckets come out negative or undefined (transformers' T5Attention
        # computes the same ones). A decoder's buckets are one-way, so it has twice the encoder's exact distances.
        exact = exact_distances(cfg.relative_buckets, bidirectional=not one_way)
        if cfg.relative_max_distance <= exact:
            whose = (
                f"a decoder's one-way buckets, relative_buckets//2 = {exact}"
                if one_way
                else f"the encoder's buckets per direction, relative_buckets//4 = {exact}"
            )
            raise ConfigError(
                f"model.relative_max_distance={cfg.relative_max_distance} must exceed the exact distances of "
                f"{whose}: set model.relative_max_distance={exact + 1} or more (T5's is 128), or fewer "
                "model.relative_buckets"
            )

    def for_stack(self, stack: str) -> PositionalScheme:
        table = self.stacks[stack]
        assert isinstance(table, RelativePositionBias)
        return table


# `model.pos_encoding`: name -> scheme class. A new scheme is one class with `from_config` and one entry here.
POSITIONAL_SCHEMES: dict[str, type[PositionalScheme]] = {
    "sinusoidal": SinusoidalPositions,
    "sinusoidal_halves": SinusoidalHalvesPositions,
    "learned": LearnedPositions,
    "rope": RotaryPositions,
    "alibi": ALiBiPositions,
    "t5_relative": T5RelativePositions,
    "none": PositionalScheme,
}


def build_positional(cfg: TransformerConfig) -> PositionalScheme:
    """The one place that reads `model.pos_encoding`."""
    return POSITIONAL_SCHEMES[cfg.pos_encoding].from_config(cfg)
