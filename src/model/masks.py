"""Attention masks, built by small functions and combined per attention site.

Convention used everywhere in this package: a boolean mask with **True = this query may attend to
this key**. It is the convention of `torch.nn.functional.scaled_dot_product_attention` and the
inverse of `nn.MultiheadAttention`'s (True = blocked).

Shapes: masks broadcast against attention scores of shape (B, H, Tq, Tk). Functions return
(Tq, Tk) when the mask is the same for every sequence, and (B, 1, Tq, Tk) when it depends on the batch.

A mask *scheme* (config `mask=`, one small class each, at the bottom of this file) decides the
structure each attention site gets; padding is always masked on top of it:

    scheme     encoder self      decoder self       cross (decoder -> encoder)   decoder-only self
    standard   -                 causal             -                            causal
    causal     causal            causal             -                            causal
    window     window(w)         causal window(w)   -                            causal window(w)
    prefix     prefix-LM(p)      causal             -                            prefix-LM(p)
    none       -                 - (leaks future!)  -                            - (leaks future!)

In a decoder-only model with `prefix`, positions inside the prefix see the token they are trained
to predict, so the loss skips them (`trainable_positions`) and generation starts from the whole
prefix (`min_prompt_len`).

A new scheme is one class here (a dataclass: its fields are its settings, e.g. `mask.window=8`),
one entry in `MASK_SCHEMES`, and one yaml file in conf/mask/.

What the fused attention kernel is given (attention.py): on a CUDA GPU, PyTorch's flash-attention kernel takes no
mask tensor, only "no mask" or `is_causal=True`; any mask tensor sends the call to the memory-efficient kernel. So
each site's mask is handed to the attention as a `SiteMask`: the boolean tensor (built only when a path needs it)
and its `MaskForm`, what the fused kernel may be told instead. The form is read off the scheme's own structure
(`form_of`, once per shape, on the CPU), and it is EVERY_KEY or CAUSAL only when no key of the batch is padding.
Whether one is: `padded` when the caller knows it (from the batch on the host), else looked up where that costs
nothing (tokens on the CPU); on a GPU, looking would wait for the device, so the keys count as padded.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor

from .errors import ConfigError, ModelWarning
from .names import DECODER, ENCODER

# --- the building blocks ------------------------------------------------------------------------


def key_padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """(B, Tk) token ids -> (B, 1, 1, Tk): no query may attend to a padding key."""
    return (tokens != pad_id)[:, None, None, :]


def decoder_key_padding_mask(tokens: Tensor, pad_id: int, eos_id: int) -> Tensor:
    """(B, Tk) right-padded decoder inputs -> (B, 1, 1, Tk): the padding is the run of pad ids at the end of a row,
    less the tokens of that run that may be real. Some tokenizers give the pad id a second job:
    - Marian's and T5's decoders start from their pad token, and a decoder input always starts with a real token:
      a row's first token is never padding;
    - GPT-2 pads with <|endoftext|>, and Llama, Qwen2 and Mistral (without a pad token) with their eos: where
      pad_id == eos_id a text may end with the pad id, so the first token of the trailing run is taken as real.
      Where it is a text's real end, its query then sees it as cached decoding does; where it is padding, a causal
      mask keeps every real query from seeing it (they are all earlier) and the loss skips its output, so nothing
      real changes. Two caveats of reading padding off the ids alone: a text that ends in two eos tokens has the
      second read as padding; and under a mask that lets a query see later keys (mask=none, or a decoder-only
      prefix-LM whose prefix reaches into a row's padding), the real queries of a padded row see that one pad.
    For the framework's own vocabularies (pad only ever pads) this equals key_padding_mask."""
    is_pad = tokens == pad_id  # (B, Tk)
    padding = is_pad.flip(-1).cummin(-1).values.flip(-1)  # pad here and at every later position
    padding[:, 0] = False  # the row's first token
    if pad_id == eos_id:
        padding[:, 1:] = padding[:, 1:] & padding[:, :-1]  # the first token of the run: a text's end
    return (~padding)[:, None, None, :]


def real_positions(tokens: Tensor, pad_id: int, eos_id: int, decoder_side: bool) -> Tensor:
    """(B, T) bool, True where a token is not padding: the queries whose attention and outputs mean something.
    The decoder side's padding is the trailing run of pad ids less its real tokens (decoder_key_padding_mask);
    on the encoder side every pad id is padding (eos_id is not read)."""
    if decoder_side:
        return decoder_key_padding_mask(tokens, pad_id, eos_id)[:, 0, 0]
    return tokens != pad_id


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


def as_4d(mask: Tensor) -> Tensor:
    """(Tq, Tk) -> (1, 1, Tq, Tk); 4-D masks pass through."""
    return mask[None, None] if mask.dim() == 2 else mask


def prefix_loss_mask(tokens: Tensor, prefix_len: int) -> Tensor:
    """(B, T) -> (B, T) bool: which next-token predictions a prefix-LM may be trained on.

    Position i predicts token i + 1; inside the prefix that token is visible (bidirectional), so
    positions i < prefix_len - 1 would learn to copy. They are excluded, as in T5's prefix-LM."""
    positions = torch.arange(tokens.size(1), device=tokens.device)
    return (positions >= prefix_len - 1)[None, :].expand(tokens.size(0), -1)


def has_padding(tokens: Tensor, pad_id: int, eos_id: int, decoder_side: bool = False) -> bool:
    """Whether any of these (B, T) tokens is padding as the masks see it (real_positions). Reading the answer waits
    for the device the tokens are on: ask it of tokens still on the host (the CPU), where it costs a comparison."""
    return not bool(real_positions(tokens, pad_id, eos_id, decoder_side).all())


# --- the forms a fused kernel takes without a mask tensor ----------------------------------------------------------


class MaskForm(enum.Enum):
    """What a mask is, in the terms of `F.scaled_dot_product_attention`: the first two need no tensor, and only
    they let a CUDA GPU run the flash-attention kernel (docs/model.md, "Which attention kernel runs")."""

    EVERY_KEY = "every key"  # no key hidden from any query: called with no mask
    CAUSAL = "causal"  # exactly the look-ahead mask, Tq = Tk, query i sees keys j <= i: is_causal=True
    TENSOR = "tensor"  # anything else: the boolean tensor (attn_mask)


def form_of(structure: Tensor | None) -> MaskForm:
    """The form of a (Tq, Tk) or (B, 1, Tq, Tk) structure (None: no restriction)."""
    if structure is None or bool(structure.all()):
        return MaskForm.EVERY_KEY
    tq, tk = structure.shape[-2:]
    if tq == tk and torch.equal(structure, causal_mask(tq, tk, device=structure.device).expand_as(structure)):
        return MaskForm.CAUSAL
    return MaskForm.TENSOR


class SiteMask:
    """One attention site's mask for one batch, in the two forms the attention paths take.

    tensor  the boolean mask, True = may attend, (B|1, 1, Tq|1, Tk): what the explicit path and the memory-efficient
            kernel take. Built on first use: the flash kernel never needs it.
    form    what the fused kernel may be told instead (MaskForm): the structure's own form when no key is padding,
            else TENSOR.

    structure: the form of the site's structure alone (the scheme's, without padding); build: makes the tensor;
    real_keys: makes the (B, Tk) keys that are not padding (None: no key can be padding, as in cached decoding);
    padded: whether a key is padding, when the caller knows (None: see `keys_padded`).
    """

    def __init__(
        self,
        structure: MaskForm,
        build: Callable[[], Tensor],
        real_keys: Callable[[], Tensor] | None = None,
        padded: bool | None = None,
    ):
        self.structure = structure
        self._build = build
        self._real_keys = real_keys
        self.padded = padded
        # Each made once per forward pass, for every layer. (Not functools.cached_property: its lock breaks the graph
        # of a compiled model, `compile=true`, on Python 3.11.)
        self._tensor: Tensor | None = None
        self._form: MaskForm | None = None

    @property
    def tensor(self) -> Tensor:
        if self._tensor is None:
            self._tensor = self._build()  # (B|1, 1, Tq|1, Tk)
        return self._tensor

    @property
    def form(self) -> MaskForm:
        if self._form is None:
            padded = self.structure is not MaskForm.TENSOR and self.keys_padded()
            self._form = MaskForm.TENSOR if padded else self.structure
        return self._form

    def keys_padded(self) -> bool:
        """Known (no keys to pad, or the caller said), else looked at where that is free: on the CPU. On a GPU the
        answer would wait for the device (a sync every step), so the keys count as padded."""
        if self._real_keys is None:
            return False
        if self.padded is not None:
            return self.padded
        real = self._real_keys()  # (B, Tk)
        return real.device.type != "cpu" or not bool(real.all())


# --- mask schemes: which structure each site gets -------------------------------------------------


@dataclass
class MaskScheme:
    """standard, the paper: padding everywhere, plus the look-ahead (causal) mask in the decoder.

    The base class answers every question the model asks; a scheme overrides the structure of the sites
    it changes. Structures are (Tq, Tk) or (B, 1, Tq, Tk) booleans, or None for "no restriction";
    `q_offset` is the absolute position of the first query (cached decoding feeds one token at a time).
    """

    # A warning printed once when a model is built with this scheme (None: nothing surprising).
    warning: ClassVar[str | None] = None
    # Whether decoder positions may see later ones: then training differs from (cached) generation.
    sees_future: ClassVar[bool] = False

    # --- the structure of each site (what a scheme overrides) ---

    def encoder_structure(self, s: int, device=None) -> Tensor | None:
        return None

    def decoder_structure(self, tq: int, tk: int, q_offset: int = 0, device=None) -> Tensor | None:
        return causal_mask(tq, tk, q_offset, device)

    def decoder_only_structure(self, tq: int, tk: int, q_offset: int = 0, device=None) -> Tensor | None:
        """Self-attention of a decoder-only model (no encoder): the decoder's, unless a scheme says otherwise."""
        return self.decoder_structure(tq, tk, q_offset, device)

    def trainable_positions(self, tokens: Tensor) -> Tensor | None:
        """(B, T) bool of the decoder-only positions whose next-token loss is meaningful; None = all."""
        return None

    @property
    def min_prompt_len(self) -> int:
        """Tokens a decoder-only model must be given before it generates."""
        return 0

    def validate(self, max_len: int) -> None:
        """Raise ConfigError (one line) for settings that cannot work with sequences of up to max_len."""

    # --- the form of each site's structure (read off the structure above, once per shape, on the CPU) ---

    def encoder_form(self, s: int) -> MaskForm:
        return self._form((ENCODER, s), lambda: self.encoder_structure(s))

    def decoder_form(self, tq: int, tk: int, q_offset: int = 0, decoder_only: bool = False) -> MaskForm:
        site = self.decoder_only_structure if decoder_only else self.decoder_structure
        return self._form((DECODER, decoder_only, tq, tk, q_offset), lambda: site(tq, tk, q_offset))

    def _form(self, shape: tuple, structure: Callable[[], Tensor | None]) -> MaskForm:
        forms = self.__dict__.setdefault("_forms", {})  # not a field: no setting, not compared
        if shape not in forms:
            forms[shape] = form_of(structure())
        return forms[shape]

    # --- the masks of each site: padding AND structure (shared by every scheme) ---

    def encoder_self(self, src: Tensor, pad_id: int) -> Tensor:
        """(B, S) source tokens -> (B, 1, S, S), or the broadcastable (B, 1, 1, S) for padding alone."""
        padding = key_padding_mask(src, pad_id)  # (B, 1, 1, S)
        structure = self.encoder_structure(src.size(1), src.device)  # (S, S) or None
        return padding if structure is None else padding & structure

    def decoder_self(
        self,
        tq: int,
        tk: int,
        real_keys: Tensor | None = None,
        q_offset: int = 0,
        decoder_only: bool = False,
        device=None,
    ) -> Tensor:
        """(1, 1, Tq, Tk), or (B, 1, Tq, Tk) with padded keys: the mask of decoder self-attention.

        real_keys: (B, Tk) bool, the keys that are not padding (real_positions), or None when no key is padding
        (decoding with a cache)."""
        site = self.decoder_only_structure if decoder_only else self.decoder_structure
        structure = site(tq, tk, q_offset, device)
        if structure is None:
            structure = torch.ones(tq, tk, dtype=torch.bool, device=device)
        mask = structure if real_keys is None else structure & real_keys[:, None, None, :]
        return as_4d(mask)

    def cross(self, src: Tensor, pad_id: int) -> Tensor:
        """(B, S) source tokens -> (B, 1, 1, S): decoder queries may attend to every non-pad source token."""
        return key_padding_mask(src, pad_id)

    # --- the same masks as the attention takes them: tensor and form (SiteMask) ---

    def encoder_self_mask(self, src: Tensor, pad_id: int, padded: bool | None = None) -> SiteMask:
        return SiteMask(
            self.encoder_form(src.size(1)), lambda: self.encoder_self(src, pad_id), lambda: src != pad_id, padded
        )

    def decoder_self_mask(
        self,
        tq: int,
        tk: int,
        real_keys: Tensor | None = None,
        q_offset: int = 0,
        decoder_only: bool = False,
        device=None,
        padded: bool | None = None,
    ) -> SiteMask:
        """As decoder_self; with no `real_keys` (decoding with a cache) no key is padding."""
        return SiteMask(
            self.decoder_form(tq, tk, q_offset, decoder_only),
            lambda: self.decoder_self(tq, tk, real_keys, q_offset, decoder_only, device),
            None if real_keys is None else lambda: real_keys,
            padded,
        )

    def cross_mask(self, src: Tensor, pad_id: int, padded: bool | None = None) -> SiteMask:
        return SiteMask(MaskForm.EVERY_KEY, lambda: self.cross(src, pad_id), lambda: src != pad_id, padded)


@dataclass
class CausalMask(MaskScheme):
    """causal: the encoder reads left to right too."""

    def encoder_structure(self, s: int, device=None) -> Tensor:
        return causal_mask(s, s, device=device)


@dataclass
class WindowMask(MaskScheme):
    """window: local attention; a query sees keys less than `window` positions away (causally in the decoder)."""

    window: int = 4  # 1 = each token sees only itself

    def encoder_structure(self, s: int, device=None) -> Tensor:
        return window_mask(s, s, self.window, causal=False, device=device)

    def decoder_structure(self, tq: int, tk: int, q_offset: int = 0, device=None) -> Tensor:
        return window_mask(tq, tk, self.window, causal=True, q_offset=q_offset, device=device)

    def validate(self, max_len: int) -> None:
        if self.window < 1:
            raise ConfigError(f"mask.window={self.window} must be at least 1 (1 = each token sees only itself)")


@dataclass
class PrefixMask(MaskScheme):
    """prefix: prefix-LM. The first `prefix_len` positions attend to each other, later ones causally.

    Encoder-decoder and encoder-only: applied to the encoder (the source is the prefix), between `standard`
    and `causal`; the decoder stays causal, since a prefix there would show it the target. Decoder-only: applied
    to its self-attention, and positions inside the prefix are not trained on (they see their target)."""

    prefix_len: int = 8

    def encoder_structure(self, s: int, device=None) -> Tensor:
        return prefix_lm_mask(s, s, self.prefix_len, device=device)

    def decoder_only_structure(self, tq: int, tk: int, q_offset: int = 0, device=None) -> Tensor:
        return prefix_lm_mask(tq, tk, self.prefix_len, q_offset, device)

    def trainable_positions(self, tokens: Tensor) -> Tensor:
        return prefix_loss_mask(tokens, self.prefix_len)

    @property
    def min_prompt_len(self) -> int:
        return self.prefix_len

    def validate(self, max_len: int) -> None:
        if not 0 <= self.prefix_len <= max_len:
            raise ConfigError(
                f"mask.prefix_len={self.prefix_len} must be in [0, model.max_len={max_len}]: "
                "lower mask.prefix_len or raise model.max_len"
            )


@dataclass
class NoMask(MaskScheme):
    """none: no look-ahead mask in the decoder, the leak ablation (padding is still masked)."""

    sees_future: ClassVar[bool] = True
    warning: ClassVar[str | None] = (
        "mask=none: the decoder has no look-ahead mask, so training sees future target tokens "
        "(the leak ablation); greedy decoding at test time will not match training loss."
    )

    def decoder_structure(self, tq: int, tk: int, q_offset: int = 0, device=None) -> None:
        return None


# The registry: `mask=<name>` (conf/mask/<name>.yaml) selects the class; its fields are the settings.
MASK_SCHEMES: dict[str, type[MaskScheme]] = {
    "standard": MaskScheme,
    "causal": CausalMask,
    "window": WindowMask,
    "prefix": PrefixMask,
    "none": NoMask,
}

_warned: set[str] = set()


def build_mask_scheme(settings: dict[str, Any], max_len: int) -> MaskScheme:
    """The one place that reads `mask.type`: {"type": "window", "window": 4} -> WindowMask(window=4), checked."""
    settings = dict(settings)
    name = settings.pop("type", "standard")
    if name not in MASK_SCHEMES:
        raise ConfigError(f"mask={name!r} is not known: choose one of {', '.join(MASK_SCHEMES)}")
    scheme_class = MASK_SCHEMES[name]
    known = {f.name for f in fields(scheme_class)}
    unknown = sorted(set(settings) - known)
    if unknown:
        allowed = ", ".join(f"mask.{k}" for k in sorted(known)) or "none"
        raise ConfigError(f"mask.{unknown[0]} is not a setting of mask={name} (its settings: {allowed}): drop it")
    scheme = scheme_class(**settings)
    scheme.validate(max_len)
    return scheme


def warn_once(scheme: MaskScheme) -> None:
    """A scheme's warning (mask=none: the leak) is a legitimate ablation: say so once per process."""
    message = type(scheme).warning
    if message is not None and message not in _warned:
        warnings.warn(message, ModelWarning, stacklevel=4)  # where Python shows its place (the commands show none)
        _warned.add(message)
