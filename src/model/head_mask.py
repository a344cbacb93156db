"""Head masks: switch attention heads off (or scale them) in a built model, by site, layer and head.

A model's attention sites are encoder_self, decoder_self and cross (those its architecture has); each is a
list of MultiHeadAttention modules, one per layer. A head mask is, per site, an (L, H) float tensor of gates: 1
keeps a head, 0 ablates it (Michel et al. 2019). Set on the modules (`set_head_mask`), it acts in every forward
pass, the fused and explicit attention paths, training and cached decoding alike, until `clear_head_mask`.

    mask = full_head_mask(model)              # every gate 1.0
    mask["cross"][1, 3] = 0.0                 # layer 1, head 3 of the cross-attention: off
    set_head_mask(model, mask)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention
from .layers import DecoderLayer, EncoderLayer
from .names import STACKS


def stack_layers(model: nn.Module) -> Iterator[EncoderLayer | DecoderLayer]:
    """Every layer of the model: its stacks (those of its architecture) in the order the data flows through them
    (names.STACKS), each layer by layer. Each layer says which sites it holds (EncoderLayer/DecoderLayer.sublayers):
    what a model has at a site is read from its layers, never inferred from the site's name."""
    for stack in STACKS:
        found = getattr(model, stack, None)  # the stack's module is the model's attribute of that name
        if found is not None:
            yield from found.layers


def attention_sites(model: nn.Module) -> dict[str, list[MultiHeadAttention]]:
    """The model's attention modules by site, one per layer, in layer order."""
    sites: dict[str, list[MultiHeadAttention]] = {}
    for layer in stack_layers(model):
        for site, _, attention in layer.sublayers():
            if attention is not None:
                sites.setdefault(site, []).append(attention)
    return sites


def full_head_mask(model: nn.Module, dtype=None) -> dict[str, Tensor]:
    """A mask that keeps every head: per site, (L, H) ones (on the model's device, in `dtype` or the model's)."""
    parameter = next(model.parameters())
    dtype = parameter.dtype if dtype is None else dtype
    return {
        site: torch.ones(len(modules), modules[0].heads, dtype=dtype, device=parameter.device)
        for site, modules in attention_sites(model).items()
    }


def set_head_mask(model: nn.Module, mask: dict[str, Tensor], fill: dict[str, Tensor] | None = None) -> None:
    """Gate every head of the sites in `mask` ((L, H) per site; sites left out keep all their heads). `fill`: per
    site, (L, H, Dh) outputs for ablated heads (mean ablation); zeros without it. Raises ValueError for a site
    the model lacks or a shape that does not fit."""
    sites = attention_sites(model)
    for site, gates in mask.items():
        if site not in sites:
            raise ValueError(f"head mask site {site!r}: the model has {', '.join(sites)}")
        modules = sites[site]
        if tuple(gates.shape) != (len(modules), modules[0].heads):
            raise ValueError(
                f"head mask for {site} has shape {tuple(gates.shape)}: the model has "
                f"{len(modules)} layers x {modules[0].heads} heads there"
            )
        fills = (fill or {}).get(site)
        for layer, module in enumerate(modules):
            module.head_gate = gates[layer]  # a view: a gate tensor that requires grad collects its gradient
            module.head_fill = fills[layer] if fills is not None else None


def clear_head_mask(model: nn.Module) -> None:
    """Every head back as it was (no gate, no fill): the forward pass is the unmasked one again."""
    for modules in attention_sites(model).values():
        for module in modules:
            module.head_gate = None
            module.head_fill = None


def head_gate_rows(model: nn.Module) -> list[tuple[MultiHeadAttention, Tensor | None, Tensor | None]]:
    """Every attention module's gate and fill as they are now (to put back with restore_head_gate_rows)."""
    return [(m, m.head_gate, m.head_fill) for modules in attention_sites(model).values() for m in modules]


def keep_head_gate_rows(model: nn.Module, rows: Tensor) -> None:
    """A batch kept only `rows` (greedy decoding dropping finished rows): per-row gates and fills ((B, H), (B, H,
    Dh): one head mask per batch row) keep the same rows; gates shared by every row stay as they are."""
    for modules in attention_sites(model).values():
        for module in modules:
            if module.head_gate is not None and module.head_gate.dim() == 2:
                module.head_gate = module.head_gate.index_select(0, rows.to(module.head_gate.device))
            if module.head_fill is not None and module.head_fill.dim() == 3:
                module.head_fill = module.head_fill.index_select(0, rows.to(module.head_fill.device))


def restore_head_gate_rows(model: nn.Module, saved) -> None:
    for module, gate, fill in saved:
        module.head_gate, module.head_fill = gate, fill
