"""src/analysis/lens.py: the logit lens at the last layer is the model's own output, and direct logit attribution's
components sum exactly to the target's logit (float64), for every norm and architecture that has a decoder."""

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
]


@pytest.mark.parametrize("kind, arch, settings", CASES + [("lm", "decoder_only", {"norm_position": "post"})])
def test_the_logit_lens_at_the_last_layer_is_the_models_own_output(kind, arch, settings):
    model, batch = model_of(arch, **settings), batch_of(kind)
    layers = logit_lens(model, kind, batch)
    assert [layer.layer for layer in layers] == [0, 1] and model.training  # the mode is put back
    model.eval()
    logits = forward_batch(model, kind, batch).logits
    target = scored_target(model, kind, batch)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX)
    assert layers[-1].loss == pytest.approx(float(loss), rel=1e-12) and layers[-1].top1_agreement == 1.0
    assert layers[0].top1_agreement <= 1.0


@pytest.mark.parametrize("kind, arch, settings", CASES)
def test_direct_logit_attribution_sums_exactly_to_the_targets_logit(kind, arch, settings):
    model, batch = model_of(arch, **settings), batch_of(kind)
    parts = direct_logit_attribution(model, kind, batch)
    model.eval()
    logits = forward_batch(model, kind, batch).logits
    target = scored_target(model, kind, batch)
    scored = target != IGNORE_INDEX
    expected = logits.gather(-1, target.clamp(min=0)[..., None])[..., 0] * scored
    torch.testing.assert_close(sum(parts.values()), expected, rtol=0, atol=1e-10)
    sites = ("decoder_self", "cross") if kind == "seq2seq" else ("decoder_self",)
    heads = [f"{site}:{layer}:{head}" for site in sites for layer in range(2) for head in range(4)]
    assert set(heads) <= set(parts) and {"embed", "decoder_ffn:0", "decoder_ffn:1"} <= set(parts)


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


def test_direct_logit_attribution_refuses_a_post_ln_model_and_the_lens_a_classifier():
    with pytest.raises(ValueError, match="needs a pre-LN model"):
        direct_logit_attribution(model_of("decoder_only"), "lm", batch_of("lm"))
    with pytest.raises(ValueError, match="a classification model has none"):
        logit_lens(model_of("encoder_only", num_classes=2), "classification", {"src": torch.ones(1, 3).long()})
