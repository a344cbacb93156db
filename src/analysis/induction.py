"""Induction and previous-token heads (Olsson et al. 2022, "In-context learning and induction heads") in a
decoder-only model, on sequences of the `induction` task (src/data/tasks/induction.py) or any sequences with a
repeated run of tokens:

- induction score of a head: its mean attention, from each query token of a repeated occurrence, to the token right
  after that token's earlier occurrence (query t of a repeat at offset d attends to key t - d + 1: on a sequence
  repeated with period P, TransformerLens's diagonal at offset -(P - 1));
- previous-token score: its mean attention from each position to the one just before it (positions 1 on);
- the loss on the repeated occurrences (their tokens after the first, which the earlier occurrence predicts), with
  heads ablated as `ablate.heads` names them (`decoder_self:1:3`), several ablations scored in one pass through the
  head masks src/analysis/scoring.py scores with (row_masks).

Heads are named as everywhere (src/model/names.py: `decoder_self:1:3` is layer 1, head 3); the attention patterns
are read at the activation points `pattern@decoder_self:<layer>` (src/model/points.py), so any edit attached there
(or a head gate) is seen as the model runs with it. Where the repeats are: in the repeated random sequences
(repeated_random_batches) the code wrote them, so each batch carries its offsets (REPEATS: every token of the second
half, at offset half); in a task's sequences they follow from the tokens (the task's repeat_offsets: a run of at
least min_segment_len tokens seen before).

    batches = task_batches(datamodule.task.val, 64)
    scores = head_scores(model, batches, cfg.task.min_segment_len)
    scores.induction["decoder_self:1:3"], scores.previous_token["decoder_self:0:2"]
    repeated_losses(model, batches, cfg.task.min_segment_len, [[], ["decoder_self:1:3"]])   # [intact, ablated]
    head_table(model, repeated_random_batches(model, 128, 32))   # the repeats known: no min_segment_len
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.collate import collate_lm
from src.data.tasks.induction import KIND, repeat_offsets
from src.data.vocab import NUM_SPECIAL
from src.model import TransformerConfig
from src.model.ablation import layout_of, parse_ablation
from src.model.config import ARCHITECTURES
from src.model.head_mask import attention_sites
from src.model.names import DECODER_SELF, head_name, layer_name
from src.model.points import point_name, recorded
from src.model.tokens import OUR_SPECIAL_IDS, SpecialIds
from src.training.inference import IGNORE_INDEX, eval_mode, forward_batch, scored_target

from .scoring import HeadMask, repeat_batch, row_masks

SITE = DECODER_SELF  # the self-attention site of a decoder-only model: the only one an lm has


@dataclass
class HeadScores:
    """Per head (named as ablate.heads names it), in the model's order: layer by layer, head by head."""

    induction: dict[str, float]
    previous_token: dict[str, float]
    induction_queries: int  # how many query positions the induction scores average over
    previous_queries: int  # and the previous-token scores
    # score -> what a head attending uniformly over the keys it sees would score (1 / visible keys, averaged over
    # the same queries): a previous-token score of 0.1 is chance on 32 tokens, not a previous-token head
    chance: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, float, float]]:
        """(head, induction score, previous-token score) per head: a table's rows."""
        return [(head, self.induction[head], self.previous_token[head]) for head in self.induction]


def task_batches(examples: Sequence[Mapping[str, Tensor]], batch_size: int, specials: SpecialIds = OUR_SPECIAL_IDS):
    """A split's examples ({"tokens": (L + 1,)}) as lm batches of `batch_size`, as training collates them."""
    chosen = [dict(examples[i]) for i in range(len(examples))]
    return [collate_lm(chosen[start : start + batch_size], specials) for start in range(0, len(chosen), batch_size)]


def _layers(model: nn.Module) -> int:
    """The layers of SITE in a model whose architecture does the induction task's kind (a decoder-only model: SITE
    is its only attention); ValueError for another."""
    sites = attention_sites(model)
    if ARCHITECTURES[model.cfg.arch].task_kind != KIND:
        raise ValueError(
            f"induction scores read a decoder-only model (its sites: {SITE}); this one has {', '.join(sites)}"
        )
    return len(sites[SITE])


def _on_device(model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    device = next(model.parameters()).device
    return {key: value.to(device) for key, value in batch.items() if isinstance(value, Tensor)}


def _sequences(batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The batch's sequences (B, T + 1) (tgt_in's first token, then tgt_out) and which tokens are real."""
    tokens = torch.cat([batch["tgt_in"][:, :1], batch["tgt_out"]], dim=1)
    real = batch.get("tgt_real")
    if real is None:
        real = torch.ones_like(batch["tgt_out"], dtype=torch.bool)
    return tokens, torch.cat([torch.ones_like(real[:, :1]), real], dim=1)


# A batch's own repeat offsets, over its sequences (B, T + 1), where the code that made it knows them: found from the
# tokens instead, a run of random tokens that recurs by chance in a small vocabulary would count as a repeat.
REPEATS = "repeat_offsets"


def sequence_offsets(batch: Mapping[str, Tensor], min_segment_len: int | None) -> Tensor:
    """(B, T + 1) over the batch's sequences (_sequences): at each token of a repeat, how far back its earlier
    occurrence is; 0 elsewhere. The batch's own (REPEATS) when it carries them, else found in its tokens (the
    task's repeat_offsets, runs of at least `min_segment_len`)."""
    known = batch.get(REPEATS)
    if known is not None:
        return known
    if min_segment_len is None:
        raise ValueError(f"batches without their repeat offsets ({REPEATS}) need min_segment_len to find the repeats")
    tokens, real = _sequences(batch)
    return repeat_offsets(tokens, min_segment_len, real)


def predictable(batch: Mapping[str, Tensor], min_segment_len: int | None) -> Tensor:
    """(B, T) bool over tgt_out: the targets the repeat's earlier occurrence predicts, the tokens of a repeat after
    its first (which follows unrepeated tokens), as the task's predictable_targets finds them. tgt_out[:, p] is
    token p + 1 of the sequence."""
    offsets = sequence_offsets(batch, min_segment_len)
    previous = F.pad(offsets[:, :-1], (1, 0))
    return ((offsets > 0) & (previous == offsets))[:, 1:]


def head_scores(
    model: nn.Module, batches: Iterable[Mapping[str, Tensor]], min_segment_len: int | None = None
) -> HeadScores:
    """Every head's induction and previous-token score over `batches` (lm batches: collate_lm), read from the
    attention patterns of an eval-mode forward pass (see the module docstring for the definitions; min_segment_len:
    for batches that do not carry their repeats, sequence_offsets). A score over no query at all (no repeat in the
    batches) is NaN."""
    layers = _layers(model)
    heads = attention_sites(model)[SITE][0].heads
    names = [point_name("pattern", layer_name(SITE, layer)) for layer in range(layers)]
    induction = torch.zeros(layers, heads, dtype=torch.float64)  # summed attention, per layer and head
    previous = torch.zeros(layers, heads, dtype=torch.float64)
    induction_queries = previous_queries = 0
    induction_chance = previous_chance = 0.0  # sums of 1 / (keys the query sees)
    with eval_mode(model):
        for batch in batches:
            batch = _on_device(model, batch)
            _, real = _sequences(batch)
            t = batch["tgt_in"].size(1)
            offsets = sequence_offsets(batch, min_segment_len)[:, :t]  # (B, T): the queries are tgt_in
            rows, queries = (offsets > 0).nonzero(as_tuple=True)  # (N,) each: the repeats' tokens
            keys = queries - offsets[rows, queries] + 1  # the token after the query token's earlier occurrence
            later = real[:, 1:t]  # (B, T - 1): the real queries from position 1 on
            with recorded(model, names) as seen:
                forward_batch(model, KIND, batch)
            visible = model.attention_masks(batch["tgt_in"])[SITE][:, 0].sum(-1).double()  # (B, T): keys seen
            induction_chance += float((1 / visible[rows, queries]).sum())
            previous_chance += float(((1 / visible[:, 1:t]) * later).sum())
            for layer, name in enumerate(names):
                pattern = seen[name].double()  # (B, H, T, T)
                induction[layer] += pattern[rows, :, queries, keys].sum(dim=0).cpu()  # (N, H) summed
                before = torch.diagonal(pattern, offset=-1, dim1=2, dim2=3)  # (B, H, T - 1): query t, key t - 1
                previous[layer] += (before * later[:, None, :]).sum(dim=(0, 2)).cpu()
            induction_queries += int(rows.numel())
            previous_queries += int(later.sum())
    induction /= induction_queries if induction_queries else math.nan
    previous /= previous_queries if previous_queries else math.nan
    names_of = [(layer, head, head_name(SITE, layer, head)) for layer in range(layers) for head in range(heads)]
    chance = {
        "induction": induction_chance / induction_queries if induction_queries else math.nan,
        "previous_token": previous_chance / previous_queries if previous_queries else math.nan,
    }
    return HeadScores(
        {name: float(induction[layer, head]) for layer, head, name in names_of},
        {name: float(previous[layer, head]) for layer, head, name in names_of},
        induction_queries,
        previous_queries,
        chance,
    )


def ablation_mask(model: nn.Module, heads: Iterable[str]) -> HeadMask:
    """The head mask (site -> (L, H) gates) that switches off `heads`, specs as ablate.heads reads them
    (`decoder_self:1:3`, `decoder_self:0` for a layer's heads): parsed by src.model.ablation, ConfigError (one line)
    for a bad one."""
    cfg = cast(TransformerConfig, model.cfg)
    return parse_ablation({"heads": list(heads)}, cfg, key="ablated").head_mask(layout_of(cfg))


def repeated_losses(
    model: nn.Module,
    batches: Iterable[Mapping[str, Tensor]],
    min_segment_len: int | None,
    ablations: Sequence[Iterable[str]],
    rows_per_batch: int = 1024,
) -> list[float]:
    """The mean loss (nats per token) on the predictable tokens of the repeated occurrences (`predictable`: each
    repeat's tokens after its first; min_segment_len: for batches that do not carry their repeats, None for those
    that do), once per ablation: a list of head specs switched
    off together (`[]`: the model as it is). Zero ablation, on top of any ablation the model already runs with;
    the ablations share each forward pass (the batch repeated once per ablation, scoring.row_masks), as many as fit
    `rows_per_batch` rows. NaN where the batches hold no repeat."""
    masks = [ablation_mask(model, heads) for heads in ablations]
    totals = torch.zeros(len(masks), dtype=torch.float64)
    counts = torch.zeros(len(masks), dtype=torch.float64)
    with eval_mode(model):
        for batch in batches:
            batch = _on_device(model, batch)
            rows = batch["tgt_in"].size(0)
            per_pass = max(1, rows_per_batch // max(1, rows))
            for first in range(0, len(masks), per_pass):
                chosen = masks[first : first + per_pass]
                big = repeat_batch(batch, len(chosen))
                with row_masks(model, chosen, rows):
                    logits = forward_batch(model, KIND, big).logits  # (K * B, T, V)
                scored = predictable(big, min_segment_len) & (scored_target(model, KIND, big) != IGNORE_INDEX)
                losses = F.cross_entropy(
                    logits.to(torch.promote_types(logits.dtype, torch.float32)).flatten(0, 1),
                    big["tgt_out"].flatten(),
                    reduction="none",
                ).view_as(scored)
                weights = scored.to(losses.dtype)
                totals[first : first + len(chosen)] += (losses * weights).view(len(chosen), -1).sum(1).double().cpu()
                counts[first : first + len(chosen)] += weights.view(len(chosen), -1).sum(1).double().cpu()
    return [float(total / count) if count else math.nan for total, count in zip(totals, counts)]


def repeated_loss(
    model: nn.Module,
    batches: Iterable[Mapping[str, Tensor]],
    min_segment_len: int | None,
    ablated: Iterable[str] = (),
) -> float:
    """The loss on the repeated occurrences' predictable tokens with the heads `ablated` switched off (none: the
    model as it is). See repeated_losses."""
    return repeated_losses(model, list(batches), min_segment_len, [list(ablated)])[0]


@dataclass
class InductionHeadRow:
    """One head of the induction analysis: its two scores and what ablating it alone does to the loss on the repeats
    (heads.py's HeadRow is a head of the head analysis)."""

    head: str
    induction: float
    previous_token: float
    repeated_loss: float  # the loss on the repeats with this head alone ablated (NaN: already off)
    loss_increase: float  # that minus the loss with every head on
    # Already off before the analysis (ablate.heads, or its attention sublayer removed): it still computes a pattern,
    # and so scores, but writes nothing, so it is no induction head of this model and ablating it changes nothing.
    removed_before: bool = False


def head_table(
    model: nn.Module, batches: Sequence[Mapping[str, Tensor]], min_segment_len: int | None = None
) -> tuple[list[InductionHeadRow], dict[str, float]]:
    """Per head: its two scores and what ablating it alone does to the loss on the repeats (one pass for all, the
    heads already off left out); and each score's chance level (HeadScores.chance). min_segment_len: for batches
    that do not carry their repeats (sequence_offsets)."""
    from .heads import heads_in_use

    scores = head_scores(model, batches, min_segment_len)
    alive = heads_in_use(model)[SITE]  # (L, H): 0 where gated off or the sublayer is removed
    off = {head_name(SITE, layer, head) for layer, head in (alive == 0).nonzero().tolist()}
    heads = list(scores.induction)
    live = [head for head in heads if head not in off]
    losses = repeated_losses(model, batches, min_segment_len, [[]] + [[head] for head in live])
    alone = dict(zip(live, losses[1:]))
    rows = []
    for head in heads:
        loss = alone.get(head, math.nan)
        rows.append(
            InductionHeadRow(
                head=head,
                induction=scores.induction[head],
                previous_token=scores.previous_token[head],
                repeated_loss=loss,
                loss_increase=loss - losses[0],
                removed_before=head in off,
            )
        )
    return rows, scores.chance


def repeated_random_batches(
    model: nn.Module, count: int, half: int, batch_size: int = 64, seed: int = 0
) -> list[dict[str, Tensor]]:
    """`count` sequences of 2 x `half` tokens (a random half, then itself again) as lm batches, drawn from the
    model's tokens other than its pad, BOS and EOS, with a fixed seed: the same sequences for every model of one
    vocabulary (every seed of a sweep); the sequences every model is read on by analysis=induction, as
    TransformerLens reads GPT-2's induction heads. Each batch carries its repeats (REPEATS): every token of the
    second half repeats the token `half` before it. They are written here, not found in the tokens: in a small
    vocabulary a run of random tokens recurs by chance, and a search would count it as a repeat (or give a token of
    the second half a shorter offset)."""
    cfg = cast(TransformerConfig, model.cfg)
    # the model's own specials, and ids 0-3, our vocabularies' specials (<unk> among them; in a pretrained
    # vocabulary four ordinary tokens, whose absence changes nothing)
    special = {cfg.pad_id, cfg.bos_id, cfg.eos_id, *range(NUM_SPECIAL)}
    allowed = torch.tensor([i for i in range(cfg.tgt_vocab_size) if i not in special])
    generator = torch.Generator().manual_seed(seed)
    first = allowed[torch.randint(len(allowed), (count, half), generator=generator)]  # (N, half)
    sequences = torch.cat([first, first], dim=1)  # (N, 2 half): the second half predictable from the first
    examples = [{"tokens": row} for row in sequences]
    specials = SpecialIds(pad=cfg.pad_id, bos=cfg.bos_id, eos=cfg.eos_id, unk=cfg.pad_id)
    offsets = torch.zeros(count, 2 * half, dtype=torch.long)  # over the sequences, as sequence_offsets gives them
    offsets[:, half:] = half
    batches = []
    for start in range(0, count, batch_size):
        batch = collate_lm(examples[start : start + batch_size], specials)
        # collate_lm: tgt_in is the sequence without its last token, tgt_out without its first (no BOS is added and
        # every sequence has the same length, so no padding): the offsets are over _sequences' positions
        batch[REPEATS] = offsets[start : start + batch_size]
        batches.append(batch)
    return batches
