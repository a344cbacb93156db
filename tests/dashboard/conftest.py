"""A tiny fake network, LightningModule and datamodule, and a `fit` fixture that trains them for a few steps
inside a real Lightning Trainer with the dashboard callbacks under test.

The event files are read back with src.dashboard.tensorboard_reader, the same way the end-to-end tests do.
"""

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from src.model import ModelOutput, TransformerConfig

PAD, BOS, EOS = 0, 1, 2
HEADS, LAYERS = 2, 2
SITES_BY_KIND = {
    "seq2seq": ["encoder_self", "decoder_self", "cross"],
    "lm": ["decoder_self"],
    "classification": ["encoder_self"],
}
ARCH_BY_KIND = {"seq2seq": "encoder_decoder", "lm": "decoder_only", "classification": "encoder_only"}
VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>"] + list("abcdefghij")


class FakeDataModule(L.LightningDataModule):
    """Right-padded batches of the task kind's dict format; 2 training batches per epoch."""

    label_names = ["negative", "positive"]

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        generator = torch.Generator().manual_seed(0)
        self.src = torch.randint(4, len(VOCAB), (8, 7), generator=generator)
        self.src[1, 4:] = PAD  # a padded example
        body = torch.randint(4, len(VOCAB), (8, 5), generator=generator)
        self.tgt_in = torch.cat([torch.full((8, 1), BOS), body], dim=1)
        self.tgt_out = torch.cat([body, torch.full((8, 1), EOS)], dim=1)
        self.label = torch.randint(0, 2, (8,), generator=generator)

    def _batch(self, rows) -> dict:
        if self.kind == "seq2seq":
            return {"src": self.src[rows], "tgt_in": self.tgt_in[rows], "tgt_out": self.tgt_out[rows]}
        if self.kind == "lm":
            return {"tgt_in": self.tgt_in[rows], "tgt_out": self.tgt_out[rows]}
        return {"src": self.src[rows], "label": self.label[rows]}

    def train_dataloader(self):
        return DataLoader([self._batch(slice(0, 4)), self._batch(slice(4, 8))], batch_size=None)

    def val_dataloader(self):
        return DataLoader([self._batch(slice(0, 4))], batch_size=None)

    def probe_batch(self, n: int = 4) -> dict:
        return self._batch(slice(0, n))

    @staticmethod
    def _strings(ids):
        return [VOCAB[int(i)] for i in ids]

    src_token_strings = tgt_token_strings = _strings

    @staticmethod
    def _decode(ids):
        words = []
        for i in ids:
            if int(i) == EOS:
                break
            if int(i) not in (PAD, BOS):
                words.append(VOCAB[int(i)])
        return " ".join(words)

    decode_src = decode_tgt = _decode


class FakeModel(torch.nn.Module):
    """Called like a src.model network of the kind: random attention weights of the right shapes when asked
    for them, and a classifier that always predicts label 0."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.weight = torch.nn.Parameter(torch.ones(1))  # what the fake training step trains
        self.attention_map_calls = 0  # forward passes that returned attention weights
        self.cfg = TransformerConfig()  # the special ids the dashboards read (our vocabularies')

    def forward(self, *inputs, need_weights: bool = False) -> ModelOutput:
        if self.kind == "seq2seq":
            src, tgt = inputs
        elif self.kind == "lm":
            src, tgt = None, inputs[0]
        else:
            src, tgt = inputs[0], None
        logits = torch.tensor([[1.0, 0.0]]).expand((src if src is not None else tgt).shape[0], -1)  # (B, 2)
        if not need_weights:
            return ModelOutput(logits)
        self.attention_map_calls += 1
        shapes = {"encoder_self": (src, src), "decoder_self": (tgt, tgt), "cross": (tgt, src)}
        attentions = {}
        for site in SITES_BY_KIND[self.kind]:
            queries, keys = shapes[site]
            scores = torch.randn(queries.shape[0], HEADS, queries.shape[1], keys.shape[1])
            attentions[site] = [torch.softmax(scores, dim=-1) for _ in range(LAYERS)]
        return ModelOutput(logits, attentions)

    def attention_masks(self, src=None, tgt=None) -> dict:
        masks = {}
        if src is not None:
            masks["encoder_self"] = (src != PAD)[:, None, None, :]  # (B, 1, 1, S): broadcastable, padding only
        if tgt is not None:
            steps = tgt.shape[1]
            masks["decoder_self"] = torch.tril(torch.ones(steps, steps, dtype=torch.bool))[None, None]
        if src is not None and tgt is not None:
            masks["cross"] = (src != PAD)[:, None, None, :].expand(-1, 1, tgt.shape[1], -1)
        return {site: mask for site, mask in masks.items() if site in SITES_BY_KIND[self.kind]}


class FakeModule(L.LightningModule):
    """What the dashboard reads of a TransformerLitModule: the network, the run's config, the resolved
    architecture and how far past the reference greedy decoding may run. The network is a FakeModel, or a real
    src.model network (``network``) whose maps a test compares with what the dashboard drew."""

    def __init__(self, kind: str, network: torch.nn.Module | None = None):
        super().__init__()
        self.model = network if network is not None else FakeModel(kind)
        self.config = {
            "model": {"heads": HEADS, "layers": LAYERS, "pos_encoding": "rope", "arch": "auto"},
            "train": {"lr": 1e-3},
        }
        self.model_cfg = SimpleNamespace(arch=ARCH_BY_KIND[kind])
        self.extra_decode_tokens = 3  # not the default 0, so the tests see that it is passed on

    def _loss(self) -> torch.Tensor:
        """A loss that moves the network's first parameter (the fake's one weight) a little at each step."""
        return (next(self.model.parameters()).mean() - 2.0).pow(2)

    def training_step(self, batch, batch_idx):
        loss = self._loss()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss())
        self.log("val/exact_match", torch.tensor(0.5))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.fixture
def fit(tmp_path):
    """fit(kind, callbacks, logger="tensorboard", max_steps=4, network=None) -> the trained FakeModule; events in
    tmp_path."""

    def train(kind: str, callbacks, logger="tensorboard", max_steps: int = 4, network=None) -> FakeModule:
        if logger == "tensorboard":
            logger = TensorBoardLogger(tmp_path, name="run", default_hp_metric=False)
        module = FakeModule(kind, network)
        trainer = L.Trainer(
            max_steps=max_steps,
            logger=logger,
            callbacks=callbacks,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            num_sanity_val_steps=1,
            log_every_n_steps=1,
        )
        trainer.fit(module, datamodule=FakeDataModule(kind))
        return module

    return train
