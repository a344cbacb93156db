import torch

from src.model.pooling import POOLINGS, FirstTokenPooler, MeanPooling


def test_mean_pooling_averages_the_real_tokens_only():
    x = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)  # (B, S, D)
    keep = torch.tensor([[True, True, False], [True, False, False]])
    pooled = MeanPooling(2)(x, keep)
    torch.testing.assert_close(pooled, torch.stack([x[0, :2].mean(0), x[1, 0]]))


def test_first_token_pooler_is_berts_dense_and_tanh_on_the_first_position():
    torch.manual_seed(0)
    pooler = FirstTokenPooler(4)
    x = torch.randn(3, 5, 4)
    keep = torch.ones(3, 5, dtype=torch.bool)
    expected = torch.tanh(x[:, 0] @ pooler.dense.weight.T + pooler.dense.bias)
    torch.testing.assert_close(pooler(x, keep), expected)
    x[:, 1:] = 0.0  # the other positions do not enter
    torch.testing.assert_close(pooler(x, keep), expected)


def test_every_registered_pooling_maps_b_s_d_to_b_d():
    for name, pooling in POOLINGS.items():
        assert pooling(6)(torch.randn(2, 4, 6), torch.ones(2, 4, dtype=torch.bool)).shape == (2, 6), name
