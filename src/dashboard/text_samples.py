"""The model's outputs on fixed validation examples, as a markdown table in TensorBoard's TEXT tab:
``TextSampleLogger`` and the markdown helpers it writes with.

Tag written (the tests and the end-to-end checks rely on it):

    samples/validation             markdown text table, after every ``every_n_validations``-th validation run

A table's ``example`` column is the example's index in the validation split (the probe batch is the split's first
examples), counted from 0 as the datamodule indexes it and as the attention images' ``/example_<e>`` tags number
the same examples, so a row and its attention maps carry one number.

Besides what every dashboard callback needs (see ``probe``), the logger reads, per task kind:

    seq2seq         ``pl_module.extra_decode_tokens`` (how far past the reference a greedy output may run),
                    ``datamodule.decode_src`` / ``decode_tgt``
    lm              ``pl_module.config["decode"]`` (the sampling settings), ``datamodule.decode_tgt``, and for the
                    marks a pretrained tokenizer puts in front of an input (Llama's ``<s>``, shown as the model read
                    it, as the attention page shows it) ``datamodule.vocab`` and ``tgt_token_strings``
    classification  ``datamodule.decode_src`` and ``datamodule.label_names``
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from src.dashboard.probe import can_log, event_step, tensorboard_logger
from src.data.registry import task_kind
from src.training import inference

TEXT_SAMPLES_TAG = "samples/validation"


def _markdown_cell(text: str) -> str:
    """Make arbitrary text safe inside a markdown table cell as TensorBoard renders it.

    TensorBoard sanitizes the HTML that markdown produces, so a token like ``<unk>`` would vanish as an unknown
    tag: escape it. ``|`` would end the cell, ``*``/``_``/backticks would start emphasis or code.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for special in ("\\", "|", "*", "_", "`", "[", "]"):
        text = text.replace(special, "\\" + special)
    return text.replace("\n", " ⏎ ") if text else " "


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_markdown_cell(str(cell)) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


class TextSampleLogger(Callback):
    """After every ``every_n_validations``-th validation run, a markdown table of the model's outputs.

    seq2seq: example | source | target | greedy output | exact match, for ``num_examples`` probe examples;
    lm: a generated sample (``inference.sample_text``: what the model read, Llama's ``<s>`` too, and wrote) as a
    code block;
    classification: example | sentence | label | predicted | correct.
    Logged under ``samples/validation`` at the current global step (skipped in the sanity check).
    """

    def __init__(self, num_examples: int = 4, every_n_validations: int = 1, tag: str = TEXT_SAMPLES_TAG) -> None:
        if num_examples < 1 or every_n_validations < 1:
            raise ValueError(
                f"TextSampleLogger needs num_examples >= 1 and every_n_validations >= 1, "
                f"got {num_examples} and {every_n_validations}"
            )
        self.num_examples = num_examples
        self.every_n_validations = every_n_validations
        self.tag = tag
        self._validations_seen = 0
        self._probe: dict[str, Any] | None = None
        self.logged_steps: list[int] = []
        self.seconds_logging = 0.0  # wall time spent logging: run.json's speed reports the dashboards' share

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._probe = None  # a new fit may come with another datamodule

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not can_log(trainer):
            return
        self._validations_seen += 1
        if self._validations_seen % self.every_n_validations != 0:
            return
        started = time.perf_counter()
        self._log_samples(trainer, pl_module)
        self.seconds_logging += time.perf_counter() - started

    def _log_samples(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._probe is None:
            self._probe = dict(trainer.datamodule.probe_batch(self.num_examples))
        kind = task_kind(trainer.datamodule.kind)  # a kind not registered: one line naming the registered ones
        if kind.translates:  # a table of sources, targets and greedy outputs
            text = self._seq2seq_table(trainer.datamodule, pl_module, kind.name)
        elif kind.predicts_tokens:  # an lm: its sample is a generated text
            text = self._lm_sample(trainer.datamodule, pl_module)
        else:  # a classifier: a table of inputs, labels and predictions
            text = self._classification_table(trainer.datamodule, pl_module)
        tensorboard_logger(trainer).experiment.add_text(self.tag, text, event_step(trainer))
        self.logged_steps.append(trainer.global_step)

    def _seq2seq_table(self, datamodule, pl_module: LightningModule, kind: str) -> str:
        predictions = inference.greedy_decode(pl_module.model, kind, self._probe, pl_module.extra_decode_tokens)
        predictions = predictions.cpu()  # (B, L)
        targets = self._probe.get("tgt_out", self._probe["tgt_in"])
        rows = []
        for index, (source, target, prediction) in enumerate(zip(self._probe["src"], targets, predictions)):
            target_text, predicted_text = datamodule.decode_tgt(target), datamodule.decode_tgt(prediction)
            rows.append(
                [
                    str(index),  # counted from 0, as the attention images' /example_<e> tags
                    datamodule.decode_src(source),
                    target_text,
                    predicted_text,
                    "✓" if predicted_text == target_text else "✗",
                ]
            )
        return markdown_table(["example", "source", "target", "greedy output", "exact"], rows)

    def _lm_sample(self, datamodule, pl_module: LightningModule) -> str:
        sample = inference.sample_text(pl_module.model, datamodule, pl_module.config.get("decode", {}))
        sample = sample.replace("```", "'''")  # a fence inside would end the code block
        return f"**generated sample**\n\n```\n{sample}\n```"

    def _classification_table(self, datamodule, pl_module: LightningModule) -> str:
        predicted = inference.predict_labels(pl_module.model, self._probe).cpu()  # (B,)
        names = list(getattr(datamodule, "label_names", []) or [])

        def name(label: int) -> str:
            return names[label] if 0 <= label < len(names) else str(label)

        rows = []
        for index, (source, label, guess) in enumerate(zip(self._probe["src"], self._probe["label"], predicted)):
            label, guess = int(label), int(guess)
            rows.append(
                [
                    str(index),  # counted from 0, as the attention images' /example_<e> tags
                    datamodule.decode_src(source),
                    name(label),
                    name(guess),
                    "✓" if label == guess else "✗",
                ]
            )
        return markdown_table(["example", "sentence", "label", "predicted", "correct"], rows)
