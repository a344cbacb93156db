"""Grouped-query attention, `model.kv_heads` (Ainslie et al. 2023; kv_heads=1: multi-query attention, Shazeer 2019).

What these tests prove: kv_heads = heads is today's multi-head model bit for bit; a grouped layer is the written-out
definition (each query head attends with its KV group's keys and values, the groups contiguous as Llama's repeat_kv)
to 1e-12 in float64, self- and cross-attention, through the fused and the explicit path; cached decoding with
grouped KV heads equals full recomputation, and the cache holds only the KV heads (kv_heads/heads of the multi-head
cache's bytes); the parameter and FLOP counts follow; validate() refuses a kv_heads that does not divide heads; head
gates act per query head; seeds stacked with vmap equal their solo models.
"""

from __future__ import annotations

import pytest
import torch

from src.model import BOS_ID, EOS_ID, PAD_ID, ConfigError, build_model, count_parameters, generate
from src.model.attention import MultiHeadAttention
from src.model.head_mask import attention_sites, full_head_mask, set_head_mask
from src.model.masks import MaskForm, SiteMask
from src.model.points import recorded
from src.model.stacked import StackedModel
from tests.model.tiny import D, H, assert_flops_estimate_is_counted, config, model_for, tokens

DH = 4  # head size: D / H


# --- 1. kv_heads = heads is today's model ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only", "encoder_only"])
def test_kv_heads_equal_to_heads_is_the_multi_head_model_bit_for_bit(arch):
    today, same = model_for(arch), model_for(arch, kv_heads=H)
    shapes = {name: tuple(p.shape) for name, p in today.state_dict().items()}
    assert shapes == {name: tuple(p.shape) for name, p in same.state_dict().items()}
    assert all(torch.equal(p, same.state_dict()[name]) for name, p in today.state_dict().items())
    attention = attention_sites(today)["encoder_self" if arch == "encoder_only" else "decoder_self"][0]
    assert tuple(attention.qkv_proj.weight.shape) == (3 * D, D)  # the fused Q | K | V of every checkpoint
    if arch == "encoder_decoder":
        assert tuple(today.decoder.layers[0].cross_attn.kv_proj.weight.shape) == (2 * D, D)
    src, tgt = tokens(vocab=13, pad_last_row=True), tokens(seed=2, pad_last_row=True)
    inputs = {"encoder_decoder": (src, tgt), "decoder_only": (tgt,), "encoder_only": (src,)}[arch]
    assert torch.equal(today(*inputs).logits, same(*inputs).logits)


# --- 2. a grouped layer is the definition written out -------------------------------------------------------------


def reference(attention: MultiHeadAttention, x, memory=None, allowed=None):
    """softmax(Q K^T / sqrt(Dh)) V per query head, query head h with KV head h // (H/KVH), from the layer's weights;
    allowed: (B|1, 1, Tq|1, Tk), True = may attend. Returns the output (B, Tq, D) and the weights (B, H, Tq, Tk)."""
    g = attention.kv_heads * DH
    if attention.is_self_attention:
        w, b = attention.qkv_proj.weight, attention.qkv_proj.bias
        q = x @ w[:D].T + b[:D]
        k = x @ w[D : D + g].T + b[D : D + g]
        v = x @ w[D + g :].T + b[D + g :]
    else:
        q = attention.q_proj(x)
        w, b = attention.kv_proj.weight, attention.kv_proj.bias
        k, v = memory @ w[:g].T + b[:g], memory @ w[g:].T + b[g:]
    batch, tq, tk = x.size(0), x.size(1), k.size(1)
    q = q.view(batch, tq, H, DH).transpose(1, 2)  # (B, H, Tq, Dh)
    k = k.view(batch, tk, attention.kv_heads, DH).transpose(1, 2)  # (B, KVH, Tk, Dh)
    v = v.view(batch, tk, attention.kv_heads, DH).transpose(1, 2)
    k = k.repeat_interleave(H // attention.kv_heads, dim=1)  # (B, H, Tk, Dh): head h gets group h // (H/KVH)
    v = v.repeat_interleave(H // attention.kv_heads, dim=1)
    scores = q @ k.transpose(-2, -1) / DH**0.5  # (B, H, Tq, Tk)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = scores.softmax(-1)
    z = (weights @ v).transpose(1, 2).reshape(batch, tq, D)
    return attention.out_proj(z), weights


def causal_site_mask(t: int) -> SiteMask:
    """The look-ahead mask as the model hands it over without padding: the fused path gets is_causal=True."""
    return SiteMask(MaskForm.CAUSAL, lambda: torch.ones(t, t, dtype=torch.bool).tril()[None, None], padded=False)


@pytest.mark.parametrize("kv_heads", [1, 2])
@pytest.mark.parametrize("case", ["causal", "padding", "every key", "cross with padding", "cross"])
def test_a_grouped_layer_is_per_query_head_attention_with_its_groups_keys_and_values(kv_heads, case):
    torch.manual_seed(0)
    cross = case.startswith("cross")
    attention = MultiHeadAttention(D, H, 0.0, is_self_attention=not cross, kv_heads=kv_heads).double().eval()
    for p in attention.parameters():  # biases too: a bias in the wrong K or V column would show
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(2, 5, D, dtype=torch.float64)
    memory = torch.randn(2, 7, D, dtype=torch.float64) if cross else None
    mask = allowed = None
    if case == "causal":
        mask = causal_site_mask(5)
        allowed = mask.tensor
    elif case in ("padding", "cross with padding"):
        real = torch.ones(2, 7 if cross else 5, dtype=torch.bool)
        real[1, 3:] = False
        mask = allowed = real[:, None, None, :]  # (B, 1, 1, Tk): a bare tensor, repeated k and v in the fused path
    expected, expected_weights = reference(attention, x, memory, allowed)
    fused, _ = attention(x, memory=memory, mask=mask)
    explicit, weights = attention(x, memory=memory, mask=mask, need_weights=True)
    torch.testing.assert_close(fused, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(explicit, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(weights, expected_weights, atol=1e-12, rtol=0)
    assert weights.shape == (2, H, 5, 7 if cross else 5)  # one map per query head
    assert [attention.kv_group(h) for h in range(H)] == [h // (H // kv_heads) for h in range(H)]


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only"])
@pytest.mark.parametrize("pos", ["rope", "alibi"])
@pytest.mark.parametrize("kv_heads", [1, 2])
def test_the_fused_and_explicit_paths_agree_in_a_grouped_model(arch, pos, kv_heads):
    model = model_for(arch, kv_heads=kv_heads, pos_encoding=pos)
    src, tgt = tokens(vocab=13, pad_last_row=True), tokens(seed=2, pad_last_row=True)
    inputs = (src, tgt) if arch == "encoder_decoder" else (tgt,)
    explicit = model(*inputs, need_weights=True)
    torch.testing.assert_close(model(*inputs).logits, explicit.logits, atol=1e-12, rtol=0)
    unpadded = (tokens(vocab=13), tokens(seed=2)) if arch == "encoder_decoder" else (tokens(seed=2),)
    torch.testing.assert_close(  # no mask tensor: the kernel takes the groups as they are (enable_gqa)
        model(*unpadded, padded=False).logits, model(*unpadded, need_weights=True).logits, atol=1e-12, rtol=0
    )
    for maps in explicit.attentions.values():
        assert all(w.size(1) == H for w in maps)


# --- 3. cached decoding, and what the cache holds ----------------------------------------------------------------


@pytest.mark.parametrize("arch,pos", [("decoder_only", "rope"), ("encoder_decoder", "alibi")])
@pytest.mark.parametrize("kv_heads", [1, 2])
def test_cached_decoding_with_grouped_kv_heads_equals_full_recomputation(arch, pos, kv_heads):
    from src.model.decoding import _stepper

    model = model_for(arch, kv_heads=kv_heads, pos_encoding=pos)
    with torch.no_grad():
        model.out_proj.weight[EOS_ID] *= 0.0  # no early end: every step decodes
    src = tokens(vocab=13, pad_last_row=True) if arch == "encoder_decoder" else None
    seq = tokens(t=8, seed=3)
    seq[:, 0] = BOS_ID
    prompt_len = 3 if arch == "decoder_only" else 1
    stepper = _stepper(model, src, seq[:, :prompt_len] if src is None else None, repeats=1)
    with torch.no_grad():
        full = (model(src, seq) if src is not None else model(seq)).logits  # (B, T, V)
        cached = [stepper.step(stepper.prompt)] + [stepper.step(seq[:, t : t + 1]) for t in range(prompt_len, 8)]
    torch.testing.assert_close(torch.stack(cached, 1), full[:, prompt_len - 1 :], atol=1e-10, rtol=0)
    for layer in stepper.cache:
        for part in layer.values():  # self-attention's keys and values so far; cross-attention's projected memory
            for name in part:  # k and v (a decoder-only model's cross part is empty)
                assert part[name].size(1) == kv_heads  # (B, KVH, T, Dh)

    # greedy decoding's tokens, through the cache, against re-running the whole prefix
    prompt = seq[:, :prompt_len]
    out = generate(model, src=src, prompt=None if src is not None else prompt, max_new_tokens=6)
    running = prompt
    for _ in range(6):
        with torch.no_grad():
            logits = (model(src, running) if src is not None else model(running)).logits[:, -1].clone()
        logits[:, [PAD_ID, BOS_ID]] = float("-inf")
        running = torch.cat([running, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, running[:, prompt_len:])


def cache_bytes(model, arch: str) -> int:
    from src.model.decoding import _stepper

    src = tokens(vocab=13) if arch == "encoder_decoder" else None
    stepper = _stepper(model, src, tokens(t=5, seed=4) if src is None else None, repeats=1)
    with torch.no_grad():
        stepper.step(stepper.prompt)
    return sum(
        t.numel() * t.element_size() for layer in stepper.cache for part in layer.values() for t in part.values()
    )


@pytest.mark.parametrize("arch", ["decoder_only", "encoder_decoder"])
def test_the_kv_cache_holds_only_the_kv_heads(arch):
    multi_head = cache_bytes(model_for(arch), arch)
    for kv_heads in (1, 2):
        assert cache_bytes(model_for(arch, kv_heads=kv_heads), arch) * H == multi_head * kv_heads
    # decoder-only, 5 tokens, 3 sequences: 2 (K and V) * 2 layers * KVH * Dh numbers per token and sequence
    if arch == "decoder_only":
        assert cache_bytes(model_for(arch, kv_heads=1), arch) == 2 * 2 * 1 * DH * 5 * 3 * 8  # float64


# --- 4. parameter and FLOP counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only", "encoder_only"])
@pytest.mark.parametrize("kv_heads", [1, 2, H])
def test_parameter_count_and_flops_follow_kv_heads(arch, kv_heads):
    cfg = config(arch, kv_heads=kv_heads)
    model = build_model(cfg)
    multi_head = count_parameters(build_model(config(arch)))
    g = kv_heads * DH
    attentions = sum(len(modules) for modules in attention_sites(model).values())
    assert count_parameters(model) == multi_head - attentions * 2 * (D - g) * (D + 1)  # K and V: weights, biases
    assert_flops_estimate_is_counted(model, tokens(1, 7, vocab=13), tokens(1, 5))


# --- 5. validate() ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kv_heads,says", [(3, "does not divide"), (0, "must be a positive integer"), (-2, "positive")])
def test_validate_refuses_kv_heads_that_do_not_divide_heads_in_one_line(kv_heads, says):
    with pytest.raises(ConfigError) as error:
        config(heads=8, kv_heads=kv_heads)
    message = str(error.value)
    assert "\n" not in message and f"model.kv_heads={kv_heads}" in message and says in message
    assert "model.heads=8" in message and "1, 2, 4, 8" in message


def test_model_kv_heads_is_a_setting_of_the_command_line(compose):
    from src.cli.schema import model_config_for

    assert compose().model.kv_heads is None
    cfg = model_config_for(compose("model.kv_heads=2"), src_vocab_size=11, tgt_vocab_size=11, num_classes=2)
    assert (cfg.kv_heads, cfg.kv_head_count) == (2, 2)


# --- 6. head gates per query head ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_a_head_gate_acts_on_its_query_head_alone(kv_heads):
    model = model_for("decoder_only", kv_heads=kv_heads)
    x = tokens()
    points = ["z@decoder_self:0", "k@decoder_self:0", "v@decoder_self:0"]
    with recorded(model, points) as before, torch.no_grad():
        model(x)
    mask = full_head_mask(model)
    mask["decoder_self"][0, 1] = 0.0  # query head 1 of layer 0 (KV group 1 // (H/KVH), shared with others)
    set_head_mask(model, mask)
    with recorded(model, points) as after, torch.no_grad():
        model(x)
    z_before, z_after = before["z@decoder_self:0"], after["z@decoder_self:0"]  # (B, H, T, Dh)
    assert torch.all(z_after[:, 1] == 0)
    others = [h for h in range(H) if h != 1]
    assert torch.equal(z_after[:, others], z_before[:, others])  # the group's other query heads are untouched
    assert before["k@decoder_self:0"].size(1) == kv_heads  # keys and values per KV group
    assert torch.equal(after["k@decoder_self:0"], before["k@decoder_self:0"])


# --- 7. seeds stacked with vmap -----------------------------------------------------------------------------------


def test_stacked_seeds_of_a_grouped_model_equal_their_solo_models():
    members = [model_for("decoder_only", seed=seed, kv_heads=2, pos_encoding="rope") for seed in (0, 1)]
    stacked = StackedModel(members)
    x = torch.stack([tokens(pad_last_row=True), tokens(seed=5)])  # (M, B, T)
    with torch.no_grad():
        logits = stacked.call(lambda model, batch: model(batch, padded=True).logits, x)  # the members in one call
        for member, model in enumerate(members):
            real = x[member] != PAD_ID  # (padding positions differ: a solo model runs no FFN there)
            torch.testing.assert_close(logits[member][real], model(x[member]).logits[real], atol=1e-12, rtol=0)


def test_q_k_and_v_of_a_grouped_projection_are_each_initialised_as_their_own_matrix():
    """Xavier uniform per matrix: Q (D x D) within sqrt(6 / 2D), K and V (KVH*Dh x D) within sqrt(6 / (D + KVH*Dh)),
    each reaching near its bound (a draw of many entries)."""
    torch.manual_seed(0)
    model = build_model(config("decoder_only", d_model=128, heads=8, kv_heads=1))
    weight = model.decoder.layers[0].self_attn.qkv_proj.weight  # (128 + 2 * 16, 128)
    q, k, v = weight.split([128, 16, 16], dim=0)
    for part, fan_out in ((q, 128), (k, 16), (v, 16)):
        bound = (6 / (128 + fan_out)) ** 0.5
        assert 0.95 * bound < part.abs().max() <= bound
