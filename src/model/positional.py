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
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .errors import ConfigError

if TYPE_CHECKING:  # annotations only: config.py imports this module for its registry
    from .config import TransformerConfig


class PositionalScheme(nn.Module):
    """No positional information ('none'): the bag-of-tokens ablation. The base of every scheme."""

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


class RotaryPositions(PositionalScheme):
    """RoPE (Su et al. 2021): rotate each pair of query/key dimensions by an angle proportional to the
    position, so q_i . k_j depends on positions only through i - j. Uses the rotate-half pairing
    (dimension d is paired with d + Dh/2), as in GPT-NeoX and LLaMA."""

    cos: Tensor  # (max_len, Dh), buffers
    sin: Tensor

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (Dh/2,)
        angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (L, Dh/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, Dh)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> RotaryPositions:
        return cls(cfg.head_dim, cfg.max_len)

    @staticmethod
    def check(cfg: TransformerConfig) -> None:
        if cfg.head_dim % 2 != 0:
            raise ConfigError(
                f"model.pos_encoding=rope needs an even head size, got d_model/heads={cfg.head_dim}: "
                "change model.d_model or model.heads"
            )

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        first, second = x.chunk(2, dim=-1)
        return torch.cat([-second, first], dim=-1)

    def rotate(self, q: Tensor, k: Tensor, start: int = 0) -> tuple[Tensor, Tensor]:
        t = q.size(-2)
        cos = self.cos[start : start + t].to(q.dtype)  # (T, Dh), broadcast over (B, H)
        sin = self.sin[start : start + t].to(q.dtype)
        return q * cos + self._rotate_half(q) * sin, k * cos + self._rotate_half(k) * sin


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


# `model.pos_encoding`: name -> scheme class. A new scheme is one class with `from_config` and one entry here.
POSITIONAL_SCHEMES: dict[str, type[PositionalScheme]] = {
    "sinusoidal": SinusoidalPositions,
    "sinusoidal_halves": SinusoidalHalvesPositions,
    "learned": LearnedPositions,
    "rope": RotaryPositions,
    "alibi": ALiBiPositions,
    "none": PositionalScheme,
}


def build_positional(cfg: TransformerConfig) -> PositionalScheme:
    """The one place that reads `model.pos_encoding`."""
    return POSITIONAL_SCHEMES[cfg.pos_encoding].from_config(cfg)
