"""RoPE's variants (src/model/positional.py): the base `model.rope_theta`, the frequency scalings the pretrained
families store (`model.rope_scaling`: linear, llama3) and partial rotary (`model.rope_fraction`), against
transformers' own rotary embeddings, and the relative-position property each keeps."""

from __future__ import annotations

import pytest
import torch

from src.model import ConfigError
from src.model.positional import RotaryPositions, build_rope_scaling

transformers = pytest.importorskip("transformers")


def hf_cos_sin(rope_parameters: dict, head_dim: int = 16, length: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' Llama rotary embedding for these parameters: cos and sin (T, Dh) at positions 0..length-1."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = transformers.LlamaConfig(
        hidden_size=head_dim * 4, num_attention_heads=4, max_position_embeddings=length, rope_parameters=rope_parameters
    )
    embedding = LlamaRotaryEmbedding(config)
    cos, sin = embedding(torch.zeros(1, length, head_dim), torch.arange(length)[None])
    return cos[0], sin[0]


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ({"base": 500000.0}, {"rope_type": "default", "rope_theta": 500000.0}),
        (
            {"base": 10000.0, "scaling": {"type": "linear", "factor": 4.0}},
            {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
        ),
        (  # a short original length, so that the tiny head's frequencies fall in all three bands
            {"base": 500000.0, "scaling": {"type": "llama3", "factor": 8.0, "original_max_len": 64}},
            {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        ),
    ],
    ids=["theta", "linear", "llama3"],
)
def test_the_angles_are_transformers_angles(ours, theirs):
    rope = RotaryPositions(16, 40, ours["base"], scaling=build_rope_scaling(ours.get("scaling")))
    cos, sin = hf_cos_sin(theirs)
    # both in float32, the same operations: the same numbers
    torch.testing.assert_close(rope.cos, cos, rtol=0, atol=0)
    torch.testing.assert_close(rope.sin, sin, rtol=0, atol=0)


def test_llama3_scaling_keeps_fast_frequencies_divides_slow_ones_and_blends_between():
    inv = 1.0 / 500000.0 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16)  # (8,): a head of 16's frequencies
    scaled = build_rope_scaling({"type": "llama3", "original_max_len": 64}).scale(inv)
    wavelength = 2 * torch.pi / inv
    fast, slow = wavelength < 64 / 4, wavelength > 64 / 1
    between = ~fast & ~slow
    assert fast.any() and slow.any() and between.any()  # every band is tested
    torch.testing.assert_close(scaled[fast], inv[fast], rtol=0, atol=0)
    torch.testing.assert_close(scaled[slow], inv[slow] / 8, rtol=1e-15, atol=0)
    assert ((scaled[between] < inv[between]) & (scaled[between] > inv[between] / 8)).all()


@pytest.mark.parametrize(
    "settings, nothing",
    [
        ({"type": "linear"}, True),  # linear's default factor, 1.0
        ({"type": "linear", "factor": 2.0}, False),
        ({"type": "llama3", "factor": 1.0, "original_max_len": 64}, True),  # every band of a head of 16 (above)
        (
            {"type": "llama3", "factor": 1.0, "low_freq_factor": 2.0, "high_freq_factor": 3.0, "original_max_len": 64},
            True,
        ),
        ({"type": "llama3", "original_max_len": 64}, False),
    ],
)
def test_a_scaling_says_whether_it_scales_nothing_and_then_its_angles_are_the_unscaled_ones(settings, nothing):
    """scales_nothing() is what src.run's warning about a scaling without effect asks (src/cli/validation.py)."""
    scaling = build_rope_scaling(settings)
    assert scaling is not None and scaling.scales_nothing() == nothing
    same = torch.equal(RotaryPositions(16, 40, 500000.0, scaling=scaling).cos, RotaryPositions(16, 40, 500000.0).cos)
    assert same == nothing


def test_partial_rotary_turns_the_first_dimensions_and_keeps_the_rest_and_scores_by_distance_only():
    torch.manual_seed(0)
    rope = RotaryPositions(16, 32, fraction=0.25)  # 4 of 16 dimensions turn
    assert rope.rotary_dim == 4 and rope.cos.shape == (32, 4)
    q, k = torch.randn(1, 2, 1, 16, dtype=torch.float64), torch.randn(1, 2, 1, 16, dtype=torch.float64)
    turned_q, turned_k = rope.rotate(q, k, start=5)
    torch.testing.assert_close(turned_q[..., 4:], q[..., 4:], rtol=0, atol=0)  # carry no position
    assert not torch.allclose(turned_q[..., :4], q[..., :4])

    def score(i: int, j: int) -> torch.Tensor:  # q at position i, k at position j
        qi, _ = rope.rotate(q, q, start=i)
        _, kj = rope.rotate(k, k, start=j)
        return (qi * kj).sum()

    torch.testing.assert_close(score(7, 3), score(12, 8), rtol=1e-6, atol=1e-6)  # the same distance: 4


def test_partial_rotary_is_gpt_neox_rotary_pct():
    """GPT-NeoX's rotary_pct: transformers' own apply_rotary_pos_emb on the first rotary dimensions."""
    from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding, apply_rotary_pos_emb

    config = transformers.GPTNeoXConfig(
        hidden_size=64, num_attention_heads=4, rotary_pct=0.5, max_position_embeddings=16
    )
    cos, sin = GPTNeoXRotaryEmbedding(config)(torch.zeros(1, 16, 16), torch.arange(16)[None])
    torch.manual_seed(1)
    q, k = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    expected_q, expected_k = apply_rotary_pos_emb(q, k, cos, sin)
    ours_q, ours_k = RotaryPositions(16, 16, fraction=0.5).rotate(q, k)
    torch.testing.assert_close(ours_q, expected_q, rtol=0, atol=2e-5)
    torch.testing.assert_close(ours_k, expected_k, rtol=0, atol=2e-5)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"type": "yarn"}, "model.rope_scaling.type='yarn' is not known: choose one of linear, llama3"),
        ({"type": "linear", "factr": 2}, "factr is not a setting of type=linear: it takes factor"),
        ({"type": "linear", "factor": 0}, "model.rope_scaling.factor=0 must be > 0"),
        ({"type": "llama3", "low_freq_factor": 4, "high_freq_factor": 1}, "low_freq_factor=4 must be > 0 and below"),
    ],
)
def test_a_scaling_that_cannot_work_is_one_line(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_rope_scaling(settings)


def test_the_command_line_settings_reach_the_models_rotary_positions(compose):
    from src.cli.schema import model_config_for
    from src.model import build_model

    cfg = compose(
        "model.pos_encoding=rope", "model.rope_theta=500000", "model.rope_fraction=0.5",
        "model.rope_scaling={type:llama3,factor:4,original_max_len:64}",
    )  # fmt: skip
    model_cfg = model_config_for(cfg, 20, 20)
    assert model_cfg.rope_scaling == {"type": "llama3", "factor": 4.0, "original_max_len": 64}  # what checkpoints keep
    rope = build_model(model_cfg).positional
    scaling = build_rope_scaling({"type": "llama3", "factor": 4.0, "original_max_len": 64})
    expected = RotaryPositions(model_cfg.head_size, model_cfg.max_len, 500000.0, 0.5, scaling)
    assert rope.rotary_dim == model_cfg.head_size // 2
    torch.testing.assert_close(rope.cos, expected.cos, rtol=0, atol=0)
