"""Scoring head masks on a split: the teacher-forced loss and the task's main metric of a model with some of its
heads switched off, several masks at once.

Scoring one ablation at a time costs one pass over the split each, and greedy decoding of small batches is
dominated by per-step overhead. Instead every batch of examples is repeated once per mask and each copy gets its
own head mask (MultiHeadAttention takes a (B, H) gate: one row per example), so K ablations cost one pass over
a K times larger batch: the same arithmetic in fewer, larger operations.

The main metric is the task's own (src/data/registry.py, TaskSpec.main_metric), computed as src.eval does, and
named as src.eval prints it (one metric, one name: src/training/metrics.py):
- translation: `sacrebleu`, sacreBLEU of greedy translations against the raw references (the real decoding path,
  key/value cache included), as `src.eval decode.strategy=greedy` prints `<split>/sacrebleu`; not training's quick
  `val/bleu` (references rebuilt from token ids), which picks best.ckpt;
- other seq2seq tasks: `exact_match`, greedy (up to the reference length plus the task's slack, as validation);
- lm: `loss` (nats per token, lower is better); classification: `acc`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from sacrebleu.metrics import BLEU
from torch import Tensor, nn

from src.data import task_spec
from src.data.registry import task_kind
from src.model import ConfigError, generate
from src.model.head_mask import attention_sites, head_gate_rows, restore_head_gate_rows
from src.training.inference import IGNORE_INDEX, forward_batch, scored_target
from src.training.metrics import exact_match
from src.training.report import print_warning

HeadMask = dict[str, Tensor]  # site -> (L, H) gates, 1 = kept, 0 = ablated


@dataclass(frozen=True)
class MainMetric:
    """The metric the analysis scores every ablation on. Its `name` is the one src.eval prints the same number
    under (`<split>/<name>`), so that a report's column and an evaluation's line agree."""

    name: str  # "sacrebleu", "exact_match", "loss" or "acc"
    higher_is_better: bool
    description: str  # for reports: what it is and how it is computed, e.g. which BLEU and which decoding
    eval_settings: str = ""  # what src.eval needs beyond split= to print the same number, e.g. decode.strategy=greedy
    # The metric is the teacher-forced loss itself: SplitScorer.losses computes it (no pass of its own), and a
    # report's loss column or line beside it would only repeat it.
    is_loss: bool = False

    def eval_command(self, split: str) -> str:
        """The src.eval arguments that print this metric for the unablated model on `split` (on the whole split;
        an analysis with max_examples scores its first examples only)."""
        return " ".join(part for part in (f"split={split}", self.eval_settings) if part)


# The analysis metric for each task main metric (TaskSpec.main_metric's name): MainMetric's fields but the direction,
# which the task's main metric gives.
ANALYSIS_METRICS: dict[str, dict[str, Any]] = {
    "bleu": dict(
        name="sacrebleu",
        description="sacreBLEU of greedy translations against the raw reference lines, cased, 13a tokenization",
        eval_settings="decode.strategy=greedy",
    ),
    "exact_match": dict(name="exact_match", description="share of greedy outputs equal to the reference"),
    "loss": dict(name="loss", description="mean cross-entropy per target token, teacher-forced, in nats", is_loss=True),
    "acc": dict(name="acc", description="share of examples classified right"),
}


def main_metric_of(task_name: str) -> MainMetric:
    """What the analysis measures a head's effect on: the task's main validation metric, as src.eval computes and
    names it (see the module). For translation that is sacreBLEU on the raw references, not training's quick
    val/bleu."""
    tag, mode = task_spec(task_name).main_metric
    short = tag.split("/", 1)[1]
    fields = ANALYSIS_METRICS.get(short, dict(name=short, description=short))
    return MainMetric(higher_is_better=mode == "max", **fields)


def current_head_mask(model: nn.Module) -> HeadMask:
    """The gates the model runs with now ((L, H) per site; 1.0 where no gate is set), on the CPU."""
    mask = {}
    for site, modules in attention_sites(model).items():
        rows = []
        for module in modules:
            gate = module.head_gate
            rows.append(torch.ones(module.heads) if gate is None else gate.detach().float().cpu().reshape(-1))
        mask[site] = torch.stack(rows)
    return mask


@contextmanager
def row_masks(model: nn.Module, masks: Sequence[HeadMask], rows_each: int) -> Iterator[None]:
    """Within the block, batch rows [k * rows_each, (k + 1) * rows_each) run with masks[k] (a batch repeated
    len(masks) times, mask-major, as Tensor.repeat builds it). Each mask is combined with the model's own gates (a
    trained or asked ablation stays off), which are put back afterwards."""
    sites = attention_sites(model)
    saved = head_gate_rows(model)
    base = current_head_mask(model)
    try:
        for site, modules in sites.items():
            stacked = torch.stack([mask[site] for mask in masks]) * base[site]  # (K, L, H)
            for layer, module in enumerate(modules):
                module.head_gate = stacked[:, layer].repeat_interleave(rows_each, dim=0)  # (K * rows_each, H)
        yield
    finally:
        restore_head_gate_rows(model, saved)


def repeat_batch(batch: Mapping[str, Tensor], times: int) -> dict[str, Tensor]:
    """Every tensor of the batch `times` times along the batch dimension, mask-major (see row_masks)."""
    return {key: value.repeat(times, *([1] * (value.dim() - 1))) for key, value in batch.items()}


def per_example_loss(logits: Tensor, target: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """(summed cross-entropy, scored tokens) per example, each (B,): a classifier scores one label per example;
    target positions holding IGNORE_INDEX (inference.scored_target, as training scores them) are not scored.
    In float32 at least (a bf16 model's logits are promoted), float64 for a float64 model."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if not task_kind(kind).predicts_tokens:  # one label per example
        return F.cross_entropy(logits, target, reduction="none"), torch.ones_like(target, dtype=logits.dtype)
    token_loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    return token_loss.view_as(target).sum(1), (target != IGNORE_INDEX).sum(1).to(logits.dtype)  # (B,), (B,)


class SplitScorer:
    """Scores head masks on the examples of one split of a loaded run.

    Args:
        model: the trained network (src.model), with any ablation it runs with already applied.
        datamodule: the run's data (src/data/datamodule.py).
        decode: the run's `decode` settings (translation decodes up to its max_new_tokens, as src.eval does).
        split: "val" or "test".
        max_examples: only the first N examples (None: all).
        rows_per_batch: how many rows (examples x masks) one forward pass or decoding may hold.
    """

    def __init__(
        self,
        model: nn.Module,
        datamodule,
        decode: Mapping,
        split: str,
        max_examples: int | None = None,
        rows_per_batch: int = 1024,
    ):
        self.model = model
        self.kind = datamodule.kind
        self.datamodule = datamodule
        self.decode = dict(decode)
        task_name = datamodule.task_cfg.name
        examples = list(getattr(datamodule.task, split))
        if max_examples is not None and max_examples > len(examples):
            print_warning(f"max_examples={max_examples}: the {split} split has {len(examples)}, all of them are used")
        self.examples = examples[:max_examples] if max_examples is not None else examples
        if not self.examples:
            other = "val" if split == "test" else "test"
            raise ConfigError(f"split={split}: this run's {split} split has no examples to analyse: use split={other}")
        self.split = split
        self.rows_per_batch = max(1, rows_per_batch)
        self.device = next(model.parameters()).device
        # Longest first, batches of similar length: little padding computed (padding changes no result).
        order = sorted(range(len(self.examples)), key=lambda i: -self._length(self.examples[i]))
        size = datamodule.batch_size
        self.batches = [
            {
                k: v.to(self.device)
                for k, v in datamodule.collate([self.examples[i] for i in order[s : s + size]]).items()
            }
            for s in range(0, len(order), size)
        ]
        references = datamodule.task.references.get(split)
        self.references = [references[i] for i in order] if references else None  # in batch order
        self.extra_tokens = task_spec(task_name).generation_slack
        self.metric = main_metric_of(task_name)

    @staticmethod
    def _length(example: Mapping[str, Tensor]) -> int:
        return max(len(v) for v in example.values() if isinstance(v, Tensor) and v.dim() == 1)

    def _groups(self, count: int, batch_rows: int) -> list[range]:
        """Masks in groups small enough that group x batch rows fit rows_per_batch (at least one mask each)."""
        per_group = max(1, self.rows_per_batch // max(1, batch_rows))
        return [range(start, min(start + per_group, count)) for start in range(0, count, per_group)]

    @torch.no_grad()
    def losses(self, masks: Sequence[HeadMask]) -> list[float]:
        """The teacher-forced loss (nats per scored token, over the whole split) of the model under each mask."""
        totals = torch.zeros(len(masks), dtype=torch.float64)
        tokens = torch.zeros(len(masks), dtype=torch.float64)
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in self.batches:
                rows = next(iter(batch.values())).size(0)
                for group in self._groups(len(masks), rows):
                    chosen = [masks[k] for k in group]
                    with row_masks(self.model, chosen, rows):
                        big = repeat_batch(batch, len(chosen))
                        logits = forward_batch(self.model, self.kind, big).logits
                        loss, count = per_example_loss(logits, scored_target(self.model, self.kind, big), self.kind)
                    totals[group.start : group.stop] += loss.view(len(chosen), rows).sum(1).double().cpu()
                    tokens[group.start : group.stop] += count.view(len(chosen), rows).sum(1).double().cpu()
        finally:
            self.model.train(was_training)
        return (totals / tokens.clamp(min=1)).tolist()

    @torch.no_grad()
    def metrics(self, masks: Sequence[HeadMask]) -> list[float]:
        """The task's main metric of the model under each mask (see the module docstring)."""
        if self.metric.is_loss:
            return self.losses(masks)
        if task_kind(self.kind).decodes:
            return self._decoded(masks)
        return self._accuracies(masks)  # neither the loss nor decoded: a classifier's accuracy

    def _accuracies(self, masks: Sequence[HeadMask]) -> list[float]:
        correct = torch.zeros(len(masks), dtype=torch.float64)
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in self.batches:
                rows = batch["src"].size(0)
                for group in self._groups(len(masks), rows):
                    chosen = [masks[k] for k in group]
                    with row_masks(self.model, chosen, rows):
                        big = repeat_batch(batch, len(chosen))
                        hits = (self.model(big["src"]).logits.argmax(-1) == big["label"]).double()
                    correct[group.start : group.stop] += hits.view(len(chosen), rows).sum(1).cpu()
        finally:
            self.model.train(was_training)
        return (correct / len(self.examples)).tolist()

    def _decoded(self, masks: Sequence[HeadMask]) -> list[float]:
        """Greedy decoding of every example under every mask: sacreBLEU (translation) or exact match. Only a
        seq2seq task has a decoded main metric (an lm's is the loss, a classifier's the accuracy: metrics)."""
        hypotheses: list[list[str]] = [[] for _ in masks]
        matches = torch.zeros(len(masks), dtype=torch.float64)
        for batch in self.batches:
            rows = batch["src"].size(0)
            for group in self._groups(len(masks), rows):
                chosen = [masks[k] for k in group]
                with row_masks(self.model, chosen, rows):
                    generated = self._generate(repeat_batch(batch, len(chosen)))  # (K * rows, L)
                for k, out in zip(group, generated.view(len(chosen), rows, -1)):
                    if self.references is not None:
                        hypotheses[k] += [self.datamodule.decode_tgt(ids) for ids in out.cpu()]
                    else:
                        ids = self.model.cfg.eos_id, self.model.cfg.pad_id
                        matches[k] += exact_match(out, batch["tgt_out"], *ids).double().sum().cpu()
        if self.references is None:
            return (matches / len(self.examples)).tolist()
        return [BLEU().corpus_score(h, [self.references]).score for h in hypotheses]

    def _generate(self, batch: Mapping[str, Tensor]) -> Tensor:
        """A seq2seq model's greedy output (B, L) as validation and src.eval make it (see inference.greedy_decode)."""
        if self.references is not None:  # translation: the run's own decode.max_new_tokens, as src.eval
            limit = int(self.decode.get("max_new_tokens", 100))
        else:
            limit = batch["tgt_out"].size(1) + self.extra_tokens
        return generate(self.model, src=batch["src"], max_new_tokens=limit)
