"""A task's own validation and test metrics (TaskSpec.metrics / metric_names): task=induction's `repeated_loss`, the
loss on the predictable tokens of the repeated segment (the curve whose drop is the induction-head phase change).

Unit level: the metric of batches equals the cross-entropy on the repeat's positions computed by hand, weighted by
tokens over batches, with no read from the device. End to end: a tiny `python -m src.run task=induction` logs
val/repeated_loss to metrics.json, TensorBoard (scalars and the HPARAMS columns) and run.json, test/repeated_loss
after fit, and src.eval prints it; `objective=` and EarlyStopping accept it, other tasks do not offer it.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from src.cli.validation import check_early_stopping, check_objective
from src.data import all_tasks, register_task, task_spec
from src.data.collate import collate_lm
from src.data.tasks.induction import InductionTaskConfig, task_metrics
from src.model import ConfigError, TransformerConfig
from src.training.metrics import higher_is_better, metric_range, metric_tags, objective_choices
from src.training.module import TransformerLitModule
from tests.conftest import run_in_process

VOCAB = 20  # content tokens; ids 4.. (0-3 are the special ids)
FIRST_ID = 4
SEQ_LEN = 24  # tokens the model reads; each sequence holds one more
MIN_SEGMENT = 4


def sequence(generator: torch.Generator, start: int, offset: int, length: int) -> torch.Tensor:
    """SEQ_LEN + 1 content tokens whose segment [start, start + length) is written again at start + offset, and
    which repeat nothing else: drawn again until the segment's windows of MIN_SEGMENT tokens are the only ones that
    occur twice (counted here, not with induction.py's functions)."""
    n = SEQ_LEN + 1
    while True:
        tokens = torch.randint(VOCAB, (n,), generator=generator) + FIRST_ID
        tokens[start + offset : start + offset + length] = tokens[start : start + length]
        windows = [tuple(tokens[i : i + MIN_SEGMENT].tolist()) for i in range(n - MIN_SEGMENT + 1)]
        if len(windows) - len(set(windows)) == length - MIN_SEGMENT + 1:  # only the segment's windows repeat
            return tokens


# (start, offset, length) per sequence: side by side, apart, and at the very end
REPEATS = [(2, 5, 5), (0, 12, 8), (7, 9, 4), (1, 17, 7)]


def batch_with_known_repeats(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], list[list[int]]]:
    """An lm batch of REPEATS, and per sequence the target positions (indices into tgt_out) predictable from the
    earlier occurrence, written down from the drawing: the second occurrence's tokens after its first, token t of
    the sequence being tgt_out[t - 1]."""
    tokens = [sequence(generator, *repeat) for repeat in REPEATS]
    positions = [
        [t - 1 for t in range(start + offset + 1, start + offset + length)] for start, offset, length in REPEATS
    ]
    return collate_lm([{"tokens": t} for t in tokens]), positions


def by_hand(logits: torch.Tensor, batch: dict[str, torch.Tensor], positions: list[list[int]]) -> float:
    """The mean cross-entropy over the listed positions, one position at a time."""
    losses = [
        F.cross_entropy(logits[row, p].double(), batch["tgt_out"][row, p]).item()
        for row, ps in enumerate(positions)
        for p in ps
    ]
    return sum(losses) / len(losses)


def induction_module() -> TransformerLitModule:
    torch.manual_seed(0)
    task = {
        **dataclasses.asdict(InductionTaskConfig()),
        "vocab_size": VOCAB,
        "seq_len": SEQ_LEN,
        "min_segment_len": MIN_SEGMENT,
    }
    model = TransformerConfig(
        arch="decoder_only",
        d_model=16,
        heads=2,
        dec_layers=1,
        d_ff=32,
        dropout=0.0,
        max_len=SEQ_LEN,
        src_vocab_size=0,
        tgt_vocab_size=VOCAB + FIRST_ID,
    )
    config = {"task": task, "optimizer": {}, "label_smoothing": 0.0}
    return TransformerLitModule(config, dataclasses.asdict(model), "lm").eval()


def test_repeated_loss_is_the_loss_on_the_repeat_positions_computed_by_hand():
    batch, positions = batch_with_known_repeats(torch.Generator().manual_seed(0))
    logits = torch.randn(*batch["tgt_out"].shape, VOCAB + FIRST_ID, generator=torch.Generator().manual_seed(1))
    settings = InductionTaskConfig(vocab_size=VOCAB, seq_len=SEQ_LEN, min_segment_len=MIN_SEGMENT)
    total, count = task_metrics(settings, batch, logits)["repeated_loss"]
    assert int(count) == sum(len(ps) for ps in positions) == sum(length - 1 for _, _, length in REPEATS)
    assert float(total / count) == pytest.approx(by_hand(logits, batch, positions), rel=1e-6)


def test_the_module_weights_batches_by_their_repeat_tokens_and_reads_nothing_back(monkeypatch):
    """Batches of different counts (and one with no repeat at all: 0 / 0 adds nothing) give the mean over all
    their repeat tokens, as one batch would; scoring a batch and updating the metric read no value from the
    device (tests/training/test_host_sync.py's counter)."""
    from tests.training.test_host_sync import HostReads

    module = induction_module()
    batch, positions = batch_with_known_repeats(torch.Generator().manual_seed(2))
    # 0, 1, ..., 19 then 0, 2, 4, 6, 8: no run of MIN_SEGMENT tokens occurs twice, so nothing to count
    unrepeated = torch.cat([torch.arange(VOCAB), torch.arange(0, 2 * (SEQ_LEN + 1 - VOCAB), 2)]) + FIRST_ID
    parts = [
        {k: v[:1] for k, v in batch.items()},
        {k: v[1:] for k, v in batch.items()},
        collate_lm([{"tokens": unrepeated}]),
    ]
    with torch.no_grad():
        expected = by_hand(module(batch).logits, batch, positions)
        for part in parts:
            module._evaluate(part, "val")
        logits = [module(part).logits for part in parts]
    metrics = module.split_metrics["val"]
    assert metrics.compute()["repeated_loss"] == pytest.approx(expected, rel=1e-5)
    metrics.reset()
    assert metrics.task_metrics["repeated_loss"].update_count == 0

    reads = HostReads()
    reads.install(monkeypatch)
    reads.step = 1  # as inside a step: every read is noted
    sums = [task_metrics(module.task_settings, part, part_logits) for part, part_logits in zip(parts, logits)]
    for batch_sums in sums:
        metrics.update_task(batch_sums)
    reads.step = None
    assert reads.reads == []
    assert [int(s["repeated_loss"][1]) for s in sums] == [len(positions[0]), sum(map(len, positions[1:])), 0]
    assert metrics.task_metrics["repeated_loss"].compute().item() == pytest.approx(expected, rel=1e-5)


def test_the_metric_is_offered_where_the_tasks_metrics_are():
    spec = task_spec("induction")
    assert spec.metric_names == ("repeated_loss",)
    assert metric_tags(spec.kind, spec.bleu, spec.metric_names) == [
        "val/loss",
        "val/ppl",
        "val/token_acc",
        "val/repeated_loss",
    ]
    assert "test/repeated_loss" in objective_choices(spec.kind, spec.bleu, True, spec.metric_names)
    assert not higher_is_better("val/repeated_loss") and metric_range("test/repeated_loss") == (0.0, math.inf)
    check_objective("val/repeated_loss", spec, test_after_fit=False)
    check_objective("test/repeated_loss", spec, test_after_fit=True)
    with pytest.raises(ConfigError, match="set test_after_fit=true"):
        check_objective("test/repeated_loss", spec, test_after_fit=False)
    check_early_stopping({"monitor": "val/repeated_loss"}, spec)
    with pytest.raises(ConfigError, match="not a metric task=char_lm logs"):
        check_objective("val/repeated_loss", task_spec("char_lm"), test_after_fit=True)


@pytest.mark.parametrize(
    "declared, wrong",
    [
        ({"metrics": task_metrics}, "go together"),
        ({"metric_names": ("repeated_loss",)}, "go together"),
        ({"metrics": task_metrics, "metric_names": ("loss",)}, "none of the kinds' own"),
        ({"metrics": task_metrics, "metric_names": ("repeated/loss",)}, "must be a word"),
    ],
)
def test_a_task_declares_its_metrics_with_names_of_their_own(declared, wrong):
    spec = dataclasses.replace(task_spec("induction"), name="induction_copy", metrics=None, metric_names=())
    with pytest.raises(ValueError, match=wrong):
        register_task(dataclasses.replace(spec, **declared))
    assert "induction_copy" not in all_tasks()


TINY_INDUCTION = [
    "task=induction",
    "task.train_size=48",
    "task.val_size=16",
    "task.test_size=16",
    "task.seq_len=32",
    "task.max_segment_len=12",
    "model.d_model=16",
    "model.heads=2",
    "model.layers=1",
    "model.d_ff=32",
    "model.dropout=0.0",
    "batch_size=16",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
    "optimizer.warmup_steps=2",
    "dashboard.attention_maps=false",
    "dashboard.attention_stats=false",
    "dashboard.text_samples=false",
    "test_after_fit=true",
    "torch_threads=1",
]


def test_a_tiny_induction_run_logs_and_records_repeated_loss(tmp_path):
    from src.dashboard.tensorboard_reader import read_events

    run_dir = tmp_path / "run"
    code, out, err = run_in_process("src.run", *TINY_INDUCTION, f"hydra.run.dir={run_dir}")
    assert code == 0, out[-3000:] + err[-3000:]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [entry["step"] for entry in metrics["history"]] == [2, 4]
    assert all(math.isfinite(entry["val/repeated_loss"]) for entry in metrics["history"])
    final = metrics["final"]
    assert final["val/repeated_loss"] == metrics["history"][-1]["val/repeated_loss"]
    assert 0 < final["test/repeated_loss"] < math.inf
    assert (
        json.loads((run_dir / "run.json").read_text())["metrics"]["test/repeated_loss"] == final["test/repeated_loss"]
    )
    assert "test/repeated_loss:" in out  # the run's closing lines

    events = read_events(run_dir)
    assert [step for step, _ in events.scalars["val/repeated_loss"]] == [2, 4]  # the steps done, as metrics.json
    assert events.scalars["test/repeated_loss"][-1][1] == pytest.approx(final["test/repeated_loss"])
    assert {"val/repeated_loss", "test/repeated_loss"} <= set(events.hparam_metrics)

    code, out, err = run_in_process("src.eval", f"ckpt={run_dir}")
    assert code == 0, out[-3000:] + err[-3000:]
    line = next(line for line in out.splitlines() if line.strip().startswith("test/repeated_loss:"))
    assert float(line.split(":")[1].split()[0]) == pytest.approx(final["test/repeated_loss"], abs=1e-4)
    assert "predictable tokens of the repeated segment" in line


def test_stacked_seeds_record_each_members_repeated_loss(tmp_path):
    """hydra/launcher=stacked evaluates members through the module's own evaluation: each member's metrics.json
    has val/ and test/repeated_loss."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "seed=0,1", "hydra/launcher=stacked", *TINY_INDUCTION, "logger=none", f"hydra.sweep.dir={sweep_dir}"]
    code, out, err = run_in_process("src.run", *args)
    assert code == 0, out[-3000:] + err[-3000:]
    finals = [json.loads((sweep_dir / job / "metrics.json").read_text())["final"] for job in ("0_seed:0", "1_seed:1")]
    for final in finals:
        assert math.isfinite(final["val/repeated_loss"]) and math.isfinite(final["test/repeated_loss"])
    assert finals[0]["val/repeated_loss"] != finals[1]["val/repeated_loss"]  # each member's own
