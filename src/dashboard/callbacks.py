"""Lightning callbacks that fill TensorBoard: attention maps and masks, attention statistics, text samples, hparams.

They read everything they need from the trainer and the module, so the LightningModule only has to provide:

    pl_module.attention_maps(batch)  -> object with .attentions: {site: [(B, H, Tq, Tk) per layer]}
    pl_module.model.attention_masks(src=..., tgt=...) -> {site: bool (B, 1, Tq, Tk)}, True = may attend
    pl_module.greedy_decode(batch)   -> LongTensor (B, L)            (seq2seq tasks)
    pl_module.sample_text()          -> str                          (lm tasks)
    pl_module.predict_labels(batch)  -> LongTensor (B,)              (classification)

and the datamodule: ``kind``, ``probe_batch(n)``, ``src_token_strings`` / ``tgt_token_strings``,
``decode_src`` / ``decode_tgt`` and ``label_names``.

Every callback does nothing (and costs nothing beyond an integer check) unless the trainer has a
``TensorBoardLogger``, this is global rank 0, it is not Lightning's sanity check, and it is a logging step. Only on
a logging step is the model run with ``need_weights=True``, on a small fixed probe batch, so training steps keep
the fast attention path.

Tags written (the tests and the end-to-end checks rely on them):

    attention/<site>/layer_<l>                     image per layer, all heads (l counts from 1)
    mask/<site>                                    image, once at train start
    attention_stats/<site>/layer_<l>/head_<h>/<statistic>   scalars (entropy, distance[, confidence])
    samples/validation                             markdown text table
    _hparams_/...                                  hparams plugin data (HPARAMS tab)

View with ``tensorboard --logdir outputs --samples_per_plugin images=100`` (the UI shows 10 images per tag
otherwise).
"""

from __future__ import annotations

import dataclasses
import math
from argparse import Namespace
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from src.dashboard.attention_maps import layer_title, mask_title, render_attention_heads, render_attention_mask
from src.dashboard.stats import STATISTICS, head_statistics
from src.model.config import PAD_ID

# Which batch entries hold the query and the key tokens of each attention site.
SITE_INPUTS = {
    "encoder_self": ("src", "src"),
    "decoder_self": ("tgt_in", "tgt_in"),
    "cross": ("tgt_in", "src"),  # decoder positions ask, source positions answer
}
TEXT_SAMPLES_TAG = "samples/validation"


# ----------------------------------------------------------------------------------------------------------------
# Helpers shared by the callbacks


def tensorboard_logger(trainer: Trainer) -> TensorBoardLogger | None:
    """The trainer's TensorBoardLogger, or None (no logger, or only other kinds): callbacks then do nothing."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger
    return None


def _can_log(trainer: Trainer) -> bool:
    """Rank 0, not the sanity check, a TensorBoardLogger to write to and a datamodule to take probes from."""
    return (trainer.is_global_zero and not trainer.sanity_checking and tensorboard_logger(trainer) is not None
            and getattr(trainer, "datamodule", None) is not None)


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def _real_length(ids: torch.Tensor) -> int:
    """Number of positions before the right padding of a 1-D id tensor (at least 1, so plots are never empty)."""
    return max(1, int((ids != PAD_ID).sum()))


def _token_strings(datamodule, batch_key: str, ids: torch.Tensor) -> list[str]:
    ids = ids.tolist()
    if batch_key == "src":
        return list(datamodule.src_token_strings(ids))
    return list(datamodule.tgt_token_strings(ids))


def _attentions_of(output: Any) -> Mapping[str, Sequence[torch.Tensor]]:
    attentions = getattr(output, "attentions", output)
    if not isinstance(attentions, Mapping):
        raise TypeError("pl_module.attention_maps(batch) must return an object with .attentions = "
                        "{site: [(B, H, Tq, Tk) per layer]}: run the model with need_weights=True")
    return attentions


class _ProbeCallback(Callback):
    """Runs ``_log(trainer, pl_module, step)`` every ``every_n_steps`` optimizer steps and once at the end.

    The probe batch (``trainer.datamodule.probe_batch(probe_size)``) is fetched once and kept on the CPU.
    """

    def __init__(self, every_n_steps: int, probe_size: int, log_at_end: bool) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps={every_n_steps} must be >= 0 (0 = only at the end of training)")
        if probe_size < 1:
            raise ValueError(f"the probe batch needs at least one example, got {probe_size}")
        self.every_n_steps = every_n_steps
        self.probe_size = probe_size
        self.log_at_end = log_at_end
        self._probe: dict[str, Any] | None = None
        self._last_logged_step: int | None = None
        self.logged_steps: list[int] = []  # for tests and curious users

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._probe = None  # a new fit may come with another datamodule
        self._last_logged_step = None

    def probe_batch(self, trainer: Trainer) -> dict[str, Any]:
        if self._probe is None:
            self._probe = dict(trainer.datamodule.probe_batch(self.probe_size))
        return self._probe

    def _is_logging_step(self, trainer: Trainer) -> bool:
        step = trainer.global_step
        return (self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0
                and step != self._last_logged_step)  # several batch ends share a step under grad accumulation

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        if self._is_logging_step(trainer) and _can_log(trainer):
            self._log_now(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.log_at_end and trainer.global_step != self._last_logged_step and _can_log(trainer):
            self._log_now(trainer, pl_module)

    def _log_now(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step = trainer.global_step
        self._last_logged_step = step
        self.logged_steps.append(step)
        self._log(trainer, pl_module, step)

    def _attention_weights(self, trainer: Trainer, pl_module: LightningModule):
        """(probe batch on the CPU, {site: [(B, H, Tq, Tk) CPU float tensors per layer]})."""
        batch = self.probe_batch(trainer)
        was_training = pl_module.training
        with torch.no_grad():
            output = pl_module.attention_maps(_to_device(batch, pl_module.device))
        pl_module.train(was_training)  # attention_maps switches to eval mode; training continues after us
        attentions = {site: [layer.detach().float().cpu() for layer in layers]
                      for site, layers in _attentions_of(output).items()}
        return batch, attentions

    def _log(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------------------------
# Attention maps and masks


class AttentionMapLogger(_ProbeCallback):
    """Images of every layer's attention (all heads side by side) on fixed probe examples.

    Args:
        every_n_steps: log when ``global_step % every_n_steps == 0`` (0 = only at the end of training).
        num_examples: probe examples to draw; with more than one the tags get an ``/example_<e>`` suffix.
        log_masks: draw the mask in force at each site once, at train start (``mask/<site>``).
        log_at_end: also log once after the last step.
        vmax: top of the colour scale; None = each layer's own maximum (see ``render_attention_heads``).

    Cost (measured on a 2-core VM): about 0.15-0.25 s to render an image of 4-8 heads over up to 32 tokens, plus
    20-30 ms to PNG-encode it in ``add_image``; a 2+2-layer encoder-decoder (6 images) costs 1-2 s per logging
    step, so pick ``every_n_steps`` in the hundreds.
    """

    def __init__(self, every_n_steps: int = 500, num_examples: int = 1, log_masks: bool = True,
                 log_at_end: bool = True, vmax: float | None = None) -> None:
        super().__init__(every_n_steps=every_n_steps, probe_size=num_examples, log_at_end=log_at_end)
        self.num_examples = num_examples
        self.log_masks = log_masks
        self.vmax = vmax

    def _tag(self, prefix: str, example: int) -> str:
        return prefix if self.num_examples == 1 else f"{prefix}/example_{example + 1}"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.log_masks and _can_log(trainer):
            self._log_masks(trainer, pl_module, trainer.global_step)

    def _log(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        writer = tensorboard_logger(trainer).experiment
        batch, attentions = self._attention_weights(trainer, pl_module)
        for site, layers in attentions.items():
            query_key, key_key = SITE_INPUTS[site]
            for example in range(min(self.num_examples, batch[query_key].shape[0])):
                query_ids, key_ids = batch[query_key][example], batch[key_key][example]
                num_queries, num_keys = _real_length(query_ids), _real_length(key_ids)  # crop the padding
                query_tokens = _token_strings(trainer.datamodule, query_key, query_ids)[:num_queries]
                key_tokens = _token_strings(trainer.datamodule, key_key, key_ids)[:num_keys]
                for layer_index, weights in enumerate(layers):  # weights (B, H, Tq, Tk)
                    image = render_attention_heads(weights[example, :, :num_queries, :num_keys], query_tokens,
                                                   key_tokens, title=layer_title(site, layer_index), vmax=self.vmax)
                    tag = self._tag(f"attention/{site}/layer_{layer_index + 1}", example)
                    writer.add_image(tag, image, step, dataformats="HWC")

    def _log_masks(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        writer = tensorboard_logger(trainer).experiment
        batch = self.probe_batch(trainer)
        on_device = _to_device(batch, pl_module.device)
        with torch.no_grad():
            masks = pl_module.model.attention_masks(src=on_device.get("src"), tgt=on_device.get("tgt_in"))
        for site, mask in masks.items():
            if mask is None or site not in SITE_INPUTS:
                continue
            query_key, key_key = SITE_INPUTS[site]
            query_ids, key_ids = batch[query_key][0], batch[key_key][0]
            # Masks may come broadcastable, e.g. (1, 1, T, T) for causal or (B, 1, 1, S) for padding only.
            mask = torch.broadcast_to(mask.detach().cpu()[0, 0], (query_ids.shape[0], key_ids.shape[0]))
            num_queries, num_keys = _real_length(query_ids), _real_length(key_ids)
            image = render_attention_mask(
                mask[:num_queries, :num_keys],
                _token_strings(trainer.datamodule, query_key, query_ids)[:num_queries],
                _token_strings(trainer.datamodule, key_key, key_ids)[:num_keys],
                title=mask_title(site))
            writer.add_image(f"mask/{site}", image, step, dataformats="HWC")


# ----------------------------------------------------------------------------------------------------------------
# Attention statistics


class AttentionStatsLogger(_ProbeCallback):
    """Scalars per head: ``attention_stats/<site>/layer_<l>/head_<h>/<statistic>`` (see ``stats.py``).

    Averaged over the non-pad query positions of a fixed probe batch of ``probe_size`` examples. It runs its own
    forward pass on the probe batch: a few milliseconds, next to the ~100 ms per image the map logger spends.
    """

    def __init__(self, every_n_steps: int = 500, probe_size: int = 8,
                 statistics: Sequence[str] = ("entropy", "distance"), log_at_end: bool = True) -> None:
        super().__init__(every_n_steps=every_n_steps, probe_size=probe_size, log_at_end=log_at_end)
        unknown = sorted(set(statistics) - set(STATISTICS))
        if unknown:
            raise ValueError(f"unknown attention statistics {unknown}: choose from {list(STATISTICS)}")
        self.statistics = tuple(statistics)

    def _log(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        writer = tensorboard_logger(trainer).experiment
        batch, attentions = self._attention_weights(trainer, pl_module)
        for site, layers in attentions.items():
            query_key, _ = SITE_INPUTS[site]
            query_mask = batch[query_key] != PAD_ID  # (B, Tq) True for real tokens
            for layer_index, weights in enumerate(layers):
                stats = head_statistics(weights, query_mask)  # {name: (H,)}
                for name in self.statistics:
                    for head, value in enumerate(stats[name].tolist()):
                        if math.isfinite(value):  # NaN = no valid query row; leave a gap, not a fake point
                            tag = f"attention_stats/{site}/layer_{layer_index + 1}/head_{head + 1}/{name}"
                            writer.add_scalar(tag, value, step)


# ----------------------------------------------------------------------------------------------------------------
# Text samples


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

    seq2seq: source | target | greedy output | exact match, for ``num_examples`` probe examples;
    lm: a generated sample (``pl_module.sample_text()``) as a code block;
    classification: sentence | label | predicted | correct.
    Logged under ``samples/validation`` at the current global step (skipped in the sanity check).
    """

    def __init__(self, num_examples: int = 4, every_n_validations: int = 1, tag: str = TEXT_SAMPLES_TAG) -> None:
        if num_examples < 1 or every_n_validations < 1:
            raise ValueError(f"TextSampleLogger needs num_examples >= 1 and every_n_validations >= 1, "
                             f"got {num_examples} and {every_n_validations}")
        self.num_examples = num_examples
        self.every_n_validations = every_n_validations
        self.tag = tag
        self._validations_seen = 0
        self._probe: dict[str, Any] | None = None
        self.logged_steps: list[int] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._probe = None  # a new fit may come with another datamodule

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not _can_log(trainer):
            return
        self._validations_seen += 1
        if self._validations_seen % self.every_n_validations != 0:
            return
        if self._probe is None:
            self._probe = dict(trainer.datamodule.probe_batch(self.num_examples))
        kind = trainer.datamodule.kind
        with torch.no_grad():
            if kind == "seq2seq":
                text = self._seq2seq_table(trainer.datamodule, pl_module)
            elif kind == "lm":
                text = self._lm_sample(pl_module)
            elif kind == "classification":
                text = self._classification_table(trainer.datamodule, pl_module)
            else:
                raise ValueError(f"unknown datamodule.kind={kind!r}: expected seq2seq, lm or classification")
        tensorboard_logger(trainer).experiment.add_text(self.tag, text, trainer.global_step)
        self.logged_steps.append(trainer.global_step)

    def _seq2seq_table(self, datamodule, pl_module: LightningModule) -> str:
        predictions = pl_module.greedy_decode(_to_device(self._probe, pl_module.device)).cpu()  # (B, L)
        targets = self._probe.get("tgt_out", self._probe["tgt_in"])
        rows = []
        for index, (source, target, prediction) in enumerate(zip(self._probe["src"], targets, predictions)):
            target_text, predicted_text = datamodule.decode_tgt(target), datamodule.decode_tgt(prediction)
            rows.append([str(index + 1), datamodule.decode_src(source), target_text, predicted_text,
                         "✓" if predicted_text == target_text else "✗"])
        return markdown_table(["#", "source", "target", "greedy output", "exact"], rows)

    def _lm_sample(self, pl_module: LightningModule) -> str:
        sample = pl_module.sample_text().replace("```", "'''")  # a fence inside would end the code block
        return f"**generated sample**\n\n```\n{sample}\n```"

    def _classification_table(self, datamodule, pl_module: LightningModule) -> str:
        predicted = pl_module.predict_labels(_to_device(self._probe, pl_module.device)).cpu()  # (B,)
        names = list(getattr(datamodule, "label_names", []) or [])

        def name(label: int) -> str:
            return names[label] if 0 <= label < len(names) else str(label)

        rows = []
        for index, (source, label, guess) in enumerate(zip(self._probe["src"], self._probe["label"], predicted)):
            label, guess = int(label), int(guess)
            rows.append([str(index + 1), datamodule.decode_src(source), name(label), name(guess),
                         "✓" if label == guess else "✗"])
        return markdown_table(["#", "sentence", "label", "predicted", "correct"], rows)


# ----------------------------------------------------------------------------------------------------------------
# Hyperparameters


def flatten_config(config: Any, prefix: str = "", separator: str = ".") -> dict[str, str | int | float | bool]:
    """Nested mappings (dict, DictConfig, dataclass, Namespace) -> flat {"model.heads": 8, ...}.

    Values TensorBoard cannot show as hparams become strings: None -> "None", lists -> "[2, 4]".
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    elif isinstance(config, Namespace):
        config = vars(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"flatten_config needs a mapping (dict, DictConfig, dataclass), got {type(config).__name__}")
    flat: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{separator}{key}" if prefix else str(key)
        if isinstance(value, Mapping | Namespace) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
            flat.update(flatten_config(value, name, separator))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        elif isinstance(value, Sequence):
            flat[name] = str(list(value))
        else:
            flat[name] = str(value)
    return flat


def write_hparams(logger: TensorBoardLogger, flat_params: Mapping[str, Any], metric_tags: Sequence[str]) -> None:
    """Write the three hparams summaries that make the run appear in TensorBoard's HPARAMS tab.

    This is what ``TensorBoardLogger.log_hyperparams(params, metrics)`` does, minus its
    ``log_metrics(metrics)``: the NaN placeholders would otherwise become NaN points at step 0 in the
    ``val/loss`` etc. charts. The HPARAMS tab needs only the metric *names* here; the values it shows are the
    last values of those scalar tags, which the run logs later under exactly these names.
    """
    from torch.utils.tensorboard.summary import hparams

    placeholders = {tag: float("nan") for tag in metric_tags}
    experiment, session_start, session_end = hparams(dict(flat_params), placeholders)
    file_writer = logger.experiment._get_file_writer()  # the same call Lightning's log_hyperparams makes
    for summary in (experiment, session_start, session_end):
        file_writer.add_summary(summary)
    logger.experiment.flush()


class HParamsLogger(Callback):
    """Once, on rank 0, at train start: this run's hyperparameters and the metric columns of the HPARAMS tab.

    Args:
        metric_tags: scalar tags the run logs and the HPARAMS tab should show, e.g.
            ["val/loss", "val/exact_match", "val/bleu"]. They must be the exact tags ``self.log`` writes.
        params: nested or flat config; None = ``pl_module.hparams_flat`` if the module has it, else
            ``pl_module.hparams``.

    Create the logger with ``TensorBoardLogger(..., default_hp_metric=False)``: with the default (True) Lightning
    also writes an hparams session of its own (metric ``hp_metric`` = -1) into the same run, which the
    HPARAMS tab may show instead of ours (see shared/PITFALLS.md).
    """

    def __init__(self, metric_tags: Sequence[str], params: Mapping[str, Any] | None = None) -> None:
        if isinstance(metric_tags, str):
            raise TypeError(f"metric_tags must be a list of tags, got the string {metric_tags!r}: "
                            f"write [{metric_tags!r}]")
        self.metric_tags = list(metric_tags)
        self.params = params
        self.logged = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = tensorboard_logger(trainer)
        if logger is None or not trainer.is_global_zero or self.logged:
            return
        params = self.params
        if params is None:
            params = getattr(pl_module, "hparams_flat", None) or dict(pl_module.hparams)
        write_hparams(logger, flatten_config(params), self.metric_tags)
        self.logged = True
