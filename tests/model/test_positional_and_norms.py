import math

import pytest
import torch
from torch import nn

from src.model.norms import LayerNorm, RMSNorm, layer_norm_explicit, rms_norm_explicit
from src.model.positional import ALiBiPositions, RotaryPositions, SinusoidalPositions


def test_sinusoidal_table_matches_the_paper_formula():
    pe = SinusoidalPositions(d_model=8, max_len=50).table
    pos, i = 7, 2
    assert pe[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 8)), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 8)), abs=1e-6)


def test_rotary_scores_depend_only_on_relative_position():
    rope = RotaryPositions(head_dim=8, max_len=64).double()
    q = torch.randn(1, 1, 1, 8, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 8, dtype=torch.float64)

    def score(i, j):
        rq, _ = rope.rotate(q, q, start=i)
        _, rk = rope.rotate(k, k, start=j)
        return (rq * rk).sum().item()

    assert score(3, 1) == pytest.approx(score(13, 11), rel=1e-6)  # float32 tables
    assert score(3, 1) != pytest.approx(score(3, 2), rel=1e-3)
    # rotation preserves norms
    rq, _ = rope.rotate(q, q, start=5)
    assert rq.norm().item() == pytest.approx(q.norm().item(), rel=1e-6)


def test_alibi_slopes_and_bias_as_in_the_paper():
    alibi = ALiBiPositions(heads=8)
    assert alibi.slopes.tolist() == [2.0 ** -(h + 1) for h in range(8)]
    bias = alibi.attention_bias(3, 3)
    assert bias.shape == (8, 3, 3)
    assert bias[0].tolist() == [[0.0, -0.5, -1.0], [-0.5, 0.0, -0.5], [-1.0, -0.5, 0.0]]
    assert alibi.attention_bias(1, 3, q_start=2)[0].tolist() == [[-1.0, -0.5, 0.0]]


def test_layernorm_written_out_equals_torch():
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    ours, ref = LayerNorm(16).double(), nn.LayerNorm(16).double()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5), ref.bias.uniform_(-1, 1)
        ours.weight.copy_(ref.weight), ours.bias.copy_(ref.bias)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(layer_norm_explicit(x, ours.weight, ours.bias, ours.eps), ref(x))


def test_rmsnorm_equals_torch():
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    ours, ref = RMSNorm(16, eps=1e-5).double(), nn.RMSNorm(16, eps=1e-5).double()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ours.weight.copy_(ref.weight)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(rms_norm_explicit(x, ours.weight, ours.eps), ref(x))


@pytest.mark.parametrize("d_model", [8, 9])
def test_sinusoidal_halves_holds_the_papers_sines_and_cosines_in_two_halves(d_model):
    interleaved = SinusoidalPositions(d_model, 12).table
    halves = SinusoidalPositions(d_model, 12, interleaved=False).table
    sines = (d_model + 1) // 2  # an odd d_model has one sine more (Marian: sentinel = d // 2 + d % 2)
    assert torch.equal(halves[:, :sines], interleaved[:, 0::2])
    assert torch.equal(halves[:, sines:], interleaved[:, 1::2])
    # Marian's own formula: position / 10000^(2 (j // 2) / d), sin of the even j first, then cos of the odd j.
    pos = torch.arange(12, dtype=torch.float64)[:, None]
    angle = pos / 10000 ** (2 * (torch.arange(d_model, dtype=torch.float64) // 2) / d_model)
    expected = torch.cat([angle[:, 0::2].sin(), angle[:, 1::2].cos()], dim=1)
    torch.testing.assert_close(halves, expected.float())
