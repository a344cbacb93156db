"""TransformerLitModule: the training logic around a src.model network, and nothing else.

Model math lives in src/model, data in src/data, TensorBoard pictures in src/dashboard; this module computes the
loss, updates metrics, builds the optimizer, and offers the dashboard a few read-only views of the model
(`attention_maps`, `greedy_decode`, `sample_text`, `predict_labels`).

Batches (from src.data):
    seq2seq         {"src": (B, S), "tgt_in": (B, T), "tgt_out": (B, T)}   tgt_in = BOS + y, tgt_out = y + EOS
    lm              {"tgt_in": (B, T), "tgt_out": (B, T)}
    classification  {"src": (B, S), "label": (B,)}
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.dashboard import flatten_config
from src.model import BOS_ID, PAD_ID, ModelOutput, TransformerConfig, build_model, generate

from .metrics import SplitMetrics, main_metric, metric_tags
from .optim import build_optimizer

TRANSLATION_TASKS = ("translation", "multi30k")


class TransformerLitModule(L.LightningModule):
    """Args:
        config: the run's composed config as a plain dict (saved in the checkpoint, so eval/predict can rebuild
            the data and decoding settings from the checkpoint alone).
        model_config: the model's TransformerConfig as a dict (vocabulary sizes included).
        kind: "seq2seq" | "lm" | "classification" (the datamodule's kind).
        run_dir: the run directory (learned vocabularies live there); recorded for eval/predict.
    """

    def __init__(self, config: dict, model_config: dict, kind: str, run_dir: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        self.kind = kind
        self.task_name = config["task"]["name"]
        self.model_cfg = TransformerConfig(**model_config)
        self.model = build_model(self.model_cfg)
        if config.get("compile", False):
            self.model.compile()  # in place: the module keeps its class, methods and state_dict keys
        self.label_smoothing = config.get("label_smoothing", 0.0)

        num_outputs = self.model_cfg.num_classes if kind == "classification" else self.model_cfg.tgt_vocab_size
        with_bleu = self.task_name in TRANSLATION_TASKS
        self.split_metrics = nn.ModuleDict(
            {split: SplitMetrics(kind, num_outputs, with_bleu) for split in ("val", "test", "test_long")}
        )
        self.test_split_names = ["test", "test_long"]  # test_dataloader() order (synthetic tasks have both)
        self.monitor, self.monitor_mode = main_metric(self.task_name, kind)
        # The hyperparameters TensorBoard's HPARAMS tab shows: every config field, flat ("model.heads").
        self.hparams_flat = flatten_config(config)
        self.hparams_flat["model.arch"] = self.model_cfg.arch  # "auto" resolved
        self.metric_tags = metric_tags(self.task_name, kind)  # the columns of TensorBoard's HPARAMS tab

    # --- the forward pass, per kind ---------------------------------------------------------------------------

    def forward(self, batch: dict[str, Tensor], need_weights: bool = False) -> ModelOutput:
        if self.kind == "seq2seq":
            return self.model(batch["src"], batch["tgt_in"], need_weights=need_weights)  # logits (B, T, V)
        if self.kind == "lm":
            return self.model(batch["tgt_in"], need_weights=need_weights)  # logits (B, T, V)
        return self.model(batch["src"], need_weights=need_weights)  # logits (B, C)

    def _target(self, batch: dict[str, Tensor]) -> Tensor:
        """What the logits are scored against; positions set to PAD are not scored."""
        if self.kind == "classification":
            return batch["label"]
        if self.kind == "lm":  # a prefix-LM must not be scored where it can see its own target
            trainable = self.model.trainable_positions(batch["tgt_in"])
            if trainable is not None:
                return batch["tgt_out"].masked_fill(~trainable, PAD_ID)
        return batch["tgt_out"]

    def loss(self, logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy over the non-pad target tokens (teacher forcing: logits at position t predict
        tgt_out[t]) and the number of tokens it averages over (a tensor: no device sync per step).
        Classification: mean over the batch."""
        if self.kind == "classification":
            return F.cross_entropy(logits, target, label_smoothing=label_smoothing), target.new_tensor(target.numel())
        loss = F.cross_entropy(
            logits.flatten(0, 1),  # (B*T, V)
            target.flatten(),  # (B*T,)
            ignore_index=PAD_ID,
            label_smoothing=label_smoothing,
        )
        return loss, (target != PAD_ID).sum()

    # --- training -----------------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch).logits
        target = self._target(batch)
        loss, _ = self.loss(logits, target, self.label_smoothing)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=target.size(0))
        return loss

    def configure_optimizers(self):
        # the whole run's optimizer steps, whether trainer.max_steps or trainer.max_epochs bounds it
        total_steps = int(self.trainer.estimated_stepping_batches)
        return build_optimizer(self.model, self.config["optimizer"], self.model_cfg.d_model, total_steps)

    # --- evaluation ---------------------------------------------------------------------------------------------

    def _evaluate(self, batch: dict[str, Tensor], split: str) -> None:
        metrics: SplitMetrics = self.split_metrics[split]
        target = self._target(batch)
        logits = self(batch).logits
        loss, count = self.loss(logits, target)  # no smoothing: val loss and perplexity stay comparable
        metrics.update_loss(loss, count)
        metrics.update_predictions(logits, target)
        if self.kind == "seq2seq":
            generated = self.greedy_decode(batch)  # (B, L)
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

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.test_split_names[dataloader_idx])

    def on_test_epoch_end(self) -> None:
        for split in self.test_split_names:
            self._log_split(split)

    # --- read-only views for the dashboard, eval and predict ----------------------------------------------------

    @torch.no_grad()
    def attention_maps(self, batch: dict[str, Tensor]) -> ModelOutput:
        """The model's output with `.attentions` (site -> per-layer (B, H, Tq, Tk)) for this batch, in eval mode
        (no dropout). Only the dashboard's logging step calls this: training never pays for the weights."""
        was_training = self.model.training
        self.model.eval()
        try:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            return self(batch, need_weights=True)
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def greedy_decode(self, batch: dict[str, Tensor], extra_tokens: int | None = None) -> Tensor:
        """Greedy output (B, L) (no BOS; EOS then PAD). seq2seq: from batch["src"], as long as the reference
        (plus slack for translation); lm: continues the first half of batch["tgt_in"]."""
        if self.kind == "seq2seq":
            target_len = batch["tgt_out"].size(1) if "tgt_out" in batch else batch["src"].size(1)
            if extra_tokens is None:  # synthetic tasks: a longer output is wrong anyway
                extra_tokens = 16 if self.task_name in TRANSLATION_TASKS else 0
            return generate(self.model, src=batch["src"].to(self.device), max_new_tokens=target_len + extra_tokens)
        if self.kind == "lm":
            tokens = batch["tgt_in"].to(self.device)
            half = max(1, tokens.size(1) // 2, self._prefix_needed())
            return generate(self.model, prompt=tokens[:, :half], max_new_tokens=tokens.size(1) - half)
        raise ValueError("greedy_decode is for sequence tasks; use predict_labels for classification")

    def _prefix_needed(self) -> int:
        """Tokens a decoder-only prompt must have: the whole prefix under mask=prefix, else none."""
        return self.model_cfg.prefix_len if self.model_cfg.mask_type == "prefix" else 0

    @torch.no_grad()
    def predict_labels(self, batch: dict[str, Tensor]) -> Tensor:
        """Classification: predicted class ids (B,)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(batch["src"].to(self.device)).logits.argmax(dim=-1)
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def sample_text(self, max_new_tokens: int = 200, prompt: str = "", seed: int = 0) -> str:
        """lm tasks: a sampled continuation (decode.* settings), from a fixed seed so samples are comparable
        across steps and runs."""
        decode = self.config.get("decode", {})
        dm = self.trainer.datamodule
        ids = [BOS_ID] + (dm.encode_tgt(prompt) if prompt else [])
        if len(ids) < self._prefix_needed():  # a prefix-LM starts from a whole prefix: take a validation one
            ids = dm.probe_batch(1)["tgt_in"][0, : self._prefix_needed()].tolist()
            prompt = dm.decode_tgt(ids)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        out = generate(
            self.model,
            prompt=torch.tensor([ids], device=self.device),
            max_new_tokens=max_new_tokens,
            strategy="sample",
            temperature=decode.get("temperature", 1.0),
            top_k=decode.get("top_k", 0),
            top_p=decode.get("top_p", 1.0),
            generator=generator,
        )
        return prompt + dm.decode_tgt(out[0])
