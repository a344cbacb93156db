"""Metrics that must equal their reference implementation: val/bleu is sacreBLEU's corpus BLEU."""

from __future__ import annotations

import random

import pytest
import sacrebleu

from src.training.metrics import CorpusBLEU

WORDS = "a man woman dog cat sees runs plays in the park on street with ball".split()


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + "." for _ in range(n)]


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_bleu_summed_over_batches_equals_sacrebleu_on_the_whole_split(batch):
    hypotheses, references = sentences(16, 0), sentences(16, 1)
    metric = CorpusBLEU()
    for start in range(0, len(hypotheses), batch):
        metric.update(hypotheses[start : start + batch], references[start : start + batch])
    expected = sacrebleu.corpus_bleu(hypotheses, [references]).score
    assert 100 * float(metric.compute()) == pytest.approx(expected, abs=1e-4)


def test_a_split_without_a_matching_four_gram_scores_as_sacrebleu_smooths_it():
    """torchmetrics' SacreBLEUScore (no smoothing) gives 0 here; sacreBLEU, and so val/bleu, does not."""
    hypotheses = ["a man sees a dog in the park", "the cat plays"]
    references = ["a man sees the dog on the street", "the cat runs"]
    metric = CorpusBLEU()
    metric.update(hypotheses, references)
    expected = sacrebleu.corpus_bleu(hypotheses, [references]).score
    assert expected > 0
    assert 100 * float(metric.compute()) == pytest.approx(expected, abs=1e-4)
