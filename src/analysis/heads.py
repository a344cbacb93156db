"""What each attention head of a trained model does for its task: importance, entropy, ablations and pruning.

Following Michel, Levy and Neubig 2019, "Are Sixteen Heads Really Better than One?" (NeurIPS):
- head importance (their eq. 3): I_h = E_x |d L(x) / d g_h|, the expected absolute gradient of an example's loss
  with respect to the head's gate g_h (head_mask.py) at g = 1: a first-order estimate of what removing the head
  costs. Here x is one example (its mean token loss), and every example gets its own gate row, so one backward
  pass per batch gives the per-example gradients exactly (no accumulation across batches, the mistake of Hugging
  Face's bertology example); no weight gradient is computed. Then normalised per layer by the l2 norm (their
  section 4.1), so layers compare;
- attention entropy of each head (nats, averaged over real query positions): how spread out it looks;
- the exact effect of removing each head alone on the task's main metric and loss (scoring.py);
- keeping only one head in a layer (their section 3.2): the best head of each layer alone, then in every layer;
- a pruning curve (their section 4.2): the least important heads removed 10% at a time, importance re-scored
  on the pruned model after each step, and the largest fraction of heads that goes before the main metric drops
  by more than a tolerance;
- the Spearman rank correlation of the importance with the exact single-head effects: when it is high, the
  cheap gradient score can stand in for the exact table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from src.dashboard.attention_stats import query_entropy, valid_query_rows
from src.model.ablation import sublayer_blocks
from src.model.head_mask import attention_sites, head_gate_rows, restore_head_gate_rows
from src.model.names import head_name
from src.training.inference import forward_batch, scored_target
from src.training.report import print_warning

from .ablation import query_positions
from .scoring import HeadMask, MainMetric, SplitScorer, current_head_mask, per_example_loss
from .statistics import spearman


def head_importance(model: nn.Module, kind: str, batches) -> HeadMask:
    """Per site, (L, H): E_x |d L(x) / d g_h| over the examples of `batches` (see the module docstring), with the
    model's current gates as the point of evaluation (1 for kept heads). No weight gradients are computed."""
    sites = attention_sites(model)
    base = current_head_mask(model)
    device = next(model.parameters()).device
    total = {site: torch.zeros_like(gates, dtype=torch.float64) for site, gates in base.items()}
    examples = 0
    saved_gates = head_gate_rows(model)
    needs_grad = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()  # no dropout: the gradient of the model that is analysed
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.enable_grad():
            for batch in batches:
                rows = next(iter(batch.values())).size(0)
                gates = {}
                for site, modules in sites.items():
                    # (B, L, H): one gate row per example, a leaf, so its gradient is per example
                    gates[site] = base[site].to(device).expand(rows, -1, -1).clone().requires_grad_(True)
                    for layer, module in enumerate(modules):
                        module.head_gate = gates[site][:, layer]  # (B, H)
                logits = forward_batch(model, kind, batch).logits
                loss, count = per_example_loss(logits, scored_target(model, kind, batch), kind)
                per_example = loss / count.clamp(min=1)  # (B,) L(x): each example's mean token loss
                grads = torch.autograd.grad(per_example.sum(), list(gates.values()))
                for site, grad in zip(gates, grads):
                    total[site] += grad.abs().sum(0).double().cpu()  # sum over examples of |dL(x)/dg|
                examples += rows
    finally:
        for p, flag in zip(model.parameters(), needs_grad):
            p.requires_grad_(flag)
        restore_head_gate_rows(model, saved_gates)
        model.train(was_training)
    return {site: (values / max(examples, 1)).float() for site, values in total.items()}


def heads_in_use(model: nn.Module) -> HeadMask:
    """Per site, (L, H): 1 for each head that still acts, 0 where it is gated off or its whole attention sublayer
    is removed (ablate.sublayers): a removed sublayer's heads change nothing, so they are neither scored nor
    pruned."""
    alive = {site: (gates > 0).float() for site, gates in current_head_mask(model).items()}
    blocks = sublayer_blocks(model)
    for site, gates in alive.items():
        for layer, block in enumerate(blocks.get(site, [])):
            if block.removed:
                gates[layer] = 0.0
    return alive


def normalise_per_layer(importance: HeadMask, alive: HeadMask) -> HeadMask:
    """Michel et al.'s per-layer l2 normalisation, over the heads still in the model (removed ones: 0)."""
    normalised = {}
    for site, values in importance.items():
        kept = values * alive[site]
        norm = kept.norm(dim=-1, keepdim=True)  # (L, 1)
        normalised[site] = torch.where(norm > 0, kept / norm.clamp(min=1e-30), torch.zeros_like(kept))
    return normalised


@torch.no_grad()
def attention_entropy(model: nn.Module, kind: str, batches) -> HeadMask:
    """Per site, (L, H): each head's mean attention entropy (nats) over the real query positions of `batches`
    (a query row that is padding, or whose keys are all masked, is left out): the entropy TensorBoard's
    val_heads/entropy shows (src/dashboard/attention_stats.py), averaged over a split instead of a probe batch."""
    sums: dict[str, Tensor] = {}
    counts: dict[str, Tensor] = {}
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            attentions = forward_batch(model, kind, batch, need_weights=True).attentions or {}
            for site, per_layer in attentions.items():
                queries = query_positions(model, batch, site)  # (B, Tq)
                for layer, weights in enumerate(per_layer):  # (B, H, Tq, Tk)
                    weights = weights.double()
                    valid = valid_query_rows(weights, queries[:, : weights.size(2)])  # (B, H, Tq)
                    entropy = query_entropy(weights)  # (B, H, Tq)
                    heads = weights.size(1)
                    sums.setdefault(site, torch.zeros(len(per_layer), heads, dtype=torch.float64))
                    counts.setdefault(site, torch.zeros(len(per_layer), heads, dtype=torch.float64))
                    sums[site][layer] += (entropy * valid).sum((0, 2)).cpu()
                    counts[site][layer] += valid.sum((0, 2)).double().cpu()
    finally:
        model.train(was_training)
    return {site: (sums[site] / counts[site].clamp(min=1)).float() for site in sums}


@dataclass
class HeadRow:
    """One head: its scores and, when the single-head table was made, what removing it alone does. `name` is the
    head as `ablate.heads` reads it (`cross:1:2`, from site, layer and head, counted from 0): the first column of
    heads.csv, so a row can be pasted into a spec as it reads."""

    name: str = field(init=False)
    site: str
    layer: int
    head: int
    removed_before: bool  # already off (trained without it, or ablate.* asked for it): not scored
    importance: float
    importance_normalised: float
    entropy: float
    metric_without: float = math.nan  # the main metric with this head alone removed
    loss_without: float = math.nan
    metric_drop: float = math.nan  # how much worse the metric gets without it (positive = the head helps)
    loss_increase: float = math.nan

    def __post_init__(self) -> None:
        self.name = head_name(self.site, self.layer, self.head)


@dataclass
class KeepOneRow:
    """Only one head kept in a layer (scope "layer"), in every layer of a site ("site"), or everywhere ("all")."""

    scope: str
    site: str  # "all" for scope "all"
    layer: int | None  # None for scopes "site" and "all"
    kept: str  # the heads kept, as ablate.heads takes a list of them: "[cross:1:3]", "[cross:0:1,cross:1:3]"
    metric: float
    loss: float


@dataclass
class PruneStep:
    fraction: float  # of the heads that were in the model, now removed
    removed: int
    metric: float
    loss: float
    removed_heads: list[str]  # every head removed so far (importance order)


@dataclass
class HeadAnalysis:
    """Everything `analyze_heads` measured; written out by report.py."""

    split: str
    examples: int
    metric: MainMetric
    baseline_metric: float
    baseline_loss: float
    heads: list[HeadRow]
    keep_one: list[KeepOneRow]
    pruning: list[PruneStep]
    tolerance: float
    prunable_fraction: float  # the largest fraction removed with the metric within the tolerance
    # Spearman rho of the normalised importance against the exact single-head metric drop and loss increase
    rank_correlation: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # the cost of each part

    def summary(self) -> dict[str, float]:
        """The figures a sweep report compares across runs (pruning/<name>)."""
        values = {
            "baseline": self.baseline_metric,
            "prunable_fraction": self.prunable_fraction,
            "heads": float(len(self.heads)),
        }
        values.update({f"rank_correlation_{k}": v for k, v in self.rank_correlation.items()})
        for step in self.pruning:
            values[f"metric_at_{round(100 * step.fraction)}pct"] = step.metric
        return values


def _drop(metric: MainMetric, baseline: float, value: float) -> float:
    """How much worse `value` is than `baseline` (positive = worse), in the metric's own units."""
    return baseline - value if metric.higher_is_better else value - baseline


def prunable_fraction(metric: MainMetric, baseline: float, steps: list[PruneStep], tolerance: float) -> float:
    """The largest fraction of heads removed before the metric first drops by more than `tolerance` x |baseline|
    (an absolute `tolerance` when the baseline is 0)."""
    allowed = tolerance * abs(baseline) if baseline != 0 else tolerance
    fraction = 0.0
    for step in steps:
        if _drop(metric, baseline, step.metric) > allowed + 1e-12:
            break
        fraction = step.fraction
    return fraction


def _without(alive: HeadMask, heads: list[tuple[str, int, int]]) -> HeadMask:
    mask = {site: gates.clone() for site, gates in alive.items()}
    for site, layer, head in heads:
        mask[site][layer, head] = 0.0
    return mask


def analyze_heads(
    model: nn.Module,
    datamodule,
    decode: Mapping,
    split: str = "val",
    max_examples: int | None = None,
    single_heads: bool = True,
    keep_one: bool = True,
    prune_step: float = 0.1,
    tolerance: float = 0.05,
    rows_per_batch: int = 1024,
    log=print,
) -> HeadAnalysis:
    """Analyse the heads of `model` (a trained src.model network, ablation applied) on `split` of `datamodule`.
    See the module docstring for what is measured; `log` gets one line per part, with its time."""
    seconds: dict[str, float] = {}
    scorer = SplitScorer(model, datamodule, decode, split, max_examples, rows_per_batch)
    kind, metric = scorer.kind, scorer.metric
    alive = heads_in_use(model)
    all_heads = [
        (site, layer, head)
        for site, gates in alive.items()
        for layer in range(gates.size(0))
        for head in range(gates.size(1))
    ]
    live = [h for h in all_heads if alive[h[0]][h[1], h[2]] > 0]

    start = time.perf_counter()
    baseline_loss = scorer.losses([alive])[0]
    seconds["eval_pass"] = time.perf_counter() - start
    start = time.perf_counter()
    raw = head_importance(model, kind, scorer.batches)
    seconds["importance"] = time.perf_counter() - start
    normalised = normalise_per_layer(raw, alive)
    log(
        f"importance: {len(live)} heads on {len(scorer.examples)} {split} examples in {seconds['importance']:.1f} s "
        f"({seconds['importance'] / max(seconds['eval_pass'], 1e-9):.2f}x a teacher-forced pass)"
    )
    start = time.perf_counter()
    entropy = attention_entropy(model, kind, scorer.batches)
    seconds["entropy"] = time.perf_counter() - start

    start = time.perf_counter()
    # a loss metric is the loss just measured: no second pass over the split (likewise below)
    baseline_metric = baseline_loss if metric.is_loss else scorer.metrics([alive])[0]
    seconds["baseline_metric"] = time.perf_counter() - start
    rows = [
        HeadRow(
            site,
            layer,
            head,
            removed_before=bool(alive[site][layer, head] == 0),
            importance=float(raw[site][layer, head]) if alive[site][layer, head] > 0 else math.nan,
            importance_normalised=float(normalised[site][layer, head]) if alive[site][layer, head] > 0 else math.nan,
            entropy=float(entropy[site][layer, head]),
        )
        for site, layer, head in all_heads
    ]

    if single_heads and live:
        start = time.perf_counter()
        masks = [_without(alive, [h]) for h in live]
        losses = scorer.losses(masks)
        values = losses if metric.is_loss else scorer.metrics(masks)
        by_head = {h: (v, loss) for h, v, loss in zip(live, values, losses)}
        for row in rows:
            if (row.site, row.layer, row.head) in by_head:
                row.metric_without, row.loss_without = by_head[(row.site, row.layer, row.head)]
                row.metric_drop = _drop(metric, baseline_metric, row.metric_without)
                row.loss_increase = row.loss_without - baseline_loss
        seconds["single_heads"] = time.perf_counter() - start
        log(f"single heads: {len(live)} ablations scored on {metric.name} in {seconds['single_heads']:.1f} s")

    keep_rows: list[KeepOneRow] = []
    if keep_one and live:
        start = time.perf_counter()
        keep_rows = _keep_one(scorer, alive, live, metric)
        seconds["keep_one"] = time.perf_counter() - start
        log(f"keep one head per layer: {len(keep_rows)} configurations in {seconds['keep_one']:.1f} s")

    start = time.perf_counter()
    steps = _pruning_curve(model, scorer, alive, live, prune_step, normalised, baseline_metric, baseline_loss)
    seconds["pruning"] = time.perf_counter() - start
    fraction = prunable_fraction(metric, baseline_metric, steps, tolerance)
    if metric.higher_is_better and baseline_metric <= 0:
        # A model that scores 0 loses nothing by losing heads: "100% can go" would be true and meaningless.
        fraction = math.nan
        print_warning(
            f"the unablated model scores {metric.name} 0 on {split}: it does not do the task, so there is no "
            "prunable fraction (left undefined); analyse a trained checkpoint"
        )
    log(f"pruning: {len(steps) - 1} steps in {seconds['pruning']:.1f} s")

    correlation = {}
    if single_heads:
        scores = [r.importance_normalised for r in rows]
        correlation["metric"] = spearman(scores, [r.metric_drop for r in rows])
        correlation["loss"] = spearman(scores, [r.loss_increase for r in rows])
    return HeadAnalysis(
        split,
        len(scorer.examples),
        metric,
        baseline_metric,
        baseline_loss,
        rows,
        keep_rows,
        steps,
        tolerance,
        fraction,
        correlation,
        seconds,
    )


def _keep_one(scorer: SplitScorer, alive: HeadMask, live, metric: MainMetric) -> list[KeepOneRow]:
    """Per layer, each live head kept alone (the layer's other heads off), ranked by loss; the best one per layer is
    then scored on the metric alone in its layer, in every layer of its site at once, and in every layer at once."""
    site_order = list(alive)
    layers = sorted({(site, layer) for site, layer, _ in live}, key=lambda sl: (site_order.index(sl[0]), sl[1]))
    candidates = [(site, layer, head) for site, layer, head in live]
    masks = []
    for site, layer, head in candidates:
        others = [(s, lay, h) for s, lay, h in live if (s, lay) == (site, layer) and h != head]
        masks.append(_without(alive, others))
    losses = scorer.losses(masks)
    best: dict[tuple[str, int], tuple[int, float]] = {}
    for (site, layer, head), loss in zip(candidates, losses):
        if (site, layer) not in best or loss < best[(site, layer)][1]:
            best[(site, layer)] = (head, loss)

    def keeping(chosen: list[tuple[str, int]]) -> HeadMask:
        removed = [(s, lay, h) for s, lay, h in live if (s, lay) in chosen and h != best[(s, lay)][0]]
        return _without(alive, removed)

    scopes = [("layer", site, layer, [(site, layer)]) for site, layer in layers]
    sites = sorted({site for site, _ in layers}, key=site_order.index)
    scopes += [("site", site, None, [(s, lay) for s, lay in layers if s == site]) for site in sites]
    if len(sites) > 1:
        scopes.append(("all", "all", None, layers))
    masks = [keeping(chosen) for *_, chosen in scopes]
    scope_losses = scorer.losses(masks)
    scope_metrics = scope_losses if metric.is_loss else scorer.metrics(masks)
    rows = []
    for (scope, site, layer, chosen), value, loss in zip(scopes, scope_metrics, scope_losses):
        # the heads themselves, never a description: a row of keep_one.csv names what to paste into ablate.heads
        kept = [head_name(s, lay, best[(s, lay)][0]) for s, lay in chosen]
        rows.append(KeepOneRow(scope, site, layer, f"[{','.join(kept)}]", value, loss))
    return rows


def _pruning_curve(model, scorer, alive, live, prune_step, normalised, baseline_metric, baseline_loss):
    """Remove the least important live heads, ceil(prune_step x heads) at a time (importance re-scored on the pruned
    model after each step), down to none; then score every step's mask in one batched pass."""
    total = len(live)
    per_step = max(1, math.ceil(prune_step * total))
    masks, removed_lists = [], []
    current = {site: gates.clone() for site, gates in alive.items()}
    removed: list[tuple[str, int, int]] = []
    scores = normalised
    saved = head_gate_rows(model)
    try:
        while len(removed) < total:
            remaining = [h for h in live if h not in removed]
            remaining.sort(key=lambda h: float(scores[h[0]][h[1], h[2]]))
            removed = removed + remaining[:per_step]
            current = _without(alive, removed)
            masks.append(current)
            removed_lists.append(list(removed))
            if len(removed) < total:  # re-score on the pruned model (Michel et al.: after each step)
                for site, modules in attention_sites(model).items():
                    for layer, module in enumerate(modules):
                        module.head_gate = current[site][layer].to(next(model.parameters()))
                scores = normalise_per_layer(head_importance(model, scorer.kind, scorer.batches), current)
    finally:
        restore_head_gate_rows(model, saved)
    losses = scorer.losses(masks)
    values = losses if scorer.metric.is_loss else scorer.metrics(masks)
    steps = [PruneStep(0.0, 0, baseline_metric, baseline_loss, [])]
    for heads, value, loss in zip(removed_lists, values, losses):
        steps.append(PruneStep(len(heads) / total, len(heads), value, loss, [head_name(*h) for h in heads]))
    return steps
