"""The Lightning module on tiny batches: the loss ignores padding, a step trains, evaluation metrics add up."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from src.data.collate import collate_lm
from src.model import EOS_ID, PAD_ID, TransformerConfig
from src.model.tokens import SpecialIds
from src.training.inference import IGNORE_INDEX
from src.training.metrics import exact_match
from src.training.module import TransformerLitModule

VOCAB = 12


def make_module(kind="seq2seq", task="reverse", label_smoothing=0.0, **model):
    arch = {"seq2seq": "encoder_decoder", "lm": "decoder_only", "classification": "encoder_only"}[kind]
    model_cfg = TransformerConfig(
        arch=arch,
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        num_classes=3 if kind == "classification" else 0,
        d_model=16,
        heads=2,
        enc_layers=1,
        dec_layers=1,
        d_ff=32,
        dropout=0.0,
        max_len=32,
        **model,
    )
    config = {
        "task": {"name": task},
        "label_smoothing": label_smoothing,
        "seed": 0,
        "batch_size": 2,
        "optimizer": {
            "name": "adam_noam",
            "lr": 1.0,
            "warmup_steps": 10,
            "weight_decay": 0.0,
            "betas": [0.9, 0.98],
            "eps": 1e-9,
            "min_lr_ratio": 0.0,
        },
        "trainer": {"max_steps": 10},
    }
    return TransformerLitModule(config, asdict(model_cfg), kind)


def seq2seq_batch():
    return {
        "src": torch.tensor([[4, 5, 6], [7, 8, PAD_ID]]),
        "tgt_in": torch.tensor([[1, 6, 5, 4], [1, 8, 7, PAD_ID]]),
        "tgt_out": torch.tensor([[6, 5, 4, EOS_ID], [8, 7, EOS_ID, PAD_ID]]),
    }


def test_a_real_token_that_shares_the_pad_id_is_scored_and_the_padding_is_not():
    """GPT-2 pads with <|endoftext|>, which is also a real target between documents: the lengths decide."""
    module = make_module(kind="lm", task="char_lm")
    module.model.cfg.pad_id = 9
    gpt2_like = SpecialIds(pad=9, bos=9, eos=9)
    batch = collate_lm([{"tokens": torch.tensor([4, 9, 5, 6])}, {"tokens": torch.tensor([4, 5, 9])}], gpt2_like)
    assert batch["tgt_out"].tolist() == [[9, 5, 6], [5, 9, 9]]  # the second row's last 9 is padding
    assert module._target(batch).tolist() == [[9, 5, 6], [5, 9, IGNORE_INDEX]]


def test_loss_ignores_padding():
    module = make_module()
    torch.manual_seed(0)
    logits = torch.randn(2, 4, VOCAB)
    batch = seq2seq_batch()
    target = module._target(batch)  # the padding is not scored
    loss, count = module.loss(logits, target)
    assert int(count) == 7
    # Changing the logits at the padded position changes nothing.
    changed = logits.clone()
    changed[1, 3] = 100.0
    assert module.loss(changed, target)[0] == pytest.approx(loss.item())
    # It equals the mean over the non-pad positions.
    keep = batch["tgt_out"] != PAD_ID
    manual = torch.nn.functional.cross_entropy(logits[keep], batch["tgt_out"][keep])
    assert loss.item() == pytest.approx(manual.item())


def test_label_smoothing_is_applied_in_training_only():
    torch.manual_seed(0)
    module = make_module(label_smoothing=0.1)  # dropout 0: the training and the evaluation pass agree
    module.log = lambda *args, **kwargs: None  # no trainer attached: logging is Lightning's job
    batch = seq2seq_batch()
    with torch.no_grad():
        logits = module(batch).logits.flatten(0, 1)  # (B*T, V)
    target = batch["tgt_out"].flatten()  # (B*T,)
    smoothed = F.cross_entropy(logits, target, ignore_index=PAD_ID, label_smoothing=0.1).item()
    plain = F.cross_entropy(logits, target, ignore_index=PAD_ID).item()
    assert plain != pytest.approx(smoothed)

    assert module.training_step(batch, 0)["loss"].item() == pytest.approx(smoothed)
    module.validation_step(batch, 0)
    assert module.split_metrics["val"].compute()["loss"] == pytest.approx(plain)


def test_training_steps_reduce_the_loss_on_one_batch():
    torch.manual_seed(0)
    module = make_module()
    batch = seq2seq_batch()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.log = lambda *args, **kwargs: None  # no trainer attached: logging is Lightning's job
    first = module.training_step(batch, 0)["loss"].item()
    for _ in range(30):
        optimizer.zero_grad()
        module.training_step(batch, 0)["loss"].backward()
        optimizer.step()
    assert module.training_step(batch, 0)["loss"].item() < first / 2


def test_eval_metrics():
    module = make_module()
    module._evaluate(seq2seq_batch(), "val")
    values = module.split_metrics["val"].compute()
    assert set(values) == {"loss", "ppl", "token_acc", "exact_match"}
    assert 0.0 <= values["exact_match"] <= 1.0


def test_exact_match_compares_up_to_eos():
    target = torch.tensor([[6, 5, EOS_ID, PAD_ID], [3, EOS_ID, PAD_ID, PAD_ID]])
    predicted = torch.tensor([[6, 5, EOS_ID, 9, 9], [3, 4, EOS_ID, PAD_ID, PAD_ID]])  # junk after EOS is ignored
    assert exact_match(predicted, target).tolist() == [True, False]


def test_lm_and_classification_steps():
    lm = make_module("lm", task="char_lm")
    lm.log = lambda *args, **kwargs: None
    tokens = torch.randint(4, VOCAB, (2, 9))
    tokens[1, 6:] = PAD_ID  # a shorter second sequence: its padding is not scored
    step = lm.training_step({"tgt_in": tokens[:, :-1], "tgt_out": tokens[:, 1:]}, 0)
    assert step["loss"].item() > 0 and step["targets"].item() == 8 + 5  # what TrainingSpeed counts
    classifier = make_module("classification", task="classification")
    classifier.log = lambda *args, **kwargs: None
    batch = {"src": torch.tensor([[4, 5, PAD_ID], [6, 7, 8]]), "label": torch.tensor([0, 2])}
    step = classifier.training_step(batch, 0)
    assert step["loss"].item() > 0 and step["targets"].item() == 2  # one label per example
    classifier._evaluate(batch, "val")
    assert set(classifier.split_metrics["val"].compute()) == {"loss", "acc"}


def test_prefix_lm_is_not_scored_where_it_sees_its_own_target():
    module = make_module(kind="lm", task="char_lm", mask={"type": "prefix", "prefix_len": 3})
    batch = {"tgt_in": torch.tensor([[1, 5, 6, 7, 8]]), "tgt_out": torch.tensor([[5, 6, 7, 8, 9]])}
    # positions 0 and 1 predict tokens 1 and 2, which lie inside the bidirectional prefix: not scored
    assert module._target(batch).tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 7, 8, 9]]
    assert make_module(kind="lm", task="char_lm")._target(batch).tolist() == [[5, 6, 7, 8, 9]]


def test_translation_decodes_past_the_reference_length_and_synthetic_tasks_do_not():
    assert make_module(task="translation").extra_decode_tokens == 16
    assert make_module(task="multi30k").extra_decode_tokens == 16
    assert make_module(task="reverse").extra_decode_tokens == 0


def test_a_batch_says_on_the_host_whether_it_holds_padding_and_the_network_is_told(monkeypatch):
    """on_before_batch_transfer reads the tokens before they move to the device, so the attention may take the
    fused kernels that need no mask (flash on a GPU) without the step asking the device."""
    module = make_module()
    batch = seq2seq_batch()
    full = {key: value.clone() for key, value in batch.items()}
    full["src"][full["src"] == PAD_ID] = 5
    full["tgt_in"][full["tgt_in"] == PAD_ID] = 5
    assert module.on_before_batch_transfer(batch, 0)["padded"] is True
    assert module.on_before_batch_transfer(full, 0)["padded"] is False
    told = []
    forward = module.model.forward
    monkeypatch.setattr(module.model, "forward", lambda *a, **k: told.append(k["padded"]) or forward(*a, **k))
    without = module(module.on_before_batch_transfer(full, 0)).logits
    assert told == [False]
    torch.testing.assert_close(without, forward(full["src"], full["tgt_in"]).logits, rtol=0, atol=0)
