"""src/data/pairs.py and the synthetic tasks' pairs: one source symbol changed, the clean target read by both
versions, and the answers the two sources should give at the first target position the change moves."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from src.data.pairs import Pair, collate_pairs
from src.data.registry import resolve_task_config, task_spec

RULES = {
    "copy": lambda s: list(s),
    "reverse": lambda s: s[::-1],
    "sort": lambda s: sorted(s, key=int),
    "addition": lambda s: list(str(int("".join(s).split("+")[0]) + int("".join(s).split("+")[1]))),
}


@pytest.mark.parametrize("name", list(RULES))
def test_each_pair_changes_one_symbol_and_answers_what_each_source_should_give(name):
    spec = task_spec(name)
    settings = resolve_task_config(SimpleNamespace(name=name, val_size=60, test_size=20, train_size=200))
    task = spec.build(settings, 0, None)
    pairs = spec.pairs(settings, task, task.val, 16, random.Random(0))
    vocab = task.src_vocab
    assert pairs and len({len(p.clean["src"]) for p in pairs}) == 1  # one template: the same shape
    for pair in pairs:
        clean = [vocab.symbol(int(i)) for i in pair.clean["src"]]
        corrupted = [vocab.symbol(int(i)) for i in pair.corrupted["src"]]
        assert sum(a != b for a, b in zip(clean, corrupted)) == 1
        assert torch.equal(pair.clean["tgt"], pair.corrupted["tgt"])  # the decoder reads the clean target in both
        eos = task.specials.eos
        clean_target = [vocab.id_of[s] for s in RULES[name](clean)] + [eos]
        corrupted_target = [vocab.id_of[s] for s in RULES[name](corrupted)] + [eos]
        j = pair.position
        assert clean_target[:j] == corrupted_target[:j] and clean_target[j] != corrupted_target[j]
        assert (pair.answer, pair.wrong) == (clean_target[j], corrupted_target[j])
        if name == "addition":  # a digit for a digit, and no operand gains a leading zero
            assert all(not (o.startswith("0") and len(o) > 1) for o in "".join(corrupted).split("+"))
        else:  # the middle symbol of every pair
            assert [k for k, (a, b) in enumerate(zip(clean, corrupted)) if a != b] == [len(clean) // 2]


def test_pairs_collate_to_two_batches_of_one_shape_with_the_scored_position():
    pairs = [
        Pair({"tokens": torch.tensor([5, 6, 7])}, {"tokens": torch.tensor([5, 8, 7])}, 1, 7, 9),
        Pair({"tokens": torch.tensor([5, 6])}, {"tokens": torch.tensor([8, 6])}, 0, 6, 4),
    ]
    batch = collate_pairs(pairs, "lm")
    assert batch.clean["tgt_in"].shape == batch.corrupted["tgt_in"].shape == (2, 2)
    assert batch.clean["tgt_out"][0, 1] == 7 and batch.clean["tgt_out"][1, 0] == 6  # the answer at its position
    assert batch.position.tolist() == [1, 0] and batch.answer.tolist() == [7, 6] and batch.wrong.tolist() == [9, 4]
    with pytest.raises(ValueError, match="differ in length at tokens"):
        collate_pairs([Pair({"tokens": torch.tensor([5, 6])}, {"tokens": torch.tensor([5])}, 0, 6, 4)], "lm")
