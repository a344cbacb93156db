"""analysis/report.md (src/analysis/report.py): the answer first, heads ranked by effect, every table after, and an
undefined figure named with its real cause (here and in summary.json, which the sweep report reads)."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace as task

import pytest

from src.analysis.heads import HeadAnalysis, HeadRow, PruneStep, analyze_heads
from src.analysis.report import (
    ranked_heads,
    read_head_rows,
    report_markdown,
    site_summary,
    why_rank_correlation_undefined,
    write_analysis,
)
from src.analysis.scoring import main_metric_of
from src.data import build_datamodule
from tests.model.test_decoding import model_for

SITES = ("encoder_self", "decoder_self", "cross")


def made_up_analysis(seed: int = 0, prunable: float = 0.5) -> HeadAnalysis:
    """An analysis of 24 heads (3 sites x 2 layers x 4 heads) with made-up single-head effects: what report.py is
    given by heads.py, built by hand so that which heads matter is known. The pruning removes the encoder's heads
    first (all 8 by half of the heads), then the decoder's."""
    rng = random.Random(seed)
    metric = main_metric_of("reverse")  # the metric's name and description, as scoring.py names them
    heads = []
    for site in SITES:
        for layer in range(2):
            raw = [rng.uniform(0.01, 0.1) for _ in range(4)]
            norm = math.sqrt(sum(x * x for x in raw))
            for head in range(4):
                drop = rng.choice([0.0, 0.0, rng.uniform(0.0, 0.4)])
                heads.append(
                    HeadRow(
                        site,
                        layer,
                        head,
                        removed_before=False,
                        importance=raw[head],
                        importance_normalised=raw[head] / norm,
                        entropy=rng.uniform(0.5, 2.0),
                        metric_without=0.9 - drop,
                        loss_without=1.0 + drop,
                        metric_drop=drop,
                        loss_increase=drop + rng.uniform(0.0, 0.01),
                    )
                )
    order = [h.name for h in heads if h.site == "encoder_self"] + [h.name for h in heads if h.site != "encoder_self"]
    steps = [PruneStep(0.0, 0, 0.9, 1.0, [])]
    for removed in range(4, 25, 4):
        steps.append(PruneStep(removed / 24, removed, 0.9 - removed / 60, 1.0 + removed / 60, order[:removed]))
    return HeadAnalysis(
        "val", 32, metric, 0.9, 1.0, heads, [], steps, 0.05, prunable, {"metric": 0.4, "loss": 0.5}, {"all": 1.0}
    )


def test_the_report_begins_with_the_answer_then_the_heads_ranked_by_effect_then_every_head(tmp_path):
    analysis = made_up_analysis()
    report = report_markdown(analysis, {"checkpoint": "run/checkpoints/best.ckpt"}, [])
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[:4] == ["## The answer", "## What was measured", "## Heads ranked by effect", "## By site"]
    assert sections.index("## Every head, in site order") > sections.index("## Heads ranked by effect")

    answer = report.split("## The answer", 1)[1].split("## ", 1)[0]
    costliest = sorted(analysis.heads, key=lambda h: (-h.metric_drop, -h.loss_increase))[:3]
    first = answer.strip().splitlines()[0]
    assert first.startswith("- **The heads whose removal costs most**")
    assert [part.split("`")[1] for part in first.split(": ", 1)[1].split("), ")] == [h.name for h in costliest]
    # The pruning removed every encoder_self head by 50% of the heads: that is the site that tolerates it.
    assert "**`encoder_self` (encoder self-attention) tolerates pruning best**: 100% of its heads" in answer
    assert "**50% of the heads can be removed**" in answer

    ranked = report.split("## Heads ranked by effect", 1)[1].split("## ", 1)[0]
    rows = [line.split(" | ") for line in ranked.splitlines() if line.startswith("| ") and line[2].isdigit()]
    by_effect = sorted(analysis.heads, key=lambda h: (-h.metric_drop, -h.loss_increase))
    assert [row[1] for row in rows] == [h.name for h in by_effect]  # every head, the costliest first
    assert rows[0][0] == "| 1"
    # The metric the columns are: its name and description from scoring.py, and the numbering of the names.
    assert f"Every `{analysis.metric.name}` below is {analysis.metric.description}" in report
    assert "layers and heads counted from 0, as ablate.heads reads them" in report


def test_heads_tied_on_their_effect_share_a_rank():
    analysis = made_up_analysis()
    for head in analysis.heads:
        head.metric_drop, head.loss_increase = 0.0, 0.0
    analysis.heads[5].metric_drop = analysis.heads[9].metric_drop = 0.2
    analysis.heads[5].loss_increase = analysis.heads[9].loss_increase = 0.3
    analysis.heads[0].metric_drop, analysis.heads[0].loss_increase = 0.5, 0.1
    ranks = {row.name: rank for rank, row in ranked_heads(analysis)}
    assert ranks[analysis.heads[0].name] == "1"
    assert ranks[analysis.heads[5].name] == ranks[analysis.heads[9].name] == "2="
    assert ranks[analysis.heads[1].name] == "4="  # the 21 untouched heads: tied behind the three


def test_without_a_prunable_fraction_no_site_is_said_to_tolerate_pruning(tmp_path):
    """The unablated model scores 0 (heads.py leaves the fraction NaN): the share of each site pruned 'within the
    tolerance' is undefined too, not 0%, and the report and summary.json say why."""
    analysis = made_up_analysis(prunable=math.nan)
    assert all(math.isnan(site["pruned_within_tolerance"]) for site in site_summary(analysis))
    write_analysis(analysis, tmp_path / "analysis", {"checkpoint": "x"})
    report = (tmp_path / "analysis" / "report.md").read_text()
    answer = report.split("## The answer", 1)[1].split("## ", 1)[0]
    assert "Which site tolerates pruning is undefined" in answer and "no prunable fraction" in answer
    by_site = report.split("## By site", 1)[1].split("## ", 1)[0]
    assert "| undefined |" in by_site and "| 0% |" not in by_site
    summary = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert [site["pruned_within_tolerance"] for site in summary["sites"]] == [None, None, None]
    assert "does not do the task" in summary["undefined"]["prunable_fraction"]


@pytest.fixture(scope="module")
def one_head_per_layer():
    """A random encoder-decoder with one head per layer (heads=1) and a copy task's data."""
    dm = build_datamodule(task(name="copy", train_size=40, val_size=10, test_size=10), batch_size=4, seed=0)
    model = model_for(
        "encoder_decoder", src_vocab_size=dm.src_vocab_size, tgt_vocab_size=dm.tgt_vocab_size, heads=1, d_model=8
    )
    return model, dm


def test_one_head_per_layer_names_the_real_cause_of_an_undefined_rank_correlation(one_head_per_layer, tmp_path):
    """Normalised per layer, a layer's only head always has importance 1: the rank correlation is undefined for
    that reason, whatever removing the heads does, and the report says so (not 'a column is constant')."""
    model, dm = one_head_per_layer
    analysis = analyze_heads(model, dm, {}, "val", prune_step=0.5, keep_one=False, log=lambda _: None)
    assert {row.importance_normalised for row in analysis.heads} == {1.0}
    assert math.isnan(analysis.rank_correlation["metric"]) and math.isnan(analysis.rank_correlation["loss"])
    write_analysis(analysis, tmp_path / "analysis", {"checkpoint": "x"})
    report = (tmp_path / "analysis" / "report.md").read_text()
    (line,) = [line for line in report.splitlines() if "Spearman rho" in line]
    assert (
        "undefined on exact_match and the loss (one head per layer: importance is normalised within each layer" in line
    )
    assert "constant" not in line
    summary = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert summary["figures"]["rank_correlation_metric"] is None
    assert summary["undefined"]["rank_correlation_metric"].startswith("one head per layer")
    # heads.csv read back (the sweep report's way for analyses written before summary.json kept the cause)
    rows = read_head_rows(tmp_path / "analysis" / "heads.csv")
    assert [row.name for row in rows] == [row.name for row in analysis.heads]
    assert why_rank_correlation_undefined(rows, "loss").startswith("one head per layer")


def test_each_cause_of_an_undefined_rank_correlation_is_told_apart():
    analysis = made_up_analysis()
    heads = analysis.heads
    assert why_rank_correlation_undefined(heads, "exact_match") is None  # defined: the effects and scores vary
    for head in heads:
        head.metric_drop = 0.0
    assert why_rank_correlation_undefined(heads, "exact_match") == (
        "removing any one head alone leaves exact_match unchanged: the exact effects rank no head first"
    )
    assert why_rank_correlation_undefined(heads, "loss") is None
    assert why_rank_correlation_undefined(heads[:2], "loss").startswith("only 2 heads measured alone")
    for head in heads:
        head.importance_normalised = 0.5
    assert why_rank_correlation_undefined(heads, "loss").startswith("every head has the same normalised importance")


def test_a_head_off_before_has_its_own_column_and_panels_name_their_site_as_ablate_does():
    """The name cell holds the name alone (pasteable into ablate.heads), never "decoder_self:0:1 (off)"; a heat map
    panel is titled `decoder_self (decoder self-attention)`."""
    from src.analysis.report import figures

    analysis = made_up_analysis()
    analysis.heads[9].removed_before = True
    every = report_markdown(analysis, {}, []).split("## Every head, in site order", 1)[1]
    assert f"| {analysis.heads[9].name} | off |" in every and "(off)" not in every
    assert f"| {analysis.heads[8].name} |  |" in every
    made = figures(analysis)
    titles = [axis.get_title() for axis in made["importance"].axes if axis.get_title()]
    assert titles == [f"{site} ({title})" for site, title in zip(SITES, ("encoder self-attention",
                      "decoder self-attention", "cross-attention"))]  # fmt: skip
    import matplotlib.pyplot as plt

    for figure in made.values():
        plt.close(figure)


def cell_labels(figure) -> dict[str, list[str]]:
    """Each panel's cell labels, by the panel's title."""
    return {axis.get_title(): [text.get_text() for text in axis.texts] for axis in figure.axes if axis.get_title()}


def test_only_a_head_that_was_off_is_labelled_off_on_a_heat_map():
    """A head off before the analysis reads "off" whatever its value (its entropy is measured); a head that is on
    but has no value (not measured: NaN) reads "-"."""
    import matplotlib.pyplot as plt

    from src.analysis.report import figures

    analysis = made_up_analysis()
    off, unmeasured = analysis.heads[9], analysis.heads[10]  # decoder_self:0:1 and decoder_self:0:2
    off.removed_before, off.importance_normalised, off.metric_drop = True, math.nan, math.nan
    unmeasured.metric_drop = math.nan
    made = figures(analysis)
    panel = "decoder_self (decoder self-attention)"
    for name in ("importance", "entropy", "single_head_effect"):
        labels = cell_labels(made[name])[panel]
        assert labels[1] == "off" and labels.count("off") == 1, name
    assert cell_labels(made["single_head_effect"])[panel][2] == "-"
    assert cell_labels(made["importance"])[panel][2] not in ("off", "-")
    for figure in made.values():
        plt.close(figure)


def test_without_single_head_effects_heads_are_ranked_by_normalised_importance_as_the_pruning_ranks_them():
    """A layer of large gradients (raw importance) is no more important for it: the pruning and the attention page
    compare heads by importance normalised per layer, and so does the ranking."""
    analysis = made_up_analysis()
    for row in analysis.heads:
        row.metric_drop = row.loss_increase = math.nan  # single_heads=false
    raw_first = max(analysis.heads, key=lambda row: row.importance)
    for row in analysis.heads:  # make the raw order disagree: the largest raw importance has the smallest share
        row.importance_normalised = 0.9 if row is not raw_first else 0.1
    top = analysis.heads[5]
    top.importance_normalised = 0.99
    ranked = ranked_heads(analysis)
    assert ranked[0][1] is top and ranked[-1][1] is raw_first
    report = report_markdown(analysis, {}, [])
    assert "by importance normalised per layer" in report and f"`{top.name}` (0.99)" in report
