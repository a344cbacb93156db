"""Metrics per split, from torchmetrics (which also syncs them across devices under DDP).

One `SplitMetrics` per evaluated split ("val", "test", "test_long"); what it tracks depends on the task kind:

    kind            metrics (logged as <split>/<name>)
    seq2seq         loss, ppl, token_acc, exact_match (greedy decoding), bleu (translation, validation only)
    lm              loss, ppl, token_acc
    classification  loss, acc

and the task's own metrics (TaskSpec.metrics / metric_names, e.g. induction's repeated_loss), each a ratio of sums
over the split (TaskMetric).

One metric, one name. `val/bleu` is training's quick BLEU: greedy outputs against references rebuilt from the
token ids, cheap enough for every validation (it picks best.ckpt). The BLEU to publish is sacreBLEU on a split's
raw reference lines, decoded as `decode.*` says (bleu.py: `<split>/sacrebleu`, `<split>/sacrebleu_lowercase`);
the test splits get only that one, and src.eval prints only that one, so no split is shown with two BLEUs.
describe_metric says in words what each tag is, for everything that prints metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from sacrebleu.metrics import BLEU
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

from src.data.registry import KINDS, task_kind
from src.model import EOS_ID, PAD_ID


def pad_after_eos(tokens: Tensor, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Tensor:
    """(B, L) -> (B, L) with every position after the first EOS set to PAD, so that two sequences compare
    equal exactly when they agree up to and including their EOS."""
    is_eos = tokens == eos_id
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # strictly after the first EOS
    return tokens.masked_fill(after_eos, pad_id)


def exact_match(predicted: Tensor, target: Tensor, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Tensor:
    """(B, Lp) generated and (B, Lt) reference token ids (both ending in EOS, then PAD) -> (B,) bool. The ids are
    the model's (TransformerConfig.eos_id, pad_id); the defaults are our own vocabularies'."""
    length = max(predicted.size(1), target.size(1))
    predicted = nn.functional.pad(
        pad_after_eos(predicted, eos_id, pad_id), (0, length - predicted.size(1)), value=pad_id
    )
    target = nn.functional.pad(pad_after_eos(target, eos_id, pad_id), (0, length - target.size(1)), value=pad_id)
    return (predicted == target).all(dim=1)


class CorpusBLEU(Metric):
    """Corpus BLEU (0-1) exactly as sacreBLEU computes it with its defaults (13a tokenization, exponential
    smoothing), which is what `test/sacrebleu` reports: sacreBLEU's sufficient statistics (matching and total
    n-grams per order, hypothesis and reference lengths) are summed over batches, and over ranks under DDP, and
    the score is computed from the sums (Papineni et al. 2002; smoothing as in Chen and Cherry 2014, method 3).

    Why not torchmetrics' SacreBLEUScore: it does not smooth, so on a small validation split where no 4-gram
    matches it reads 0 while sacreBLEU reads, say, 14; every checkpoint then ties at 0 for best.ckpt."""

    full_state_update = False
    ORDER = 4  # n-grams up to 4 (BLEU-4)

    def __init__(self) -> None:
        super().__init__()
        self.add_state("counts", default=torch.zeros(self.ORDER, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("totals", default=torch.zeros(self.ORDER, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("sys_len", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("ref_len", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.scorer = BLEU()

    def update(self, hypotheses: list[str], references: list[str]) -> None:  # type: ignore[override]
        """One reference per hypothesis, both detokenized text."""
        score = self.scorer.corpus_score(hypotheses, [references])
        self.counts += torch.tensor(score.counts, device=self.counts.device)
        self.totals += torch.tensor(score.totals, device=self.totals.device)
        self.sys_len += score.sys_len
        self.ref_len += score.ref_len

    def compute(self) -> Tensor:
        score = BLEU.compute_bleu(
            self.counts.tolist(), self.totals.tolist(), int(self.sys_len), int(self.ref_len), smooth_method="exp"
        )
        return torch.tensor(score.score / 100.0)


class TaskMetric(Metric):
    """A task's own metric (TaskSpec.metrics): the sum of its values over the split divided by the count they are
    over (summed over batches, and over ranks under DDP), e.g. the summed loss on some tokens and their number.
    Plain sums, updated with tensor operations only: no wait for the device, and a batch with nothing to count
    adds 0 / 0 without a NaN (MeanMetric would need the mean, and checks it for NaNs on the host)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(()), dist_reduce_fx="sum")

    def update(self, total: Tensor, count: Tensor) -> None:  # type: ignore[override]
        self.total += total.detach().to(self.total.dtype)
        self.count += count.detach().to(self.count.dtype)

    def compute(self) -> Tensor:
        return self.total / self.count  # NaN when the split had nothing to count


def perplexity(loss: float) -> float:
    """exp of the mean cross-entropy; inf past a float's range (exp(709.8) overflows: math.exp raises), as the
    perplexity of a diverged loss is; NaN stays NaN."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


class SplitMetrics(nn.Module):
    """The metric state of one split. `update_*` per batch, `compute()` at the end of the epoch, then `reset()`."""

    def __init__(
        self,
        kind: str,
        num_outputs: int,
        with_bleu: bool,
        eos_id: int = EOS_ID,
        pad_id: int = PAD_ID,
        ignore_index: int = PAD_ID,
        task_metrics: Sequence[str] = (),
    ):
        """`task_metrics`: the names of the task's own metrics (TaskSpec.metric_names), updated by update_task."""
        super().__init__()
        self.kind = kind
        self.eos_id, self.pad_id = eos_id, pad_id  # the model's special ids (TransformerConfig)
        self.loss = MeanMetric()  # token-weighted mean cross-entropy (without label smoothing)
        if task_kind(kind).predicts_tokens:
            self.token_acc = MulticlassAccuracy(num_classes=num_outputs, average="micro", ignore_index=ignore_index)
        else:
            self.acc = MulticlassAccuracy(num_classes=num_outputs, average="micro")
        if task_kind(kind).decodes:
            self.exact_match = MeanMetric()
        # corpus BLEU on detokenized text, as sacrebleu computes it (13a tokenization, exponential smoothing)
        self.bleu = CorpusBLEU() if with_bleu else None
        self.task_metrics = nn.ModuleDict({name: TaskMetric() for name in task_metrics})

    def update_loss(self, mean_loss: Tensor, count: Tensor) -> None:
        self.loss.update(mean_loss.detach(), weight=count)

    def update_predictions(self, logits: Tensor, target: Tensor) -> None:
        """logits (B, T, V) and target (B, T) for sequences; logits (B, C) and labels (B,) for classification."""
        predicted = logits.argmax(dim=-1)
        if task_kind(self.kind).predicts_tokens:
            self.token_acc.update(predicted.flatten(), target.flatten())
        else:
            self.acc.update(predicted, target)

    def update_generation(self, generated: Tensor, target: Tensor) -> None:
        self.exact_match.update(exact_match(generated, target, self.eos_id, self.pad_id).float())

    def update_bleu(self, hypotheses: list[str], references: list[str]) -> None:
        self.bleu.update(hypotheses, references)

    def update_task(self, sums: Mapping[str, tuple[Tensor, Tensor]]) -> None:
        """The task's own metrics of one batch: name -> (summed value, count), as TaskSpec.metrics returns them."""
        for name, metric in self.task_metrics.items():
            metric.update(*sums[name])

    def compute(self) -> dict[str, float]:
        loss = self.loss.compute().item()
        values = {"loss": loss}
        if task_kind(self.kind).predicts_tokens:
            values["ppl"] = perplexity(loss)
            values["token_acc"] = self.token_acc.compute().item()
        else:
            values["acc"] = self.acc.compute().item()
        if task_kind(self.kind).decodes and self.exact_match.update_count > 0:
            values["exact_match"] = self.exact_match.compute().item()
        if self.bleu is not None and self.bleu.update_count > 0:
            values["bleu"] = 100.0 * self.bleu.compute().item()  # sacrebleu's 0-100 scale
        for name, metric in self.task_metrics.items():
            if metric.update_count > 0:
                values[name] = metric.compute().item()
        return values

    def reset(self) -> None:
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()


LOWER_IS_BETTER = ("loss", "ppl")  # metric names ending so; every other metric is higher-is-better


def higher_is_better(tag: str) -> bool:
    """Whether a larger value of a metric tag ("val/bleu", "test/loss", ...) is the better one."""
    return not tag.rsplit("/", 1)[-1].endswith(LOWER_IS_BETTER)


# The values each metric can take, by its name (the tag's last part): what a confidence interval is clipped to
# (the t interval of accuracies near 1.0 would otherwise pass 1.0). Unlisted metrics are unbounded.
METRIC_RANGES = {
    "loss": (0.0, math.inf),
    "ppl": (1.0, math.inf),
    "acc": (0.0, 1.0),
    "token_acc": (0.0, 1.0),
    "exact_match": (0.0, 1.0),
    "bleu": (0.0, 100.0),  # sacreBLEU's 0-100 scale
    "sacrebleu": (0.0, 100.0),
    "sacrebleu_lowercase": (0.0, 100.0),
    "prunable_fraction": (0.0, 1.0),  # the sweep report's analysis/prunable_fraction: a fraction of the heads
    "repeated_loss": (0.0, math.inf),  # task=induction
}


def metric_range(tag: str) -> tuple[float, float]:
    """The smallest and largest value a metric tag ("val/exact_match", "test/loss", ...) can take."""
    return METRIC_RANGES.get(tag.rsplit("/", 1)[-1], (-math.inf, math.inf))


def test_tags(val_tags: list[str]) -> list[str]:
    """The tags test_after_fit logs for the same metrics on the test split: val/loss -> test/loss, ... The quick
    val/bleu has no test twin: the test split's BLEU is test/sacrebleu (see the module docstring)."""
    return [tag.replace("val/", "test/", 1) for tag in val_tags if tag.rsplit("/", 1)[-1] not in VALIDATION_ONLY]


VALIDATION_ONLY = ("bleu",)  # metric names the test splits do not compute (SplitMetrics' with_bleu)


def objective_choices(kind: str, with_bleu: bool, test_after_fit: bool, task_metrics: Sequence[str] = ()) -> list[str]:
    """The metric tags a run can return to an optimising sweeper (`objective=`): its validation metrics (the task's
    own `task_metrics` included), and with test_after_fit its test metrics (sacreBLEU on the raw references for
    translation)."""
    val_tags = metric_tags(kind, with_bleu, task_metrics)
    if not test_after_fit:
        return val_tags
    sacrebleu = ["test/sacrebleu", "test/sacrebleu_lowercase"] if with_bleu else []
    return [*val_tags, *test_tags(val_tags), *sacrebleu]


# What each metric is, by its name (a tag's last part), in words that need no ": " (lines are read as `tag: value`).
DESCRIPTIONS = {
    "ppl": "perplexity, exp of {split}/loss",
    "token_acc": "share of target tokens predicted right, teacher-forced",
    "exact_match": "share of greedy outputs equal to the reference",
    "acc": "share of examples classified right",
    "bleu": (
        "BLEU of greedy outputs against references rebuilt from token ids, training's quick figure; "
        "src.eval gives sacreBLEU on the raw references"
    ),
    "sacrebleu": "sacreBLEU against the raw references, cased, decoded as decode.* says",
    "sacrebleu_lowercase": "sacreBLEU against the raw references, lowercased, decoded as decode.* says",
    "prunable_fraction": "share of the heads removable within the analysis tolerance",
    # task=induction: the targets repeat_offsets finds predictable (the second occurrence, less its first token)
    "repeated_loss": "mean cross-entropy on the predictable tokens of the repeated segment, teacher-forced, in nats",
}
# What the loss is averaged over: a token predictor's target tokens, a classifier's examples.
LOSS_PER_TOKEN = "mean cross-entropy per target token, teacher-forced, in nats"
LOSS_PER_EXAMPLE = "mean cross-entropy per example, in nats"


def split_sizes(datamodule) -> dict[str, int]:
    """split -> its number of examples, for the splits metrics are computed on (val, test, and test_long where the
    task has one): what describe_metric says each metric is over."""
    return {
        split: len(examples)
        for split in ("val", "test", "test_long")
        if (examples := getattr(datamodule.task, split, None)) is not None
    }


def describe_metric(tag: str, kind: str | None = None, examples: Mapping[str, int] | None = None) -> str:
    """What the metric `tag` ("val/loss", "test/sacrebleu", ...) is, in words, with the size of its split when
    `examples` (split -> examples) knows it; "" for a tag not known here. `kind`: the task kind, when known (a loss
    is per token or per example)."""
    split, _, name = tag.rpartition("/")
    # Only words for a reader, who may hold a file from a version whose kinds were others: a kind not registered
    # (or none given) describes its loss as the loss of any kind, where asking task_kind would refuse it.
    registered = KINDS.get(kind) if kind else None
    if name == "loss" and registered is None:
        about = "mean cross-entropy, teacher-forced, in nats"
    elif name == "loss":
        about = LOSS_PER_TOKEN if registered.predicts_tokens else LOSS_PER_EXAMPLE
    else:
        about = DESCRIPTIONS.get(name, "").format(split=split)
    count = (examples or {}).get(split)
    if about and count is not None and name != "ppl":  # ppl's count is its loss's
        about += f", {count:,} examples"
    return about


def metric_tags(kind: str, with_bleu: bool, task_metrics: Sequence[str] = ()) -> list[str]:
    """The validation tags a run logs: TensorBoard's HPARAMS tab shows these columns (hparams are logged once, at
    train start, with the tags the run writes later). `task_metrics`: the task's own (TaskSpec.metric_names)."""
    names = ["val/loss"]
    if task_kind(kind).predicts_tokens:
        names += ["val/ppl", "val/token_acc"]
    else:
        names.append("val/acc")
    if task_kind(kind).decodes:
        names.append("val/exact_match")
    if with_bleu:
        names.append("val/bleu")
    names += [f"val/{name}" for name in task_metrics]
    return names
