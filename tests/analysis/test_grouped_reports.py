"""The reports of a grouped-query model (model.kv_heads < model.heads) say, near their top, that their heads are query
heads, and what each measures per query head and per KV group (docs/model.md, docs/ablation-and-analysis.md); the
reports of a multi-head model, whose every head has its own key and value, say nothing of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.analysis.report import report_markdown
from tests.conftest import run_in_process
from tests.dashboard.attention_pages import write_data

from .test_report import made_up_analysis

# What every report of the grouped run below says first: its 4 query heads a layer share 2 key/value heads
GROUPED = (
    "Grouped-query attention (`model.kv_heads=2`): every head named here is a query head; the 4 query heads of a "
    "layer form 2 KV groups of 2 consecutive heads, and the query heads of a group share its one key and value."
)


@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory) -> Path:
    """A pre-LN decoder-only model (so that the lens attributes the logit to each head) of 2 layers x 4 query heads
    on 2 key/value heads, trained for 4 steps on a character language model."""
    root = tmp_path_factory.mktemp("grouped")
    data = write_data(root / "data")
    task = ["task=char_lm", f"task.path={data / 'text.txt'}", "task.block_size=16", "task.val_fraction=0.1",
            "task.test_fraction=0.1"]  # fmt: skip
    model = ["model.d_model=16", "model.heads=4", "model.kv_heads=2", "model.layers=2", "model.d_ff=32",
             "model.norm_position=pre"]  # fmt: skip
    schedule = ["batch_size=16", "trainer.max_steps=4", "trainer.val_check_interval=4", "torch_threads=1"]
    code, _, err = run_in_process("src.run", *task, *model, *schedule, f"hydra.run.dir={root / 'run'}")
    assert code == 0, err
    return root / "run"


def analysed(run: Path, out: Path, *args: str) -> tuple[str, dict]:
    """`src.analyze ckpt=<run> out=<out> <args>`: its report.md and summary.json."""
    code, _, err = run_in_process("src.analyze", f"ckpt={run}", f"out={out}", "torch_threads=1", *args)
    assert code == 0, err
    return (out / "report.md").read_text(), json.loads((out / "summary.json").read_text())


def top_of(report: str) -> str:
    """What a report says before its first section: its title and the paragraphs on what its names and numbers are."""
    return report.split("\n## ", 1)[0]


def test_the_head_analysis_says_its_heads_are_query_heads_each_ablated_alone(grouped_run, tmp_path):
    report, summary = analysed(grouped_run, tmp_path / "analysis", "max_examples=8")
    assert (
        f"{GROUPED} Ablation, importance, pruning and entropy are per query head: switching a head off gates its "
        in (top_of(report))
    )
    assert summary["attention"] == {"heads": 4, "kv_heads": 2}  # what the line is written from, kept beside it


def test_the_patching_report_says_its_heads_are_query_heads_and_a_key_path_reaches_the_kv_group(grouped_run, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("not to be\tnot to he\t,\t.\n")  # characters of the run's text
    args = ["analysis=patching", f"pairs={pairs}", "senders=[decoder_self:0:*]", "receivers=[decoder_self:1:0]"]
    report, _ = analysed(grouped_run, tmp_path / "patching", *args)
    assert (
        f"{GROUPED} Each head patched is a query head, its own output `z`; path patching's senders "
        "and receivers are query heads, and a path through a receiver's key or value changes its KV group's key "
        "(value) and keeps only the receiver head's output."
    ) in top_of(report)


def test_the_lens_and_induction_reports_say_their_heads_are_query_heads(grouped_run, tmp_path):
    lens, _ = analysed(grouped_run, tmp_path / "lens", "analysis=lens", "max_examples=8")
    assert f"{GROUPED} Direct logit attribution is per query head" in top_of(lens)
    induction, _ = analysed(grouped_run, tmp_path / "induction", "analysis=induction", "max_examples=8")
    assert f"{GROUPED} The induction and previous-token scores are per query head: each from its own" in top_of(
        induction
    )


def test_only_a_grouped_models_report_says_what_its_heads_are():
    analysis = made_up_analysis()
    grouped = report_markdown(analysis, {"attention": {"heads": 4, "kv_heads": 2}}, [])
    assert GROUPED in top_of(grouped)
    for multi_head in ({"attention": {"heads": 4, "kv_heads": 4}}, {}):  # {}: a report of an older summary
        assert "query head" not in report_markdown(analysis, multi_head, [])
