import itertools

import pytest
import torch
import torch.nn.functional as F

from src.model import BOS_ID, EOS_ID, PAD_ID, TransformerConfig, build_model, generate
from src.model.decoding import filter_logits


def model_for(arch="encoder_decoder", **overrides):
    torch.manual_seed(0)
    values = dict(arch=arch, src_vocab_size=13, tgt_vocab_size=11, d_model=16, heads=4, enc_layers=2, dec_layers=2,
                  d_ff=32, dropout=0.0, max_len=40)
    values.update(overrides)
    model = build_model(TransformerConfig(**values)).double()
    with torch.no_grad():  # make EOS unlikely so sequences run long enough to exercise the cache
        model.out_proj.weight[EOS_ID] *= 0.0
    return model.eval()


def source():
    src = torch.randint(4, 13, (3, 6), generator=torch.Generator().manual_seed(1))
    src[1, 4:] = PAD_ID
    return src


def greedy_by_full_recomputation(model, src=None, prompt=None, steps=10):
    """Reference: re-run the whole prefix every step, no cache."""
    tokens = prompt if prompt is not None else torch.full((src.size(0), 1), BOS_ID)
    for _ in range(steps):
        logits = model(src, tokens).logits if src is not None else model(tokens).logits
        next_logits = logits[:, -1].clone()
        next_logits[:, [PAD_ID, BOS_ID]] = float("-inf")  # never outputs
        tokens = torch.cat([tokens, next_logits.argmax(-1, keepdim=True)], dim=1)
    return tokens[:, -steps:]


@pytest.mark.parametrize("pos,mask_type", list(itertools.product(["sinusoidal", "learned", "rope", "alibi", "none"], ["standard", "window"])))
def test_cached_greedy_equals_full_recomputation(pos, mask_type):
    model = model_for(pos_encoding=pos, mask_type=mask_type, window=3)
    src = source()
    cached = generate(model, src=src, max_new_tokens=10, strategy="greedy")
    reference = greedy_by_full_recomputation(model, src=src, steps=10)
    assert cached.shape == (3, 10)
    assert torch.equal(cached, reference)


@pytest.mark.parametrize("pos,mask_type", [("rope", "standard"), ("alibi", "prefix"), ("learned", "window")])
def test_cached_decoder_only_equals_full_recomputation(pos, mask_type):
    model = model_for("decoder_only", pos_encoding=pos, mask_type=mask_type, window=3, prefix_len=3)
    prompt = torch.randint(4, 11, (2, 4), generator=torch.Generator().manual_seed(2))
    cached = generate(model, prompt=prompt, max_new_tokens=8)
    assert torch.equal(cached, greedy_by_full_recomputation(model, prompt=prompt, steps=8))


def test_beam_of_size_one_equals_greedy():
    model = model_for()
    src = source()
    greedy = generate(model, src=src, max_new_tokens=12, strategy="greedy")
    assert torch.equal(generate(model, src=src, max_new_tokens=12, strategy="beam", beam_size=1), greedy)


def sequence_log_prob(model, src, tokens):
    """Sum of log-probabilities of tokens (up to and including EOS) under the model."""
    tgt_in = torch.cat([torch.full((tokens.size(0), 1), BOS_ID), tokens[:, :-1]], dim=1)
    log_probs = model(src, tgt_in).logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    return (log_probs * (tokens != PAD_ID)).sum(-1)


def test_beam_search_finds_sequences_at_least_as_likely_as_greedy():
    model = model_for()
    with torch.no_grad():
        model.out_proj.weight[EOS_ID] = model.out_proj.weight[5] * 1.1  # EOS now competes: beams end
    src = source()
    greedy = generate(model, src=src, max_new_tokens=6, strategy="greedy")
    beam = generate(model, src=src, max_new_tokens=6, strategy="beam", beam_size=5, length_penalty=0.0)
    assert torch.all(sequence_log_prob(model, src, beam) >= sequence_log_prob(model, src, greedy) - 1e-9)
    assert torch.all(beam[:, 0] != PAD_ID)


def _model_with_eos_bias(eos_bias: float):
    model = model_for(tie_embeddings=False)
    torch.manual_seed(5)
    with torch.no_grad():  # an output bias that makes EOS more or less likely
        model.out_proj = torch.nn.Linear(16, 11, bias=True).double()
        model.out_proj.bias.zero_()
        model.out_proj.bias[EOS_ID] = eos_bias
    return model


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_decoding_pads_after_eos_and_stops_when_all_ended(strategy):
    src = torch.randint(4, 13, (8, 6), generator=torch.Generator().manual_seed(4))
    out = generate(_model_with_eos_bias(0.5), src=src, max_new_tokens=30, strategy=strategy,
                   generator=torch.Generator().manual_seed(0))
    ended = [row for row in out.tolist() if EOS_ID in row]
    assert any(row.index(EOS_ID) > 0 for row in ended)
    for row in ended:
        assert all(t == PAD_ID for t in row[row.index(EOS_ID) + 1:])
        assert PAD_ID not in row[: row.index(EOS_ID)]
    forced = generate(_model_with_eos_bias(100.0), src=src, max_new_tokens=30, strategy=strategy)
    assert forced.tolist() == [[EOS_ID]] * 8  # every row ended at once, so decoding stopped


def test_sampling_is_seeded_and_top_k_one_is_greedy():
    model = model_for()
    src = source()
    a = generate(model, src=src, strategy="sample", generator=torch.Generator().manual_seed(3), max_new_tokens=8)
    b = generate(model, src=src, strategy="sample", generator=torch.Generator().manual_seed(3), max_new_tokens=8)
    assert torch.equal(a, b)
    top1 = generate(model, src=src, strategy="sample", top_k=1, max_new_tokens=8)
    assert torch.equal(top1, generate(model, src=src, max_new_tokens=8))


def test_filter_logits_top_k_and_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.6)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert not torch.isinf(filter_logits(logits, top_p=1.0)).any()


def test_generation_restores_training_mode_and_rejects_bad_settings():
    model = model_for().train()
    generate(model, src=source(), max_new_tokens=2)
    assert model.training
    with pytest.raises(ValueError, match="temperature"):
        generate(model, src=source(), strategy="sample", temperature=0.0)
    with pytest.raises(ValueError, match="strategy"):
        generate(model, src=source(), strategy="nucleus")
    with pytest.raises(ValueError, match="classifier"):
        generate(build_model(TransformerConfig(arch="encoder_only", src_vocab_size=9, num_classes=2)), src=source())
