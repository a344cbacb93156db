"""`python -m src.analyze` on real runs of every architecture: the files it writes, what they hold, the figures in
the run's TensorBoard, and the refusals that keep earlier results."""

from __future__ import annotations

import csv
import json

import pytest

from src.dashboard import read_events

from .conftest import TINY, check, run_module, task_overrides

pytestmark = pytest.mark.slow

# Two layers of two heads: enough heads to prune in steps, small enough for seconds.
TWO_LAYERS = [*TINY, "model.layers=2", "trainer.max_steps=8", "trainer.val_check_interval=8"]
FILES = {
    "report.md",
    "heads.csv",
    "keep_one.csv",
    "pruning.csv",
    "summary.json",
    "importance.png",
    "entropy.png",
    "single_head_effect.png",
    "pruning_curve.png",
}
SITES = {
    "reverse": ["encoder_self", "decoder_self", "cross"],
    "translation": ["encoder_self", "decoder_self", "cross"],
    "char_lm": ["decoder_self"],
    "classification": ["encoder_self"],
}
METRIC = {"reverse": "exact_match", "translation": "bleu", "char_lm": "loss", "classification": "acc"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One tiny trained run per task kind (and translation, whose metric is decoded sacreBLEU)."""
    runs = {}
    for task in SITES:
        run_dir = tmp_path_factory.mktemp(task) / "run"
        check(run_module("src.run", *task_overrides(task, data_dir), *TWO_LAYERS, f"hydra.run.dir={run_dir}"))
        runs[task] = run_dir
    return runs


@pytest.mark.parametrize("task", list(SITES))
def test_analysis_of_each_architecture_writes_its_tables_figures_and_tensorboard(trained, task):
    run_dir = trained[task]
    result = check(run_module("src.analyze", f"ckpt={run_dir}", "torch_threads=1", "prune_step=0.25"))
    out = run_dir / "analysis"
    assert FILES <= {p.name for p in out.iterdir()}, result.stdout
    assert "% of the heads can go" in result.stdout

    with open(out / "heads.csv") as f:
        heads = list(csv.DictReader(f))
    assert len(heads) == 2 * 2 * len(SITES[task])  # layers x heads x sites
    assert list(dict.fromkeys(r["site"] for r in heads)) == SITES[task]
    for row in heads:
        assert float(row["importance"]) >= 0 and float(row["entropy"]) >= 0
        assert row["metric_without"] != "" and row["loss_without"] != ""

    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == METRIC[task]
    assert summary["examples"] > 0 and summary["split"] == "val"
    assert 0.0 <= summary["figures"]["prunable_fraction"] <= 1.0
    assert summary["command"].endswith(f"-m src.analyze ckpt={run_dir} torch_threads=1 prune_step=0.25")
    with open(out / "pruning.csv") as f:
        steps = list(csv.DictReader(f))
    per_step = len(heads) // 4  # prune_step=0.25
    assert [int(s["heads_removed"]) for s in steps] == [0, per_step, 2 * per_step, 3 * per_step, len(heads)]
    assert float(steps[-1]["fraction_removed"]) == 1.0
    report = (out / "report.md").read_text()
    assert "## Pruning curve" in report and "![pruning_curve](pruning_curve.png)" in report

    events = read_events(run_dir)
    tags = events.tags_with_prefix("val_analysis/")
    assert {"val_analysis/importance", "val_analysis/pruning_curve", "val_analysis/report"} <= tags
    curve = events.scalars[f"val_analysis/pruning_{METRIC[task]}"]
    assert [step for step, _ in curve][0] == 0 and [step for step, _ in curve][-1] == 100
    assert sorted(events.scalar_tags)[0].startswith(("test", "train")), "the analysis must not come first"


def test_a_second_analysis_is_refused_and_the_first_is_kept(trained, tmp_path):
    run_dir = trained["reverse"]
    if not (run_dir / "analysis").exists():
        check(run_module("src.analyze", f"ckpt={run_dir}", "torch_threads=1", "single_heads=false"))
    before = {p.name: p.read_bytes() for p in (run_dir / "analysis").iterdir()}
    result = run_module("src.analyze", f"ckpt={run_dir}", "torch_threads=1")
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "out=" in result.stderr, result.stderr
    assert {p.name: p.read_bytes() for p in (run_dir / "analysis").iterdir()} == before

    elsewhere = tmp_path / "second"
    check(
        run_module(
            "src.analyze",
            f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}",
            f"out={elsewhere}",
            "torch_threads=1",
            "single_heads=false",
            "keep_one=false",
            "max_examples=8",
        )
    )
    summary = json.loads((elsewhere / "summary.json").read_text())
    assert summary["examples"] == 8
    assert not (elsewhere / "single_head_effect.png").exists()  # nothing to draw without the single-head table


@pytest.mark.parametrize(
    "args, message",
    [
        (["split=train"], "split='train' is not known"),
        (["prune_step=0"], "prune_step=0.0 must be in (0, 1]"),
        (["tolerance=-1"], "tolerance=-1.0 must be >= 0"),
        (["max_examples=0"], "max_examples=0 must be >= 1"),
        (["ablate.heads=[cross:9:0]"], "layer 9 is out of range"),
        (["accelerator=tpu"], "accelerator='tpu' is not known"),
    ],
)
def test_bad_settings_are_one_line_before_any_work(trained, tmp_path, args, message):
    out = tmp_path / "never"
    result = run_module("src.analyze", f"ckpt={trained['reverse']}", f"out={out}", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not out.exists()


def test_a_path_that_is_no_run_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    for ckpt, message in ((tmp_path / "empty", "without checkpoints/"), (tmp_path / "nope", "does not exist")):
        result = run_module("src.analyze", f"ckpt={ckpt}")
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_analysing_with_heads_ablated_leaves_them_out(trained, tmp_path):
    out = tmp_path / "ablated"
    result = check(
        run_module(
            "src.analyze",
            f"ckpt={trained['reverse']}",
            f"out={out}",
            "ablate.heads=[cross:1:*]",
            "torch_threads=1",
            "single_heads=false",
        )
    )
    assert "ablated: cross L1 (all 2 heads)" in result.stdout
    with open(out / "heads.csv") as f:
        off = [r for r in csv.DictReader(f) if r["removed_before"] == "True"]
    assert [(r["site"], r["layer"]) for r in off] == [("cross", "1"), ("cross", "1")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ablation_specs"]["heads"] == ["cross:1:0", "cross:1:1"]
