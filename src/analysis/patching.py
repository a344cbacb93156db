"""Activation patching (Vig et al. 2020; Meng et al. 2022; Heimersheim & Nanda 2024): where is a behaviour computed?

Two inputs that differ where it matters (a clean one and a corrupted one) are run through the model, and one
activation of one run is put into the other:
- denoising: the corrupted run with a clean activation patched in. A patch that restores the clean output shows
  the activation is sufficient to carry the behaviour there;
- noising: the clean run with a corrupted activation patched in. A patch that destroys the output shows the
  activation is necessary.

A patch is an activation point (src/model/points.py), optionally one position of it (the query position, for z and
pattern) and, at q, k, v, z and pattern, one head: a query head at q, z and pattern, a KV group at k and v (under
grouped-query attention a key and a value serve every query head of their group). Patches are scored in batches:
the base input repeated once per patch, each copy with its own patch (a different patch per group of rows), so one
forward pass scores many patches, as the single-head ablation table scores many masks (src/analysis/scoring.py).

The effect of a patch is reported as the fraction of the metric restored (denoising) or kept (noising):
    (metric(patched) - metric(corrupted)) / (metric(clean) - metric(corrupted))
so 1 is the clean run's value and 0 the corrupted run's, whichever the direction (`fraction`). It is not defined
(NaN) where the clean and the corrupted run score the same: there is no difference to restore.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn

from src.data.registry import task_kind
from src.model.names import DECODER, STACKS, site_named
from src.model.points import attached, recorded, split_point_name
from src.training.inference import eval_mode, forward_batch

from .scoring import repeat_batch

# metric(logits, batch) -> one value per batch row (B,): say a logit difference, or minus the loss
Metric = Callable[[Tensor, dict[str, Tensor]], Tensor]
DIRECTIONS = ("denoising", "noising")
PER_HEAD = ("q", "k", "v", "z", "pattern")  # the points whose second dimension is the head


@dataclass(frozen=True)
class Patch:
    point: str  # an activation point, e.g. "resid_pre@decoder_self:1" or "z@cross:0"
    position: int | None = None  # the (query) position patched; None: every position
    # at the per-head points (PER_HEAD) the head patched, None: every head. At q, z and pattern a query head; at k
    # and v a KV group (model.kv_heads: their second dimension is the groups), whose patch reaches every query head
    # of the group. An index means the same as in ablate.heads only where the model has one KV head per query head.
    head: int | None = None

    def __str__(self) -> str:
        head = "" if self.head is None else f" head {self.head}"
        position = "" if self.position is None else f" position {self.position}"
        return f"{self.point}{head}{position}"


Value = TypeVar("Value", float, Tensor)


def fraction(value: Value, clean: float, corrupted: float) -> Value:
    """(value - corrupted) / (clean - corrupted): the fraction of the clean-minus-corrupted difference that `value`
    restores (denoising) or keeps (noising); 1 is the clean run's value, 0 the corrupted run's. NaN where the clean
    and the corrupted run score the same (or either is not finite): there is nothing to restore, and dividing by 0
    would give an infinity for a tensor and raise ZeroDivisionError for a float. Every fraction of activation and
    path patching goes through here, so both say "not defined" alike."""
    difference = clean - corrupted
    if difference == 0 or not math.isfinite(difference):
        return torch.full_like(value, math.nan) if isinstance(value, Tensor) else math.nan
    return (value - corrupted) / difference


def patch_effect(value: float, direction: str) -> float:
    """How far a patch moves the metric, as a fraction of the clean-minus-corrupted difference (0: no change), from
    its fraction (`fraction`): the fraction restored when denoising (0: no change); 1 - the fraction kept when
    noising (1: no change). Rank patches by |effect|, never by |fraction|: a noising fraction near 1 is a patch that
    changes nothing."""
    return 1 - value if direction == "noising" else value


@dataclass
class PatchingResult:
    patches: list[Patch]
    values: Tensor  # (P,): the metric, mean over the batch, with each patch
    clean: float  # the metric of the clean run, and of the corrupted one
    corrupted: float

    @property
    def restored(self) -> Tensor:
        """(P,): each patch's fraction of the clean-minus-corrupted difference (1: the clean value). Not defined
        (NaN) where the pair gives the clean and the corrupted run the same metric: nothing to restore."""
        return fraction(self.values, self.clean, self.corrupted)


def check_pair(clean: dict[str, Tensor], corrupted: dict[str, Tensor]) -> None:
    """The two runs of a pair have the same keys and shapes: a patch puts one run's activation at the same place in
    the other."""
    if clean.keys() != corrupted.keys() or any(clean[key].shape != corrupted[key].shape for key in clean):
        raise ValueError("the clean and corrupted batches differ in keys or shape: a patch needs the same positions")


def check_patches(patches: Sequence[Patch], seen: dict[str, Tensor]) -> None:
    """Each patch's head and position exist at its point (a head only where the point has heads)."""
    for patch in patches:
        shape, axis = seen[patch.point].shape, position_axis(patch.point)
        if patch.head is not None and axis != 2:
            raise ValueError(f"{patch}: {patch.point} has no heads (q, k, v, z and pattern have)")
        if patch.head is not None and not 0 <= patch.head < shape[1]:
            # k and v hold one head per KV group (grouped-query attention), the other points one per query head
            heads = "KV heads" if split_point_name(patch.point)[0] in ("k", "v") else "heads"
            raise ValueError(f"{patch}: the point has {shape[1]} {heads}, numbered 0-{shape[1] - 1}")
        if patch.position is not None and not 0 <= patch.position < shape[axis]:
            raise ValueError(f"{patch}: the point has {shape[axis]} positions, numbered 0-{shape[axis] - 1}")


def position_axis(point: str) -> int:
    """Where a point's (query) positions are: (B, T, D) -> 1; z (B, H, T, Dh) and pattern (B, H, Tq, Tk) -> 2."""
    kind, _ = split_point_name(point)
    return 2 if kind in PER_HEAD else 1


def patched_edit(point: str, patches: Sequence[Patch | None], source: Tensor) -> Callable[[Tensor], Tensor]:
    """The edit of `point` for a batch of R copies: copy r gets `source` where patch r says (a None patch, one at
    another point, leaves its copy alone). source: the point's activation in the other run, (B, ...)."""
    axis = position_axis(point)
    copies = len(patches)

    def edit(x: Tensor) -> Tensor:  # (R*B, ...)
        b = x.size(0) // copies
        x = x.view(copies, b, *x.shape[1:])
        where = torch.zeros(copies, *x.shape[2:], dtype=torch.bool, device=x.device)  # (R, ...) without B
        for r, patch in enumerate(patches):
            if patch is None:
                continue
            index: list = [r] + [slice(None)] * (x.dim() - 2)
            if patch.position is not None:
                index[axis] = patch.position  # the position axis of x without B is `axis` (B dropped, R added)
            if patch.head is not None:
                index[1] = patch.head
            where[tuple(index)] = True
        return torch.where(where.unsqueeze(1), source.unsqueeze(0), x).view(copies * b, *x.shape[2:])

    return edit


def decoder_entries(model: nn.Module) -> list[str]:
    """The points where the residual stream enters each decoder layer (resid_pre of its first sublayer); none for a
    model without a decoder."""
    decoder = getattr(model, "decoder", None)
    if decoder is None:
        return []
    return [f"resid_pre@{layer.sublayers()[0][0]}:{index}" for index, layer in enumerate(decoder.layers)]


def decoder_layer_of(point: str) -> int | None:
    """The decoder layer a point lies in; None for the encoder's points and the embeddings (a patch there reaches
    everything after it)."""
    kind, where = split_point_name(point)
    site, _, layer = where.partition(":")
    if kind == "embed" or not layer or site_named(site).stack != DECODER:
        return None
    return int(layer)


class PatchedRuns:
    """Forward passes of one base input (repeated R times, a different patch per copy) that skip what no patch of the
    pass can change, as TransformerLens's start_at_layer does:
    - the decoder layers before the first patched one: the base run's stream entering that layer is resumed from
      (DecoderOnly.decode's `resume`); a seq2seq model's encoder too, its memory taken from the base run, when no
      patch of the pass is in the encoder;
    - the output projection at every position but the scored one (`scored`, the pair metrics': `logits_at`), the
      largest matrix of a model with a big vocabulary.
    The logits are those of the full passes (tests); `shortcuts=False` makes the full passes."""

    def __init__(
        self,
        model: nn.Module,
        kind: str,
        base: dict[str, Tensor],
        entries: dict[str, Tensor],
        scored: Tensor | None,
        shortcuts: bool,
    ):
        self.model, self.kind, self.base, self.scored = model, kind, base, scored
        # only a model that predicts tokens has a decoder to resume and an output projection to skip positions of
        self.shortcuts = shortcuts and task_kind(kind).predicts_tokens
        self.entries = [entries[name] for name in decoder_entries(model)] if self.shortcuts else []
        self.reads_source = task_kind(kind).reads_source  # the decoder attends to an encoded source
        self.memory = None
        if self.shortcuts and self.reads_source:
            self.memory = model.encode(base["src"], padded=base.get("padded"))[0]  # (B, S, D)

    def logits(self, rows: dict[str, Tensor], copies: int, patches: Sequence[Patch]) -> Tensor:
        """The logits of `rows` (the base repeated `copies` times) with the edits attached by the caller."""
        if not self.shortcuts:
            return forward_batch(self.model, self.kind, rows).logits
        layers = [decoder_layer_of(patch.point) for patch in patches]
        first = min(layers) if None not in layers else None  # type: ignore[type-var]
        resume = None
        if first is not None and first > 0:  # the layers before it run as in the base run
            resume = (first, self.entries[first].repeat(copies, 1, 1))  # (R*B, T, D)
        logits_at = self.scored.repeat(copies) if self.scored is not None else None
        padded = rows.get("padded")
        if not self.reads_source:
            return self.model.decode(rows["tgt_in"], padded=padded, resume=resume, logits_at=logits_at)[0]
        memory = self.memory.repeat(copies, 1, 1) if first is not None else None  # type: ignore[union-attr]
        if memory is None:  # an encoder patch: the encoder runs with it
            memory = self.model.encode(rows["src"], padded=padded)[0]
        return self.model.decode(
            rows["tgt_in"], memory, rows["src"], padded=padded, resume=resume, logits_at=logits_at
        )[0]  # (R*B, T, V), or (R*B, 1, V)


@torch.no_grad()
def activation_patching(
    model: nn.Module,
    kind: str,
    clean: dict[str, Tensor],
    corrupted: dict[str, Tensor],
    patches: Sequence[Patch],
    metric: Metric,
    direction: str = "denoising",
    patches_per_pass: int = 32,
    scored: Tensor | None = None,
    shortcuts: bool = True,
) -> PatchingResult:
    """The metric with each patch, `patches_per_pass` patches per forward pass (the module's docstring). The two
    batches must have the same shapes (a patch puts one run's activation at the same place in the other).

    scored (B,): the one position per row the metric reads, when it reads one (the pair metrics): the patched
    passes then make the logits of that position only, and the metric receives them as (R*B, 1, V). The patched
    passes skip what no patch can change (PatchedRuns); `shortcuts=False` runs them whole."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: one of {', '.join(DIRECTIONS)}")
    if patches_per_pass < 1:
        raise ValueError(f"patches_per_pass={patches_per_pass}: at least 1")
    check_pair(clean, corrupted)
    points = sorted({patch.point for patch in patches})
    entries = decoder_entries(model) if shortcuts else []
    with eval_mode(model):
        with recorded(model, points + entries) as clean_seen:
            clean_value = metric(forward_batch(model, kind, clean).logits, clean).mean()
        with recorded(model, points + entries) as corrupted_seen:
            corrupted_value = metric(forward_batch(model, kind, corrupted).logits, corrupted).mean()
        base, source = (corrupted, clean_seen) if direction == "denoising" else (clean, corrupted_seen)
        check_patches(patches, source)
        runs = PatchedRuns(
            model=model,
            kind=kind,
            base=base,
            entries=corrupted_seen if direction == "denoising" else clean_seen,  # the base run's decoder entries
            scored=scored,
            shortcuts=shortcuts,
        )
        values = [torch.empty(0, dtype=clean_value.dtype)]
        for start in range(0, len(patches), patches_per_pass):
            chunk = list(patches[start : start + patches_per_pass])
            edits = {
                point: patched_edit(point, [p if p.point == point else None for p in chunk], source[point])
                for point in {p.point for p in chunk}
            }
            rows = repeat_batch(base, len(chunk))  # rows [r*B, (r+1)*B) are copy r
            with attached(model, edits):
                scored_rows = metric(runs.logits(rows, len(chunk), chunk), rows)  # (R*B,)
            values.append(scored_rows.view(len(chunk), -1).mean(dim=1))
    return PatchingResult(list(patches), torch.cat(values), float(clean_value), float(corrupted_value))


def attribution_patching(
    model: nn.Module,
    kind: str,
    clean: dict[str, Tensor],
    corrupted: dict[str, Tensor],
    points: Sequence[str],
    metric: Metric,
) -> dict[str, Tensor]:
    """Attribution patching (Nanda 2023; Syed et al. 2023): the first-order estimate of denoising each point, from
    one forward and one backward pass of the corrupted run and one forward pass of the clean one:

        metric(patched) - metric(corrupted)  ~  (a_clean - a_corrupted) . d metric / d a   (at the corrupted run)

    per point, position and head: (T,) at a residual or output point, (H, T) at z and pattern (the query
    position), for the place patched in every row, as activation_patching patches it. Exact for a metric linear in
    the activation; its rank correlation with activation_patching says how far to trust it elsewhere (least on the
    first MLP, the residual stream and saturated attention: AtP*, Kramar et al. 2024)."""
    points = list(points)
    check_pair(clean, corrupted)
    with eval_mode(model):
        with torch.no_grad(), recorded(model, points) as clean_seen:
            forward_batch(model, kind, clean)
        with torch.enable_grad(), recorded(model, points, detach=False) as corrupted_seen:
            value = metric(forward_batch(model, kind, corrupted).logits, corrupted).mean()
            gradients = torch.autograd.grad(value, [corrupted_seen[p] for p in points], allow_unused=True)
    estimates = {}
    for point, gradient in zip(points, gradients):
        difference = clean_seen[point] - corrupted_seen[point].detach()
        if gradient is None:  # the metric does not read this point (a later position, say)
            gradient = torch.zeros_like(difference)
        product = gradient * difference  # (B, ...)
        axis = position_axis(point)
        # summed over the features (everything after the position axis)
        per_place = product.flatten(axis + 1).sum(-1) if product.dim() > axis + 1 else product
        # the metric is already the batch's mean: patching a place in every row moves it by the sum over rows
        estimates[point] = per_place.sum(0)  # (T,) or (H, T)
    return estimates


CHANNELS = ("q", "k", "v")  # the inputs of a receiving head that a path can run through


def forward_place(site: str, layer: int) -> tuple[int, int, int]:
    """Where the sublayer (site, layer) runs in the forward pass: the encoder's layers, then the decoder's (STACKS),
    layer by layer, and within a layer in the site's order (a decoder layer's self-attention, then its
    cross-attention, which reads the self-attention's output in its query, then its FFN)."""
    found = site_named(site)
    return list(STACKS).index(found.stack), layer, found.order


def runs_before(sender: tuple[str, int], receiver: tuple[str, int]) -> bool:
    """Whether the sublayer (site, layer) `sender` runs before `receiver` (so its output can reach it)."""
    return forward_place(*sender) < forward_place(*receiver)


def reachable(sender_site: str, receiver_site: str, channel: str) -> bool:
    """Whether a sender's output can reach a receiver's `channel` at all. Receivers are attention heads (path
    patching's: their query, keys or values, CHANNELS), so `receiver_site` is an attention site: a head's keys and
    values read the stream of the stack its keys come from (a cross-attention's: the encoder's output), its query its
    own stack's stream. The sender may be any sublayer."""
    receiver = site_named(receiver_site)
    read = receiver.key_stack if channel in ("k", "v") else receiver.stack
    return site_named(sender_site).stack == read


@dataclass
class PathPatchingResult:
    sender: str  # heads as ablate names them: decoder_self:0:1
    receiver: str
    channel: str
    value: float  # the metric with the path patched
    clean: float
    corrupted: float

    @property
    def restored(self) -> float:
        """The fraction of the clean-minus-corrupted difference the path keeps: 1 when patching it changes nothing,
        0 when it alone takes the metric to the corrupted run's value (noising); NaN where the clean and the
        corrupted run score the same (`fraction`)."""
        return fraction(self.value, self.clean, self.corrupted)


@torch.no_grad()
def path_patching(
    model: nn.Module,
    kind: str,
    clean: dict[str, Tensor],
    corrupted: dict[str, Tensor],
    sender: str,
    receiver: str,
    channel: str,
    metric: Metric,
) -> PathPatchingResult:
    """Path patching (Wang et al. 2022; Goldowsky-Dill et al. 2023): does the sender head matter through the
    receiver's query, key or value? The clean run, with only the path sender -> receiver's `channel` carrying the
    corrupted sender, in two passes:

    1. the clean input with the sender head's output from the corrupted run and every other head and FFN frozen at
       its clean output: the receiver's query (key, value) there sees the corrupted sender through the residual
       stream directly, and nothing else changed;
    2. the clean input with only the receiver head's query (key, value) replaced by pass 1's: the metric.
    In a grouped-query model a key (value) belongs to a KV group and serves every query head of it: pass 2 then
    records the receiver head's output, and a third pass puts only that head's output into the clean run.

    Heads are named as ablate names them (`decoder_self:0:1`); the sender must come before the receiver."""
    from src.model.head_mask import attention_sites
    from src.model.names import parse_name
    from src.model.points import activation_points

    if channel not in CHANNELS:
        raise ValueError(f"channel={channel!r}: one of {', '.join(CHANNELS)}")
    (s_site, s_layer, s_head), (r_site, r_layer, r_head) = parse_name(sender), parse_name(receiver)
    if None in (s_layer, s_head, r_layer, r_head):
        raise ValueError(f"{sender} -> {receiver}: give heads, site:layer:head")
    check_pair(clean, corrupted)
    if not runs_before((s_site, s_layer), (r_site, r_layer)):
        raise ValueError(f"{sender} -> {receiver}: the sender must run before the receiver")
    sender_z, receiver_input = f"z@{s_site}:{s_layer}", f"{channel}@{r_site}:{r_layer}"
    # frozen: every head's output (z) and every FFN's (the out of a sublayer without heads)
    points = activation_points(model)
    frozen = [name for name in points if name.startswith("z@")]
    frozen += [name for name in points if name.startswith("out@") and f"z@{name[len('out@') :]}" not in points]
    with eval_mode(model):
        with recorded(model, frozen) as clean_seen:
            clean_value = metric(forward_batch(model, kind, clean).logits, clean).mean()
        with recorded(model, [sender_z]) as corrupted_seen:
            corrupted_value = metric(forward_batch(model, kind, corrupted).logits, corrupted).mean()

        def frozen_at(name: str) -> Callable[[Tensor], Tensor]:
            value = clean_seen[name]
            if name != sender_z:
                return lambda x: value
            with_sender = value.clone()
            with_sender[:, s_head] = corrupted_seen[sender_z][:, s_head]  # (B, H, T, Dh): the sender's head only
            return lambda x: with_sender

        with attached(model, {name: frozen_at(name) for name in frozen}), recorded(model, [receiver_input]) as path:
            forward_batch(model, kind, clean)
        through_path = path[receiver_input]
        attention = attention_sites(model)[r_site][r_layer]
        # q is per query head; k and v per KV group (grouped-query attention: model.kv_heads), shared by its heads
        place = attention.kv_group(r_head) if channel in ("k", "v") else r_head
        shared = channel in ("k", "v") and attention.kv_heads < attention.heads

        def receive(x: Tensor) -> Tensor:  # (B, H|KVH, T, Dh): the receiver's input from pass 1, the rest as is
            x = x.clone()
            x[:, place] = through_path[:, place]
            return x

        if not shared:
            with attached(model, {receiver_input: receive}):
                value = metric(forward_batch(model, kind, clean).logits, clean).mean()
        else:  # the group's key (value) serves other query heads too: only the receiver head's output is kept
            receiver_z = f"z@{r_site}:{r_layer}"
            with attached(model, {receiver_input: receive}), recorded(model, [receiver_z]) as received:
                forward_batch(model, kind, clean)

            def receiver_only(z: Tensor) -> Tensor:  # (B, H, T, Dh)
                z = z.clone()
                z[:, r_head] = received[receiver_z][:, r_head]
                return z

            with attached(model, {receiver_z: receiver_only}):
                value = metric(forward_batch(model, kind, clean).logits, clean).mean()
    return PathPatchingResult(sender, receiver, channel, float(value), float(clean_value), float(corrupted_value))
