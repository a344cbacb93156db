"""src/data/registry.py's KINDS: what each task kind declares about its batches agrees with what they hold."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch

from src.data import all_tasks
from src.data.registry import KINDS, task_kind
from src.training.metrics import metric_tags
from tests.model.test_architectures import python_files

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


# Where a kind's name written in the code declares rather than compares: the value of a `kind=` or `task_kind=`
# keyword (a PreparedTask's or TaskSpec's kind, an Architecture's task_kind) or of a top-level `KIND = ...` (a task
# file naming its kind once); a task's name (a `name=` keyword, a schema's `name` field), which the classification
# task shares with its kind; and PIL's text anchor "lm" (left, middle), an `anchor=` keyword.
DECLARING_KEYWORDS = ("kind", "task_kind", "name", "anchor")


def derived_kind_names(source: str) -> set[str]:
    """The names a module binds at its top level to something computed from KINDS other than KINDS itself (a tuple of
    the kinds that read a source, say): asking whether a kind is in one compares kind names."""
    return {
        target.id
        for node in ast.parse(source).body
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None
        if not (isinstance(node.value, ast.Name) and node.value.id == "KINDS")
        if any(isinstance(n, ast.Name) and n.id == "KINDS" for n in ast.walk(node.value))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }


def kind_name_uses(source: str, derived: Iterable[str] = ()) -> list[tuple[int, str]]:
    """(line, what) for each place in a module's source that writes a kind's name other than to declare it (above),
    or compares one with a collection of kind names derived from KINDS (the module's own and `derived`, those other
    modules bind). A declaration inside a comparison (`dict(kind="lm") == other`) compares. Docstrings (and comments,
    which the parser drops) may name kinds."""
    tree = ast.parse(source)
    collections = derived_kind_names(source) | set(derived)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    compared = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Compare) for inner in ast.walk(node)}
    declared = {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg in DECLARING_KEYWORDS
    }
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "KIND" for t in node.targets):
            declared.add(id(node.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "name":
            declared.add(id(node.value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in KINDS and id(node) not in docstrings:
            if id(node) not in declared or id(node) in compared:
                found.append((node.lineno, f"names the kind {node.value!r}"))
        elif isinstance(node, ast.Compare) and any(
            isinstance(n, ast.Name) and n.id in collections for n in (node.left, *node.comparators)
        ):
            found.append((node.lineno, "compares a kind's name with a collection of kind names"))
    return sorted(found)


def test_nothing_outside_the_registry_names_a_task_kind():
    """Code asks the registered TaskKind (task_kind(name).reads_source, ...) instead of comparing kind names; the
    task files under src/data/tasks/ too, where a kind's name declares the kind of their tasks."""
    registry = ROOT / "src" / "data" / "registry.py"
    sources = {path: path.read_text() for path in python_files() if path != registry}
    derived = {name for source in sources.values() for name in derived_kind_names(source)}
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path, source in sources.items()
        for line, what in kind_name_uses(source, derived)
    ]
    assert found == [], "ask registry.task_kind(name) instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        'if spec.kind == "lm": pass',
        "METRICS = {'seq2seq': 'exact_match'}",
        'same = dict(kind="lm") == other',
        "if task.kind in ('seq2seq', 'classification'): pass",
        "TABLES = tuple(name for name, kind in KINDS.items() if kind.reads_source)\nok = spec.kind not in TABLES",
        'forward_batch(model, "lm", batch)',
        'def run():\n    KIND = "lm"',  # a function's: not a task file naming its kind
    ],
)
def test_the_kind_name_check_finds_each_way_of_naming_a_kind(line):
    assert kind_name_uses(line) != []


def test_the_kind_name_check_follows_a_collection_of_kind_names_into_the_modules_that_import_it():
    checks = "from src.cli.validation import TEXT_TABLE_KINDS\nok = spec.kind not in TEXT_TABLE_KINDS"
    derived = derived_kind_names("TEXT_TABLE_KINDS = tuple(n for n, k in KINDS.items() if k.reads_source)")
    assert kind_name_uses(checks) == [] and kind_name_uses(checks, derived) != []


def test_the_kind_name_check_lets_a_task_declare_its_kind_and_name():
    declared = '''
KIND = "lm"

@dataclass
class ClassificationTaskConfig:
    """The settings of the task; its kind is "classification"."""

    name: str = "classification"

register_task(TaskSpec(name="classification", kind="classification", schema=ClassificationTaskConfig))
architecture = Architecture(("decoder",), task_kind="lm")
canvas.text(0, 0, "0.5", 10, anchor="lm")  # PIL: left, middle
'''
    assert kind_name_uses(declared) == []
