"""src/analysis/lens.py: the logit lens at the last layer is the model's own output, and direct logit attribution's
components sum exactly to the target's logit (float64), for every norm and architecture: a classifier's is read
through its pooling and head."""

from __future__ import annotations

import pytest
import torch

from src.analysis.lens import direct_logit_attribution, logit_lens
from src.model import BOS_ID, PAD_ID, TransformerConfig, build_model
from src.model.head_mask import full_head_mask, set_head_mask
from src.training.inference import IGNORE_INDEX, forward_batch, scored_target


def model_of(arch: str, **settings) -> torch.nn.Module:
    settings = {"d_model": 16, "heads": 4, "enc_layers": 2, "dec_layers": 2, "d_ff": 32, "dropout": 0.1, **settings}
    torch.manual_seed(0)
    cfg = TransformerConfig(arch=arch, src_vocab_size=13, tgt_vocab_size=13, **settings)
    return build_model(cfg).double().train()  # train mode: the analyses must switch to eval themselves


def batch_of(kind: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    if kind == "classification":  # the second example padded: the mean pooling must leave its padding out
        src = torch.randint(4, 13, (3, 6), generator=generator)
        src[1, 4:] = PAD_ID
        return {"src": src, "label": torch.tensor([0, 1, 1])}
    y = torch.randint(4, 13, (3, 5), generator=generator)
    y[2, 3:] = PAD_ID
    tgt_in = torch.cat([torch.full((3, 1), BOS_ID), y[:, :-1]], dim=1)
    batch = {"tgt_in": tgt_in, "tgt_out": y}
    if kind == "seq2seq":
        batch["src"] = torch.randint(4, 13, (3, 6), generator=generator)
    return batch


CASES = [
    ("seq2seq", "encoder_decoder", {"norm_position": "pre"}),
    ("lm", "decoder_only", {"norm_position": "pre"}),
    ("lm", "decoder_only", {"norm_position": "pre", "norm_type": "rmsnorm", "activation": "swiglu"}),
    ("classification", "encoder_only", {"norm_position": "pre", "num_classes": 2}),
]


def own_output(model, kind, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits and targets, flattened to (N, V) and (N,) as every kind's lens scores them."""
    model.eval()
    with torch.no_grad():
        logits = forward_batch(model, kind, batch).logits
    target = scored_target(model, kind, batch)
    return logits.reshape(-1, logits.size(-1)), target.reshape(-1)


LENS_CASES = [
    *CASES,
    ("lm", "decoder_only", {"norm_position": "post"}),
    ("classification", "encoder_only", {"norm_position": "post", "num_classes": 2, "pooling": "first_token"}),
]


@pytest.mark.parametrize("kind, arch, settings", LENS_CASES)
def test_the_logit_lens_at_the_last_layer_is_the_models_own_output(kind, arch, settings):
    model, batch = model_of(arch, **settings), batch_of(kind)
    layers = logit_lens(model, kind, batch)
    assert [layer.label for layer in layers] == ["embed", "0", "1"] and model.training  # the mode is put back
    logits, target = own_output(model, kind, batch)
    loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    assert layers[-1].loss == pytest.approx(float(loss), rel=1e-12) and layers[-1].top1_agreement == 1.0
    assert layers[0].loss != pytest.approx(float(loss), rel=1e-6)  # the embeddings alone predict otherwise


def test_the_embeddings_row_reads_what_the_first_layer_receives():
    model, batch = model_of("decoder_only", norm_position="pre"), batch_of("lm")
    layers = logit_lens(model, "lm", batch)
    model.eval()
    with torch.no_grad():
        stream = model.tgt_embed(batch["tgt_in"], model.positional)  # (B, T, D): the decoder's input
        logits = model.out_proj(model.decoder.final_norm(stream))
    target = scored_target(model, "lm", batch)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX)
    assert layers[0].layer is None and layers[0].loss == pytest.approx(float(loss), rel=1e-12)


@pytest.mark.parametrize("kind, arch, settings", CASES)
def test_direct_logit_attribution_sums_exactly_to_the_targets_logit(kind, arch, settings):
    model, batch = model_of(arch, **settings), batch_of(kind)
    parts = direct_logit_attribution(model, kind, batch)
    logits, target = own_output(model, kind, batch)
    scored = target != IGNORE_INDEX
    expected = logits.gather(-1, target.clamp(min=0)[..., None])[..., 0] * scored
    torch.testing.assert_close(sum(parts.values()).reshape(-1), expected, rtol=0, atol=1e-10)
    sites = {"seq2seq": ("decoder_self", "cross"), "lm": ("decoder_self",), "classification": ("encoder_self",)}[kind]
    ffn = "encoder_ffn" if kind == "classification" else "decoder_ffn"
    heads = [f"{site}:{layer}:{head}" for site in sites for layer in range(2) for head in range(4)]
    assert set(heads) <= set(parts) and {"embed", f"{ffn}:0", f"{ffn}:1"} <= set(parts)


def test_an_ablated_head_attributes_nothing_and_the_rest_still_sum_to_the_logit():
    model, batch = model_of("decoder_only", norm_position="pre"), batch_of("lm")
    mask = full_head_mask(model)
    mask["decoder_self"][1, 2] = 0.0
    set_head_mask(model, mask)
    parts = direct_logit_attribution(model, "lm", batch)
    assert torch.equal(parts["decoder_self:1:2"], torch.zeros_like(parts["decoder_self:1:2"]))
    model.eval()
    logits = forward_batch(model, "lm", batch).logits
    target = scored_target(model, "lm", batch)
    expected = logits.gather(-1, target.clamp(min=0)[..., None])[..., 0] * (target != IGNORE_INDEX)
    torch.testing.assert_close(sum(parts.values()), expected, rtol=0, atol=1e-10)


def test_direct_logit_attribution_refuses_a_post_ln_model_and_a_pooler_that_is_not_linear():
    with pytest.raises(ValueError, match="needs a pre-LN model"):
        direct_logit_attribution(model_of("decoder_only"), "lm", batch_of("lm"))
    bert_like = model_of("encoder_only", norm_position="pre", num_classes=2, pooling="first_token")
    with pytest.raises(ValueError, match="needs a linear pooling"):
        direct_logit_attribution(bert_like, "classification", batch_of("classification"))


def test_an_ablated_sublayer_is_listed_with_nothing_and_the_rest_still_sum_to_the_logit():
    model, batch = model_of("decoder_only", norm_position="pre"), batch_of("lm")
    model.decoder.layers[1].ffn_block.removed = True  # ablate.sublayers=[decoder_ffn:1]
    parts = direct_logit_attribution(model, "lm", batch)
    assert torch.equal(parts["decoder_ffn:1"], torch.zeros_like(parts["decoder_ffn:1"]))
    logits, target = own_output(model, "lm", batch)
    expected = logits.gather(-1, target.clamp(min=0)[..., None])[..., 0] * (target != IGNORE_INDEX)
    torch.testing.assert_close(sum(parts.values()).reshape(-1), expected, rtol=0, atol=1e-10)
