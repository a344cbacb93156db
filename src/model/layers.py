"""One encoder layer and one decoder layer (Vaswani et al. 2017, section 3.1), their sublayers one after the other
(the paper) or side by side (parallel layers, GPT-J and PaLM: `model.parallel_layers`)."""

from __future__ import annotations

from torch import Tensor, nn

from .attention import ATTENTION_BIASES, Mask, MultiHeadAttention
from .config import TransformerConfig
from .feedforward import at_real_positions, build_feedforward
from .names import CROSS, DECODER_FFN, DECODER_SELF, ENCODER_FFN, ENCODER_SELF
from .norms import Residual, Sublayer, build_norm, parallel_residual
from .points import point_name
from .positional import PositionalScheme


def _residual(cfg: TransformerConfig, own_norm: bool = True) -> Residual:
    """A sublayer's residual block; own_norm False: a parallel layer's later block, which reads the first one's."""
    norm = build_norm(cfg.norm_type, cfg.d_model, cfg.norm_eps) if own_norm else None
    return Residual(norm, cfg.dropout, cfg.pre_norm)


def name_layer_points(sublayers, index: int) -> None:
    """Name the activation points of layer `index`'s sublayers, (site, residual block, attention or None) each:
    resid_pre@<site>:<index>, out@..., resid_post@..., and at attention sites q@, k@, v@, z@, pattern@ (points.py)."""
    for site, block, attention in sublayers:
        where = f"{site}:{index}"
        block.resid_pre_point.name = point_name("resid_pre", where)
        block.out_point.name = point_name("out", where)
        block.resid_post_point.name = point_name("resid_post", where)
        if attention is not None:
            for kind in ("q", "k", "v", "z", "pattern"):
                getattr(attention, f"{kind}_point").name = point_name(kind, where)


def _attention(cfg: TransformerConfig, is_self_attention: bool) -> MultiHeadAttention:
    """A layer's self- or cross-attention: H query heads of size Dh (model.head_dim), cfg.kv_head_count key/value
    heads (grouped-query attention when fewer), the projections' biases of model.attention_bias, and QK-norm with
    the model's norm when model.qk_norm."""
    return MultiHeadAttention(
        cfg.d_model,
        cfg.heads,
        cfg.attention_dropout_p,
        is_self_attention,
        kv_heads=cfg.kv_head_count,
        head_dim=cfg.head_size,
        biases=ATTENTION_BIASES[cfg.attention_bias],
        qk_norm=(lambda size: build_norm(cfg.norm_type, size, cfg.norm_eps)) if cfg.qk_norm else None,
    )


def _feedforward(cfg: TransformerConfig) -> nn.Module | None:
    """A layer's feed-forward network; None in an attention-only model (`model.ffn=false`, Elhage et al. 2021),
    whose layers have no feed-forward sublayer: no parameters, nothing in the forward pass, no activation points,
    no `*_ffn` site (`ffn` and `ffn_block` are None)."""
    if not cfg.ffn:
        return None
    return build_feedforward(cfg.activation, cfg.d_model, cfg.d_ff, cfg.ffn_dropout_p, bias=cfg.ffn_bias)


class EncoderLayer(nn.Module):
    """Self-attention, then a feed-forward network (none with `model.ffn=false`); each in a residual block. With
    `model.parallel_layers` both read one norm of the layer's input, the first block's (the FFN's block has none)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.parallel = cfg.parallel_layers
        self.self_attn = _attention(cfg, is_self_attention=True)
        self.ffn = _feedforward(cfg)  # (the order of the modules is the order of the initialisation's draws)
        self.attn_block = _residual(cfg)
        self.ffn_block = _residual(cfg, own_norm=not self.parallel) if self.ffn is not None else None

    def sublayers(self) -> list[tuple[str, Residual, MultiHeadAttention | None]]:
        """(site, residual block, attention module or None), in forward order."""
        found: list[tuple[str, Residual, MultiHeadAttention | None]] = [(ENCODER_SELF, self.attn_block, self.self_attn)]
        if self.ffn_block is not None:
            found.append((ENCODER_FFN, self.ffn_block, None))
        return found

    def forward(
        self,
        x: Tensor,
        mask: Mask,
        positional: PositionalScheme,
        need_weights: bool = False,
        real: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        # x (B, S, D); mask: a SiteMask, its tensor (B, 1, S|1, S) (one row of padding alone, broadcast over the
        # queries); real (B, S): not padding

        def self_attention(h: Tensor) -> tuple[Tensor, Tensor | None]:  # (B, S, D) -> (B, S, D), (B, H, S, S)
            return self.self_attn(h, mask=mask, positional=positional, need_weights=need_weights)

        def feedforward(h: Tensor) -> tuple[Tensor, None]:  # (B, S, D) -> (B, S, D), each position alone
            assert self.ffn is not None
            return at_real_positions(self.ffn, h, real), None

        if not self.parallel:
            # The paper: one sublayer after the other, each in its residual block (norms.Residual: pre-LN
            # x + Sublayer(Norm(x)), post-LN Norm(x + Sublayer(x))).
            x, weights = self.attn_block(x, self_attention)  # (B, S, D)
            if self.ffn_block is not None:  # none in an attention-only model
                x, _ = self.ffn_block(x, feedforward)  # (B, S, D)
            return x, weights  # (B, S, D), (B, H, S, S) or None

        # Parallel layers (GPT-J, PaLM): both sublayers read one norm of x, their outputs added to x side by side
        # (norms.parallel_residual).
        parts: list[tuple[Residual, Sublayer]] = [(self.attn_block, self_attention)]
        if self.ffn_block is not None:
            parts.append((self.ffn_block, feedforward))
        x, (weights, *_) = parallel_residual(x, parts)
        return x, weights  # (B, S, D), (B, H, S, S) or None


class DecoderLayer(nn.Module):
    """Masked self-attention over the target, cross-attention to the encoder memory, then a
    feed-forward network; each in a residual block. Decoder-only models skip the cross-attention, attention-only
    ones (`model.ffn=false`) the feed-forward network. With `model.parallel_layers` (decoder-only models) the
    self-attention and the FFN read one norm of the layer's input, the self-attention block's."""

    def __init__(self, cfg: TransformerConfig, has_cross_attention: bool = True):
        super().__init__()
        self.parallel = cfg.parallel_layers
        self.self_attn = _attention(cfg, is_self_attention=True)
        self.self_block = _residual(cfg)
        self.cross_attn = None
        if has_cross_attention:
            self.cross_attn = _attention(cfg, is_self_attention=False)
            self.cross_block = _residual(cfg, own_norm=not self.parallel)
        self.ffn = _feedforward(cfg)
        self.ffn_block = _residual(cfg, own_norm=not self.parallel) if self.ffn is not None else None

    def sublayers(self) -> list[tuple[str, Residual, MultiHeadAttention | None]]:
        """(site, residual block, attention module or None), in forward order."""
        found: list[tuple[str, Residual, MultiHeadAttention | None]] = [(DECODER_SELF, self.self_block, self.self_attn)]
        if self.cross_attn is not None:
            found.append((CROSS, self.cross_block, self.cross_attn))
        if self.ffn_block is not None:
            found.append((DECODER_FFN, self.ffn_block, None))
        return found

    def forward(
        self,
        x: Tensor,
        self_mask: Mask,
        positional: PositionalScheme,
        memory: Tensor | None = None,
        cross_mask: Mask = None,
        cache: dict | None = None,
        start: int = 0,
        need_weights: bool = False,
        real: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        # x (B, T, D) at positions start..start+T-1; memory (B, S, D); the masks are SiteMasks: self_mask's tensor
        # (B|1, 1, T, Tk) with Tk = start + T keys (the cache's and this step's), cross_mask's (B, 1, 1, S)
        # cache: {"self_attn": {...}, "cross_attn": {...}}, each attention's keys and values (by the module's name),
        # kept across decoding steps, or None (then start = 0, Tk = T)

        def self_attention(h: Tensor) -> tuple[Tensor, Tensor | None]:  # (B, T, D) -> (B, T, D), (B, H, T, Tk)
            self_cache = cache["self_attn"] if cache is not None else None
            return self.self_attn(
                h, mask=self_mask, positional=positional, cache=self_cache, start=start, need_weights=need_weights
            )

        def cross_attention(h: Tensor) -> tuple[Tensor, Tensor | None]:  # (B, T, D) -> (B, T, D), (B, H, T, S)
            assert self.cross_attn is not None
            cross_cache = cache["cross_attn"] if cache is not None else None  # the memory's K and V, projected once
            return self.cross_attn(h, memory=memory, mask=cross_mask, cache=cross_cache, need_weights=need_weights)

        def feedforward(h: Tensor) -> tuple[Tensor, None]:  # (B, T, D) -> (B, T, D), each position alone
            assert self.ffn is not None
            return at_real_positions(self.ffn, h, real), None

        if not self.parallel:
            # The paper: one sublayer after the other, each in its residual block (norms.Residual: pre-LN
            # x + Sublayer(Norm(x)), post-LN Norm(x + Sublayer(x))).
            x, self_weights = self.self_block(x, self_attention)  # (B, T, D)
            cross_weights = None
            if self.cross_attn is not None:  # an encoder-decoder's: queries from the target, keys from the memory
                x, cross_weights = self.cross_block(x, cross_attention)  # (B, T, D)
            if self.ffn_block is not None:  # none in an attention-only model
                x, _ = self.ffn_block(x, feedforward)  # (B, T, D)
            return x, self_weights, cross_weights  # (B, T, D), (B, H, T, Tk), (B, H, T, S) or None

        # Parallel layers (GPT-J, PaLM; decoder-only, so no cross-attention: config.validate): the self-attention
        # and the FFN read one norm of x, their outputs added to x side by side (norms.parallel_residual).
        parts: list[tuple[Residual, Sublayer]] = [(self.self_block, self_attention)]
        if self.ffn_block is not None:
            parts.append((self.ffn_block, feedforward))
        x, (self_weights, *_) = parallel_residual(x, parts)
        return x, self_weights, None  # (B, T, D), (B, H, T, Tk)
