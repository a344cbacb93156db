"""The dashboard callbacks inside a real Lightning Trainer, with a tiny fake module and datamodule.

The event files are read back with src.dashboard.tensorboard_reader, the same way the end-to-end tests do.
"""

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader

from src.dashboard import (
    AttentionMapLogger,
    AttentionStatsLogger,
    HParamsLogger,
    TextSampleLogger,
    flatten_config,
    read_events,
)
from src.dashboard.callbacks import markdown_table

PAD, BOS, EOS = 0, 1, 2
HEADS, LAYERS = 2, 2
SITES_BY_KIND = {"seq2seq": ["encoder_self", "decoder_self", "cross"], "lm": ["decoder_self"],
                 "classification": ["encoder_self"]}
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
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

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
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.model = FakeModel(kind)
        self.attention_map_calls = 0
        self.hparams_flat = {"model.heads": HEADS, "model.layers": LAYERS, "model.pos_encoding": "rope",
                             "train.lr": 1e-3}

    def training_step(self, batch, batch_idx):
        loss = (self.weight - 2.0).pow(2).sum()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", (self.weight - 2.0).pow(2).sum())
        self.log("val/exact_match", torch.tensor(0.5))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def attention_maps(self, batch):
        self.attention_map_calls += 1
        src, tgt = batch.get("src"), batch.get("tgt_in")
        shapes = {"encoder_self": (src, src), "decoder_self": (tgt, tgt), "cross": (tgt, src)}
        attentions = {}
        for site in SITES_BY_KIND[self.kind]:
            queries, keys = shapes[site]
            scores = torch.randn(queries.shape[0], HEADS, queries.shape[1], keys.shape[1])
            attentions[site] = [torch.softmax(scores, dim=-1) for _ in range(LAYERS)]
        return SimpleNamespace(logits=None, attentions=attentions)

    def greedy_decode(self, batch):
        return batch["tgt_out"]  # a perfect model

    def sample_text(self) -> str:
        return "a | b <unk> *c*\nnext line"

    def predict_labels(self, batch):
        return torch.zeros_like(batch["label"])


def fit(tmp_path, kind: str, callbacks, logger="tensorboard", max_steps: int = 4) -> FakeModule:
    if logger == "tensorboard":
        logger = TensorBoardLogger(tmp_path, name="run", default_hp_metric=False)
    module = FakeModule(kind)
    trainer = L.Trainer(max_steps=max_steps, logger=logger, callbacks=callbacks, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        num_sanity_val_steps=1, log_every_n_steps=1)
    trainer.fit(module, datamodule=FakeDataModule(kind))
    return module


@pytest.mark.parametrize("kind", ["seq2seq", "lm", "classification"])
def test_all_dashboards_appear_in_the_event_files(tmp_path, kind):
    map_logger = AttentionMapLogger(every_n_steps=2)
    callbacks = [map_logger, AttentionStatsLogger(every_n_steps=2, probe_size=4),
                 TextSampleLogger(num_examples=3),
                 HParamsLogger(metric_tags=["val/loss", "val/exact_match"])]
    module = fit(tmp_path, kind, callbacks)
    events = read_events(tmp_path)
    sites = SITES_BY_KIND[kind]

    # Attention maps: one image per (site, layer) at steps 2 and 4; the end-of-training log at step 4 is not
    # repeated. Masks once, at step 0.
    expected_maps = {f"attention/{site}/layer_{layer}" for site in sites for layer in range(1, LAYERS + 1)}
    expected_masks = {f"mask/{site}" for site in sites}
    assert events.image_tags == expected_maps | expected_masks
    for tag in expected_maps:
        assert events.image_steps(tag) == [2, 4], tag
    for tag in expected_masks:
        assert events.image_steps(tag) == [0], tag
    assert map_logger.logged_steps == [2, 4]
    assert module.attention_map_calls == 2 * 2  # map logger + stats logger, only on the two logging steps

    # Statistics: every head of every layer, entropy and distance, at the same steps.
    stats_tags = events.tags_with_prefix("attention_stats/")
    assert len(stats_tags) == len(sites) * LAYERS * HEADS * 2
    assert f"attention_stats/{sites[0]}/layer_2/head_2/entropy" in stats_tags
    assert [step for step, _ in events.scalars[f"attention_stats/{sites[0]}/layer_1/head_1/distance"]] == [2, 4]

    # Text: after each of the two validation runs (the sanity check is skipped).
    assert events.text_tags == {"samples/validation"}
    texts = events.texts["samples/validation"]
    assert len(texts) == 2
    if kind == "seq2seq":
        assert "| source | target | greedy output |" in texts[0][1] and "✓" in texts[0][1]
    elif kind == "lm":
        assert "```" in texts[0][1] and "<unk>" in texts[0][1]  # inside a code block, kept verbatim
    else:
        assert "negative" in texts[0][1] or "positive" in texts[0][1]

    # HParams: the session is there, with our flat params and the metric columns, and those metrics were
    # logged as scalars under exactly those tags (that is what the HPARAMS tab reads).
    assert events.has_hparams
    assert events.hparams["model.heads"] == HEADS and events.hparams["model.pos_encoding"] == "rope"
    assert events.hparam_metrics == ["val/loss", "val/exact_match"]
    assert {"val/loss", "val/exact_match"} <= events.scalar_tags
    assert all(value == value for _, value in events.scalars["val/loss"])  # no NaN placeholder points


def test_end_of_training_log_when_the_last_step_is_off_cadence(tmp_path):
    map_logger = AttentionMapLogger(every_n_steps=3, log_masks=False)
    fit(tmp_path, "lm", [map_logger])
    events = read_events(tmp_path)
    assert events.image_steps("attention/decoder_self/layer_1") == [3, 4]
    assert not events.tags_with_prefix("mask/")


@pytest.mark.parametrize("logger", [False, "csv"])
def test_without_a_tensorboard_logger_nothing_runs(tmp_path, logger):
    if logger == "csv":
        logger = CSVLogger(tmp_path)
    callbacks = [AttentionMapLogger(every_n_steps=1), AttentionStatsLogger(every_n_steps=1),
                 TextSampleLogger(), HParamsLogger(["val/loss"])]
    module = fit(tmp_path, "seq2seq", callbacks, logger=logger, max_steps=2)
    assert module.attention_map_calls == 0
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_several_examples_get_their_own_tags(tmp_path):
    fit(tmp_path, "classification", [AttentionMapLogger(every_n_steps=4, num_examples=2, log_masks=False)])
    events = read_events(tmp_path)
    assert events.image_tags == {"attention/encoder_self/layer_1/example_1", "attention/encoder_self/layer_1/example_2",
                                 "attention/encoder_self/layer_2/example_1", "attention/encoder_self/layer_2/example_2"}


def test_flatten_config_makes_tensorboard_friendly_scalars():
    nested = {"model": {"heads": 8, "dropout": 0.1, "rope": True, "window": None, "sizes": [2, 4]},
              "task": {"name": "copy"}}
    assert flatten_config(nested) == {"model.heads": 8, "model.dropout": 0.1, "model.rope": True,
                                      "model.window": "None", "model.sizes": "[2, 4]", "task.name": "copy"}


def test_reader_explains_a_directory_without_event_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="TensorBoardLogger"):
        read_events(tmp_path)


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="every_n_steps"):
        AttentionMapLogger(every_n_steps=-1)
    with pytest.raises(ValueError, match="unknown attention statistics"):
        AttentionStatsLogger(statistics=["entropy", "sharpness"])
    with pytest.raises(TypeError, match="list of tags"):
        HParamsLogger("val/loss")


def test_markdown_cells_survive_tensorboard_rendering():
    from tensorboard import plugin_util

    table = markdown_table(["source", "output"], [["x <unk> y | z *w*", ""]])
    html = plugin_util.markdown_to_safe_html(table)  # what the TEXT tab shows
    assert "&lt;unk&gt;" in html and "| z *w*" in html and html.count("<td>") == 2
