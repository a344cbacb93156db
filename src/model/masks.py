"""Attention masks, built by small functions and combined per attention site.

Convention used everywhere in this package: a boolean mask with **True = this query may attend to
this key**. It is the convention of `torch.nn.functional.scaled_dot_product_attention` and the
inverse of `nn.MultiheadAttention`'s (True = blocked).

Shapes: masks broadcast against attention scores of shape (B, H, Tq, Tk). Functions return
(Tq, Tk) when the mask is the same for every sequence, and (B, 1, Tq, Tk) when it depends on the batch.

A mask *type* (config `mask=`) decides which masks each of the three sites gets:

    type       encoder self               decoder self                  cross (decoder -> encoder)
    standard   padding                    padding + causal              source padding
    causal     padding + causal           padding + causal              source padding
    window     padding + window(w)        padding + causal window(w)    source padding
    prefix     padding + prefix-LM(p)     padding + causal              source padding
    none       padding                    padding only (leaks future!)  source padding

A decoder-only model has one site, decoder self-attention; there `prefix` is the prefix-LM mask
(the first p tokens see each other, the rest is causal). Positions inside the prefix can then see
the token they are trained to predict, so the loss skips them (`prefix_loss_mask`).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .config import PAD_ID

SITES = ("encoder_self", "decoder_self", "cross")


# --- the building blocks ------------------------------------------------------------------------

def key_padding_mask(tokens: Tensor, pad_id: int = PAD_ID) -> Tensor:
    """(B, Tk) token ids -> (B, 1, 1, Tk): no query may attend to a padding key."""
    return (tokens != pad_id)[:, None, None, :]


def causal_mask(tq: int, tk: int, q_offset: int = 0, device=None) -> Tensor:
    """(Tq, Tk) look-ahead mask: query i (at absolute position q_offset + i) sees keys j <= its position.

    q_offset > 0 when queries are the newest tokens of a longer sequence (cached decoding).
    """
    q_pos = torch.arange(tq, device=device)[:, None] + q_offset  # (Tq, 1)
    k_pos = torch.arange(tk, device=device)[None, :]  # (1, Tk)
    return k_pos <= q_pos


def window_mask(tq: int, tk: int, width: int, causal: bool, q_offset: int = 0, device=None) -> Tensor:
    """(Tq, Tk) sliding window of width w: a query sees keys less than w positions away.

    bidirectional: |i - j| < w    (2w - 1 keys: itself and w - 1 neighbours on each side)
    causal:        0 <= i - j < w (w keys: itself and the w - 1 tokens before it)
    So one `window` gives both the same reach into the past; w = 1 means a token sees only itself.
    """
    q_pos = torch.arange(tq, device=device)[:, None] + q_offset
    k_pos = torch.arange(tk, device=device)[None, :]
    distance = q_pos - k_pos  # (Tq, Tk), positive = key in the past
    if causal:
        return (distance >= 0) & (distance < width)
    return distance.abs() < width


def prefix_lm_mask(tq: int, tk: int, prefix_len: int | Tensor, q_offset: int = 0, device=None) -> Tensor:
    """Prefix-LM mask: every query sees the whole prefix (bidirectional part) and causally after it.

    prefix_len is an int, shared by the batch -> (Tq, Tk), or a (B,) tensor -> (B, 1, Tq, Tk).
    """
    causal = causal_mask(tq, tk, q_offset, device)  # (Tq, Tk)
    k_pos = torch.arange(tk, device=device)
    if isinstance(prefix_len, Tensor):
        in_prefix = k_pos[None, :] < prefix_len[:, None]  # (B, Tk)
        return causal[None, None] | in_prefix[:, None, None, :]
    return causal | (k_pos < prefix_len)[None, :]


def combine(*masks: Tensor | None) -> Tensor | None:
    """AND of the given masks (None = no restriction), broadcast to a common shape."""
    result = None
    for mask in masks:
        if mask is not None:
            result = mask if result is None else result & mask
    return result


def as_4d(mask: Tensor | None) -> Tensor | None:
    """(Tq, Tk) -> (1, 1, Tq, Tk); 4-D masks pass through."""
    if mask is not None and mask.dim() == 2:
        return mask[None, None]
    return mask


# --- the masks of each site, chosen by mask type --------------------------------------------------

_warned_about_leak = False


def warn_if_leaking(mask_type: str) -> None:
    """mask_type='none' lets the decoder see the future: a legitimate ablation, but say so once."""
    global _warned_about_leak
    if mask_type == "none" and not _warned_about_leak:
        warnings.warn(
            "mask=none: the decoder has no look-ahead mask, so training sees future target tokens "
            "(the leak ablation); greedy decoding at test time will not match training loss.",
            stacklevel=4,  # point at the caller of build_model
        )
        _warned_about_leak = True


def encoder_self_mask(src: Tensor, mask_type: str, window: int, prefix_len: int = 0, pad_id: int = PAD_ID) -> Tensor:
    """(B, S) source tokens -> mask for encoder self-attention, (B, 1, S, S) or, for padding alone,
    the broadcastable (B, 1, 1, S)."""
    s = src.size(1)
    padding = key_padding_mask(src, pad_id)  # (B, 1, 1, S)
    if mask_type == "causal":
        return padding & causal_mask(s, s, device=src.device)
    if mask_type == "window":
        return padding & window_mask(s, s, window, causal=False, device=src.device)
    if mask_type == "prefix":
        return padding & prefix_lm_mask(s, s, prefix_len, device=src.device)
    return padding


def decoder_self_mask(
    tq: int,
    tk: int,
    mask_type: str,
    window: int,
    prefix_len: int | Tensor,
    keys: Tensor | None = None,
    q_offset: int = 0,
    pad_id: int = PAD_ID,
    device=None,
) -> Tensor:
    """Mask for decoder self-attention, (Tq, Tk) or (B, 1, Tq, Tk).

    keys: the (B, Tk) key tokens, to mask their padding (None when decoding, where no key is padding).
    q_offset: absolute position of the first query (cached decoding feeds one new token at a time).
    """
    if mask_type in ("standard", "causal"):
        structure = causal_mask(tq, tk, q_offset, device)
    elif mask_type == "window":
        structure = window_mask(tq, tk, window, causal=True, q_offset=q_offset, device=device)
    elif mask_type == "prefix":
        structure = prefix_lm_mask(tq, tk, prefix_len, q_offset, device)
    elif mask_type == "none":
        structure = torch.ones(tq, tk, dtype=torch.bool, device=device)
    else:
        raise ValueError(f"unknown mask type {mask_type!r}")
    padding = key_padding_mask(keys, pad_id) if keys is not None else None
    return as_4d(combine(structure, padding))


def prefix_loss_mask(tokens: Tensor, prefix_len: int) -> Tensor:
    """(B, T) -> (B, T) bool: which next-token predictions a prefix-LM may be trained on.

    Position i predicts token i + 1; inside the prefix that token is visible (bidirectional), so
    positions i < prefix_len - 1 would learn to copy. They are excluded, as in T5's prefix-LM."""
    positions = torch.arange(tokens.size(1), device=tokens.device)
    return (positions >= prefix_len - 1)[None, :].expand(tokens.size(0), -1)


def cross_mask(src: Tensor, pad_id: int = PAD_ID) -> Tensor:
    """(B, S) source tokens -> (B, 1, 1, S): decoder queries may attend to every non-pad source token."""
    return key_padding_mask(src, pad_id)
