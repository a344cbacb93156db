"""Ablations: which heads and whole sublayers of a model are switched off, from the `ablate.*` settings.

    ablate.heads=[cross:1:3,encoder_self:0:*]   head 3 of layer 1's cross-attention; every head of encoder layer 0
    ablate.sublayers=[decoder_ffn:*]            every decoder feed-forward sublayer
    ablate.method=mean                          ablated heads output their mean output instead of zeros

A head spec is `site[:layer[:head]]`, layers and heads counted from 0, `*` (or leaving the part out) for all of
them; sites are a model's attention sites (encoder_self, decoder_self, cross). A sublayer spec is `site[:layer]`
over the attention sites and the feed-forward ones (encoder_ffn, decoder_ffn), which an attention-only model
(`model.ffn=false`) has not.

- An ablated head is gated to 0 before W^O (Michel et al. 2019; head_mask.py): zero ablation leaves its slice of
  W^O's input at 0, mean ablation replaces the head's output by its mean over reference data (the fill).
- A removed sublayer leaves the residual stream (x + 0; norms.Residual): ablating every head of an attention
  sublayer still adds W^O's bias, removing the sublayer adds nothing.

In training (`src.run ablate.heads=...`) the heads are off from the first step, an axis like any other; at
evaluation (`src.eval`, `src.predict`, `src.analyze`) it is an intervention on a trained checkpoint, on top of the
ablation it was trained with. This module is the one place that reads the specs (ConfigError, one line, for a bad
one), so every command means the same thing by them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .config import ARCHITECTURES, TransformerConfig
from .errors import ConfigError
from .head_mask import attention_sites, set_head_mask, stack_layers
from .names import ATTENTION_SITES, FFN_SITES, SITES, STACKS, Site, head_name, layer_name
from .norms import Residual

SUBLAYER_SITES = tuple(SITES)  # the attention sites, then the feed-forward ones


@dataclass(frozen=True)
class AblationMethod:
    """What an ablated head outputs instead of its own output."""

    name: str
    needs_reference: bool  # whether the fill comes from reference data run through the trained model
    description: str


# `ablate.method`: name -> the method. Mean ablation needs a trained model to take means of (not src.run).
ABLATION_METHODS = {
    "zero": AblationMethod("zero", False, "its output set to zero"),
    "mean": AblationMethod("mean", True, "its mean output over reference data (mean ablation)"),
}


def layout_of(cfg: TransformerConfig) -> dict[str, tuple[int, int]]:
    """The attention sites of a model built from `cfg`: site -> (layers, heads), without building it."""
    return {site: (layers, cfg.heads) for site, layers in sublayer_layout_of(cfg).items() if SITES[site].attention}


def sublayer_layout_of(cfg: TransformerConfig) -> dict[str, int]:
    """The sublayer sites of a model built from `cfg`: site -> layers, without building it."""
    return {name: STACKS[site.stack].layers(cfg) for name, site in SITES.items() if builds_site(cfg, site)}


def builds_site(cfg: TransformerConfig, site: Site) -> bool:
    """Whether a model built from `cfg` has `site` (names.SITES): its architecture has the site's stack and, for an
    attention, the stack its keys come from (a cross-attention only in an encoder-decoder); a feed-forward site is
    there only with model.ffn (an attention-only model has none)."""
    stacks = ARCHITECTURES[cfg.arch].stacks
    if site.stack not in stacks:
        return False
    if site.attention:
        return site.key_stack in stacks
    return cfg.ffn


def sublayer_blocks(model: nn.Module) -> dict[str, list[Residual]]:
    """The model's residual blocks (norms.Residual) by sublayer site, one per layer, as its layers hold them. An
    attention-only model's layers (model.ffn=false) have no feed-forward blocks: no encoder_ffn or decoder_ffn site."""
    blocks: dict[str, list[Residual]] = {}
    for layer in stack_layers(model):
        for site, block, _ in layer.sublayers():
            blocks.setdefault(site, []).append(block)
    return blocks


@dataclass(frozen=True)
class Ablation:
    """The heads and sublayers switched off. heads: site -> sorted (layer, head) pairs; sublayers: site -> sorted
    layers; method: a key of ABLATION_METHODS (it applies to the heads)."""

    heads: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    sublayers: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    method: str = "zero"

    @property
    def empty(self) -> bool:
        return not any(self.heads.values()) and not any(self.sublayers.values())

    def head_count(self) -> int:
        return sum(len(pairs) for pairs in self.heads.values())

    def union(self, other: Ablation) -> Ablation:
        """Both ablations at once (the method of `other`, the later one, for the heads they add)."""
        heads = {s: tuple(sorted({*self.heads.get(s, ()), *other.heads.get(s, ())})) for s in ATTENTION_SITES}
        subs = {s: tuple(sorted({*self.sublayers.get(s, ()), *other.sublayers.get(s, ())})) for s in SUBLAYER_SITES}
        return Ablation(
            {s: v for s, v in heads.items() if v}, {s: v for s, v in subs.items() if v}, other.method or self.method
        )

    def head_mask(self, layout: Mapping[str, tuple[int, int]], dtype=torch.float32) -> dict[str, Tensor]:
        """Per site of `layout`, (L, H) gates: 0 for the ablated heads, 1 for the others."""
        mask = {site: torch.ones(layers, heads, dtype=dtype) for site, (layers, heads) in layout.items()}
        for site, pairs in self.heads.items():
            for layer, head in pairs:
                mask[site][layer, head] = 0.0
        return mask

    def describe(self, layout: Mapping[str, tuple[int, int]] | None = None) -> str:
        """One line for the console and reports, every head and sublayer named as the specs name them (so each name
        can be pasted back into `ablate.heads` / `ablate.sublayers`), e.g. `encoder_self:0 (all 4 heads), cross:1:3;
        sublayers decoder_ffn:0, decoder_ffn:1; zero ablation` (the method is the heads'). With the model's `layout`
        (layout_of), a layer whose every head is off is named once, as the layer."""
        if self.empty:
            return "nothing ablated"
        parts = []
        heads = []
        # in the model's order, whatever order the specs came in
        for site in sorted(self.heads, key=ATTENTION_SITES.index):
            by_layer: dict[int, list[int]] = {}
            for layer, head in self.heads[site]:
                by_layer.setdefault(layer, []).append(head)
            for layer, chosen in by_layer.items():
                if layout is not None and len(chosen) == layout[site][1]:
                    heads.append(f"{layer_name(site, layer)} (all {len(chosen)} heads)")
                else:
                    heads += [head_name(site, layer, head) for head in chosen]
        if heads:
            parts.append(", ".join(heads))
        sublayers = [
            layer_name(site, layer)
            for site in sorted(self.sublayers, key=SUBLAYER_SITES.index)
            for layer in self.sublayers[site]
        ]
        if sublayers:
            parts.append(("sublayers " if len(sublayers) > 1 else "sublayer ") + ", ".join(sublayers))
        if heads:
            parts.append(f"{self.method} ablation")
        return "; ".join(parts)

    def as_specs(self) -> dict[str, list[str]]:
        """The ablation as `ablate.*` values (one spec per head and sublayer): what a run records."""
        return {
            "heads": [head_name(site, layer, head) for site, pairs in self.heads.items() for layer, head in pairs],
            "sublayers": [layer_name(site, layer) for site, layers in self.sublayers.items() for layer in layers],
        }


def _as_list(value, key: str) -> list[str]:
    """A spec list from the config: a list of strings, one string, or nothing."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, Iterable):
        return [str(item) for item in value]
    raise ConfigError(f"{key}={value!r} is not a list of specs: write {key}=[cross:1:3,encoder_self:0:*]")


def _index(part: str, count: int, what: str, spec: str, key: str, where: str) -> list[int]:
    """`*` (or nothing) -> every index; an integer in range -> itself."""
    if part in ("*", ""):
        return list(range(count))
    try:
        index = int(part)
    except ValueError:
        raise ConfigError(
            f"{key}: {spec!r}: {what} {part!r} is not a number or *: write e.g. cross:1:3 (* for every {what})"
        ) from None
    if not 0 <= index < count:
        numbered = f"{what} 0 only" if count == 1 else f"{count} {what}s, numbered 0-{count - 1}"
        raise ConfigError(
            f"{key}: {spec!r}: {what} {index} is out of range: {where} has {numbered}: choose one of them, or * for "
            f"every {what}"
        )
    return [index]


def _site(name: str, sites: Iterable[str], spec: str, key: str, arch: str, ffn: bool = True) -> str:
    sites = list(sites)
    if name in sites:
        return name
    if name in FFN_SITES and not ffn:
        raise ConfigError(
            f"{key}: {spec!r}: this model has no feed-forward sublayers (model.ffn=false: attention-only layers): "
            f"choose one of {', '.join(sites)}"
        )
    if name in FFN_SITES and key.endswith(".heads"):
        # ablate.heads can point to ablate.sublayers; the analyses' head settings (senders=...) take heads only
        remedy = f"remove it with ablate.sublayers=[{name}], or choose" if key.startswith("ablate") else "choose"
        raise ConfigError(f"{key}: {spec!r}: {name} has no heads: {remedy} one of {', '.join(sites)}")
    if name in SUBLAYER_SITES:  # a site of another architecture: cross in a decoder-only model
        raise ConfigError(f"{key}: {spec!r}: this model ({arch}) has no {name} site: choose one of {', '.join(sites)}")
    raise ConfigError(
        f"{key}: {spec!r}: site {name!r} is not known: choose one of this model's ({arch}): {', '.join(sites)}"
    )


def parse_ablation(ablate: Mapping | None, cfg: TransformerConfig, key: str = "ablate") -> Ablation:
    """The `ablate` settings ({heads, sublayers, method}) checked against the model `cfg` describes. Raises
    ConfigError (one line, naming the spec and the fix) for an unknown method or site, a layer or head out of
    range, or a spec that is not site[:layer[:head]]."""
    ablate = ablate or {}
    method = ablate.get("method", "zero") or "zero"
    if method not in ABLATION_METHODS:
        raise ConfigError(f"{key}.method={method!r} is not known: choose one of {', '.join(ABLATION_METHODS)}")
    layout = layout_of(cfg)
    heads: dict[str, set[tuple[int, int]]] = {}
    for spec in _as_list(ablate.get("heads"), f"{key}.heads"):
        parts = spec.strip().split(":")
        if len(parts) > 3 or not parts[0]:
            raise ConfigError(
                f"{key}.heads: {spec!r} is not site:layer:head: write e.g. cross:1:3, cross:1 (the layer's heads) "
                "or cross (every head of the site)"
            )
        if len(parts) > 1 and parts[-1] == "":  # `cross:1:` most likely lost its head number: ask, do not guess
            whole = spec.strip().rstrip(":")
            raise ConfigError(
                f"{key}.heads: {spec!r} ends in ':' with no number after it: write {whole}:<head>, {whole}:* for "
                f"every head, or {whole}"
            )
        site = _site(parts[0], layout, spec, f"{key}.heads", cfg.arch, cfg.ffn)
        layers, count = layout[site]
        chosen_layers = _index(parts[1] if len(parts) > 1 else "*", layers, "layer", spec, f"{key}.heads", site)
        for layer in chosen_layers:
            where = layer_name(site, layer)  # "cross:1 has 4 heads, numbered 0-3"
            for head in _index(parts[2] if len(parts) > 2 else "*", count, "head", spec, f"{key}.heads", where):
                heads.setdefault(site, set()).add((layer, head))
    sublayer_layout = sublayer_layout_of(cfg)
    sublayers: dict[str, set[int]] = {}
    for spec in _as_list(ablate.get("sublayers"), f"{key}.sublayers"):
        parts = spec.strip().split(":")
        if len(parts) > 2 or not parts[0]:
            raise ConfigError(
                f"{key}.sublayers: {spec!r} is not site:layer: write e.g. cross:1 or decoder_ffn:* (every layer)"
            )
        if len(parts) > 1 and parts[-1] == "":
            whole = spec.strip().rstrip(":")
            raise ConfigError(
                f"{key}.sublayers: {spec!r} ends in ':' with no layer after it: write {whole}:<layer> or {whole}:*"
            )
        site = _site(parts[0], sublayer_layout, spec, f"{key}.sublayers", cfg.arch, cfg.ffn)
        count = sublayer_layout[site]
        for layer in _index(parts[1] if len(parts) > 1 else "*", count, "layer", spec, f"{key}.sublayers", site):
            sublayers.setdefault(site, set()).add(layer)
    return Ablation(
        {site: tuple(sorted(pairs)) for site, pairs in heads.items()},
        {site: tuple(sorted(layers)) for site, layers in sublayers.items()},
        method,
    )


def apply_ablation(model: nn.Module, ablation: Ablation, fill: Mapping[str, Tensor] | None = None) -> None:
    """Switch off the ablation's heads and sublayers in `model` (see the module docstring). `fill`: per site,
    (L, H, Dh) outputs for the ablated heads (mean ablation; zeros without it). An empty ablation leaves the model
    untouched: no gates, the unmasked forward pass."""
    blocks = sublayer_blocks(model)
    for site, layers in ablation.sublayers.items():
        if layers and site not in blocks:  # parse_ablation refuses such specs; an Ablation built by hand may not
            what = "feed-forward sublayers (model.ffn=false)" if site in FFN_SITES else f"{site} site"
            raise ConfigError(f"ablate.sublayers: {site}: this model has no {what}: choose one of {', '.join(blocks)}")
        for layer in layers:
            blocks[site][layer].removed = True
    if any(ablation.heads.values()):
        sites = attention_sites(model)
        layout = {site: (len(modules), modules[0].heads) for site, modules in sites.items()}
        parameter = next(model.parameters())
        mask = ablation.head_mask(layout, dtype=parameter.dtype)
        mask = {site: gates.to(parameter.device) for site, gates in mask.items()}
        set_head_mask(model, mask, dict(fill) if fill is not None else None)


def restore_sublayers(model: nn.Module) -> None:
    """Every sublayer back in the residual stream (head gates: head_mask.clear_head_mask)."""
    for blocks in sublayer_blocks(model).values():
        for block in blocks:
            block.removed = False
