"""TransformerLitModule: the training logic around a src.model network, and nothing else.

Model math lives in src/model, data in src/data, read-only views of the network (attention maps, greedy
decoding, samples) in inference.py, TensorBoard pictures in src/dashboard; this module computes the loss, updates
metrics and builds the optimizer.

Batches (from src.data):
    seq2seq         {"src": (B, S), "tgt_in": (B, T), "tgt_out": (B, T)}   tgt_in = BOS + y, tgt_out = y + EOS
    lm              {"tgt_in": (B, T), "tgt_out": (B, T)}
    classification  {"src": (B, S), "label": (B,)}
"""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import torch.nn.functional as F
from torch import Tensor, nn

from src.data import task_spec
from src.data.registry import resolve_task_config, task_kind
from src.model import ModelOutput, TransformerConfig, build_model
from src.model.ablation import apply_ablation, parse_ablation
from src.model.masks import has_padding

from .inference import IGNORE_INDEX, forward_batch, greedy_decode, scored_target
from .metrics import SplitMetrics, metric_tags
from .optim import build_optimizer, schedule_length, time_budget_fraction


class TransformerLitModule(L.LightningModule):
    """Args:
    config: the run's composed config as a plain dict (saved in the checkpoint, so eval/predict can rebuild
        the data and decoding settings from the checkpoint alone).
    model_config: the model's TransformerConfig as a dict (vocabulary sizes included).
    kind: the datamodule's kind, a name of src/data/registry.py KINDS (seq2seq, lm, classification).
    run_dir: the run directory (learned vocabularies live there); recorded for eval/predict.
    numerics: what else changes the numbers (thread count, precision, ...): recorded, checked on resume.
    """

    def __init__(
        self, config: dict, model_config: dict, kind: str, run_dir: str | None = None, numerics: dict | None = None
    ):
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        self.kind = kind
        # What the task declares (not kept: the module is pickled to DDP ranks, and specs hold functions).
        task = task_spec(config["task"]["name"])
        self.task_name = task.name
        # The task's own metrics (TaskSpec.metrics, e.g. induction's repeated_loss) read its settings: resolved
        # once, its schema's dataclass (the function itself is looked up by the task's name when a batch is scored).
        self.task_metric_names = task.metric_names
        self.task_settings = resolve_task_config(SimpleNamespace(**config["task"])) if task.metrics else None
        self.model_cfg = TransformerConfig(**model_config)
        self.model = build_model(self.model_cfg)
        # Heads and sublayers this run trains without (`ablate.*`, zero ablation): off from the first step, and
        # off again whenever the checkpoint is loaded (the config travels with it).
        apply_ablation(self.model, parse_ablation(config.get("ablate"), self.model_cfg))
        if config.get("compile", False):
            self.model.compile()  # in place: the module keeps its class, methods and state_dict keys
        self.label_smoothing = config.get("label_smoothing", 0.0)

        # Greedy decoding may run this many tokens past the reference: a translation may rightly be longer than
        # its reference, while a longer output on a synthetic task is wrong anyway.
        self.extra_decode_tokens = task.generation_slack

        num_outputs = self.model_cfg.tgt_vocab_size if task_kind(kind).predicts_tokens else self.model_cfg.num_classes
        # The quick BLEU (val/bleu) during validation only: a test split's BLEU is sacreBLEU on its raw references
        # (bleu.py, test/sacrebleu), and a second, differently computed BLEU of the same split would be one metric
        # under two names (metrics.py).
        self.split_metrics = nn.ModuleDict(
            {
                split: SplitMetrics(
                    kind,
                    num_outputs,
                    task.bleu and split not in ("test", "test_long"),
                    self.model_cfg.eos_id,
                    self.model_cfg.pad_id,
                    IGNORE_INDEX,
                    task.metric_names,
                )
                for split in ("val", "test", "test_long")
            }
        )
        self.test_split_names = ["test", "test_long"]  # test_dataloader() order (synthetic tasks have both)
        self.monitor, self.monitor_mode = task.main_metric
        self.metric_tags = metric_tags(kind, task.bleu, task.metric_names)  # the columns of TensorBoard's HPARAMS tab

    # --- the forward pass, per kind ---------------------------------------------------------------------------

    def on_before_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict:
        """Whether the batch holds padding, asked on the host before it moves to the device (where asking would
        make the host wait for the device): without padding, the attention calls the fused kernel with no mask
        tensor, which a CUDA GPU runs as flash attention (src/model/masks.py, docs/model.md)."""
        pad, eos = self.model_cfg.pad_id, self.model_cfg.eos_id
        padded = ("src" in batch and has_padding(batch["src"], pad, eos)) or (
            "tgt_in" in batch and has_padding(batch["tgt_in"], pad, eos, decoder_side=True)
        )
        return {**batch, "padded": padded}

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        return forward_batch(self.model, self.kind, batch)  # logits (B, T, V), or (B, C) for classification

    def _target(self, batch: dict[str, Tensor]) -> Tensor:
        """What the logits are scored against; IGNORE_INDEX positions are not scored (inference.scored_target)."""
        return scored_target(self.model, self.kind, batch)

    def loss(self, logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy over the non-pad target tokens (teacher forcing: logits at position t predict
        tgt_out[t]) and the number of tokens it averages over (a tensor: no device sync per step).
        Classification: mean over the batch."""
        if not task_kind(self.kind).predicts_tokens:  # one label per example
            return F.cross_entropy(logits, target, label_smoothing=label_smoothing), self._count(target)
        loss = F.cross_entropy(
            logits.flatten(0, 1),  # (B*T, V)
            target.flatten(),  # (B*T,)
            ignore_index=IGNORE_INDEX,  # padding (and a prefix-LM's prefix)
            label_smoothing=label_smoothing,
        )
        return loss, self._count(target)

    def _count(self, target: Tensor) -> Tensor:
        if not task_kind(self.kind).predicts_tokens:
            return target.new_full((), target.numel())  # one label per example (a copy from the host would wait)
        return (target != IGNORE_INDEX).sum()

    # --- training -----------------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        logits = self(batch).logits
        target = self._target(batch)
        loss, targets = self.loss(logits, target, self.label_smoothing)
        # Only on the steps whose values reach the logger (every trainer.log_every_n_steps, and the last one, as
        # Lightning decides): a self.log call costs about 0.8 ms, 2-3% of a default step, and the others would be
        # thrown away. Not for the progress bar: Lightning turns a progress-bar value into a number at every batch
        # end until the epoch ends, the last one logged included, and on a GPU each such read waits for the device
        # (StepProgressBar shows the loss of the logging steps itself).
        trainer = self._trainer  # None when a test calls the step without a Trainer
        step = self.global_step + 1
        if trainer is None or step % trainer.log_every_n_steps == 0 or step == trainer.max_steps:
            self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=target.size(0))
        # Lightning optimizes "loss"; callbacks get both as on_train_batch_end's outputs (TrainingSpeed sums the
        # scored targets: a tensor, so counting them costs no device sync).
        return {"loss": loss, "targets": targets}

    def configure_optimizers(self):
        total_steps = schedule_length(self.trainer)  # max_steps, max_epochs or (alone) max_time bounds the run
        budget = time_budget_fraction(self.trainer)  # trainer.max_time: the cosine decay ends with the budget
        mixed = str(self.trainer.precision).endswith("-mixed")
        return build_optimizer(
            self.model, self.config["optimizer"], self.model_cfg.d_model, total_steps, budget, mixed_precision=mixed
        )

    # --- evaluation ---------------------------------------------------------------------------------------------

    def _evaluate(self, batch: dict[str, Tensor], split: str) -> None:
        metrics: SplitMetrics = self.split_metrics[split]
        target = self._target(batch)
        logits = self(batch).logits
        loss, count = self.loss(logits, target)  # no smoothing: val loss and perplexity stay comparable
        metrics.update_loss(loss, count)
        metrics.update_predictions(logits, target)
        if self.task_metric_names:  # summed on the device: no wait for it (tests/training/test_host_sync.py)
            metrics.update_task(task_spec(self.task_name).metrics(self.task_settings, batch, logits))
        if task_kind(self.kind).decodes:
            generated = greedy_decode(self.model, self.kind, batch, self.extra_decode_tokens)  # (B, L)
            metrics.update_generation(generated, target)
            if metrics.bleu is not None:
                decode = self.trainer.datamodule.decode_tgt
                metrics.update_bleu([decode(g) for g in generated], [decode(t) for t in target])

    def _log_split(self, split: str) -> dict[str, float]:
        metrics: SplitMetrics = self.split_metrics[split]
        if metrics.loss.update_count == 0:  # e.g. an empty optional split
            return {}
        values = {f"{split}/{name}": value for name, value in metrics.compute().items()}
        metrics.reset()
        # Values are already reduced across devices by torchmetrics: no sync_dist needed.
        self.log_dict(values, prog_bar=split == "val", add_dataloader_idx=False)
        return values

    def drop_quick_bleu(self) -> None:
        """No quick val/bleu: src.eval scores the validation split with sacreBLEU on its raw references
        (val/sacrebleu), the one BLEU it prints."""
        self.split_metrics["val"].bleu = None

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.test_split_names[dataloader_idx])

    def on_test_epoch_end(self) -> None:
        for split in self.test_split_names:
            self._log_split(split)
