"""The read-only views: they run the network in eval mode, put back the mode they found, and decode exactly as
src.model.generate does."""

from __future__ import annotations

import pytest
import torch

from src.model import BOS_ID, PAD_ID, TransformerConfig, build_model, generate
from src.model.errors import ConfigError
from src.training.inference import (
    attention_maps,
    eval_mode,
    greedy_decode,
    predict_labels,
    sample_text,
    translate_in_batches,
)

VOCAB = 12


def tiny_model(arch="encoder_decoder", **settings):
    torch.manual_seed(0)
    return build_model(
        TransformerConfig(
            arch=arch,
            src_vocab_size=VOCAB,
            tgt_vocab_size=VOCAB,
            num_classes=3 if arch == "encoder_only" else 0,
            d_model=16,
            heads=2,
            enc_layers=1,
            dec_layers=1,
            d_ff=32,
            dropout=0.1,
            max_len=32,
            **settings,
        )
    )


def seq2seq_batch():
    return {
        "src": torch.tensor([[4, 5, 6], [7, 8, PAD_ID]]),
        "tgt_in": torch.tensor([[1, 6, 5, 4], [1, 8, 7, PAD_ID]]),
        "tgt_out": torch.tensor([[6, 5, 4, 2], [8, 7, 2, PAD_ID]]),
    }


class TextData:
    """The datamodule's text side, for sample_text: ids written as numbers, one validation example."""

    input_side = "tgt"

    def encode_tgt(self, text: str) -> list[int]:
        return [int(token) for token in text.split()]

    def encode_input(self, text: str) -> tuple[list[int], int]:
        return self.encode_tgt(text), len(self.encode_tgt(text))

    def vocab(self, side: str):
        return self  # numbers: no marks around an input, as our vocabularies

    def wrap_source(self, ids: list[int]) -> list[int]:
        return list(ids)

    def decode_tgt(self, ids) -> str:
        return "".join(f" {int(i)}" for i in ids)

    def probe_batch(self, n: int) -> dict[str, torch.Tensor]:
        return {"tgt_in": torch.tensor([[BOS_ID, 5, 6, 7, 8]]), "tgt_out": torch.tensor([[5, 6, 7, 8, 9]])}


# --- eval_mode ----------------------------------------------------------------------------------------------------


def test_eval_mode_restores_the_training_mode_even_when_the_block_raises():
    model = tiny_model()
    model.train()
    with pytest.raises(RuntimeError, match="inside"):
        with eval_mode(model):
            assert not model.training and not torch.is_grad_enabled()
            raise RuntimeError("raised inside")
    assert model.training and torch.is_grad_enabled()

    model.eval()
    with eval_mode(model):
        pass
    assert not model.training  # a model under evaluation stays in eval mode


def test_a_view_that_raises_leaves_the_model_training():
    model = tiny_model()
    model.train()
    with pytest.raises(KeyError):
        attention_maps(model, "seq2seq", {"src": seq2seq_batch()["src"]})  # no decoder input
    assert model.training


# --- the views ----------------------------------------------------------------------------------------------------


def test_attention_maps_restore_train_mode_and_return_weights():
    model = tiny_model()
    model.train()
    out = attention_maps(model, "seq2seq", seq2seq_batch())
    assert model.training
    assert set(out.attentions) == {"encoder_self", "decoder_self", "cross"}
    assert out.attentions["cross"][0].shape == (2, 2, 4, 3)  # (B, H, T, S)
    assert not out.logits.requires_grad


def test_greedy_decode_of_a_seq2seq_model_equals_generate():
    model = tiny_model()
    model.train()
    batch = seq2seq_batch()
    out = greedy_decode(model, "seq2seq", batch)
    assert model.training
    assert out.dtype == torch.long and out.size(0) == 2 and out.size(1) <= 4
    torch.testing.assert_close(out, generate(model, src=batch["src"], max_new_tokens=4))  # as long as tgt_out
    torch.testing.assert_close(
        greedy_decode(model, "seq2seq", batch, extra_tokens=16),
        generate(model, src=batch["src"], max_new_tokens=4 + 16),
    )
    without_reference = {"src": batch["src"]}
    torch.testing.assert_close(
        greedy_decode(model, "seq2seq", without_reference), generate(model, src=batch["src"], max_new_tokens=3)
    )  # as long as the source


@pytest.mark.parametrize("mask, prompt_len", [({"type": "causal"}, 4), ({"type": "prefix", "prefix_len": 5}, 5)])
def test_greedy_decode_of_a_language_model_continues_the_first_half(mask, prompt_len):
    model = tiny_model("decoder_only", mask=mask)
    tokens = torch.randint(4, VOCAB, (2, 8))
    out = greedy_decode(model, "lm", {"tgt_in": tokens})
    # a prefix-LM is given its whole prefix (5 tokens), more than half of the 8
    torch.testing.assert_close(out, generate(model, prompt=tokens[:, :prompt_len], max_new_tokens=8 - prompt_len))


def test_greedy_decode_refuses_a_classifier():
    with pytest.raises(ValueError, match="predict_labels"):
        greedy_decode(tiny_model("encoder_only"), "classification", {"src": seq2seq_batch()["src"]})


def test_predict_labels_are_the_most_likely_classes():
    model = tiny_model("encoder_only")
    model.train()
    batch = {"src": torch.tensor([[4, 5, PAD_ID], [6, 7, 8]]), "label": torch.tensor([0, 2])}
    labels = predict_labels(model, batch)
    assert model.training
    assert labels.shape == (2,)
    model.eval()
    torch.testing.assert_close(labels, model(batch["src"]).logits.argmax(dim=-1))


def test_sample_text_is_reproducible_for_a_seed():
    model = tiny_model("decoder_only")
    model.train()
    decode = {"temperature": 0.8, "top_k": 5}
    first = sample_text(model, TextData(), decode, max_new_tokens=20, seed=3)
    assert model.training
    assert first == sample_text(model, TextData(), decode, max_new_tokens=20, seed=3)
    assert first != sample_text(model, TextData(), decode, max_new_tokens=20, seed=4)
    # the same draw as generate's sampling from that seed, from BOS, or from the encoded prompt
    expected = generate(
        model,
        prompt=torch.tensor([[BOS_ID]]),
        max_new_tokens=20,
        strategy="sample",
        temperature=0.8,
        top_k=5,
        generator=torch.Generator().manual_seed(3),
    )
    assert first == TextData().decode_tgt(expected[0])
    prompted = sample_text(model, TextData(), decode, max_new_tokens=20, prompt="5 6", seed=3)
    expected = generate(
        model,
        prompt=torch.tensor([[5, 6]]),  # the prompt's ids as predict reads them: an lm's windows hold no BOS
        max_new_tokens=20,
        strategy="sample",
        temperature=0.8,
        top_k=5,
        generator=torch.Generator().manual_seed(3),
    )
    assert prompted == "5 6" + TextData().decode_tgt(expected[0])


def test_a_prefix_lm_samples_after_a_whole_validation_prefix():
    model = tiny_model("decoder_only", mask={"type": "prefix", "prefix_len": 3})
    sample = sample_text(model, TextData(), {}, max_new_tokens=6, seed=0)
    expected = generate(
        model,
        prompt=torch.tensor([[BOS_ID, 5, 6]]),
        max_new_tokens=6,
        strategy="sample",
        generator=torch.Generator().manual_seed(0),
    )
    assert sample == TextData().decode_tgt([BOS_ID, 5, 6]) + TextData().decode_tgt(expected[0])
    with pytest.raises(ConfigError, match="the prompt of 2 tokens is shorter than the 3 tokens mask=prefix needs"):
        sample_text(model, TextData(), {}, max_new_tokens=6, prompt="5 6", seed=0)  # not swapped for another text


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_translating_in_batches_gives_each_source_what_it_gets_alone(strategy):
    """Batches are sorted by length and padded; the masks hide the padding, so no output may change."""
    model = tiny_model()
    generator = torch.Generator().manual_seed(1)
    lengths = [3, 9, 1, 6, 6, 2, 8]
    sources = [torch.randint(4, VOCAB, (n,), generator=generator).tolist() for n in lengths]
    settings = dict(strategy=strategy, beam_size=3, max_new_tokens=10)
    batched = translate_in_batches(model, sources, batch_size=3, **settings)
    assert model.training  # the mode it was in
    for source, out in zip(sources, batched):
        alone = generate(model, src=torch.tensor([source]), **settings)[0]
        trimmed = out[: alone.numel()]
        assert torch.equal(trimmed, alone) and (out[alone.numel() :] == PAD_ID).all()
