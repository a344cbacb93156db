"""Stacks and whole models: encoder-decoder (the paper), decoder-only (language modelling) and
encoder-only with a classification head, all built from the same layers.

Reading order: Embeddings -> Encoder / Decoder stacks -> the three models -> build_model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention
from .config import ARCHITECTURES, TransformerConfig
from .dropout import Dropout
from .fused import FusedLinear
from .head_mask import attention_sites
from .layers import DecoderLayer, EncoderLayer, name_layer_points
from .masks import real_positions, warn_once
from .names import CROSS, DECODER, DECODER_SELF, ENCODER, ENCODER_SELF
from .norms import build_norm
from .points import ActivationPoint, point_name
from .pooling import build_pooling
from .positional import PositionalScheme, build_positional


@dataclass
class ModelOutput:
    logits: Tensor  # (B, T, V) for sequence models, (B, C) for the classifier
    # Only when asked for: site -> one (B, H, Tq, Tk) tensor per layer.
    attentions: dict[str, list[Tensor]] | None = None


class Embeddings(nn.Module):
    """Token embedding scaled by sqrt(d_model) (section 3.4; `model.scale_embeddings=false` leaves it unscaled, as
    GPT-2 and BERT do), plus token-type embeddings if the model has them (BERT's segments; every token is type 0
    unless the caller gives types), plus absolute positions if the scheme has them, then a norm if the model
    has one there (BERT's embedding LayerNorm), then dropout (section 5.4)."""

    def __init__(self, vocab_size: int, cfg: TransformerConfig):
        super().__init__()
        # A dedicated pad token's row starts at zero and the lookup gives it no gradient (padding_idx). With a tied
        # output projection (model.tie_embeddings, the default) the row is also the pad's output weights, trained
        # there, so it stays zero only when untied (padding is masked either way). GPT-2's pad is a real token
        # (config.py).
        self.token = nn.Embedding(vocab_size, cfg.d_model, padding_idx=cfg.pad_id if cfg.dedicated_pad else None)
        self.scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0
        self.token_type = nn.Embedding(cfg.token_types, cfg.d_model) if cfg.token_types > 0 else None
        self.norm = build_norm(cfg.norm_type, cfg.d_model, cfg.norm_eps) if cfg.embedding_norm else None
        self.dropout = Dropout(cfg.dropout)

    def forward(
        self, tokens: Tensor, positional: PositionalScheme, start: int = 0, token_types: Tensor | None = None
    ) -> Tensor:
        """tokens (B, T) at positions start..start+T-1; token_types (B, T) or None (all type 0) -> (B, T, D)."""
        x = self.token(tokens) * self.scale  # (B, T, D)
        if self.token_type is not None:
            x = x + (self.token_type.weight[0] if token_types is None else self.token_type(token_types))
        x = positional.add_to_embeddings(x, start)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


class Encoder(nn.Module):
    """N encoder layers; pre-LN stacks end with a final norm (their residual stream is never
    normalised otherwise), post-LN ones only if `model.final_norm=true`."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        layers = [EncoderLayer(cfg) for _ in range(cfg.enc_layers)]
        for index, layer in enumerate(layers):  # resid_pre@encoder_self:0, ... (points.py)
            name_layer_points(layer.sublayers(), index)
        self.layers = nn.ModuleList(layers)
        self.final_norm = build_norm(cfg.norm_type, cfg.d_model, cfg.norm_eps) if cfg.has_final_norm else None
        self.embed_point = ActivationPoint(point_name("embed", ENCODER))  # what the stack receives

    def forward(self, x, mask, positional, need_weights=False, real=None) -> tuple[Tensor, list[Tensor]]:
        """x (B, S, D) the embedded source; mask: the self-attention's SiteMask, its tensor (B, 1, S|1, S); real
        (B, S): the positions that are not padding (None: all), where the FFNs run (feedforward.py).
        Returns the memory (B, S, D) and, with need_weights, each layer's attention weights (B, H, S, S)."""
        positional = positional.for_stack(ENCODER)  # T5's relative bias has a table per stack
        weights = []
        x = self.embed_point(x)  # (B, S, D)
        for layer in self.layers:
            x, w = layer(x, mask, positional, need_weights, real)  # (B, S, D), (B, H, S, S) or None
            if need_weights:
                weights.append(w)
        if self.final_norm is not None:
            x = self.final_norm(x)  # (B, S, D)
        return x, weights  # (B, S, D), per layer (B, H, S, S)


class Decoder(nn.Module):
    """N decoder layers (with or without cross-attention), a final norm as the encoder's."""

    def __init__(self, cfg: TransformerConfig, has_cross_attention: bool):
        super().__init__()
        layers = [DecoderLayer(cfg, has_cross_attention) for _ in range(cfg.dec_layers)]
        for index, layer in enumerate(layers):  # resid_pre@decoder_self:0, ... (points.py)
            name_layer_points(layer.sublayers(), index)
        self.layers = nn.ModuleList(layers)
        self.final_norm = build_norm(cfg.norm_type, cfg.d_model, cfg.norm_eps) if cfg.has_final_norm else None
        self.embed_point = ActivationPoint(point_name("embed", DECODER))

    def new_cache(self) -> list[dict]:
        """An empty key/value cache: per layer, the self-attention K/V so far and the projected memory, each under
        its attention module's name in the layer."""
        return [{"self_attn": {}, "cross_attn": {}} for _ in self.layers]

    def forward(
        self,
        x,
        self_mask,
        positional,
        memory=None,
        cross_mask=None,
        cache=None,
        start=0,
        need_weights=False,
        real=None,
        first_layer=0,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """x (B, T, D) at positions start..start+T-1: the embeddings, or with `first_layer` > 0 the residual stream
        entering that layer (the layers before it are skipped: activation patching resumes a run there, as
        TransformerLens's start_at_layer). self_mask: a SiteMask, its tensor (B|1, 1, T, Tk) over Tk = start + T keys
        (the cache's and these); memory (B, S, D) and cross_mask, tensor (B, 1, 1, S), in an encoder-decoder (None:
        decoder-only); cache: new_cache()'s, kept across decoding steps, or None; real (B, T): the positions that are
        not padding (None: all, as while decoding with a cache)."""
        self_weights, cross_weights = [], []
        positional = positional.for_stack(DECODER)
        if first_layer == 0:
            x = self.embed_point(x)  # (B, T, D)
        for i in range(first_layer, len(self.layers)):
            layer, layer_cache = self.layers[i], cache[i] if cache is not None else None
            x, sw, cw = layer(x, self_mask, positional, memory, cross_mask, layer_cache, start, need_weights, real)
            # x (B, T, D); sw (B, H, T, Tk), cw (B, H, T, S): weights only with need_weights (cw with an encoder)
            if need_weights:
                self_weights.append(sw)
                if cw is not None:
                    cross_weights.append(cw)
        if self.final_norm is not None:
            x = self.final_norm(x)  # (B, T, D)
        return x, self_weights, cross_weights  # (B, T, D), per layer (B, H, T, Tk), (B, H, T, S); Tk = start + T


def at_positions(x: Tensor, positions: Tensor | None) -> Tensor:
    """x (B, T, D) -> (B, 1, D) at one position per row, positions (B,); None: x as it is."""
    if positions is None:
        return x
    return x[torch.arange(x.size(0), device=x.device), positions.to(x.device)].unsqueeze(1)


class TransformerBase(nn.Module):
    """What every architecture shares: the config, the positional and mask schemes, and initialisation.

    Every forward pass takes `padded`: whether any of its tokens is padding, when the caller knows it (False lets
    the attention run without a mask tensor where the mask scheme allows: the flash kernel on a GPU; masks.py).
    None: found out where that is free (tokens on the CPU), else the tokens count as padded. A False for tokens
    that hold padding attends to it: say False only from the batch itself (masks.has_padding on the host).
    """

    # The model.* settings that only some architectures read, and which this one does (every other model.* setting
    # is read by all three): a stack this model has not, a tied output projection it has not. src.run warns when
    # one of them is given to an architecture that does not read it (src/cli/validation.py).
    arch_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.positional = build_positional(cfg)
        self.mask_scheme = cfg.mask_scheme()  # which positions may attend to which, per site
        warn_once(self.mask_scheme)

    def _init_weights(self) -> None:
        """Initialisation (documented because it matters for reproducing results):
        - every linear layer's weight: Xavier/Glorot uniform, as torch.nn.Transformer and the reference
          implementations of the paper do; a fused one (fused.py: Q|K|V, K|V, the gated FFN's gate|value) is
          initialised as the separate matrices it stands for; biases zero;
        - every embedding table (tokens, token types, learned positions, T5's relative-position bias):
          N(0, d_model^-0.5), so that after the sqrt(d_model) scaling the embedded tokens have unit variance, and a
          tied output projection starts with logits of order 1; a dedicated pad token's row zero;
        - norm gains one, shifts zero (their constructors already do this), QK-norm's too.
        Each module is initialised by its kind, never by its parameters' names, as nanoGPT's _init_weights does
        through `apply`. self.modules() gives each module once (a shared one too: one embedding for source and
        target) in the order named_parameters lists their parameters, so the random draws are made in the same
        order whatever the modules are called, and a seed gives the weights it always gave. A parameter two modules
        share is drawn once, as the first of them: a tied output projection (an nn.Linear whose weight is the token
        embedding's, tied after the constructor's call) keeps the embedding's draw when this runs again.
        """
        drawn: set[int] = set()  # the ids of the parameters drawn so far

        def first_visit(parameter: Tensor | None) -> bool:
            if parameter is None or id(parameter) in drawn:
                return False
            drawn.add(id(parameter))
            return True

        for module in self.modules():
            if isinstance(module, nn.Linear):
                if first_visit(module.weight):
                    for matrix in module.matrices() if isinstance(module, FusedLinear) else (module.weight,):
                        nn.init.xavier_uniform_(matrix)
                if first_visit(module.bias):
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding) and first_visit(module.weight):
                nn.init.normal_(module.weight, mean=0.0, std=self.cfg.d_model**-0.5)
                if module.padding_idx is not None:  # Embeddings says when the pad's row stays zero
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()

    def attention_kernels(
        self, *tokens: Tensor, padded: bool | None = None, dtype: torch.dtype = torch.bfloat16
    ) -> dict[str, str]:
        """site -> the kernel its attention runs on a CUDA GPU in a forward pass on `tokens` (the model's inputs)
        with q, k, v in `dtype` (bf16 under bf16-mixed): flash, memory-efficient, math, or explicit (seeds trained
        together). Every layer of a site has the same mask; the first layer's is read. Runs that forward pass."""
        kernels: dict[str, str] = {}

        def note(site: str):
            def hook(attention: MultiHeadAttention, args: tuple, kwargs: dict) -> None:
                tq = args[0].size(1)  # x (B, Tq, D)
                memory = kwargs.get("memory")
                tk = tq if memory is None else memory.size(1)
                positional = kwargs.get("positional")
                kernels[site] = attention.cuda_kernel(kwargs.get("mask"), positional, tq, tk, dtype)

            return hook

        hooks = [
            layers[0].register_forward_pre_hook(note(site), with_kwargs=True)
            for site, layers in attention_sites(self).items()
        ]
        try:
            with torch.no_grad():
                self(*tokens, padded=padded)
        finally:
            for handle in hooks:
                handle.remove()
        return kernels

    def _check_length(self, length: int) -> None:
        if length > self.cfg.max_len:
            raise ValueError(f"sequence length {length} exceeds model.max_len={self.cfg.max_len}: raise model.max_len")


class EncoderDecoder(TransformerBase):
    """The Transformer of the paper: encode the source once, decode the target with cross-attention."""

    arch_settings = ("enc_layers", "dec_layers", "share_src_tgt_embeddings", "tie_embeddings", "output_bias")

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg)
        self.src_embed = Embeddings(cfg.src_vocab_size, cfg)
        self.tgt_embed = self.src_embed if cfg.share_src_tgt_embeddings else Embeddings(cfg.tgt_vocab_size, cfg)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg, has_cross_attention=True)
        self.out_proj = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=cfg.output_bias)
        self._init_weights()
        if cfg.tie_embeddings:  # section 3.4: output projection shares the target embedding matrix
            self.out_proj.weight = self.tgt_embed.token.weight

    def attention_masks(self, src: Tensor, tgt: Tensor) -> dict[str, Tensor]:
        """The mask of each site for these tokens, (B, 1, Tq, Tk), True = may attend."""
        t = tgt.size(1)
        real_tgt = real_positions(tgt, self.cfg.pad_id, self.cfg.eos_id, decoder_side=True)  # (B, T)
        return {
            ENCODER_SELF: self.mask_scheme.encoder_self(src, self.cfg.pad_id).expand(-1, -1, src.size(1), -1),
            DECODER_SELF: self.mask_scheme.decoder_self(t, t, real_tgt, device=tgt.device).expand(
                tgt.size(0), -1, -1, -1
            ),
            CROSS: self.mask_scheme.cross(src, self.cfg.pad_id).expand(-1, -1, t, -1),
        }

    def encode(
        self, src: Tensor, need_weights: bool = False, padded: bool | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """src (B, S) source tokens -> the memory (B, S, D) that every decoder layer's cross-attention reads and,
        with need_weights, the encoder's attention weights per layer (B, H, S, S)."""
        self._check_length(src.size(1))
        mask = self.mask_scheme.encoder_self_mask(src, self.cfg.pad_id, padded)  # tensor (B, 1, S|1, S)
        real = src != self.cfg.pad_id  # (B, S)
        x = self.src_embed(src, self.positional)  # (B, S, D)
        return self.encoder(x, mask, self.positional, need_weights, real)  # (B, S, D), per layer (B, H, S, S)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src: Tensor,
        cache=None,
        start: int = 0,
        need_weights: bool = False,
        padded: bool | None = None,
        resume: tuple[int, Tensor] | None = None,
        logits_at: Tensor | None = None,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """tgt (B, T) target tokens at positions start..start+T-1 -> logits (B, T, V).

        Two shortcuts for analyses that run many variants of one input (activation patching): `resume` (layer,
        stream (B, T, D)) starts the decoder at that layer from that residual stream, the layers before it being
        those of a run already made; `logits_at` (B,) makes the logits of one position per row only: (B, 1, V)."""
        self._check_length(start + tgt.size(1))
        t = tgt.size(1)
        # The tokens that are not padding: the keys the self-attention may see and the positions the FFNs run at.
        # While decoding with a cache there is no padding (real None), so only the structure is masked.
        real = None
        if cache is None:
            real = real_positions(tgt, self.cfg.pad_id, self.cfg.eos_id, decoder_side=True)  # (B, T)
        self_mask = self.mask_scheme.decoder_self_mask(
            t, start + t, real, q_offset=start, device=tgt.device, padded=padded
        )  # (B|1, 1, T, start + T)
        first_layer, x = resume if resume is not None else (0, self.tgt_embed(tgt, self.positional, start))  # (B, T, D)
        cross_mask = self.mask_scheme.cross_mask(src, self.cfg.pad_id, padded)  # (B, 1, 1, S)
        x, self_w, cross_w = self.decoder(
            x, self_mask, self.positional, memory, cross_mask, cache, start, need_weights, real, first_layer
        )
        return self.out_proj(at_positions(x, logits_at)), self_w, cross_w  # (B, T, V), or (B, 1, V)

    def forward(self, src: Tensor, tgt: Tensor, need_weights: bool = False, padded: bool | None = None) -> ModelOutput:
        """src (B, S) source tokens, tgt (B, T) decoder input (BOS + target) -> logits (B, T, V).

        padded: whether any of the tokens is padding, when the caller knows it (TransformerBase)."""
        memory, enc_w = self.encode(src, need_weights, padded)  # (B, S, D)
        logits, self_w, cross_w = self.decode(tgt, memory, src, need_weights=need_weights, padded=padded)
        attentions = {ENCODER_SELF: enc_w, DECODER_SELF: self_w, CROSS: cross_w} if need_weights else None
        return ModelOutput(logits, attentions)


class DecoderOnly(TransformerBase):
    """A language model: the decoder stack without cross-attention (GPT)."""

    arch_settings = ("dec_layers", "tie_embeddings", "output_bias")

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg)
        self.tgt_embed = Embeddings(cfg.tgt_vocab_size, cfg)
        self.decoder = Decoder(cfg, has_cross_attention=False)
        self.out_proj = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=cfg.output_bias)
        self._init_weights()
        if cfg.tie_embeddings:
            self.out_proj.weight = self.tgt_embed.token.weight

    def attention_masks(self, tgt: Tensor, src: Tensor | None = None) -> dict[str, Tensor]:
        t = tgt.size(1)
        real = real_positions(tgt, self.cfg.pad_id, self.cfg.eos_id, decoder_side=True)  # (B, T)
        mask = self.mask_scheme.decoder_self(t, t, real, decoder_only=True, device=tgt.device)
        return {DECODER_SELF: mask.expand(tgt.size(0), -1, -1, -1)}

    def trainable_positions(self, tokens: Tensor) -> Tensor | None:
        """(B, T) bool of the positions whose next-token loss is meaningful, or None for all of them
        (under the prefix-LM mask, positions inside the prefix see their own target)."""
        return self.mask_scheme.trainable_positions(tokens)

    def decode(
        self,
        tokens: Tensor,
        cache=None,
        start: int = 0,
        need_weights: bool = False,
        padded: bool | None = None,
        resume: tuple[int, Tensor] | None = None,
        logits_at: Tensor | None = None,
    ):
        """tokens (B, T) at positions start..start+T-1 -> logits (B, T, V); `resume` and `logits_at` as
        EncoderDecoder.decode's."""
        self._check_length(start + tokens.size(1))
        t = tokens.size(1)
        # the tokens that are not padding (None while decoding with a cache), as in EncoderDecoder.decode
        real = None
        if cache is None:
            real = real_positions(tokens, self.cfg.pad_id, self.cfg.eos_id, decoder_side=True)  # (B, T)
        self_mask = self.mask_scheme.decoder_self_mask(
            t, start + t, real, q_offset=start, decoder_only=True, device=tokens.device, padded=padded
        )  # (B|1, 1, T, start + T)
        first_layer, x = resume if resume is not None else (0, self.tgt_embed(tokens, self.positional, start))
        x, self_w, _ = self.decoder(
            x, self_mask, self.positional, cache=cache, start=start, need_weights=need_weights, real=real,
            first_layer=first_layer,
        )  # fmt: skip
        return self.out_proj(at_positions(x, logits_at)), self_w  # (B, T, V), or (B, 1, V)

    def forward(self, tokens: Tensor, need_weights: bool = False, padded: bool | None = None) -> ModelOutput:
        """tokens (B, T) -> next-token logits (B, T, V)."""
        logits, self_w = self.decode(tokens, need_weights=need_weights, padded=padded)
        return ModelOutput(logits, {DECODER_SELF: self_w} if need_weights else None)


class EncoderClassifier(TransformerBase):
    """The encoder stack with a classification head on a pooled vector: by default the mean of the non-pad
    positions (so every task's data works unchanged, with no [CLS] token), or BERT's pooler on the first token
    (`model.pooling`, pooling.py)."""

    arch_settings = ("enc_layers", "pooling")  # its head is a plain linear layer with a bias: nothing to tie

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg)
        self.src_embed = Embeddings(cfg.src_vocab_size, cfg)
        self.encoder = Encoder(cfg)
        self.pooling = build_pooling(cfg.pooling, cfg.d_model)
        self.head = nn.Sequential(Dropout(cfg.dropout), nn.Linear(cfg.d_model, cfg.num_classes))
        self._init_weights()

    def attention_masks(self, src: Tensor, tgt: Tensor | None = None) -> dict[str, Tensor]:
        return {ENCODER_SELF: self.mask_scheme.encoder_self(src, self.cfg.pad_id).expand(-1, -1, src.size(1), -1)}

    def forward(
        self,
        src: Tensor,
        need_weights: bool = False,
        token_types: Tensor | None = None,
        padded: bool | None = None,
    ) -> ModelOutput:
        """src (B, S) tokens, token_types (B, S) segments or None (all 0) -> class logits (B, C)."""
        self._check_length(src.size(1))
        mask = self.mask_scheme.encoder_self_mask(src, self.cfg.pad_id, padded)  # (B, 1, S|1, S)
        x = self.src_embed(src, self.positional, token_types=token_types)  # (B, S, D)
        real = src != self.cfg.pad_id  # (B, S)
        x, enc_w = self.encoder(x, mask, self.positional, need_weights, real)
        pooled = self.pooling(x, real)  # (B, D)
        return ModelOutput(self.head(pooled), {ENCODER_SELF: enc_w} if need_weights else None)


def build_model(cfg: TransformerConfig) -> nn.Module:
    """The model `cfg` describes: its architecture's class (config.ARCHITECTURES names it) built from it."""
    cfg.validate()
    return ARCHITECTURES[cfg.arch].model_class()(cfg)
