"""The analysis's main metric is named as src.eval prints the same number (one metric, one name): translation's is
`sacrebleu` (sacreBLEU of greedy translations on the raw references, `src.eval decode.strategy=greedy`'s
`<split>/sacrebleu`), never `bleu`, the name of training's quick val/bleu. tests/test_eval.py checks the values
agree on a trained model."""

from __future__ import annotations

import pytest

from src.analysis.scoring import main_metric_of
from src.data import task_spec
from src.training.metrics import describe_metric


@pytest.mark.parametrize(
    "task, name, higher, settings",
    [
        ("translation", "sacrebleu", True, "split=val decode.strategy=greedy"),
        ("multi30k", "sacrebleu", True, "split=val decode.strategy=greedy"),
        ("reverse", "exact_match", True, "split=val"),
        ("char_lm", "loss", False, "split=val"),
        ("classification", "acc", True, "split=val"),
    ],
)
def test_the_main_metric_is_named_as_src_eval_prints_it(task, name, higher, settings):
    metric = main_metric_of(task)
    assert (metric.name, metric.higher_is_better, metric.eval_command("val")) == (name, higher, settings)
    if name == "sacrebleu":  # src.eval's line adds the decoding it was given: the analysis's is always greedy
        assert metric.description.startswith("sacreBLEU of greedy translations against the raw reference lines")
    else:  # the same number src.eval prints as val/<name>, in the same words
        assert metric.description == describe_metric(f"val/{name}", task_spec(task).kind)


@pytest.mark.parametrize("task", ["translation", "multi30k", "reverse", "char_lm", "classification"])
def test_only_a_main_metric_that_is_the_teacher_forced_loss_says_so(task):
    """is_loss lets the head analysis reuse the losses it measured as the metric and the reports leave out a loss
    column that would repeat it: it must hold exactly where the task's main metric is its validation loss."""
    tag, _ = task_spec(task).main_metric
    assert main_metric_of(task).is_loss == (tag == "val/loss")
