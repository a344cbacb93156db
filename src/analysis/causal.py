"""Activation patching of one model on counterfactual pairs, as `python -m src.analyze analysis=patching` runs it.

The pairs (src/data/pairs.py) are run clean and corrupted, and every activation point of the model is patched from
one run into the other (patching.py), place by place, in the five families TransformerLens's patching sweeps have:

    resid_pre       the residual stream entering each layer, by layer x position
    attn_out        each attention sublayer's output, by layer x position
    ffn_out         each feed-forward sublayer's output, by layer x position
    head            each head's output z at every position at once, by layer x head
    head_position   each head's output z at one position, by layer x head x position

Each patch is scored by the metric on the pairs (the logit difference between the clean and the corrupted answer,
the clean answer's loss, or exact match: the clean answer is the top-1 prediction), and reported as the fraction of
the clean-minus-corrupted difference it restores (denoising) or keeps (noising): 1 is the clean run's value, 0 the
corrupted one's. Beside it, attribution patching's first-order estimate of the same patch (one forward and one
backward pass for the whole grid), and per family the rank correlation between the two: how far the fast estimate
can be trusted on this model.

Path patching (between heads named as ablate names them, through the receiver's query, key or value) runs for the
senders and receivers asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.pairs import Pair, PairBatch
from src.data.registry import task_kind
from src.model.names import STACKS, site_named
from src.model.points import activation_points, split_point_name
from src.training.inference import eval_mode, forward_batch

from .patching import (
    CHANNELS,
    Metric,
    Patch,
    PathPatchingResult,
    activation_patching,
    attribution_patching,
    path_patching,
    reachable,
)
from .statistics import spearman

FAMILIES = ("resid_pre", "attn_out", "ffn_out", "head", "head_position")
ACROSS_POSITIONS = ("head",)  # the families that patch every position at once


def _logit_diff(scored: Tensor, answer: Tensor, wrong: Tensor) -> Tensor:
    rows = torch.arange(scored.size(0), device=scored.device)
    return scored[rows, answer] - scored[rows, wrong]


def _loss(scored: Tensor, answer: Tensor, wrong: Tensor) -> Tensor:
    return F.cross_entropy(scored.float(), answer, reduction="none")


def _exact_match(scored: Tensor, answer: Tensor, wrong: Tensor) -> Tensor:
    return (scored.argmax(-1) == answer).to(scored.dtype)


@dataclass(frozen=True)
class PairMetric:
    """A metric a pair is scored with (`metric=`), with everything the analysis, its report and the sweep report
    need to know about it, so that none of them compares metric names."""

    name: str
    # (scored logits (N, V), clean answers (N,), corrupted answers (N,)) -> (N,): the metric at the scored position
    function: Callable[[Tensor, Tensor, Tensor], Tensor]
    higher_is_better: bool
    differentiable: bool  # attribution patching can take its gradient
    title: str  # what a sentence calls it
    words: str  # what it is, for the reports: "The metric, `<name>`: <words>."
    value_range: tuple[float, float]  # the values it can take: what the sweep report clips an interval to
    # A metric without a gradient only: why it has none, in the words the report and src.analyze's warning use
    no_gradient: str = ""
    # Whether a negative value on the clean inputs means the model prefers the corrupted answer (the pairs may then
    # test a behaviour the model does not have: wrong_answer)
    negative_prefers_corrupted: bool = False

    def __post_init__(self) -> None:
        # the report and src.analyze's warning say why attribution patching is left out: a metric must say it
        if self.differentiable == bool(self.no_gradient):
            raise ValueError(f"pair metric {self.name!r}: no_gradient says why, for a metric without a gradient only")


# The metrics a pair can be scored with, by name: the one place a pair metric is declared.
PAIR_METRICS = {
    metric.name: metric
    for metric in (
        PairMetric(
            name="logit_diff",
            function=_logit_diff,
            higher_is_better=True,
            differentiable=True,
            title="logit difference",
            words="the logit of the clean answer minus that of the corrupted answer, at the scored position",
            value_range=(-math.inf, math.inf),
            negative_prefers_corrupted=True,
        ),
        PairMetric(
            name="loss",
            function=_loss,
            higher_is_better=False,
            differentiable=True,
            title="loss",
            words="the cross-entropy of the clean answer at the scored position (lower is better)",
            value_range=(0.0, math.inf),
        ),
        PairMetric(
            name="exact_match",
            function=_exact_match,
            higher_is_better=True,
            differentiable=False,
            title="exact match",
            words="1 where the clean answer is the top-1 prediction at the scored position",
            value_range=(0.0, 1.0),
            no_gradient="a step function of the logits",
        ),
    )
}


def pair_metric_named(name: str) -> PairMetric:
    """The registered pair metric `name`; ValueError naming the choices for any other."""
    if name not in PAIR_METRICS:
        raise ValueError(f"metric {name!r}: one of {', '.join(PAIR_METRICS)}")
    return PAIR_METRICS[name]


def pair_metric(name: str, pairs: PairBatch, kind: str) -> Metric:
    """The metric `name` (PAIR_METRICS) of each row of a batch of pairs, or of that batch repeated R times (patching
    scores R patches at once): (R*B,)."""
    function = pair_metric_named(name).function
    predicts_tokens = task_kind(kind).predicts_tokens

    def metric(logits: Tensor, batch: dict[str, Tensor]) -> Tensor:
        copies = logits.size(0) // len(pairs)
        rows = torch.arange(logits.size(0), device=logits.device)
        answer = pairs.answer.to(logits.device).repeat(copies)
        wrong = pairs.wrong.to(logits.device).repeat(copies)
        if not predicts_tokens:  # (R*B, C): one prediction per row
            scored = logits
        elif logits.size(1) == 1:  # (R*B, 1, V): made at the scored positions only (activation_patching's scored=)
            scored = logits[:, 0]  # (R*B, V); a pair of one position is scored there anyway
        else:  # (R*B, T, V): the prediction at each row's scored position
            scored = logits[rows, pairs.position.to(logits.device).repeat(copies)]  # (R*B, V)
        return function(scored, answer, wrong)

    return metric


@dataclass
class PatchRow:
    family: str  # one of FAMILIES
    point: str  # the activation point patched (src/model/points.py), e.g. resid_pre@decoder_self:1
    site: str  # where: the site and layer as ablate names them
    layer: int
    head: int | None  # head and head_position: the head patched
    position: int | None  # every family but head: the position patched (the query position at z)
    value: float  # the metric with the patch, mean over the pairs
    restored: float  # (value - corrupted) / (clean - corrupted): 1 the clean run's value, 0 the corrupted one's
    estimate: float  # attribution patching's estimate of (value - the unpatched run's value)


@dataclass
class CausalAnalysis:
    metric: str
    direction: str
    pairs: int
    clean: float  # the metric on the clean and on the corrupted inputs, mean over the pairs
    corrupted: float
    rows: list[PatchRow]
    positions: dict[str, list[str]]  # per stack (encoder, decoder): what each position holds, in the first pair
    rank_correlation: dict[str, float]  # per family: Spearman between the exact effect and the estimate
    paths: list[PathPatchingResult] = field(default_factory=list)
    described: str = ""  # what the pairs are (the task's words), for the report
    positions_left_out: str | None = None  # why the by-position families were not run (the pairs' templates differ)

    @property
    def difference(self) -> float:
        return self.clean - self.corrupted

    @property
    def pair_metric(self) -> PairMetric:
        """The registered metric the pairs were scored with: what its values mean."""
        return pair_metric_named(self.metric)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else ('es' if word.endswith('ch') else 's')}"


def same_template(pairs: Sequence[Pair]) -> str | None:
    """Why the pairs do not share one template (None: they do): a position must mean the same thing in every pair
    for a by-position result to be averaged over them, so their lengths, scored position and changed positions must
    be the same."""

    def lengths(pair: Pair) -> tuple:
        return tuple(
            (key, tuple(value.shape)) for key, value in sorted(pair.clean.items()) if isinstance(value, Tensor)
        )

    def changed(pair: Pair) -> tuple:
        return tuple(
            (key, tuple((value != pair.corrupted[key]).nonzero().flatten().tolist()))
            for key, value in sorted(pair.clean.items())
            if isinstance(value, Tensor)
        )

    first = pairs[0]
    if any(lengths(p) != lengths(first) for p in pairs):
        return "the pairs differ in length"
    if any(p.position != first.position for p in pairs):
        return "the pairs are scored at different positions"
    if any(changed(p) != changed(first) for p in pairs):
        return "the pairs change different positions"
    return None


def stack_of(site: str) -> str:
    """The stack a site's sublayers run in (names.SITES): their positions are that stack's (the source's for the
    encoder)."""
    return site_named(site).stack


def grid_patches(model: nn.Module, positions: dict[str, int]) -> list[tuple[str, Patch]]:
    """(family, patch) for every place of the five families, stack by stack and layer by layer."""
    points = activation_points(model)
    patches: list[tuple[str, Patch]] = []
    for name in points:
        kind, where = split_point_name(name)
        if kind == "embed":  # no family patches a stack's embeddings (and their `where` is the stack, not a site)
            continue
        site, _, _ = where.partition(":")
        count = positions[stack_of(site)]
        if kind == "resid_pre" and _first_sublayer(name, points):
            patches += [("resid_pre", Patch(name, position=p)) for p in range(count)]
        elif kind == "out":
            family = "attn_out" if f"z@{where}" in points else "ffn_out"
            patches += [(family, Patch(name, position=p)) for p in range(count)]
        elif kind == "z":
            heads = _heads_at(model, where)
            patches += [("head", Patch(name, head=h)) for h in range(heads)]
            patches += [("head_position", Patch(name, position=p, head=h)) for h in range(heads) for p in range(count)]
    return patches


def _first_sublayer(name: str, points) -> bool:
    """Whether resid_pre `name` enters a layer (its first sublayer): the residual stream between layers, as
    TransformerLens's resid_pre is, not between the sublayers of one layer."""

    def stack_and_layer(point: str) -> tuple[str, str]:
        site, _, layer = split_point_name(point)[1].partition(":")
        return stack_of(site), layer

    place = stack_and_layer(name)
    firsts = [p for p in points if p.startswith("resid_pre@") and stack_and_layer(p) == place]
    return bool(firsts) and firsts[0] == name


def _heads_at(model: nn.Module, where: str) -> int:
    from src.model.head_mask import attention_sites

    site, _, layer = where.partition(":")
    return attention_sites(model)[site][int(layer)].heads


def _estimate(estimates: dict[str, Tensor], family: str, patch: Patch) -> float:
    if patch.point not in estimates:  # no attribution patching (a metric without a gradient)
        return math.nan
    found = estimates[patch.point]  # (T,) or (H, T)
    if family == "head":
        return float(found[patch.head].sum())
    if family == "head_position":
        return float(found[patch.head, patch.position])
    return float(found[patch.position])


def analyze_patching(
    model: nn.Module,
    kind: str,
    pairs: PairBatch,
    *,
    metric: str = "logit_diff",
    direction: str = "denoising",
    rows_per_batch: int = 1024,
    paths: Sequence[tuple[str, str]] = (),
    position_labels: dict[str, list[str]] | None = None,
    described: str = "",
    one_template: bool = True,
    log: Callable[[str], None] = lambda line: None,
) -> CausalAnalysis:
    """Every family of patches on `pairs` (the module's docstring), their attribution estimates, and path patching
    for each (sender, receiver) in `paths` through each of q, k and v the sender can reach. `one_template=False`
    (the pairs differ in length, scored position or changed positions: same_template): only the families that patch
    every position at once, since a position would mean something else in each pair."""
    score = pair_metric(metric, pairs, kind)
    clean, corrupted = pairs.clean, pairs.corrupted
    # each stack's positions: the length of the batch entry it reads (0 for a stack the model has not)
    positions = {
        stack: clean[found.batch_key].size(1) if found.batch_key in clean else 0 for stack, found in STACKS.items()
    }
    families = grid_patches(model, positions)
    if not one_template:  # a position means something else in each pair: only what spans every position
        families = [(family, patch) for family, patch in families if family in ACROSS_POSITIONS]
    patches = [patch for _, patch in families]
    per_pass = max(1, rows_per_batch // max(1, len(pairs)))
    log(f"activation patching: {plural(len(patches), 'patch')} on {plural(len(pairs), 'pair')}, {per_pass} per pass")
    scored = pairs.position if task_kind(kind).predicts_tokens else None  # a classifier's logits have no positions
    exact = activation_patching(
        model, kind, clean, corrupted, patches, score, direction, patches_per_pass=per_pass, scored=scored
    )
    # attribution patching estimates patching into the run the exact patches went into: the corrupted run for
    # denoising (clean activations in), the clean run for noising (corrupted ones in). Exact match is a step
    # function of the logits: it has no gradient to estimate with.
    points = sorted({patch.point for patch in patches})
    source, base = (clean, corrupted) if direction == "denoising" else (corrupted, clean)
    estimates: dict[str, Tensor] = {}
    if pair_metric_named(metric).differentiable:
        log("attribution patching: one forward and one backward pass")
        estimates = attribution_patching(model, kind, source, base, points, score)
    base_value = exact.corrupted if direction == "denoising" else exact.clean
    restored = exact.restored
    rows = []
    for (family, patch), value, fraction in zip(families, exact.values.tolist(), restored.tolist()):
        _, where = split_point_name(patch.point)
        site, _, layer = where.partition(":")
        rows.append(
            PatchRow(
                family=family,
                point=patch.point,
                site=site,
                layer=int(layer),
                head=patch.head,
                position=patch.position,
                value=value,
                restored=fraction,
                estimate=_estimate(estimates, family, patch),
            )
        )
    correlation = {}
    for family in FAMILIES:
        chosen = [row for row in rows if row.family == family]
        if chosen:
            correlation[family] = spearman([r.value - base_value for r in chosen], [r.estimate for r in chosen])
    found_paths = []
    if paths:
        log(f"path patching: {len(paths)} sender -> receiver pair{'s' if len(paths) > 1 else ''}, through q, k, v")
    for sender, receiver in paths:
        for channel in CHANNELS:
            if not reachable(sender.split(":")[0], receiver.split(":")[0], channel):
                continue  # an encoder head reaches a cross-attention's keys and values only, a decoder head its query
            found_paths.append(path_patching(model, kind, clean, corrupted, sender, receiver, channel, score))
    return CausalAnalysis(
        metric=metric,
        direction=direction,
        pairs=len(pairs),
        clean=exact.clean,
        corrupted=exact.corrupted,
        rows=rows,
        positions=position_labels or {},
        rank_correlation=correlation,
        paths=found_paths,
        described=described,
        positions_left_out=None if one_template else "the pairs do not share one template",
    )


def weak_separation(analysis: CausalAnalysis) -> str | None:
    """Why the fractions are fragile (None: they are not): the corrupted run scores as well as the clean one or
    better (the pairs do not separate what the model does), so every fraction divides by a difference of the wrong
    sign or near nothing."""
    difference = analysis.difference if analysis.pair_metric.higher_is_better else -analysis.difference
    if not math.isfinite(difference) or difference == 0:
        return None  # undefined_restoration says why
    if difference < 0:
        return (
            f"the corrupted inputs score better than the clean ones ({analysis.metric} {analysis.clean:.4g} clean, "
            f"{analysis.corrupted:.4g} corrupted): the model does not do what the pairs test, so every fraction's "
            "sign is reversed"
        )
    scale = max(abs(analysis.clean), abs(analysis.corrupted), 1e-12)
    if difference < 0.05 * scale:
        return (
            f"the clean and corrupted inputs score almost the same ({analysis.metric} {analysis.clean:.4g} and "
            f"{analysis.corrupted:.4g}): each fraction divides by a small difference and is mostly noise"
        )
    return None


def wrong_answer(analysis: CausalAnalysis, accuracy: float) -> str | None:
    """Why the pairs may not test what the model does (None: they may): on the clean inputs the model prefers the
    corrupted answer (a negative logit difference), or its top-1 prediction is the clean answer in under half of
    the pairs: an answer off by one token (a seq2seq target prefix one token short) gives exactly this."""
    if analysis.pair_metric.negative_prefers_corrupted and analysis.clean < 0:
        return (
            f"on the clean inputs the model prefers the corrupted answer (mean logit difference {analysis.clean:.4g}; "
            f"the clean answer is its top-1 prediction in {accuracy:.0%} of the pairs): check each pair's answers "
            "(and a seq2seq target prefix): the fractions measure a behaviour the model does not have"
        )
    if accuracy < 0.5:
        return (
            f"the clean answer is the model's top-1 prediction in only {accuracy:.0%} of the pairs: check each pair's "
            "answers (and a seq2seq target prefix), or train the model further: the fractions are of a behaviour it "
            "mostly does not have"
        )
    return None


def undefined_restoration(analysis: CausalAnalysis) -> str | None:
    """Why the restored fractions are undefined (None: they are defined): the pairs give the clean and the
    corrupted run the same metric, so there is nothing to restore."""
    if math.isfinite(analysis.difference) and analysis.difference != 0:
        return None
    return (
        f"the clean and corrupted runs score the same {analysis.metric} ({analysis.clean:.4g}): the corruption "
        "changes nothing the metric sees, so no fraction of it can be restored (a model that has not learned the "
        "task, or pairs whose answers do not differ)"
    )


@torch.no_grad()
def clean_accuracy(model: nn.Module, kind: str, pairs: PairBatch) -> float:
    """How often the clean input's top-1 prediction is its answer: pairs the model gets wrong patch nothing
    meaningful, so the report says this first."""
    with eval_mode(model):
        logits = forward_batch(model, kind, pairs.clean).logits
    return float(pair_metric("exact_match", pairs, kind)(logits, pairs.clean).float().mean())
