import math

import pytest
import torch
from torch import nn

from src.model.attention import MultiHeadAttention, explicit_attention, fused_attention


def test_worked_example_of_the_seed_notebook():
    """3 inputs of d_model 4, weights from the notebook, no scaling: first output row and softmax rows."""
    x = torch.tensor([[1, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]], dtype=torch.float64)
    w_query = torch.tensor([[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=torch.float64)
    w_key = torch.tensor([[0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.float64)
    w_value = torch.tensor([[0, 2, 0], [0, 3, 0], [1, 0, 3], [1, 1, 0]], dtype=torch.float64)
    q, k, v = (x @ w for w in (w_query, w_key, w_value))  # (3, 3) each

    out, weights = explicit_attention(q[None, None], k[None, None], v[None, None], scale=1.0)

    torch.testing.assert_close(out[0, 0, 0], torch.tensor([1.93662106, 6.68310531, 1.59506841], dtype=torch.float64))
    # The rows the notebook prints: softmax of the scores [2, 4, 4], [4, 16, 12], [4, 12, 10].
    notebook_rows = torch.tensor(
        [
            [6.3379e-02, 4.6831e-01, 4.6831e-01],
            [6.0337e-06, 9.8201e-01, 1.7986e-02],
            [2.9539e-04, 8.8054e-01, 1.1917e-01],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(weights[0, 0], notebook_rows, rtol=1e-4, atol=1e-8)
    e = math.exp
    first_row = [e(2) / (e(2) + 2 * e(4)), e(4) / (e(2) + 2 * e(4)), e(4) / (e(2) + 2 * e(4))]
    torch.testing.assert_close(weights[0, 0, 0], torch.tensor(first_row, dtype=torch.float64))


def _random_qkv(b=2, h=3, tq=5, tk=6, d=8):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(b, h, t, d, generator=g, dtype=torch.float64) for t in (tq, tk, tk)]


@pytest.mark.parametrize("with_bias", [False, True])
def test_explicit_and_fused_paths_agree(with_bias):
    q, k, v = _random_qkv()
    mask = torch.rand(2, 1, 5, 6, generator=torch.Generator().manual_seed(1)) > 0.3
    bias = torch.randn(3, 5, 6, dtype=torch.float64) if with_bias else None
    explicit, weights = explicit_attention(q, k, v, mask, bias)
    torch.testing.assert_close(fused_attention(q, k, v, mask, bias), explicit)
    torch.testing.assert_close(
        weights.sum(-1)[mask.any(-1).expand(-1, 3, -1)],
        torch.ones_like(weights.sum(-1))[mask.any(-1).expand(-1, 3, -1)],
    )


def test_fully_masked_rows_give_zeros_not_nan_in_both_paths_and_gradients():
    q, k, v = _random_qkv()
    q.requires_grad_(True)
    mask = torch.ones(2, 1, 5, 6, dtype=torch.bool)
    mask[:, :, 2] = False  # query 2 may attend to nothing
    out, weights = explicit_attention(q, k, v, mask)
    fused = fused_attention(q, k, v, mask)
    for result in (out, fused):
        assert not torch.isnan(result).any()
        assert torch.all(result[:, :, 2] == 0)
    assert torch.all(weights[:, :, 2] == 0)
    (out.sum() + fused.sum()).backward()
    assert torch.isfinite(q.grad).all()


def _copy_from_torch_mha(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    d = ref.embed_dim
    with torch.no_grad():
        if ours.is_self_attention:
            ours.qkv_proj.weight.copy_(ref.in_proj_weight)
            ours.qkv_proj.bias.copy_(ref.in_proj_bias)
        else:
            ours.q_proj.weight.copy_(ref.in_proj_weight[:d])
            ours.q_proj.bias.copy_(ref.in_proj_bias[:d])
            ours.kv_proj.weight.copy_(ref.in_proj_weight[d:])
            ours.kv_proj.bias.copy_(ref.in_proj_bias[d:])
        ours.out_proj.load_state_dict(ref.out_proj.state_dict())


@pytest.mark.parametrize("self_attention", [True, False])
def test_multi_head_attention_equals_torch_including_per_head_weights(self_attention):
    torch.manual_seed(0)
    d, h = 16, 4
    ref = nn.MultiheadAttention(d, h, dropout=0.0, batch_first=True).double()
    ours = MultiHeadAttention(d, h, dropout=0.0, is_self_attention=self_attention).double()
    _copy_from_torch_mha(ours, ref)
    x = torch.randn(2, 5, d, dtype=torch.float64)
    memory = x if self_attention else torch.randn(2, 7, d, dtype=torch.float64)
    key_padding = torch.zeros(2, memory.size(1), dtype=torch.bool)
    key_padding[1, -2:] = True  # torch: True = blocked

    ref_out, ref_weights = ref(x, memory, memory, key_padding_mask=key_padding, average_attn_weights=False)
    allowed = (~key_padding)[:, None, None, :]  # ours: True = may attend, (B, 1, 1, Tk)
    out, weights = ours(x, memory=None if self_attention else memory, mask=allowed, need_weights=True)
    fused_out, _ = ours(x, memory=None if self_attention else memory, mask=allowed)

    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=0)
    torch.testing.assert_close(fused_out, ref_out, atol=1e-6, rtol=0)


def test_heads_must_divide_d_model():
    with pytest.raises(ValueError, match="heads=3 must divide d_model=16"):
        MultiHeadAttention(16, 3, 0.0, True)


def test_explicit_path_drops_attention_weights_and_returns_them_before_dropout():
    q, k, v = _random_qkv()
    torch.manual_seed(0)
    dropped_out, weights = explicit_attention(q, k, v, dropout_p=0.5)
    clean_out, clean_weights = explicit_attention(q, k, v)
    torch.testing.assert_close(weights, clean_weights)  # the maps show what the model attends to
    assert not torch.allclose(dropped_out, clean_out)
    # with dropout the output is (weights * mask / (1 - p)) @ v: unbiased on average over many draws
    torch.manual_seed(1)
    mean_out = torch.stack([explicit_attention(q, k, v, dropout_p=0.5)[0] for _ in range(400)]).mean(0)
    assert (mean_out - clean_out).abs().mean() < 0.1 * clean_out.abs().mean()


@pytest.mark.parametrize(
    "pos_encoding, qk_norm, matters",
    [("sinusoidal", False, False), ("alibi", False, False), ("rope", False, True), ("sinusoidal", True, True)],
)
def test_a_key_bias_is_ignored_by_softmax_only_while_the_keys_reach_the_scores_as_projected(
    pos_encoding, qk_norm, matters
):
    """b_K adds q . b_K to every score of a query alike: no effect and no gradient, unless rotary positions turn it
    by each key's position or QK-norm normalises it with the key (AttentionBiases)."""
    from src.model import TransformerConfig, build_model

    torch.manual_seed(0)
    cfg = TransformerConfig(arch="decoder_only", d_model=16, heads=2, dec_layers=1, d_ff=32, dropout=0.0,
                            tgt_vocab_size=20, max_len=16, pos_encoding=pos_encoding, attention_bias="qkv",
                            qk_norm=qk_norm)  # fmt: skip
    model = build_model(cfg).double().eval()
    x = torch.randint(4, 20, (2, 8))
    attention = model.decoder.layers[0].self_attn
    key_bias = slice(attention.q_dim, attention.q_dim + attention.kv_dim)
    logits = model(x).logits
    logits.sum().backward()
    gradient = attention.qkv_proj.bias.grad[key_bias].abs().max().item()
    with torch.no_grad():
        attention.qkv_proj.bias[key_bias] += torch.randn(attention.kv_dim, dtype=torch.float64)
        change = (model(x).logits - logits).abs().max().item()
    assert (change > 1e-6, gradient > 1e-6) == (matters, matters), (change, gradient)


def test_the_explicit_path_scales_before_the_product_so_fp16_scores_stay_finite():
    """q . k of 64 entries of 40 each is 102,400, past fp16's largest finite value (65,504); scaled by 1/sqrt(64)
    it is 12,800. Scaling q first keeps the explicit path finite and equal to the fused one."""
    q = torch.full((1, 1, 3, 64), 40.0, dtype=torch.float16)
    k, v = q.clone(), torch.randn(1, 1, 3, 64).half()
    out, weights = explicit_attention(q, k, v)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    torch.testing.assert_close(out.float(), fused_attention(q, k, v).float(), atol=1e-2, rtol=0)
