"""The renderers return real, non-blank RGB images and cope with long sequences and odd head counts."""

import numpy as np
import pytest
import torch

from src.dashboard.attention_maps import (
    label_stride,
    layer_title,
    mask_title,
    render_attention_heads,
    render_attention_mask,
)


def is_colourful(image: np.ndarray) -> bool:
    """More than a handful of distinct colours: a heat map, not a blank canvas."""
    return len(np.unique(image.reshape(-1, 3), axis=0)) > 20


def test_one_layer_renders_to_an_rgb_array():
    tokens = "<bos> the cat sat on the mat <eos>".split()
    weights = torch.softmax(torch.randn(4, len(tokens), len(tokens)), dim=-1)
    image = render_attention_heads(weights, tokens, tokens, title=layer_title("decoder_self", 1))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 150 < image.shape[0] < 700 and 400 < image.shape[1] < 1400  # modest size
    assert is_colourful(image)


def test_more_heads_wrap_into_rows_and_cross_attention_may_be_rectangular():
    four = render_attention_heads(torch.rand(4, 5, 9), title="cross")
    six = render_attention_heads(torch.rand(6, 5, 9), title="cross")
    assert six.shape[0] > four.shape[0]  # a second row of panels


def test_long_sequences_are_labelled_sparingly_without_crashing():
    length = 300
    tokens = [f"token_with_a_long_name_{i}" for i in range(length)]
    image = render_attention_heads(torch.softmax(torch.randn(2, length, length), -1), tokens, tokens, "long")
    assert is_colourful(image)
    assert label_stride(300, max_labels=20) == 15
    assert label_stride(5) == 1


def test_a_single_matrix_and_an_all_zero_layer_render():
    assert render_attention_heads(np.eye(3)).shape[2] == 3
    assert render_attention_heads(torch.zeros(2, 3, 3)).shape[2] == 3


def test_token_count_mismatch_is_explained():
    with pytest.raises(ValueError, match="token labels"):
        render_attention_heads(torch.rand(1, 3, 3), ["a", "b"], ["a", "b", "c"])


def test_mask_renders_and_accepts_batch_and_head_dimensions_of_one():
    causal = torch.tril(torch.ones(1, 1, 6, 6, dtype=torch.bool))
    image = render_attention_mask(causal, list("abcdef"), list("abcdef"), title=mask_title("decoder_self"))
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 2
    assert mask_title("cross").startswith("cross-attention")


def test_titles_count_layers_from_one():
    assert layer_title("decoder_self", 1) == "decoder self-attention, layer 2"
    assert layer_title("encoder_self", 0) == "encoder self-attention, layer 1"
