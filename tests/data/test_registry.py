"""The task registry: every task declares itself once, and a new task needs no edit anywhere else."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from src.data import DataError, TaskSpec, all_tasks, build_datamodule, register_task, task_spec
from src.data.prepared import PreparedTask
from src.data.registry import _TASKS
from src.data.vocab import SymbolVocab, synthetic_symbols

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(all_tasks()))
def test_every_task_declares_a_schema_and_a_config_file(name):
    spec = task_spec(name)
    assert spec.name == name
    fields = {f.name for f in dataclasses.fields(spec.schema)}
    assert "name" in fields and set(spec.path_fields) <= fields
    assert (ROOT / "conf" / "task" / f"{name}.yaml").is_file()
    assert spec.main_metric[1] in ("min", "max")


def test_an_unknown_task_is_one_line_listing_the_known_ones():
    with pytest.raises(DataError, match="task='poetry' is not a known task: choose one of addition, char_lm"):
        task_spec("poetry")


@dataclasses.dataclass
class DoubleTaskConfig:
    name: str = "double"
    size: int = 40


def build_double(cfg, seed: int, run_dir) -> PreparedTask:
    """A toy task: each symbol written twice."""
    vocab = SymbolVocab(synthetic_symbols(5))
    generator = torch.Generator().manual_seed(seed)

    def examples(n: int) -> list[dict]:
        out = []
        for _ in range(n):
            src = torch.randint(4, 9, (3,), generator=generator)
            out.append({"src": src, "tgt": src.repeat_interleave(2)})
        return out

    return PreparedTask(
        kind="seq2seq",
        train=examples(cfg.size),
        val=examples(8),
        test=examples(8),
        src_vocab=vocab,
        tgt_vocab=vocab,
        max_src_len=3,
        max_tgt_len=7,
    )


@pytest.fixture
def double_task():
    spec = register_task(
        TaskSpec(
            name="double", kind="seq2seq", schema=DoubleTaskConfig, build=build_double, longest_sequence=lambda cfg: 7
        )
    )
    yield spec
    del _TASKS["double"]


def test_a_new_task_is_one_registration(double_task):
    """What adding a task takes: its settings dataclass, its builder and one TaskSpec; the rest asks the registry."""
    dm = build_datamodule(SimpleNamespace(name="double", size=16), batch_size=4, seed=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["src"].shape == (4, 3) and batch["tgt_out"].shape == (4, 7)
    assert task_spec("double").main_metric == ("val/exact_match", "max")
