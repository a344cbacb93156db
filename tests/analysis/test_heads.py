"""Head analysis (src/analysis/heads.py, scoring.py): batched ablations score exactly what one ablation at a time
scores, importance is Michel et al.'s per-example expectation, and pruning removes the least important heads."""

from __future__ import annotations

import math
from types import SimpleNamespace as task

import pytest
import torch

from src.analysis.heads import (
    HeadRow,
    PruneStep,
    _pruning_curve,
    analyze_heads,
    head_importance,
    normalise_per_layer,
    prunable_fraction,
)
from src.analysis.scoring import (
    MainMetric,
    SplitScorer,
    current_head_mask,
    per_example_loss,
    repeat_batch,
    row_masks,
)
from src.data import build_datamodule
from src.model import generate
from src.model.head_mask import clear_head_mask, full_head_mask, set_head_mask
from src.training.inference import forward_batch, scored_target
from tests.model.test_decoding import model_for


@pytest.fixture(scope="module")
def copy_run():
    """A copy task's data and a random encoder-decoder (float64) of its vocabulary."""
    dm = build_datamodule(task(name="copy", train_size=40, val_size=10, test_size=10), batch_size=4, seed=0)
    model = model_for(
        "encoder_decoder", src_vocab_size=dm.src_vocab_size, tgt_vocab_size=dm.tgt_vocab_size, heads=2, d_model=8
    )
    return model, dm


def masks_for(model):
    """Three masks: none removed, one head removed, a whole layer of cross-attention removed."""
    full = full_head_mask(model, dtype=torch.float32)
    one = {site: gates.clone() for site, gates in full.items()}
    one["encoder_self"][0, 1] = 0.0
    layer = {site: gates.clone() for site, gates in full.items()}
    layer["cross"][1] = 0.0
    return [full, one, layer]


def loss_one_at_a_time(model, dm, mask) -> float:
    set_head_mask(model, {s: g.to(torch.float64) for s, g in mask.items()})
    total, tokens = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(dm.task.val), 3):  # other batches than the scorer's: the loss must not care
            batch = dm.collate(dm.task.val[start : start + 3])
            loss, count = per_example_loss(
                forward_batch(model, dm.kind, batch).logits, scored_target(model, "seq2seq", batch), "seq2seq"
            )
            total, tokens = total + float(loss.sum()), tokens + float(count.sum())
    clear_head_mask(model)
    return total / tokens


def test_batched_masks_score_the_loss_of_each_mask_alone(copy_run):
    model, dm = copy_run
    masks = masks_for(model)
    scorer = SplitScorer(model, dm, {}, "val", rows_per_batch=8)  # 4 examples x 2 masks per pass: groups split
    batched = scorer.losses(masks)
    for mask, value in zip(masks, batched):
        assert value == pytest.approx(loss_one_at_a_time(model, dm, mask), rel=1e-9)
    assert len(set(batched)) == 3, "the masks changed nothing"
    assert current_head_mask(model)["cross"].eq(1).all(), "the model's own gates were not put back"


def test_batched_greedy_decoding_equals_decoding_each_mask_alone(copy_run):
    model, dm = copy_run
    masks = masks_for(model)
    scorer = SplitScorer(model, dm, {}, "val", rows_per_batch=64)
    batch = scorer.batches[0]
    rows = batch["src"].size(0)
    with row_masks(model, masks, rows):
        together = scorer._generate(repeat_batch(batch, len(masks))).view(len(masks), rows, -1)
    for k, mask in enumerate(masks):
        set_head_mask(model, {s: g.to(torch.float64) for s, g in mask.items()})
        alone = generate(model, src=batch["src"], max_new_tokens=batch["tgt_out"].size(1) + scorer.extra_tokens)
        clear_head_mask(model)
        assert torch.equal(together[k, :, : alone.size(1)], alone), k


def test_importance_is_the_mean_of_per_example_absolute_gradients(copy_run):
    """Michel et al.'s E_x |dL(x)/dg|: per example, then averaged; not |d(sum L)/dg| of a batch (which lets the
    examples' gradients cancel), and equal to a finite difference of each example's loss."""
    model, dm = copy_run
    batch = dm.collate(dm.task.val[:2])
    importance = head_importance(model, "seq2seq", [batch])

    def example_loss(index: int, gate: float) -> float:
        mask = full_head_mask(model)
        mask["cross"][0, 1] = gate
        set_head_mask(model, mask)
        one = {k: v[index : index + 1] for k, v in batch.items()}
        with torch.no_grad():
            loss, count = per_example_loss(
                forward_batch(model, "seq2seq", one).logits, scored_target(model, "seq2seq", one), "seq2seq"
            )
        clear_head_mask(model)
        return float(loss / count)

    eps = 1e-6
    per_example = [(example_loss(i, 1 + eps) - example_loss(i, 1 - eps)) / (2 * eps) for i in range(2)]
    expected = sum(abs(g) for g in per_example) / 2
    assert float(importance["cross"][0, 1]) == pytest.approx(expected, rel=1e-4)
    assert all(p.requires_grad for p in model.parameters()), "the weights' requires_grad was not restored"
    assert all(p.grad is None for p in model.parameters()), "a weight gradient was computed"


def test_normalised_importance_has_unit_norm_per_layer_over_the_heads_still_in():
    importance = {"cross": torch.tensor([[3.0, 4.0, 9.0], [0.0, 0.0, 0.0]])}
    alive = {"cross": torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])}
    normalised = normalise_per_layer(importance, alive)["cross"]
    assert torch.allclose(normalised[0], torch.tensor([0.6, 0.8, 0.0]))
    assert torch.equal(normalised[1], torch.zeros(3))  # a layer of zeros stays zeros (no NaN)


def test_prunable_fraction_stops_at_the_first_step_past_the_tolerance():
    bleu = MainMetric("bleu", True, "")
    steps = [PruneStep(f, 0, m, 0.0, []) for f, m in ((0.0, 30.0), (0.1, 29.5), (0.2, 27.0), (0.3, 29.9))]
    assert prunable_fraction(bleu, 30.0, steps, tolerance=0.05) == 0.1  # 27 < 28.5; the later recovery ignored
    assert prunable_fraction(bleu, 30.0, steps, tolerance=0.2) == 0.3
    loss = MainMetric("loss", False, "")
    steps = [PruneStep(f, 0, m, m, []) for f, m in ((0.0, 2.0), (0.5, 2.05), (1.0, 2.5))]
    assert prunable_fraction(loss, 2.0, steps, tolerance=0.05) == 0.5  # lower is better: a rise is the drop


def test_pruning_removes_the_least_important_heads_first_and_ends_with_none(copy_run):
    model, dm = copy_run
    scorer = SplitScorer(model, dm, {}, "val")
    alive = {site: torch.ones_like(g) for site, g in current_head_mask(model).items()}
    live = [(s, layer, h) for s, g in alive.items() for layer in range(g.size(0)) for h in range(g.size(1))]
    scores = normalise_per_layer(head_importance(model, "seq2seq", scorer.batches), alive)
    steps = _pruning_curve(model, scorer, alive, live, 0.25, scores, 0.0, 1.0)
    per_step = math.ceil(0.25 * len(live))
    first = steps[1].removed_heads
    lowest = sorted(live, key=lambda h: float(scores[h[0]][h[1], h[2]]))[:per_step]
    assert first == [f"{s}:{layer}:{h}" for s, layer, h in lowest]
    assert [s.removed for s in steps] == [0, *range(per_step, len(live), per_step), len(live)][: len(steps)]
    assert steps[-1].fraction == 1.0 and len(steps[-1].removed_heads) == len(live)
    for earlier, later in zip(steps, steps[1:]):  # each step keeps what the previous removed
        assert set(earlier.removed_heads) <= set(later.removed_heads)
    assert current_head_mask(model)["cross"].eq(1).all()


def test_heads_already_ablated_are_left_out_of_every_table(copy_run):
    model, dm = copy_run
    mask = full_head_mask(model)
    mask["decoder_self"][1, 0] = 0.0
    set_head_mask(model, mask)
    try:
        result = analyze_heads(model, dm, {}, "val", prune_step=0.5, log=lambda line: None)
    finally:
        clear_head_mask(model)
    off = [r for r in result.heads if r.removed_before]
    assert [(r.site, r.layer, r.head) for r in off] == [("decoder_self", 1, 0)]
    assert math.isnan(off[0].importance) and math.isnan(off[0].metric_drop)
    assert all("decoder_self:1:0" not in s.removed_heads for s in result.pruning)
    assert result.pruning[-1].removed == len(result.heads) - 1
    kept = [k.kept for k in result.keep_one if k.scope == "layer" and k.site == "decoder_self" and k.layer == 1]
    assert kept == ["[decoder_self:1:1]"]  # the only head left in that layer
    # every row, a site's or the model's too, lists its heads as ablate.heads takes them: one per layer in scope
    from src.model.ablation import parse_ablation

    layers = {(k.site, k.layer) for k in result.keep_one if k.scope == "layer"}
    for k in result.keep_one:
        assert k.kept.startswith("[") and k.kept.endswith("]")
        heads = k.kept[1:-1].split(",")
        parse_ablation({"heads": heads}, model.cfg)  # a ConfigError if any name is not a head
        in_scope = {(s, lay) for s, lay in layers if k.scope == "all" or s == k.site and (k.layer in (None, lay))}
        assert {(name.split(":")[0], int(name.split(":")[1])) for name in heads} == in_scope
    assert isinstance(result.heads[0], HeadRow) and result.examples == 10


def test_a_model_that_scores_nothing_has_no_prunable_fraction(copy_run, tmp_path, capsys):
    """Exact match 0 (this random model never ends a sequence): losing heads loses nothing, and "100% can go"
    would be true and meaningless; the fraction is undefined, null in summary.json, and a warning says why."""
    import json

    from src.analysis.report import write_analysis

    model, dm = copy_run
    result = analyze_heads(model, dm, {}, "val", prune_step=0.5, single_heads=False, keep_one=False, log=lambda _: None)
    assert result.baseline_metric == 0.0 and math.isnan(result.prunable_fraction)
    assert "warning: the unablated model scores exact_match 0" in capsys.readouterr().err
    write_analysis(result, tmp_path / "analysis", {"checkpoint": "x"})
    summary = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert summary["figures"]["prunable_fraction"] is None
    assert "no prunable fraction" in (tmp_path / "analysis" / "report.md").read_text()


def test_an_analysis_is_written_whole_or_not_at_all(copy_run, tmp_path, monkeypatch):
    from src.analysis import report

    model, dm = copy_run
    result = analyze_heads(model, dm, {}, "val", prune_step=0.5, single_heads=False, keep_one=False, log=lambda _: None)

    def interrupted(_analysis):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "figures", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_analysis(result, tmp_path / "analysis", {"checkpoint": "x"})
    assert list(tmp_path.iterdir()) == []  # neither analysis/ nor its hidden partial folder


def test_each_row_names_its_head_as_ablate_heads_reads_it_and_that_name_removes_that_head(copy_run, tmp_path):
    """A row of the head table (and of heads.csv) carries the head's name (`cross:1:0`, counted from 0); pasted into
    ablate.heads, it switches off the head whose single-head figures the row gives: the loss with it off is the
    row's loss_without."""
    import csv

    from src.analysis.report import write_tables
    from src.model.ablation import layout_of, parse_ablation

    model, dm = copy_run
    result = analyze_heads(model, dm, {}, "val", prune_step=1.0, keep_one=False, log=lambda _: None)
    assert [row.name for row in result.heads] == [f"{r.site}:{r.layer}:{r.head}" for r in result.heads]
    assert {(row.layer, row.head) for row in result.heads if row.site == "cross"} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    write_tables(result, tmp_path)
    with open(tmp_path / "heads.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert list(table[0])[0] == "name" and [row["name"] for row in table] == [row.name for row in result.heads]
    layout = layout_of(model.cfg)
    losses = {row.name: row.loss_without for row in result.heads}
    assert len(set(losses.values())) == len(losses), "two heads change the loss alike: the check would not tell"
    for name, loss_without in losses.items():
        mask = parse_ablation({"heads": [name]}, model.cfg).head_mask(layout)
        assert loss_one_at_a_time(model, dm, mask) == pytest.approx(loss_without, rel=1e-9), name


def test_the_entropy_of_the_analysis_is_the_entropy_tensorboard_shows(copy_run):
    """One definition of a head's entropy (attention_stats.query_entropy over valid_query_rows): on one batch the
    analysis's mean is TensorBoard's val_heads/entropy, site by site and layer by layer."""
    from src.analysis.ablation import query_positions
    from src.analysis.heads import attention_entropy
    from src.dashboard.attention_stats import head_statistics

    model, dm = copy_run
    batch = SplitScorer(model, dm, {}, "val").batches[0]
    entropy = attention_entropy(model, "seq2seq", [batch])
    attentions = forward_batch(model.eval(), "seq2seq", batch, need_weights=True).attentions
    for site, per_layer in attentions.items():
        queries = query_positions(model, batch, site)
        for layer, weights in enumerate(per_layer):
            shown = head_statistics(weights, queries[:, : weights.size(2)])["entropy"]
            torch.testing.assert_close(entropy[site][layer], shown, rtol=1e-5, atol=1e-6)
