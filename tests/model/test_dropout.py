import pytest
import torch

from src.model.dropout import Dropout, cpu_dropout_keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drops_with_probability_p_in_every_lane_and_keeps_the_mean(p):
    torch.manual_seed(0)
    y = Dropout(p).train()(torch.ones(400_000))
    sigma = (p * (1 - p) / 100_000) ** 0.5
    # every 4th element comes from the same 16-bit piece of a 64-bit draw: each lane must be unbiased
    for lane in range(4):
        assert abs((y.view(-1, 4)[:, lane] == 0).float().mean().item() - p) < 5 * sigma
    assert abs(y.mean().item() - 1.0) < 0.01
    values = torch.unique(y).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p), rel=1e-3)


def test_eval_mode_and_zero_p_are_the_identity_and_seeding_reproduces():
    x = torch.randn(3, 5)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    torch.manual_seed(1)
    a = Dropout(0.3).train()(x)
    torch.manual_seed(1)
    assert torch.equal(a, Dropout(0.3).train()(x))


def test_gradient_flows_through_kept_elements_only():
    torch.manual_seed(2)
    x = torch.ones(1000, requires_grad=True)
    y = Dropout(0.5).train()(x)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * mask * scale)/dx = mask * scale = y for x = 1


def test_odd_sizes_and_rejects_bad_p():
    keep, scale = cpu_dropout_keep_mask(torch.Size([3, 7]), 0.2)
    assert keep.shape == (3, 7) and scale == pytest.approx(1 / 0.8, rel=1e-3)
    with pytest.raises(ValueError, match="must be in"):
        Dropout(1.0)
