"""How a head, a layer and a sublayer are named, in every command, file, dashboard and page.

One spelling, the one `ablate.heads` and `ablate.sublayers` read, so that a name a user reads anywhere (a
TensorBoard tag or image caption, a csv row, a report, the attention page) can be pasted into a spec:

    head_name("cross", 1, 2)      -> "cross:1:2"    layer 1, head 2 of the cross-attention
    layer_name("cross", 1)        -> "cross:1"      every head of that layer (or that sublayer)
    parse_name("cross:1:2")       -> ("cross", 1, 2)

Layers and heads are counted from 0, as PyTorch indexes them (`mask["cross"][1, 2]`), as TransformerLens and the
interpretability papers number GPT-2's heads ("head 9.9"), and as the ablation specs always have. A site is one of
the model's attention sites (encoder_self, decoder_self, cross) or feed-forward sublayers (encoder_ffn,
decoder_ffn); each is in one of the model's stacks (encoder, decoder). SITES and STACKS say what each is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Site:
    """A kind of sublayer of a stack's layers: an attention (whose heads can be ablated) or the feed-forward
    network."""

    stack: str  # the stack whose layers hold it (STACKS); its queries are that stack's positions
    attention: bool  # an attention sublayer; False: the feed-forward network
    # The stack whose positions its keys are: its own for self-attention, the encoder's for cross-attention; None
    # for the feed-forward network, which has no keys
    key_stack: str | None
    order: int  # its place within a layer: self-attention 0, then cross-attention, then the feed-forward network
    title: str  # what a person reads for it: titles of images, plots and page sections

    @property
    def is_cross_attention(self) -> bool:
        """Its queries and its keys are the positions of different stacks (the decoder's ask, the encoder's answer):
        each of its two sides is a sequence of its own, where a self-attention's are one."""
        return self.key_stack is not None and self.key_stack != self.stack


@dataclass(frozen=True)
class Stack:
    """A stack of layers, as the code around the model meets it: where its tokens are in a batch and in a task's
    text, and what a reader calls them. The stack's module is the model's attribute of its name (model.encoder)."""

    batch_key: str  # the batch entry holding the tokens it reads (collate.py): the source, or the target's input
    # The side of the task's text its tokens are, "src" (the input) or "tgt" (the output, an lm's text): the
    # datamodule's vocabulary that reads them (vocab(side)), and the attention page's list of them
    side: str
    sequence: str  # what its tokens are in the axis titles of a cross-attention, whose two axes are two sequences
    layers_setting: str  # the model.* setting that holds how many layers it has
    output: str  # what reads its last residual stream as the model's output, in a model that ends in it (the lens)

    def layers(self, cfg: Any) -> int:
        """How many layers it has in a model built from `cfg` (a TransformerConfig)."""
        return getattr(cfg, self.layers_setting)


# The stacks' names. The code that builds a stack (the models, its masks and positions, the architectures that list
# it) names it by these; everything else asks STACKS what one is.
ENCODER = "encoder"
DECODER = "decoder"

# Every stack, in the order the data flows through them (an encoder-decoder runs its encoder first).
STACKS: dict[str, Stack] = {
    ENCODER: Stack(
        batch_key="src",
        side="src",
        sequence="source",
        layers_setting="enc_layers",
        output="classifier's pooling and head",
    ),
    DECODER: Stack(
        batch_key="tgt_in",
        side="tgt",
        sequence="target",
        layers_setting="dec_layers",
        output="output projection",
    ),
}

# The sites' names. The code that builds a site (the layers that hold it, the stacks that make its masks and return
# its weights) names it by these; everything else reads a site's name from a model, a spec or a file and asks SITES
# what it is, rather than spelling or comparing names.
ENCODER_SELF = "encoder_self"
DECODER_SELF = "decoder_self"
CROSS = "cross"
ENCODER_FFN = "encoder_ffn"
DECODER_FFN = "decoder_ffn"

# Every site, the one place that says what each is: the attention sites, then the feed-forward ones, each in the
# order the data reaches them (the order ablation specs and reports list them in).
SITES: dict[str, Site] = {
    ENCODER_SELF: Site(ENCODER, True, ENCODER, 0, "encoder self-attention"),
    DECODER_SELF: Site(DECODER, True, DECODER, 0, "decoder self-attention"),
    CROSS: Site(DECODER, True, ENCODER, 1, "cross-attention"),
    ENCODER_FFN: Site(ENCODER, False, None, 1, "encoder feed-forward"),
    DECODER_FFN: Site(DECODER, False, None, 2, "decoder feed-forward"),
}
ATTENTION_SITES = tuple(name for name, site in SITES.items() if site.attention)
FFN_SITES = tuple(name for name, site in SITES.items() if not site.attention)
SITE_TITLES = {name: site.title for name, site in SITES.items()}

# Said once wherever heads are listed for a reader who may not know the convention.
NUMBERING = "layers and heads counted from 0, as ablate.heads reads them"


def head_name(site: str, layer: int, head: int) -> str:
    """'cross:1:2': the head as `ablate.heads` names it (layer and head counted from 0)."""
    return f"{site}:{int(layer)}:{int(head)}"


def layer_name(site: str, layer: int) -> str:
    """'cross:1': a layer of a site, as `ablate.heads` (all its heads) and `ablate.sublayers` name it."""
    return f"{site}:{int(layer)}"


def site_named(name: str) -> Site:
    """The registered site `name` (SITES); ValueError naming the sites for any other, as registry.task_kind does for
    task kinds. Code that reads a site's name from a caller, a spec or a file asks this rather than SITES[name], so a
    typo is one line that says what a site can be."""
    if name not in SITES:
        raise ValueError(f"{name!r} is not a site: give one of {', '.join(SITES)}")
    return SITES[name]


def site_title(site: str) -> str:
    """'cross-attention' for 'cross'; an unknown site is shown as it is."""
    return SITE_TITLES.get(site, site)


def parse_name(name: str) -> tuple[str, int | None, int | None]:
    """('cross', 1, 2) for 'cross:1:2', ('cross', 1, None) for 'cross:1', ('cross', None, None) for 'cross'.
    Raises ValueError for anything else (`*` parts are for specs: src.model.ablation.parse_ablation)."""
    parts = name.strip().split(":")
    if not parts[0] or len(parts) > 3:
        raise ValueError(f"{name!r} is not site[:layer[:head]]")
    try:
        numbers = [int(part) for part in parts[1:]]
    except ValueError:
        raise ValueError(f"{name!r}: layer and head are numbers counted from 0") from None
    if any(n < 0 for n in numbers):
        raise ValueError(f"{name!r}: layer and head are counted from 0")
    layer = numbers[0] if numbers else None
    head = numbers[1] if len(numbers) > 1 else None
    return parts[0], layer, head
