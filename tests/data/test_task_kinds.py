"""src/data/registry.py's KINDS: what each task kind declares about its batches agrees with what they hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from src.data import all_tasks
from src.data.registry import KINDS, task_kind
from src.training.metrics import metric_tags

ROOT = Path(__file__).resolve().parents[2]

EXAMPLES = {  # one example of each kind, as its task's build makes them
    "seq2seq": {"src": torch.tensor([5, 6]), "tgt": torch.tensor([7])},
    "lm": {"tokens": torch.tensor([5, 6, 7])},
    "classification": {"src": torch.tensor([5, 6]), "label": 1},
}


def test_every_kind_is_registered_once():
    assert set(KINDS) == set(EXAMPLES)
    assert all(kind.name == name for name, kind in KINDS.items())


@pytest.mark.parametrize("name", list(KINDS))
def test_a_kinds_batches_hold_what_it_declares(name):
    kind = task_kind(name)
    batch = kind.collate([EXAMPLES[name]])
    assert kind.reads_source == ("src" in batch)
    assert kind.predicts_tokens == ("tgt_in" in batch and batch["tgt_out"].dim() == 2)
    assert kind.translates == ("src" in batch and "tgt_in" in batch)  # a target apart from the input


@pytest.mark.parametrize("name", list(KINDS))
def test_a_kinds_main_metric_is_one_it_logs(name):
    tag, mode = task_kind(name).main_metric
    assert tag in metric_tags(name, with_bleu=False)
    assert mode == ("min" if tag.endswith("loss") else "max")


@pytest.mark.parametrize("name", list(KINDS))
def test_the_tasks_a_kind_names_are_text_tasks_of_that_kind(name):
    kind = task_kind(name)
    example = kind.example_task.split()[0].removeprefix("task=")
    for task in (kind.text_task, example):
        assert all_tasks()[task].kind == name and all_tasks()[task].reads_text


@pytest.mark.parametrize("name", sorted(all_tasks()))
def test_a_kind_decodes_exactly_where_its_tasks_main_metric_scores_decoded_outputs(name):
    spec = all_tasks()[name]
    tag, _ = spec.main_metric
    assert task_kind(spec.kind).decodes == (tag in ("val/exact_match", "val/bleu"))


def _greedy_decode(kind: str):
    from src.model import TransformerConfig, build_model
    from src.training.inference import greedy_decode

    model = build_model(TransformerConfig(src_vocab_size=9, tgt_vocab_size=9, d_model=8, heads=2, d_ff=8))
    return greedy_decode(model, kind, {"src": torch.ones(1, 3, dtype=torch.long)})


def _metrics_decoding(kind: str):
    from src.eval import metrics_decoding

    return metrics_decoding(kind)


@pytest.mark.parametrize("ask", [task_kind, _greedy_decode, _metrics_decoding])
def test_an_unknown_kind_is_refused_in_one_line_naming_the_kinds(ask):
    """Whatever asks the registry about a kind it lacks gets one line that says so and names the registered kinds."""
    with pytest.raises(ValueError, match="^kind='vision' is not a registered task kind: give one of seq2seq, lm, "):
        ask("vision")


# A kind's name in quotes is a comparison or a table of its own; `kind="..."` (a declaration: a PreparedTask's, an
# architecture's task_kind) is not, nor PIL's text anchor "lm" (left, middle).
QUOTED_NAME = re.compile(r"""(?<!kind=)(?<!anchor=)["'](%s)["']""" % "|".join(KINDS))


def test_nothing_outside_the_registry_names_a_task_kind():
    """Code asks the registered TaskKind (task_kind(name).reads_source, ...) instead of comparing kind names; the
    task files under src/data/tasks/ declare their own kind (and the classification task shares its kind's name)."""
    registry, tasks = ROOT / "src" / "data" / "registry.py", ROOT / "src" / "data" / "tasks"
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("src", "hydra_plugins")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != registry and tasks not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if QUOTED_NAME.search(line)
    ]
    assert found == [], "ask registry.task_kind(name) instead:\n" + "\n".join(found)
