"""The feed-forward activations (`model.activation`): each module computes its activation's textbook formula, and
each is a model axis that builds, trains a step and decodes."""

from __future__ import annotations

import math

import pytest
import torch

from src.model import TransformerConfig, build_model
from src.model.feedforward import FEEDFORWARDS, build_feedforward, is_gated

# The formulas as the papers write them (float64), not through the functions the modules call.
FORMULAS = {
    "relu": lambda x: torch.clamp(x, min=0.0),
    "gelu": lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))),  # Hendrycks and Gimpel 2016, exact
    # the tanh approximation, as GPT-2's gelu_new writes it
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    "silu": lambda x: x / (1.0 + torch.exp(-x)),  # x sigmoid(x) (Elfwing et al. 2018)
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_each_feed_forward_applies_its_activation_between_the_two_linear_maps(name):
    torch.manual_seed(0)
    ffn = build_feedforward(name, 8, 16, 0.0).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64) * 3  # wide enough that the approximations differ from exact GELU
    expected = ffn.linear2(FORMULAS[name](ffn.linear1(x)))
    assert torch.allclose(ffn(x), expected, atol=1e-12, rtol=0)


def test_gelu_and_its_tanh_approximation_are_different_axes():
    """GPT-2's weights were trained with the approximation: exact GELU would not reproduce its logits."""
    torch.manual_seed(0)
    exact, approximate = build_feedforward("gelu", 8, 16, 0.0).double(), build_feedforward("gelu_tanh", 8, 16, 0.0)
    approximate.load_state_dict(exact.state_dict())
    x = torch.randn(4, 8, dtype=torch.float64) * 3
    difference = (exact(x) - approximate.double()(x)).abs().max().item()
    assert 1e-6 < difference < 1e-2


@pytest.mark.parametrize("name", sorted(FEEDFORWARDS))
def test_every_activation_is_a_model_axis(name):
    cfg = TransformerConfig(
        arch="decoder_only", tgt_vocab_size=11, d_model=16, heads=2, dec_layers=1, d_ff=32, dropout=0.0, activation=name
    )
    model = build_model(cfg)
    tokens = torch.randint(4, 11, (2, 6))
    loss = torch.nn.functional.cross_entropy(model(tokens).logits.flatten(0, 1), tokens.flatten())
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", sorted(FEEDFORWARDS))
def test_is_gated_says_which_matrices_the_network_holds(name):
    """is_gated tells a weight conversion whether to fill gate_value or linear1."""
    ffn = build_feedforward(name, 8, 16, 0.0)
    assert hasattr(ffn, "gate_value") == is_gated(name) != hasattr(ffn, "linear1")


def test_token_embeddings_are_scaled_by_sqrt_d_model_unless_the_axis_says_not():
    """The paper multiplies token embeddings by sqrt(d_model) (section 3.4); GPT-2 and BERT do not."""
    from src.model.positional import build_positional

    tokens = torch.randint(4, 11, (2, 5))
    embedded = {}
    for scale in (True, False):
        cfg = TransformerConfig(
            arch="decoder_only",
            tgt_vocab_size=11,
            d_model=16,
            heads=2,
            dec_layers=1,
            d_ff=32,
            dropout=0.0,
            pos_encoding="none",
            scale_embeddings=scale,
        )
        torch.manual_seed(0)
        model = build_model(cfg)
        embedded[scale] = model.tgt_embed(tokens, build_positional(cfg))
        assert torch.equal(embedded[scale], model.tgt_embed.token(tokens) * (4.0 if scale else 1.0))
    assert torch.allclose(embedded[True], 4.0 * embedded[False])


def test_the_ffn_at_real_positions_equals_the_ffn_there_and_skips_the_padding():
    from src.model.feedforward import at_real_positions

    torch.manual_seed(0)
    ffn = FEEDFORWARDS["gelu"](8, 16, 0.0)
    x = torch.randn(2, 5, 8, requires_grad=True)
    real = torch.tensor([[True, True, True, False, False], [True] * 5])
    out = at_real_positions(ffn, x, real)
    torch.testing.assert_close(out[real], ffn(x)[real])
    assert torch.equal(out[~real], torch.zeros(2, 8))
    out.sum().backward()  # gradients reach the real positions only
    assert torch.equal(x.grad[~real], torch.zeros(2, 8)) and x.grad[real].abs().sum() > 0
    assert torch.equal(at_real_positions(ffn, x, None), ffn(x))
