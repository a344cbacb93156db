"""One encoder layer and one decoder layer (Vaswani et al. 2017, section 3.1)."""

from __future__ import annotations

from torch import Tensor, nn

from .attention import Mask, MultiHeadAttention
from .config import TransformerConfig
from .feedforward import at_real_positions, build_feedforward
from .norms import Residual, build_norm
from .points import point_name
from .positional import PositionalScheme


def _residual(cfg: TransformerConfig) -> Residual:
    return Residual(build_norm(cfg.norm_type, cfg.d_model, cfg.norm_eps), cfg.dropout, cfg.pre_norm)


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
    """A layer's self- or cross-attention: H query heads, and cfg.kv_head_count key/value heads (grouped-query
    attention when fewer)."""
    return MultiHeadAttention(
        cfg.d_model, cfg.heads, cfg.attention_dropout_p, is_self_attention, kv_heads=cfg.kv_head_count
    )


def _feedforward(cfg: TransformerConfig) -> nn.Module | None:
    """A layer's feed-forward network; None in an attention-only model (`model.ffn=false`, Elhage et al. 2021),
    whose layers have no feed-forward sublayer: no parameters, nothing in the forward pass, no activation points,
    no `*_ffn` site (`ffn` and `ffn_block` are None)."""
    return build_feedforward(cfg.activation, cfg.d_model, cfg.d_ff, cfg.ffn_dropout_p) if cfg.ffn else None


class EncoderLayer(nn.Module):
    """Self-attention, then a feed-forward network (none with `model.ffn=false`); each in a residual block."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.self_attn = _attention(cfg, is_self_attention=True)
        self.ffn = _feedforward(cfg)  # (the order of the modules is the order of the initialisation's draws)
        self.attn_block = _residual(cfg)
        self.ffn_block = _residual(cfg) if self.ffn is not None else None

    def sublayers(self) -> list[tuple[str, Residual, MultiHeadAttention | None]]:
        """(site, residual block, attention module or None), in forward order."""
        found: list[tuple[str, Residual, MultiHeadAttention | None]] = [
            ("encoder_self", self.attn_block, self.self_attn)
        ]
        if self.ffn_block is not None:
            found.append(("encoder_ffn", self.ffn_block, None))
        return found

    def forward(
        self,
        x: Tensor,
        mask: Mask,
        positional: PositionalScheme,
        need_weights: bool = False,
        real: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        # x (B, S, D); mask (B, 1, S, S), or (B, 1, 1, S) when it is padding alone; real (B, S): not padding
        x, weights = self.attn_block(
            x, lambda h: self.self_attn(h, mask=mask, positional=positional, need_weights=need_weights)
        )
        ffn = self.ffn
        if ffn is not None and self.ffn_block is not None:  # none in an attention-only model
            x, _ = self.ffn_block(x, lambda h: (at_real_positions(ffn, h, real), None))
        return x, weights  # (B, S, D), (B, H, S, S) or None


class DecoderLayer(nn.Module):
    """Masked self-attention over the target, cross-attention to the encoder memory, then a
    feed-forward network; each in a residual block. Decoder-only models skip the cross-attention, attention-only
    ones (`model.ffn=false`) the feed-forward network."""

    def __init__(self, cfg: TransformerConfig, has_cross_attention: bool = True):
        super().__init__()
        self.self_attn = _attention(cfg, is_self_attention=True)
        self.self_block = _residual(cfg)
        self.cross_attn = None
        if has_cross_attention:
            self.cross_attn = _attention(cfg, is_self_attention=False)
            self.cross_block = _residual(cfg)
        self.ffn = _feedforward(cfg)
        self.ffn_block = _residual(cfg) if self.ffn is not None else None

    def sublayers(self) -> list[tuple[str, Residual, MultiHeadAttention | None]]:
        """(site, residual block, attention module or None), in forward order."""
        found: list[tuple[str, Residual, MultiHeadAttention | None]] = [
            ("decoder_self", self.self_block, self.self_attn)
        ]
        if self.cross_attn is not None:
            found.append(("cross", self.cross_block, self.cross_attn))
        if self.ffn_block is not None:
            found.append(("decoder_ffn", self.ffn_block, None))
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
        # x (B, T, D); memory (B, S, D); self_mask (B, 1, T, T); cross_mask (B, 1, 1, S)
        # cache: {"self": {...}, "cross": {...}} kept across decoding steps, or None
        self_cache = cache["self"] if cache is not None else None
        x, self_weights = self.self_block(
            x,
            lambda h: self.self_attn(
                h, mask=self_mask, positional=positional, cache=self_cache, start=start, need_weights=need_weights
            ),
        )
        cross_weights = None
        if self.cross_attn is not None:
            cross_cache = cache["cross"] if cache is not None else None
            x, cross_weights = self.cross_block(
                x,
                lambda h: self.cross_attn(
                    h, memory=memory, mask=cross_mask, cache=cross_cache, need_weights=need_weights
                ),
            )
        ffn = self.ffn
        if ffn is not None and self.ffn_block is not None:  # none in an attention-only model
            x, _ = self.ffn_block(x, lambda h: (at_real_positions(ffn, h, real), None))
        return x, self_weights, cross_weights  # (B, T, D), (B, H, T, T), (B, H, T, S)
