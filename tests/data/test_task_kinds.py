"""src/data/registry.py's KINDS: what each task kind declares about its batches agrees with what they hold."""

from __future__ import annotations

import pytest
import torch

from src.data import all_tasks
from src.data.collate import COLLATE
from src.data.registry import KINDS, task_kind

EXAMPLES = {  # one example of each kind, as its task's build makes them
    "seq2seq": {"src": torch.tensor([5, 6]), "tgt": torch.tensor([7])},
    "lm": {"tokens": torch.tensor([5, 6, 7])},
    "classification": {"src": torch.tensor([5, 6]), "label": 1},
}


def test_every_kind_is_registered_once_with_its_collate():
    assert set(KINDS) == set(COLLATE) == set(EXAMPLES)
    assert all(kind.name == name for name, kind in KINDS.items())


@pytest.mark.parametrize("name", list(KINDS))
def test_a_kinds_batches_hold_what_it_declares(name):
    kind = task_kind(name)
    batch = COLLATE[name]([EXAMPLES[name]])
    assert kind.reads_source == ("src" in batch)
    assert kind.predicts_tokens == ("tgt_in" in batch and batch["tgt_out"].dim() == 2)


@pytest.mark.parametrize("name", sorted(all_tasks()))
def test_a_kind_decodes_exactly_where_its_tasks_main_metric_scores_decoded_outputs(name):
    spec = all_tasks()[name]
    tag, _ = spec.main_metric
    assert task_kind(spec.kind).decodes == (tag in ("val/exact_match", "val/bleu"))


def test_an_unknown_kind_is_refused_naming_the_kinds():
    with pytest.raises(ValueError, match="seq2seq, lm, classification"):
        task_kind("vision")
