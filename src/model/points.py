"""Named activation points: the places in the forward pass where an activation can be read or replaced.

Causal analysis (activation patching, its attribution estimate, path patching, the logit lens) reads activations
from one forward pass and writes them into another. Every architecture and every pretrained family built from
src/model passes its activations through the same points (TransformerLens calls them hook points, pyvene
intervention sites):

    embed@decoder            the embeddings a stack receives (token, type and absolute positions)    (B, T, D)
    resid_pre@cross:1        the residual stream entering a sublayer (site:layer, as ablate names it)  (B, T, D)
    out@cross:1              the sublayer's own output, before dropout and the residual sum           (B, T, D)
    resid_post@cross:1       the residual stream leaving the sublayer (after the norm, post-LN)       (B, T, D)
    q@cross:1                each head's queries (after rotary positions)                             (B, H, T, Dh)
    k@cross:1, v@            each KV group's keys and values (grouped-query attention: model.kv_heads)  (B, KVH, T, Dh)
    z@cross:1                each head's output, before W^O (z@cross:1 head 2 is the head cross:1:2)  (B, H, T, Dh)
    pattern@cross:1          each head's attention weights, before dropout                            (B, H, Tq, Tk)

`where@` is what a sublayer or head is called everywhere else (src/model/names.py): the part after `@` pastes into
`ablate.heads` and `ablate.sublayers`. A site is an attention site (encoder_self, decoder_self, cross) or a
feed-forward one (encoder_ffn, decoder_ffn); q, k, v, z and pattern exist at attention sites only.

One mechanism reads and writes them all: an edit is a function of the activation that returns the activation to go
on with (itself, to read; another tensor, to write). The head gates of `ablate` (head_mask.py) are one such edit, on
z. With no edit attached a point returns its input after one check of an empty list, so the forward pass is the
same computation as without points, and costs the same (the training benchmark, src/bench/step.py).

    with attached(model, {"resid_pre@decoder_self:1": lambda x: clean}):   # write
        logits = model(...)
    with recorded(model, ["z@cross:0"]) as seen:                           # read
        model(...)
    seen["z@cross:0"]                                                      # (B, H, T, Dh)

A pattern with an edit attached is computed by the explicit attention path (the fused kernel never forms it).
The stacks name their points as they are built (transformer.py, layers.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from torch import Tensor, nn

Edit = Callable[[Tensor], Tensor]

KINDS = ("embed", "resid_pre", "out", "resid_post", "q", "k", "v", "z", "pattern")


class ActivationPoint:
    """One named activation. Not an nn.Module: calling it costs a Python method call, not a module call (the
    forward pass goes through dozens of them), and it holds no tensors of its own, so state dicts, `.to()` and the
    stacked seeds' functional calls never see it."""

    __slots__ = ("name", "edits")

    def __init__(self, name: str = "") -> None:
        self.name = name  # set as the model is built: layers.name_layer_points (embed points: the stacks)
        self.edits: list[Edit] = []

    def __call__(self, x: Tensor) -> Tensor:
        for edit in self.edits:
            x = edit(x)
        return x

    def __repr__(self) -> str:
        return f"ActivationPoint({self.name!r}, {len(self.edits)} edits)"


def point_name(kind: str, where: str) -> str:
    """'z@cross:1': the point of `kind` at `where` (a stack name for embed, else a site:layer)."""
    return f"{kind}@{where}"


def split_point_name(name: str) -> tuple[str, str]:
    """('z', 'cross:1') for 'z@cross:1'. ValueError for a name without a known kind."""
    kind, at, where = name.partition("@")
    if not at or kind not in KINDS or not where:
        raise ValueError(f"{name!r} is not an activation point: <kind>@<where>, kind one of {', '.join(KINDS)}")
    return kind, where


def activation_points(model: nn.Module) -> dict[str, ActivationPoint]:
    """Every named point of the model, stack by stack and layer by layer (encoder first)."""
    points: dict[str, ActivationPoint] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, ActivationPoint) and value.name:
                points[value.name] = value
    return points


def find_points(model: nn.Module, names: Iterable[str]) -> dict[str, ActivationPoint]:
    """The points `names` names. ValueError naming the first unknown one and what the model has at that kind."""
    points = activation_points(model)
    found = {}
    for name in names:
        if name not in points:
            kind, _ = split_point_name(name)
            same_kind = [p for p in points if p.startswith(f"{kind}@")]
            raise ValueError(f"{name!r}: the model has no such point (its {kind} points: {', '.join(same_kind)})")
        found[name] = points[name]
    return found


@contextmanager
def attached(model: nn.Module, edits: Mapping[str, Edit]) -> Iterator[None]:
    """Edits attached to the named points while the block runs (after any already there), then taken off."""
    points = find_points(model, edits)
    for name, edit in edits.items():
        points[name].edits.append(edit)
    try:
        yield
    finally:
        for name, edit in edits.items():
            points[name].edits.remove(edit)


@contextmanager
def recorded(model: nn.Module, names: Iterable[str], detach: bool = True) -> Iterator[dict[str, Tensor]]:
    """The activations at `names` as the forward passes in the block see them (the last pass's, per name), with
    the edits already there applied. `detach=False` keeps them in the autograd graph (attribution patching)."""
    seen: dict[str, Tensor] = {}

    def reader(name: str) -> Edit:
        def read(x: Tensor) -> Tensor:
            seen[name] = x.detach() if detach else x
            return x

        return read

    with attached(model, {name: reader(name) for name in names}):
        yield seen
