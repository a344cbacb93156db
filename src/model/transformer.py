"""Stacks and whole models: encoder-decoder (the paper), decoder-only (language modelling) and
encoder-only with a classification head, all built from the same layers.

Reading order: Embeddings -> Encoder / Decoder stacks -> the three models -> build_model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import TransformerConfig
from .dropout import Dropout
from .layers import DecoderLayer, EncoderLayer
from .masks import warn_once
from .norms import build_norm
from .positional import PositionalScheme, build_positional
from .tokens import PAD_ID


@dataclass
class ModelOutput:
    logits: Tensor  # (B, T, V) for sequence models, (B, C) for the classifier
    # Only when asked for: site -> one (B, H, Tq, Tk) tensor per layer.
    attentions: dict[str, list[Tensor]] | None = None


class Embeddings(nn.Module):
    """Token embedding scaled by sqrt(d_model) (section 3.4; `model.scale_embeddings=false` leaves it unscaled, as
    GPT-2 and BERT do), plus absolute positions if the scheme has them, then dropout (section 5.4)."""

    def __init__(self, vocab_size: int, d_model: int, dropout: float, scale: bool = True):
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.dropout = Dropout(dropout)

    def forward(self, tokens: Tensor, positional: PositionalScheme, start: int = 0) -> Tensor:
        x = self.token(tokens) * self.scale  # (B, T, D)
        return self.dropout(positional.add_to_embeddings(x, start))


class Encoder(nn.Module):
    """N encoder layers; pre-LN stacks end with a final norm (their residual stream is never
    normalised otherwise)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.final_norm = build_norm(cfg.norm_type, cfg.d_model, cfg.norm_eps) if cfg.pre_norm else None

    def forward(self, x, mask, positional, need_weights=False) -> tuple[Tensor, list[Tensor]]:
        weights = []
        for layer in self.layers:
            x, w = layer(x, mask, positional, need_weights)  # (B, S, D)
            if need_weights:
                weights.append(w)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, weights


class Decoder(nn.Module):
    """N decoder layers (with or without cross-attention), final norm for pre-LN."""

    def __init__(self, cfg: TransformerConfig, has_cross_attention: bool):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg, has_cross_attention) for _ in range(cfg.dec_layers))
        self.final_norm = build_norm(cfg.norm_type, cfg.d_model, cfg.norm_eps) if cfg.pre_norm else None

    def new_cache(self) -> list[dict]:
        """An empty key/value cache: per layer, the self-attention K/V so far and the projected memory."""
        return [{"self": {}, "cross": {}} for _ in self.layers]

    def forward(
        self, x, self_mask, positional, memory=None, cross_mask=None, cache=None, start=0, need_weights=False
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        self_weights, cross_weights = [], []
        for i, layer in enumerate(self.layers):
            layer_cache = cache[i] if cache is not None else None
            x, sw, cw = layer(x, self_mask, positional, memory, cross_mask, layer_cache, start, need_weights)
            if need_weights:
                self_weights.append(sw)
                if cw is not None:
                    cross_weights.append(cw)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, self_weights, cross_weights  # (B, T, D), per layer (B, H, T, T), (B, H, T, S)


# Linear layers that hold several weight matrices side by side, and how many.
FUSED_MATRICES = {"qkv_proj": 3, "kv_proj": 2, "gate_value": 2}


class TransformerBase(nn.Module):
    """What every architecture shares: the config, the positional and mask schemes, and initialisation."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.positional = build_positional(cfg)
        self.mask_scheme = cfg.mask_scheme()  # which positions may attend to which, per site
        warn_once(self.mask_scheme)

    def _init_weights(self) -> None:
        """Initialisation (documented because it matters for reproducing results):
        - every weight matrix: Xavier/Glorot uniform, as torch.nn.Transformer and the reference
          implementations of the paper do; a fused matrix (Q|K|V, K|V, SwiGLU gate|value) is
          initialised as the separate matrices it stands for; biases zero;
        - token and learned-position embeddings: N(0, d_model^-0.5), so that after the sqrt(d_model)
          scaling the embedded tokens have unit variance, and a tied output projection starts with
          logits of order 1;
        - norm gains one, shifts zero (their constructors already do this).
        """
        for name, p in self.named_parameters():
            if p.dim() < 2:
                if name.endswith("bias"):
                    nn.init.zeros_(p)
            elif "embedding" in name or name.endswith("token.weight"):
                nn.init.normal_(p, mean=0.0, std=self.cfg.d_model**-0.5)
            else:
                parts = FUSED_MATRICES.get(name.rsplit(".", 2)[-2], 1)  # e.g. qkv_proj -> 3
                for part in p.data.chunk(parts, dim=0):
                    nn.init.xavier_uniform_(part)
        for module in self.modules():  # the padding embedding stays zero
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def _check_length(self, length: int) -> None:
        if length > self.cfg.max_len:
            raise ValueError(f"sequence length {length} exceeds model.max_len={self.cfg.max_len}: raise model.max_len")


class EncoderDecoder(TransformerBase):
    """The Transformer of the paper: encode the source once, decode the target with cross-attention."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg)
        self.src_embed = Embeddings(cfg.src_vocab_size, cfg.d_model, cfg.dropout, cfg.scale_embeddings)
        self.tgt_embed = (
            self.src_embed
            if cfg.share_src_tgt_embeddings
            else Embeddings(cfg.tgt_vocab_size, cfg.d_model, cfg.dropout, cfg.scale_embeddings)
        )
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg, has_cross_attention=True)
        self.out_proj = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=False)
        self._init_weights()
        if cfg.tie_embeddings:  # section 3.4: output projection shares the target embedding matrix
            self.out_proj.weight = self.tgt_embed.token.weight

    def attention_masks(self, src: Tensor, tgt: Tensor) -> dict[str, Tensor]:
        """The mask of each site for these tokens, (B, 1, Tq, Tk), True = may attend."""
        t = tgt.size(1)
        return {
            "encoder_self": self.mask_scheme.encoder_self(src).expand(-1, -1, src.size(1), -1),
            "decoder_self": self.mask_scheme.decoder_self(t, t, keys=tgt, device=tgt.device).expand(
                tgt.size(0), -1, -1, -1
            ),
            "cross": self.mask_scheme.cross(src).expand(-1, -1, t, -1),
        }

    def encode(self, src: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        self._check_length(src.size(1))
        mask = self.mask_scheme.encoder_self(src)  # (B, 1, S|1, S)
        return self.encoder(self.src_embed(src, self.positional), mask, self.positional, need_weights)

    def decode(
        self, tgt: Tensor, memory: Tensor, src: Tensor, cache=None, start: int = 0, need_weights: bool = False
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """tgt (B, T) target tokens at positions start..start+T-1 -> logits (B, T, V)."""
        self._check_length(start + tgt.size(1))
        t = tgt.size(1)
        # While decoding with a cache there is no padding among the keys, so only the structure is masked.
        self_mask = self.mask_scheme.decoder_self(
            t, start + t, keys=tgt if cache is None else None, q_offset=start, device=tgt.device
        )
        x = self.tgt_embed(tgt, self.positional, start)  # (B, T, D)
        x, self_w, cross_w = self.decoder(
            x, self_mask, self.positional, memory, self.mask_scheme.cross(src), cache, start, need_weights
        )
        return self.out_proj(x), self_w, cross_w  # (B, T, V)

    def forward(self, src: Tensor, tgt: Tensor, need_weights: bool = False) -> ModelOutput:
        """src (B, S) source tokens, tgt (B, T) decoder input (BOS + target) -> logits (B, T, V)."""
        memory, enc_w = self.encode(src, need_weights)  # (B, S, D)
        logits, self_w, cross_w = self.decode(tgt, memory, src, need_weights=need_weights)
        attentions = {"encoder_self": enc_w, "decoder_self": self_w, "cross": cross_w} if need_weights else None
        return ModelOutput(logits, attentions)


class DecoderOnly(TransformerBase):
    """A language model: the decoder stack without cross-attention (GPT)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg)
        self.tgt_embed = Embeddings(cfg.tgt_vocab_size, cfg.d_model, cfg.dropout, cfg.scale_embeddings)
        self.decoder = Decoder(cfg, has_cross_attention=False)
        self.out_proj = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=False)
        self._init_weights()
        if cfg.tie_embeddings:
            self.out_proj.weight = self.tgt_embed.token.weight

    def attention_masks(self, tgt: Tensor, src: Tensor | None = None) -> dict[str, Tensor]:
        t = tgt.size(1)
        mask = self.mask_scheme.decoder_self(t, t, keys=tgt, decoder_only=True, device=tgt.device)
        return {"decoder_self": mask.expand(tgt.size(0), -1, -1, -1)}

    def trainable_positions(self, tokens: Tensor) -> Tensor | None:
        """(B, T) bool of the positions whose next-token loss is meaningful, or None for all of them
        (under the prefix-LM mask, positions inside the prefix see their own target)."""
        return self.mask_scheme.trainable_positions(tokens)

    def decode(self, tokens: Tensor, cache=None, start: int = 0, need_weights: bool = False):
        self._check_length(start + tokens.size(1))
        t = tokens.size(1)
        self_mask = self.mask_scheme.decoder_self(
            t,
            start + t,
            keys=tokens if cache is None else None,
            q_offset=start,
            decoder_only=True,
            device=tokens.device,
        )
        x = self.tgt_embed(tokens, self.positional, start)
        x, self_w, _ = self.decoder(x, self_mask, self.positional, cache=cache, start=start, need_weights=need_weights)
        return self.out_proj(x), self_w  # (B, T, V)

    def forward(self, tokens: Tensor, need_weights: bool = False) -> ModelOutput:
        """tokens (B, T) -> next-token logits (B, T, V)."""
        logits, self_w = self.decode(tokens, need_weights=need_weights)
        return ModelOutput(logits, {"decoder_self": self_w} if need_weights else None)


class EncoderClassifier(TransformerBase):
    """The encoder stack with a classification head on the mean of the non-pad positions (BERT-style
    fine-tuning, without a [CLS] token so every task's data works unchanged)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg)
        self.src_embed = Embeddings(cfg.src_vocab_size, cfg.d_model, cfg.dropout, cfg.scale_embeddings)
        self.encoder = Encoder(cfg)
        self.head = nn.Sequential(Dropout(cfg.dropout), nn.Linear(cfg.d_model, cfg.num_classes))
        self._init_weights()

    def attention_masks(self, src: Tensor, tgt: Tensor | None = None) -> dict[str, Tensor]:
        return {"encoder_self": self.mask_scheme.encoder_self(src).expand(-1, -1, src.size(1), -1)}

    def forward(self, src: Tensor, need_weights: bool = False) -> ModelOutput:
        self._check_length(src.size(1))
        mask = self.mask_scheme.encoder_self(src)  # (B, 1, S|1, S)
        x, enc_w = self.encoder(self.src_embed(src, self.positional), mask, self.positional, need_weights)
        keep = (src != PAD_ID).unsqueeze(-1).to(x.dtype)  # (B, S, 1)
        pooled = (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (B, D)
        return ModelOutput(self.head(pooled), {"encoder_self": enc_w} if need_weights else None)


def build_model(cfg: TransformerConfig) -> nn.Module:
    """The one place that reads `model.arch`."""
    cfg.validate()
    architectures = {"encoder_decoder": EncoderDecoder, "decoder_only": DecoderOnly, "encoder_only": EncoderClassifier}
    return architectures[cfg.arch](cfg)
