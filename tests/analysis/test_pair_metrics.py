"""src/analysis/causal.py's PAIR_METRICS: every pair metric is declared once, whole, and says true things of itself."""

from __future__ import annotations

import pytest
import torch

from src.analysis.causal import PAIR_METRICS, PairMetric, pair_metric_named


@pytest.mark.parametrize("name", list(PAIR_METRICS))
def test_every_pair_metric_entry_is_complete(name):
    metric = PAIR_METRICS[name]
    assert metric.name == name
    assert metric.title and metric.words  # the reports print both
    low, high = metric.value_range
    assert low < high
    assert metric.differentiable != bool(metric.no_gradient)  # a metric without a gradient says why


@pytest.mark.parametrize("name", list(PAIR_METRICS))
def test_each_metric_scores_one_value_per_row_within_its_range_and_in_its_direction(name):
    """Raising the clean answer's logit far above the rest makes the metric better in the direction it declares;
    a differentiable metric has a finite gradient, as attribution patching needs."""
    metric = PAIR_METRICS[name]
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    answer, wrong = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([1, 2, 3, 4, 5])
    values = metric.function(logits, answer, wrong)
    assert values.shape == (5,)
    low, high = metric.value_range
    assert all(low <= v <= high for v in values.tolist())
    confident = logits.detach().clone()
    confident[torch.arange(5), answer] += 100.0
    better = metric.function(confident, answer, wrong)
    sign = 1.0 if metric.higher_is_better else -1.0
    assert (sign * (better - values.detach()) >= 0).all()
    if metric.differentiable:
        values.sum().backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_a_metric_without_a_gradient_must_say_why_and_only_it():
    fields = dict(function=lambda s, a, w: s[:, 0], higher_is_better=True, title="t", words="w", value_range=(0, 1))
    with pytest.raises(ValueError, match="no_gradient"):
        PairMetric(name="silent", differentiable=False, **fields)
    with pytest.raises(ValueError, match="no_gradient"):
        PairMetric(name="contradicts", differentiable=True, no_gradient="a step function", **fields)


def test_an_unknown_metric_is_refused_with_the_registered_names():
    with pytest.raises(ValueError) as refused:
        pair_metric_named("accuracy")
    assert all(name in str(refused.value) for name in PAIR_METRICS)
