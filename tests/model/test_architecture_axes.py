"""Four architecture axes of today's models: the head size (`model.head_dim`), the projections' biases
(`model.attention_bias`, `model.ffn_bias`), QK-norm (`model.qk_norm`) and parallel layers (`model.parallel_layers`).

What these tests prove: at their defaults the model is today's bit for bit (every parameter's name, shape and value,
every output); each axis is its definition written out by hand, to 1e-12 in float64 (attention with H * Dh != D,
with and without each bias, with each head's query and key normalised before rotary positions; a parallel layer is
x + Attn(Norm(x)) + FFN(Norm(x)) with one norm, and its activation points mean what docs/model.md says); the
parameter count and the FLOPs estimate follow (the modules, PyTorch's FLOP counter); cached decoding equals full
recomputation with each axis on; validate() refuses bad values in one line each; each is a command-line setting.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.model import BOS_ID, EOS_ID, PAD_ID, ConfigError, TransformerConfig, build_model, count_parameters, generate
from src.model.attention import ATTENTION_BIASES, MultiHeadAttention
from src.model.head_mask import attention_sites
from src.model.masks import causal_mask
from src.model.norms import build_norm
from src.model.points import attached, recorded
from src.model.positional import RotaryPositions
from src.model.stacked import StackedModel
from tests.model import tiny
from tests.model.tiny import D, H, assert_flops_estimate_is_counted, tokens

DH = 6  # a head size of its own: H * Dh = 24 != D
CAUSAL = causal_mask(5, 5)[None, None]  # (1, 1, 5, 5): True = may attend

# Each axis away from its default, one at a time (the settings a Llama, Qwen2/3 or GPT-J has).
AXES = {
    "head_dim": {"head_dim": DH},
    "attention_bias=none": {"attention_bias": "none"},
    "attention_bias=qkv": {"attention_bias": "qkv"},
    "ffn_bias=false": {"ffn_bias": False},
    "qk_norm": {"qk_norm": True},
    "parallel_layers": {"parallel_layers": True, "norm_position": "pre"},
}
ALL_AXES = {
    "head_dim": DH,
    "kv_heads": 2,
    "attention_bias": "qkv",
    "ffn_bias": False,
    "qk_norm": True,
    "parallel_layers": True,
    "norm_position": "pre",
}


def config(arch: str = "decoder_only", **overrides) -> TransformerConfig:
    return tiny.config(arch, **{"d_ff": 20, **overrides})  # an FFN width unlike any other size here


def model_for(arch: str = "decoder_only", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model(config(arch, **overrides)).double().eval()


def inputs_for(arch: str, pad: bool = True) -> tuple[torch.Tensor, ...]:
    src, tgt = tokens(vocab=13, pad_last_row=pad), tokens(seed=2, pad_last_row=pad)
    return {"encoder_decoder": (src, tgt), "decoder_only": (tgt,), "encoder_only": (src,)}[arch]


def randomise(module: torch.nn.Module) -> None:
    """Every parameter drawn at random, norms' gains and shifts and the biases too: a part in the wrong place shows."""
    for p in module.parameters():
        torch.nn.init.normal_(p, mean=0.5 if p.dim() == 1 else 0.0, std=0.5)


# --- 1. at their defaults, today's model --------------------------------------------------------------------------

# The parameters of one pre-LN decoder-only layer as every checkpoint and converter (GPT-2's) has them.
TODAYS_LAYER = {
    "self_attn.qkv_proj.weight": (3 * D, D),
    "self_attn.qkv_proj.bias": (3 * D,),
    "self_attn.out_proj.weight": (D, D),
    "self_attn.out_proj.bias": (D,),
    "self_block.norm.weight": (D,),
    "self_block.norm.bias": (D,),
    "ffn.linear1.weight": (20, D),
    "ffn.linear1.bias": (20,),
    "ffn.linear2.weight": (D, 20),
    "ffn.linear2.bias": (D,),
    "ffn_block.norm.weight": (D,),
    "ffn_block.norm.bias": (D,),
}


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only", "encoder_only"])
def test_the_axes_at_their_defaults_are_todays_model_bit_for_bit(arch):
    today = model_for(arch)
    spelled = model_for(
        arch, head_dim=D // H, attention_bias="all", ffn_bias=True, qk_norm=False, parallel_layers=False
    )
    assert list(today.state_dict()) == list(spelled.state_dict())
    assert all(torch.equal(p, spelled.state_dict()[name]) for name, p in today.state_dict().items())
    inputs = inputs_for(arch)
    assert torch.equal(today(*inputs).logits, spelled(*inputs).logits)
    if arch == "decoder_only":
        layer = {
            name: tuple(p.shape)
            for name, p in model_for(arch, norm_position="pre").decoder.layers[0].named_parameters()
        }
        assert layer == TODAYS_LAYER
        assert model_for(arch).out_proj.bias is None  # the output projection keeps model.output_bias's choice


# --- 2. the head size: model.head_dim ------------------------------------------------------------------------------


def norm_by_hand(x: torch.Tensor, norm: torch.nn.Module, norm_type: str) -> torch.Tensor:
    """x (..., Dh) normalised over its last dimension, written out: LayerNorm centres and scales then shifts;
    RMSNorm only scales."""
    if norm_type == "layernorm":
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
    return x / torch.sqrt((x**2).mean(-1, keepdim=True) + norm.eps) * norm.weight


def reference(attention: MultiHeadAttention, x, memory=None, allowed=None, rope=None, norm_type="layernorm"):
    """MultiHead(Q, K, V) from the layer's weights, written out: Q = x W^Q (+ b), H heads of Dh; K, V of the KVH
    KV heads; QK-norm per head (if the layer has it), then rotary positions (if given); softmax(Q K^T / sqrt(Dh)) V per
    query head; the heads side by side (H * Dh) through W^O (+ b). Returns the output (B, Tq, D), the weights
    (B, H, Tq, Tk), and q and k as the points see them."""
    h, kvh, dh = attention.heads, attention.kv_heads, attention.head_dim
    a, g = h * dh, kvh * dh

    def project(inputs, linear, rows):  # inputs (B, T, D) through `rows` of a (fused) linear layer
        out = inputs @ linear.weight[rows].T
        return out if linear.bias is None else out + linear.bias[rows]

    if attention.is_self_attention:
        fused = attention.qkv_proj
        q, k, v = (
            project(x, fused, slice(0, a)),
            project(x, fused, slice(a, a + g)),
            project(x, fused, slice(a + g, None)),
        )
    else:
        q = project(x, attention.q_proj, slice(None))
        k, v = project(memory, attention.kv_proj, slice(0, g)), project(memory, attention.kv_proj, slice(g, None))
    batch, tq, tk = x.size(0), x.size(1), k.size(1)
    q = q.view(batch, tq, h, dh).transpose(1, 2)  # (B, H, Tq, Dh)
    k = k.view(batch, tk, kvh, dh).transpose(1, 2)  # (B, KVH, Tk, Dh)
    v = v.view(batch, tk, kvh, dh).transpose(1, 2)
    if attention.q_norm is not None:
        q, k = norm_by_hand(q, attention.q_norm, norm_type), norm_by_hand(k, attention.k_norm, norm_type)
    if rope is not None:
        q, k = rope.rotate(q, k)
    seen_q, seen_k = q, k
    k, v = k.repeat_interleave(h // kvh, dim=1), v.repeat_interleave(h // kvh, dim=1)  # (B, H, Tk, Dh)
    scores = q @ k.transpose(-2, -1) / dh**0.5  # (B, H, Tq, Tk): the head's own size
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = scores.softmax(-1)
    z = (weights @ v).transpose(1, 2).reshape(batch, tq, a)  # (B, Tq, H*Dh)
    out = z @ attention.out_proj.weight.T
    out = out if attention.out_proj.bias is None else out + attention.out_proj.bias
    return out, weights, seen_q, seen_k


@pytest.mark.parametrize("biases", list(ATTENTION_BIASES))
@pytest.mark.parametrize("kv_heads", [None, 2])
@pytest.mark.parametrize("case", ["causal", "cross with padding"])
def test_attention_with_its_own_head_size_and_biases_is_the_definition_written_out(case, kv_heads, biases):
    torch.manual_seed(0)
    cross = case.startswith("cross")
    attention = MultiHeadAttention(
        D, H, 0.0, not cross, kv_heads=kv_heads, head_dim=DH, biases=ATTENTION_BIASES[biases]
    ).double()
    randomise(attention)
    kvh = H if kv_heads is None else kv_heads
    if cross:
        assert tuple(attention.q_proj.weight.shape) == (H * DH, D)
        assert tuple(attention.kv_proj.weight.shape) == (2 * kvh * DH, D)
    else:
        assert tuple(attention.qkv_proj.weight.shape) == (H * DH + 2 * kvh * DH, D)
    assert tuple(attention.out_proj.weight.shape) == (D, H * DH)  # W^O: the heads side by side, back to D
    x = torch.randn(2, 5, D, dtype=torch.float64)
    memory = torch.randn(2, 7, D, dtype=torch.float64) if cross else None
    if cross:
        real = torch.ones(2, 7, dtype=torch.bool)
        real[1, 4:] = False
        mask = allowed = real[:, None, None, :]
    else:
        mask = allowed = CAUSAL
    expected, expected_weights, _, _ = reference(attention, x, memory, allowed)
    attention.z_point.name = "z@test:0"  # as a stack names it (points.py), so that `recorded` finds it
    with recorded(attention, ["z@test:0"]) as seen:
        fused, _ = attention(x, memory=memory, mask=mask)
    explicit, weights = attention(x, memory=memory, mask=mask, need_weights=True)
    torch.testing.assert_close(fused, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(explicit, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(weights, expected_weights, atol=1e-12, rtol=0)
    assert seen["z@test:0"].shape == (2, H, 5, DH)  # each head's output, Dh wide
    assert (attention.out_proj.bias is not None) == ATTENTION_BIASES[biases].out


def test_model_head_dim_reaches_every_reader_and_lets_heads_not_divide_d_model():
    model = model_for("decoder_only", heads=3, head_dim=8, kv_heads=1, pos_encoding="rope")  # 3 * 8 = 24 != 16
    attention = model.decoder.layers[0].self_attn
    assert (attention.head_dim, attention.q_dim, attention.kv_dim) == (8, 24, 8)
    assert model.positional.rotary_dim == 8 and model.cfg.head_size == 8  # rotary positions turn the real heads
    x = tokens(pad_last_row=True)
    with recorded(model, ["q@decoder_self:1", "k@decoder_self:1", "z@decoder_self:1"]) as seen:
        explicit = model(x, need_weights=True)
    assert seen["q@decoder_self:1"].shape == (3, 3, 6, 8) and seen["k@decoder_self:1"].shape == (3, 1, 6, 8)
    assert seen["z@decoder_self:1"].shape == (3, 3, 6, 8)
    torch.testing.assert_close(model(x).logits, explicit.logits, atol=1e-12, rtol=0)  # fused and explicit paths
    assert model_for("decoder_only").cfg.head_size == D // H  # unset: d_model / heads


def test_q_k_v_and_w_o_of_a_head_size_of_its_own_are_each_initialised_as_their_own_matrix():
    """Xavier uniform per matrix: Q (H*Dh x D) within sqrt(6 / (D + H*Dh)), K and V (KVH*Dh x D) within
    sqrt(6 / (D + KVH*Dh)), W^O (D x H*Dh) within sqrt(6 / (H*Dh + D)), each reaching near its bound."""
    torch.manual_seed(0)
    model = build_model(config("decoder_only", d_model=64, heads=4, head_dim=32, kv_heads=1))
    attention = model.decoder.layers[0].self_attn
    q, k, v = attention.qkv_proj.weight.split([128, 32, 32], dim=0)
    for part, fan_out in ((q, 128), (k, 32), (v, 32), (attention.out_proj.weight, 128)):
        bound = (6 / (64 + fan_out)) ** 0.5
        assert 0.95 * bound < part.abs().max() <= bound


# --- 3. biases: model.attention_bias and model.ffn_bias ------------------------------------------------------------


@pytest.mark.parametrize("arch", ["encoder_decoder", "encoder_only"])
@pytest.mark.parametrize("option", list(ATTENTION_BIASES))
def test_attention_bias_chooses_which_projections_have_a_bias(arch, option):
    model = model_for(arch, attention_bias=option, output_bias=True)
    wanted = ATTENTION_BIASES[option]
    for modules in attention_sites(model).values():
        for attention in modules:
            ins = [attention.qkv_proj] if attention.is_self_attention else [attention.q_proj, attention.kv_proj]
            assert all((linear.bias is not None) == wanted.qkv for linear in ins)
            assert (attention.out_proj.bias is not None) == wanted.out
    # what other settings own keeps its bias: the output projection (model.output_bias), the classifier's head
    head = model.out_proj if arch == "encoder_decoder" else model.head[-1]
    assert head.bias is not None


@pytest.mark.parametrize("activation", ["relu", "gelu_tanh", "swiglu"])
def test_ffn_bias_false_is_the_network_without_its_biases_written_out(activation):
    model = model_for("decoder_only", ffn_bias=False, activation=activation)
    ffn = model.decoder.layers[0].ffn
    assert all(not name.endswith("bias") for name, _ in ffn.named_parameters())
    x = torch.randn(2, 5, D, dtype=torch.float64)
    if activation == "swiglu":
        gate, value = (x @ ffn.gate_value.weight.T).chunk(2, dim=-1)
        expected = (F.silu(gate) * value) @ ffn.linear2.weight.T  # W2 (SiLU(W x) * V x)
    else:
        act = {"relu": F.relu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh")}[activation]
        expected = act(x @ ffn.linear1.weight.T) @ ffn.linear2.weight.T  # W2 act(W1 x)
    torch.testing.assert_close(ffn(x), expected, atol=1e-12, rtol=0)
    with_biases = model_for("decoder_only", activation=activation).decoder.layers[0].ffn
    assert count_parameters(with_biases) - count_parameters(ffn) == sum(
        p.numel() for name, p in with_biases.named_parameters() if name.endswith("bias")
    )


# --- 4. QK-norm: model.qk_norm --------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("cross", [False, True])
def test_qk_norm_normalises_each_heads_query_and_key_by_hand_before_rotary_positions(norm_type, cross):
    torch.manual_seed(0)
    attention = MultiHeadAttention(
        D, H, 0.0, not cross, kv_heads=2, head_dim=DH, qk_norm=lambda size: build_norm(norm_type, size, 1e-5)
    ).double()
    randomise(attention)  # gains (and LayerNorm's shifts) away from 1 and 0, so that order matters
    assert attention.q_norm.weight.shape == (DH,) and attention.k_norm.weight.shape == (DH,)  # one gain, every head
    attention.q_point.name, attention.k_point.name = "q@test:0", "k@test:0"
    rope = None if cross else RotaryPositions(DH, 32).double()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    memory = torch.randn(2, 7, D, dtype=torch.float64) if cross else None
    expected, _, q, k = reference(attention, x, memory, rope=rope, norm_type=norm_type)
    with recorded(attention, ["q@test:0", "k@test:0"]) as seen:
        out, _ = attention(x, memory=memory, positional=rope)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(seen["q@test:0"], q, atol=1e-12, rtol=0)  # (B, H, T, Dh), after the rotation
    torch.testing.assert_close(seen["k@test:0"], k, atol=1e-12, rtol=0)  # (B, KVH, T, Dh)
    if rope is not None:  # the order matters: normalising after the rotation would be another computation
        q_projected = attention.qkv_proj(x)[..., : H * DH].view(2, 5, H, DH).transpose(1, 2)  # (B, H, T, Dh)
        turned, _ = rope.rotate(q_projected, q_projected)
        assert not torch.allclose(norm_by_hand(turned, attention.q_norm, norm_type), seen["q@test:0"], atol=1e-6)


def test_qk_norm_in_a_model_has_its_gains_in_every_attention_and_they_learn():
    model = model_for("encoder_decoder", qk_norm=True, norm_type="rmsnorm").train()
    sites = attention_sites(model)
    assert sum(len(modules) for modules in sites.values()) == 5  # encoder self, decoder self and cross (x2)
    src, tgt = inputs_for("encoder_decoder")
    model(src, tgt).logits.logsumexp(-1).sum().backward()
    for modules in sites.values():
        for attention in modules:
            for norm in (attention.q_norm, attention.k_norm):
                assert norm.weight.shape == (D // H,) and norm.weight.grad is not None
                assert norm.weight.grad.abs().sum() > 0


# --- 5. parallel layers: model.parallel_layers ----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
def test_a_parallel_layer_is_x_plus_attention_and_ffn_of_one_norm(arch):
    model = model_for(arch, parallel_layers=True, norm_position="pre", pos_encoding="rope", enc_layers=2)
    randomise(model)  # norms' gains and shifts too
    stack = model.decoder if arch == "decoder_only" else model.encoder
    layer = stack.layers[0]
    attention, block = layer.self_attn, layer.self_block if arch == "decoder_only" else layer.attn_block
    assert layer.ffn_block.norm is None  # one norm: the first block's
    x = torch.randn(2, 5, D, dtype=torch.float64)
    mask = CAUSAL if arch == "decoder_only" else None
    n = block.norm(x)
    expected = x + attention(n, mask=mask, positional=model.positional)[0] + layer.ffn(n)  # x + Attn(n(x)) + FFN(n(x))
    site = "decoder" if arch == "decoder_only" else "encoder"
    names = [f"{kind}@{site}_{part}:0" for kind in ("resid_pre", "out", "resid_post") for part in ("self", "ffn")]
    with recorded(model, names) as seen:
        got = layer(x, mask, model.positional)[0]
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    # the points: both sublayers' resid_pre are the layer's input; resid_post accumulates in order, the FFN's last
    assert torch.equal(seen[f"resid_pre@{site}_self:0"], x) and torch.equal(seen[f"resid_pre@{site}_ffn:0"], x)
    attention_post = seen[f"resid_post@{site}_self:0"]
    torch.testing.assert_close(attention_post, x + seen[f"out@{site}_self:0"], atol=0, rtol=0)
    torch.testing.assert_close(
        seen[f"resid_post@{site}_ffn:0"], attention_post + seen[f"out@{site}_ffn:0"], atol=0, rtol=0
    )
    assert torch.equal(seen[f"resid_post@{site}_ffn:0"], got)  # the layer's output: what the logit lens reads


def test_a_parallel_layers_points_keep_the_analyses_rules():
    """The logit lens reads resid_post of each layer's last sublayer: the next layer's input. Writing the layer's
    input at either resid_pre changes what both sublayers read. Removing the FFN leaves x + Attn(Norm(x))."""
    model = model_for("decoder_only", parallel_layers=True, norm_position="pre")
    x = tokens()
    with recorded(model, ["resid_post@decoder_ffn:0", "resid_pre@decoder_self:1", "resid_pre@decoder_ffn:1"]) as seen:
        model(x)
    assert torch.equal(seen["resid_post@decoder_ffn:0"], seen["resid_pre@decoder_self:1"])
    assert torch.equal(seen["resid_pre@decoder_self:1"], seen["resid_pre@decoder_ffn:1"])
    other = torch.randn_like(seen["resid_pre@decoder_self:1"])
    for point in ("resid_pre@decoder_self:1", "resid_pre@decoder_ffn:1"):
        with (
            attached(model, {point: lambda _: other}),
            recorded(model, ["out@decoder_self:1", "out@decoder_ffn:1"]) as outs,
        ):
            patched = model(x).logits
        resumed = model.decode(x, resume=(1, other))[0]  # the layer run from `other` as its input
        torch.testing.assert_close(patched, resumed, atol=1e-12, rtol=0)
        layer = model.decoder.layers[1]
        n = layer.self_block.norm(other)
        torch.testing.assert_close(outs["out@decoder_ffn:1"], layer.ffn(n), atol=1e-12, rtol=0)
    layer = model.decoder.layers[0]
    layer.ffn_block.removed = True
    stream = torch.randn(2, 5, D, dtype=torch.float64)
    expected = stream + layer.self_attn(layer.self_block.norm(stream), mask=CAUSAL)[0]
    torch.testing.assert_close(layer(stream, CAUSAL, model.positional)[0], expected, atol=1e-12, rtol=0)


def test_direct_logit_attribution_and_the_logit_lens_still_hold_in_a_model_of_every_axis():
    from src.analysis.lens import direct_logit_attribution, logit_lens
    from src.training.inference import IGNORE_INDEX, forward_batch, scored_target

    model = model_for("decoder_only", **ALL_AXES)
    y = tokens(t=5, seed=3, pad_last_row=True)
    batch = {"tgt_in": torch.cat([torch.full((3, 1), BOS_ID), y[:, :-1]], dim=1), "tgt_out": y}
    parts = direct_logit_attribution(model, "lm", batch)
    with torch.no_grad():
        logits = forward_batch(model, "lm", batch).logits
    target = scored_target(model, "lm", batch)
    expected = logits.gather(-1, target.clamp(min=0)[..., None])[..., 0] * (target != IGNORE_INDEX)
    torch.testing.assert_close(sum(parts.values()), expected, rtol=0, atol=1e-10)
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX)
    assert logit_lens(model, "lm", batch)[-1].loss == pytest.approx(float(loss), rel=1e-12)


# --- 6. parameter and FLOP counts -----------------------------------------------------------------------------------


def layer_parameters(cfg: TransformerConfig, cross: bool) -> int:
    """One layer's parameters from the axes, written out (D = d_model, A = H Dh, G = KVH Dh, F = d_ff)."""
    d, a, g, f = cfg.d_model, cfg.heads * cfg.head_size, cfg.kv_head_count * cfg.head_size, cfg.d_ff
    biases = ATTENTION_BIASES[cfg.attention_bias]

    def norm(size: int) -> int:
        return size * (2 if cfg.norm_type == "layernorm" else 1)  # gain (and LayerNorm's shift)

    def attention() -> int:
        weights = d * (a + 2 * g) + a * d  # W^Q, W^K, W^V, W^O
        return weights + biases.qkv * (a + 2 * g) + biases.out * d + cfg.qk_norm * 2 * norm(cfg.head_size)

    matrices, inner_biases = (3, 2) if cfg.activation == "swiglu" else (2, 1)  # SwiGLU: gate | value (2F), W2
    ffn = matrices * d * f + cfg.ffn_bias * (inner_biases * f + d)
    sublayers = 3 if cross else 2
    norms = 1 if cfg.parallel_layers else sublayers
    return attention() * (2 if cross else 1) + ffn + norms * norm(d)


CASES = [
    ("decoder_only", ALL_AXES),
    ("decoder_only", {"head_dim": DH, "attention_bias": "none", "activation": "swiglu", "norm_type": "rmsnorm"}),
    ("encoder_decoder", {"head_dim": DH, "kv_heads": 1, "qk_norm": True, "attention_bias": "qkv", "ffn_bias": False}),
    ("encoder_only", {**ALL_AXES, "activation": "swiglu"}),
]


@pytest.mark.parametrize("arch,settings", CASES)
def test_parameter_count_and_flops_follow_the_axes(arch, settings):
    cfg = config(arch, **settings)
    model = build_model(cfg)
    for stack, cross in (("encoder", False), ("decoder", arch == "encoder_decoder")):
        for layer in getattr(model, stack).layers if hasattr(model, stack) else []:
            assert count_parameters(layer) == layer_parameters(cfg, cross)
    assert_flops_estimate_is_counted(model, tokens(1, 7, vocab=13), tokens(1, 5))


# --- 7. cached decoding ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch,settings",
    [("decoder_only", s) for s in [*AXES.values(), ALL_AXES]]
    + [("encoder_decoder", {**ALL_AXES, "parallel_layers": False, "pos_encoding": "alibi"})],
    ids=[*AXES, "all", "encoder_decoder all"],
)
def test_cached_decoding_with_each_axis_equals_full_recomputation(arch, settings):
    from src.model.decoding import _stepper

    model = model_for(arch, **{"pos_encoding": "rope", **settings})
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
    out = generate(model, src=src, prompt=None if src is not None else seq[:, :prompt_len], max_new_tokens=4)
    assert out.shape == (3, 4)


def test_stacked_seeds_with_every_axis_equal_their_solo_models():
    members = [model_for("decoder_only", seed=seed, pos_encoding="rope", **ALL_AXES) for seed in (0, 1)]
    stacked = StackedModel(members)
    x = torch.stack([tokens(pad_last_row=True), tokens(seed=5)])  # (M, B, T)
    with torch.no_grad():
        logits = stacked.call(lambda model, batch: model(batch, padded=True).logits, x)
        for member, model in enumerate(members):
            real = x[member] != PAD_ID
            torch.testing.assert_close(logits[member][real], model(x[member]).logits[real], atol=1e-12, rtol=0)


# --- 8. validate() ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings,says",
    [
        ({"head_dim": 0}, "model.head_dim=0 must be a positive integer"),
        ({"head_dim": -4}, "model.head_dim=-4 must be a positive integer"),
        ({"attention_bias": "some"}, "model.attention_bias='some' is not known: choose one of all, qkv, none"),
        ({"parallel_layers": True}, "model.parallel_layers=true needs pre-LN"),
        (
            {"parallel_layers": True, "norm_position": "pre", "arch": "encoder_decoder"},
            "not defined for arch=encoder_decoder",
        ),
        ({"heads": 3}, "or set model.head_dim"),
        ({"head_dim": 5, "pos_encoding": "rope"}, "model.pos_encoding=rope"),  # rope turns pairs: Dh must be even
    ],
)
def test_validate_refuses_bad_values_in_one_line(settings, says):
    arch = settings.pop("arch", "decoder_only")
    with pytest.raises(ConfigError) as error:
        config(arch, **settings)
    message = str(error.value)
    assert "\n" not in message and says in message
    if "parallel" in says or "pre-LN" in says:
        assert "model.norm_position=pre" in message or "model.parallel_layers=false" in message  # the fix


def test_the_axes_are_settings_of_the_command_line(compose):
    from src.cli.schema import model_config_for

    model = compose().model
    assert (model.head_dim, model.attention_bias, model.ffn_bias, model.qk_norm, model.parallel_layers) == (
        None, "all", True, False, False,
    )  # fmt: skip
    overrides = ["model.head_dim=8", "model.attention_bias=qkv", "model.ffn_bias=false", "model.qk_norm=true"]
    overrides += ["model.parallel_layers=true", "model.norm_position=pre", "model.arch=decoder_only"]
    cfg = model_config_for(compose(*overrides), src_vocab_size=11, tgt_vocab_size=11, num_classes=2).validate()
    assert (cfg.head_dim, cfg.attention_bias, cfg.ffn_bias, cfg.qk_norm, cfg.parallel_layers) == (
        8,
        "qkv",
        False,
        True,
        True,
    )
    layer = build_model(cfg).decoder.layers[0]
    assert layer.self_attn.q_dim == cfg.heads * 8 and layer.self_attn.out_proj.bias is None
    assert layer.ffn.linear1.bias is None and layer.self_attn.q_norm is not None and layer.ffn_block.norm is None
