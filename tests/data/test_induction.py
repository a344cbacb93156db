"""induction: every sequence repeats one segment at an offset drawn per sequence, found from the tokens alone; the
splits are reproducible and disjoint; bad settings are refused in one line; counterfactual pairs change one token of
the first occurrence and score the position that copies it."""

from __future__ import annotations

import random
from types import SimpleNamespace as task

import pytest
import torch

from src.data import DataError, build_datamodule, task_spec
from src.data.pairs import collate_pairs
from src.data.tasks.induction import (
    InductionTaskConfig,
    check_settings,
    induction_pairs,
    predictable_positions,
    predictable_targets,
    repeat_offsets,
    repeated_loss_sums,
    replacement_tokens,
)
from src.data.vocab import NUM_SPECIAL

SMALL = dict(
    vocab_size=20, seq_len=32, min_segment_len=5, max_segment_len=10, train_size=200, val_size=50, test_size=50
)


def build(seed=0, batch_size=16, **fields):
    return build_datamodule(task(name="induction", **{**SMALL, **fields}), batch_size=batch_size, seed=seed)


@pytest.fixture(scope="module")
def dm():
    return build()


def tokens_of(split) -> list[tuple[int, ...]]:
    return [tuple(e["tokens"].tolist()) for e in split]


def layout(tokens: torch.Tensor, min_segment_len: int = 5) -> tuple[int, int, int]:
    """(first start a, offset d, length L) of a sequence's repeat, as repeat_offsets finds it."""
    offsets = repeat_offsets(tokens[None], min_segment_len)[0]
    where = offsets.nonzero().flatten()
    second, offset = int(where[0]), int(offsets[where[0]])
    assert where.tolist() == list(range(second, second + len(where))) and set(offsets[where].tolist()) == {offset}
    return second - offset, offset, len(where)


def test_every_sequence_repeats_one_segment_at_an_offset_that_varies(dm):
    offsets, starts = set(), set()
    for split in (dm.task.train, dm.task.val, dm.task.test):
        for example in split:
            tokens = example["tokens"]
            assert tokens.shape == (33,) and tokens.dtype == torch.long
            assert NUM_SPECIAL <= int(tokens.min()) and int(tokens.max()) < NUM_SPECIAL + 20
            start, offset, length = layout(tokens)
            assert 5 <= length <= 10 and offset >= length and start + offset + length <= 33
            assert torch.equal(tokens[start : start + length], tokens[start + offset : start + offset + length])
            offsets.add(offset)
            starts.add(start + offset)
    assert len(offsets) > 15 and len(starts) > 15  # neither the distance nor the place gives the repeat away


def test_splits_are_reproducible_and_held_out_splits_are_new(dm):
    again, other = build(), build(seed=1)
    for split in ("train", "val", "test"):
        assert tokens_of(getattr(dm.task, split)) == tokens_of(getattr(again.task, split))
        assert tokens_of(getattr(dm.task, split)) != tokens_of(getattr(other.task, split))
    train, val, test = (set(tokens_of(getattr(dm.task, s))) for s in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    assert len(val) == 50 and len(test) == 50
    # A split does not depend on another's size.
    assert tokens_of(build(train_size=20).task.val) == tokens_of(dm.task.val)


def test_batches_are_lm_windows_of_seq_len(dm):
    batch = next(iter(dm.train_dataloader()))
    assert batch["tgt_in"].shape == batch["tgt_out"].shape == (16, 32)
    assert torch.equal(batch["tgt_in"][:, 1:], batch["tgt_out"][:, :-1])
    spec = task_spec("induction")
    assert spec.kind == "lm" and spec.longest_sequence(InductionTaskConfig()) == 64 and spec.pairs is induction_pairs


def test_the_repeat_is_found_from_the_tokens_alone():
    # a=2, d=5, L=3 in row 0; a=0, d=4, L=3 in row 1 (the second occurrence right after a filler token)
    tokens = torch.tensor(
        [[20, 21, 4, 5, 6, 22, 23, 4, 5, 6, 24, 25, 26], [4, 5, 6, 20, 4, 5, 6, 21, 22, 23, 24, 25, 26]]
    )
    offsets = repeat_offsets(tokens, 3)
    assert offsets[0].tolist() == [0] * 7 + [5, 5, 5] + [0] * 3
    assert offsets[1].tolist() == [0] * 4 + [4, 4, 4] + [0] * 6
    assert repeat_offsets(tokens, 4).eq(0).all()  # runs shorter than asked are not repeats
    predictable = predictable_positions(tokens, 3)
    assert predictable.nonzero().tolist() == [[0, 8], [0, 9], [1, 5], [1, 6]]  # each repeat after its first token
    batch = {"tgt_in": tokens[:, :-1], "tgt_out": tokens[:, 1:], "tgt_real": torch.ones(2, 12, dtype=torch.bool)}
    assert predictable_targets(batch, 3).nonzero().tolist() == [[0, 7], [0, 8], [1, 4], [1, 5]]
    batch["tgt_real"][0, 8:] = False  # padding is never a repeat
    assert predictable_targets(batch, 3).nonzero().tolist() == [[1, 4], [1, 5]]
    # The loss there: uniform logits over V classes cost log V per predictable target.
    total, count = repeated_loss_sums(torch.zeros(2, 12, 30), batch, 3)
    assert count.item() == 2 and total.item() == pytest.approx(2 * torch.log(torch.tensor(30.0)).item())


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(vocab_size=1), r"task.vocab_size=1 must be >= 2"),
        (dict(min_segment_len=1), r"task.min_segment_len=1, task.max_segment_len=10: need 2 <= min_segment_len"),
        (dict(min_segment_len=8, max_segment_len=6), r"need 2 <= min_segment_len <= max_segment_len"),
        (dict(seq_len=18), r"task.seq_len=18 cannot hold two occurrences of task.max_segment_len=10 tokens: raise"),
        (dict(val_size=0), r"task.val_size=0 must be >= 1"),
        (dict(vocab_size=4, min_segment_len=3), r"task.min_segment_len=3: random sequences of task.vocab_size=4 "),
    ],
)
def test_bad_settings_are_refused_in_one_line(fields, message):
    with pytest.raises(DataError, match=message) as error:
        check_settings(InductionTaskConfig(**{**SMALL, **fields}))
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match=message):
        build(**fields)


def test_pairs_change_one_token_of_the_first_occurrence_and_score_where_it_is_copied(dm):
    cfg = InductionTaskConfig(**SMALL)
    pairs = induction_pairs(cfg, dm.task, dm.task.val, 30, random.Random(0))
    assert len(pairs) == 30
    assert induction_pairs(cfg, dm.task, dm.task.val, 30, random.Random(0))[5].position == pairs[5].position
    for pair in pairs:
        clean, corrupted = pair.clean["tokens"], pair.corrupted["tokens"]
        assert clean.shape == corrupted.shape
        (changed,) = (clean != corrupted).nonzero().flatten().tolist()
        start, offset, length = layout(clean)
        assert start + 1 <= changed < start + length  # in the first occurrence, after its first token
        p = pair.position  # tgt_out[p] is token p + 1: the copy of the changed token in the second occurrence
        assert p + 1 == changed + offset and pair.answer == int(clean[p + 1]) == int(clean[changed])
        assert pair.wrong == int(corrupted[changed]) and pair.wrong not in clean.tolist()
        assert torch.equal(clean[changed + 1 :], corrupted[changed + 1 :])  # the rest is the same
    # one template (the split's first sequence's layout, one index k), so the by-position tables are defined
    from src.analysis.causal import same_template

    assert same_template(pairs) is None and layout(pairs[0].clean["tokens"]) == layout(dm.task.val[0]["tokens"])
    assert len({tuple(pair.clean["tokens"].tolist()) for pair in pairs}) == 30  # thirty different sequences
    batch = collate_pairs(pairs, "lm")
    rows = torch.arange(len(pairs))
    assert batch.clean["tgt_out"].shape == batch.corrupted["tgt_out"].shape == (30, 32)
    assert torch.equal(batch.clean["tgt_out"][rows, batch.position], batch.answer)
    assert torch.equal(batch.corrupted["tgt_out"][rows, batch.position], batch.answer)  # the repeat is not changed
    assert torch.equal(batch.clean["tgt_in"][rows, batch.position], batch.corrupted["tgt_in"][rows, batch.position])
    assert (batch.clean["tgt_in"] != batch.corrupted["tgt_in"]).sum(1).eq(1).all()


def test_a_sequence_that_holds_every_token_is_corrupted_with_one_that_nothing_near_the_repeat_suggests():
    # tokens 4..10 all present; the segment [4, 5, 6] at 2 and 7; index k=1 follows a 4, and a 4 is followed by 10
    tokens = [10, 7, 4, 5, 6, 7, 8, 4, 5, 6, 8, 9, 4, 10]
    assert replacement_tokens(tokens, 2, 5, 3, 1, range(4, 11)) == [9]
    assert replacement_tokens(tokens[:-2], 2, 5, 3, 1, range(4, 11)) == [9, 10]  # no 4 is followed by 10 now
