"""Metrics that must equal their reference implementation: val/bleu is sacreBLEU's corpus BLEU. And one metric,
one name: no split gets two BLEUs, and every metric says in words what it is."""

from __future__ import annotations

import math
import random

import pytest
import sacrebleu
import torch

from src.training.metrics import CorpusBLEU, SplitMetrics

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


# --- one metric, one name ----------------------------------------------------------------------------------------


def test_the_test_split_has_one_bleu_and_objectives_offer_no_other():
    """The quick BLEU is validation's (it picks best.ckpt); a test split's BLEU is sacreBLEU on its raw references,
    so nothing offers a `test/bleu` beside `test/sacrebleu`: not the test metrics a module computes, not the
    HPARAMS columns (test_tags), not the objectives a sweep may rank by."""
    import torch

    from src.training.metrics import objective_choices, test_tags
    from tests.training.test_module import make_module

    tags = ["val/loss", "val/ppl", "val/token_acc", "val/exact_match", "val/bleu"]
    assert test_tags(tags) == ["test/loss", "test/ppl", "test/token_acc", "test/exact_match"]
    choices = objective_choices("seq2seq", with_bleu=True, test_after_fit=True)
    assert [tag for tag in choices if "bleu" in tag] == ["val/bleu", "test/sacrebleu", "test/sacrebleu_lowercase"]

    module = make_module("seq2seq", task="translation")
    assert module.split_metrics["val"].bleu is not None
    assert module.split_metrics["test"].bleu is None and module.split_metrics["test_long"].bleu is None
    module.drop_quick_bleu()  # src.eval: the validation split's BLEU is its sacreBLEU
    metrics = module.split_metrics["val"]
    metrics.update_loss(torch.tensor(1.0), torch.tensor(4))
    metrics.update_predictions(torch.zeros(1, 2, module.model_cfg.tgt_vocab_size), torch.tensor([[3, 2]]))
    metrics.update_generation(torch.tensor([[3, 2]]), torch.tensor([[3, 2]]))
    assert "bleu" not in metrics.compute()


@pytest.mark.parametrize(
    "tag, kind, words",
    [
        ("val/loss", "seq2seq", "mean cross-entropy per target token, teacher-forced, in nats, 16 examples"),
        ("val/loss", "classification", "mean cross-entropy per example, in nats, 16 examples"),
        ("test/ppl", "lm", "perplexity, exp of test/loss"),
        ("val/exact_match", "seq2seq", "share of greedy outputs equal to the reference, 16 examples"),
        ("val/bleu", "seq2seq", "BLEU of greedy outputs against references rebuilt from token ids"),
        ("test/sacrebleu", "seq2seq", "sacreBLEU against the raw references, cased, decoded as decode.* says, 8 exa"),
    ],
)
def test_every_metric_says_what_it_is_and_over_how_many_examples(tag, kind, words):
    from src.training.metrics import describe_metric

    described = describe_metric(tag, kind, {"val": 16, "test": 8})
    assert described.startswith(words) and ": " not in described  # printed lines are read as `tag: value`


@pytest.mark.parametrize("kind", [None, "mlm"])
def test_a_loss_of_no_kind_or_an_unregistered_one_is_described_as_any_kinds(kind):
    """describe_metric only labels numbers (a report may read a file written by a version with other kinds): for a
    kind it does not know it says what every kind's loss is, rather than refusing to describe it."""
    from src.training.metrics import describe_metric

    assert describe_metric("val/loss", kind, {"val": 16}) == "mean cross-entropy, teacher-forced, in nats, 16 examples"


@pytest.mark.parametrize("loss", [2.0, 57.85, 705.0, 800.0, float("nan")])
def test_perplexity_is_exp_of_the_loss_however_large(loss):
    """A loss of 57.85 (a random model on a large vocabulary) has a perplexity of exp(57.85), not the exp(50) a cap
    once made of it; past a float's range it is inf, and a NaN loss's is NaN."""
    metrics = SplitMetrics("lm", num_outputs=5, with_bleu=False)
    metrics.update_loss(torch.tensor(loss), torch.tensor(3.0))
    metrics.update_predictions(torch.zeros(1, 2, 5), torch.zeros(1, 2, dtype=torch.long))
    ppl = metrics.compute()["ppl"]
    if math.isnan(loss):
        assert math.isnan(ppl)
    elif loss > 710:  # past a float's range (exp(705) is 1.6e306, a float still)
        assert ppl == math.inf
    else:
        assert math.log(ppl) == pytest.approx(loss, abs=1e-5)  # the float32 mean's rounding, exponentiated
