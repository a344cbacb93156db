"""Attention maps and masks: the renderers return real, non-blank RGB images and cope with long sequences and odd
head counts; AttentionMapLogger writes them under the expected tags inside a real Trainer."""

import numpy as np
import pytest
import torch

from src.dashboard import AttentionMapLogger, read_events
from src.dashboard.attention_maps import (
    label_stride,
    layer_title,
    mask_title,
    render_attention_heads,
    render_attention_mask,
)

from .conftest import LAYERS, SITES_BY_KIND


def is_colourful(image: np.ndarray) -> bool:
    """More than a handful of distinct colours: a heat map, not a blank canvas."""
    return len(np.unique(image.reshape(-1, 3), axis=0)) > 20


# --- the renderers ------------------------------------------------------------------------------------------------


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


# --- the callback -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["seq2seq", "lm", "classification"])
def test_maps_and_masks_appear_in_the_event_files(tmp_path, fit, kind):
    map_logger = AttentionMapLogger(every_n_steps=2)
    module = fit(kind, [map_logger])
    events = read_events(tmp_path)
    sites = SITES_BY_KIND[kind]

    # One image per (site, layer) after steps 2 and 4, filed under 1 and 3 as Lightning files that step's scalars;
    # the end-of-training log at step 4 is not repeated. Masks once, at step 0.
    expected_maps = {f"attention/{site}/layer_{layer}" for site in sites for layer in range(1, LAYERS + 1)}
    expected_masks = {f"mask/{site}" for site in sites}
    assert events.image_tags == expected_maps | expected_masks
    for tag in expected_maps:
        assert events.image_steps(tag) == [1, 3], tag
    for tag in expected_masks:
        assert events.image_steps(tag) == [0], tag
    assert map_logger.logged_steps == [2, 4]
    assert module.model.attention_map_calls == 2  # only on the two logging steps


def test_several_examples_get_their_own_tags(tmp_path, fit):
    fit("classification", [AttentionMapLogger(every_n_steps=4, num_examples=2, log_masks=False)])
    events = read_events(tmp_path)
    assert events.image_tags == {
        "attention/encoder_self/layer_1/example_1",
        "attention/encoder_self/layer_1/example_2",
        "attention/encoder_self/layer_2/example_1",
        "attention/encoder_self/layer_2/example_2",
    }


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="every_n_steps"):
        AttentionMapLogger(every_n_steps=-1)
