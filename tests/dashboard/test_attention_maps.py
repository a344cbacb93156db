"""Attention maps and masks: the renderers draw each weight in the right cell and colour, fit TensorBoard's image
card up to 16 heads with readable labels, and cope with long sequences and odd head counts; AttentionMapLogger
writes them under the expected tags inside a real Trainer."""

import math

import numpy as np
import pytest
import torch

from src.dashboard import AttentionMapLogger, read_events
from src.dashboard.attention_maps import (
    COLOUR_BAR_WIDTH,
    IMAGE_WIDTH,
    LEGEND_WIDTH,
    MASK_COLOURS,
    MIN_LABEL_SPACING,
    Grid,
    attention_tag,
    label_stride,
    layer_title,
    mask_title,
    render_attention_heads,
    render_attention_mask,
    short_label,
)
from src.dashboard.drawing import colour_table, text_width
from src.model.names import head_name

from .conftest import LAYERS, SITES_BY_KIND

VIRIDIS = colour_table("viridis")


def is_colourful(image: np.ndarray) -> bool:
    """More than a handful of distinct colours: a heat map, not a blank canvas."""
    return len(np.unique(image.reshape(-1, 3), axis=0)) > 20


def cell_colour(image: np.ndarray, grid: Grid, head: int, query: int, key: int) -> tuple[int, ...]:
    """The pixel at the centre of cell (query, key) of one head's panel."""
    left, top = grid.origin(head)
    return tuple(image[top + int((query + 0.5) * grid.cell), left + int((key + 0.5) * grid.cell)])


def labels(count: int) -> list[str]:
    return [f"tok{i}" for i in range(count)]


# --- the renderers ------------------------------------------------------------------------------------------------


def test_each_weight_is_drawn_in_its_cell_queries_down_keys_across():
    weights = np.zeros((2, 5, 7), dtype=np.float32)
    weights[1, 1, 3] = 1.0  # head 1: query 1 attends to key 3 only
    image = render_attention_heads(weights, labels(5), labels(7), site="cross", layer=0)
    grid = Grid.plan(2, labels(5), labels(7), COLOUR_BAR_WIDTH, ["cross:0:0", "cross:0:1"])
    assert image.shape[:2] == (grid.height, grid.width)
    assert cell_colour(image, grid, head=1, query=1, key=3) == tuple(VIRIDIS[255])  # the top of the scale
    assert cell_colour(image, grid, head=1, query=3, key=1) == tuple(VIRIDIS[0])  # not transposed
    assert cell_colour(image, grid, head=0, query=1, key=3) == tuple(VIRIDIS[0])  # head 0 is empty


@pytest.mark.parametrize("heads", [1, 2, 4, 6, 8, 12, 16])
def test_up_to_16_heads_fit_the_image_card_with_readable_cells_and_labels(heads):
    tokens = "<bos> ein mann mit einem orangefarbenen hut , der etwas anstarrt . <eos>".split()  # 13, long labels
    labels = [short_label(t) for t in tokens]
    captions = [head_name("cross", 1, head) for head in range(heads)]
    grid = Grid.plan(heads, labels, labels, COLOUR_BAR_WIDTH, captions)
    image = render_attention_heads(
        torch.softmax(torch.randn(heads, 13, 13), -1), tokens, tokens, vmax=1.0, site="cross", layer=1
    )
    assert image.shape[1] == grid.width <= IMAGE_WIDTH  # shown at its own size: text is not shrunk
    assert grid.columns == math.ceil(math.sqrt(heads)) and grid.rows * grid.columns >= heads
    assert grid.cell >= 4  # a 16-head layer of 13 tokens still has cells you can see
    # Labels never closer than MIN_LABEL_SPACING pixels; with room, every token is labelled.
    stride = label_stride(13, grid.cell)
    assert stride * grid.cell >= MIN_LABEL_SPACING
    assert stride == 1 if grid.cell >= MIN_LABEL_SPACING else stride > 1
    assert is_colourful(image)


def test_a_long_sequence_is_averaged_down_to_fit():
    length = 300
    tokens = [f"token_with_a_long_name_{i}" for i in range(length)]
    weights = torch.full((2, length, length), 1.0 / length)
    weights[:, :, 0] = 0.0  # the first key column is empty: averaging keeps it dark at one pixel per cell
    image = render_attention_heads(weights, tokens, tokens, "long", vmax=1.0 / length)
    grid = Grid.plan(2, [short_label(t) for t in tokens], [short_label(t) for t in tokens], COLOUR_BAR_WIDTH)
    assert grid.cell == 1 and grid.panel_width < length and image.shape[1] <= IMAGE_WIDTH
    left, top = grid.origin(0)
    assert tuple(image[top + 50, left + grid.panel_width // 2]) == tuple(VIRIDIS[255])
    assert tuple(image[top + 50, left]) != tuple(VIRIDIS[255])


def test_label_stride_keeps_labels_apart():
    assert label_stride(300, pixels_per_position=1) == MIN_LABEL_SPACING
    assert label_stride(5, pixels_per_position=40) == 1


def test_a_single_matrix_and_an_all_zero_layer_render():
    assert render_attention_heads(np.eye(3)).shape[2] == 3
    assert render_attention_heads(torch.zeros(2, 3, 3)).shape[2] == 3


def test_token_count_mismatch_is_explained():
    with pytest.raises(ValueError, match="token labels"):
        render_attention_heads(torch.rand(1, 3, 3), ["a", "b"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="index the batch first"):
        render_attention_heads(torch.rand(2, 1, 3, 3))


def test_mask_draws_allowed_and_blocked_cells_and_accepts_batch_and_head_dimensions_of_one():
    causal = torch.tril(torch.ones(1, 1, 6, 6, dtype=torch.bool))
    image = render_attention_mask(causal, list("abcdef"), list("abcdef"), title=mask_title("decoder_self"))
    grid = Grid.plan(1, list("abcdef"), list("abcdef"), right=LEGEND_WIDTH)
    assert cell_colour(image, grid, 0, query=4, key=1) == tuple(MASK_COLOURS[255])  # the past: may attend
    assert cell_colour(image, grid, 0, query=1, key=4) == tuple(MASK_COLOURS[0])  # the future: blocked


def test_titles_and_tags_name_the_layer_as_ablate_heads_does():
    assert layer_title("decoder_self", 1) == "decoder_self:1 (decoder self-attention)"
    assert layer_title("encoder_self", 0) == "encoder_self:0 (encoder self-attention)"
    assert mask_title("cross") == "cross mask (cross-attention)"
    assert attention_tag("cross", 1) == "val_attention/cross:1"
    assert attention_tag("cross", 1, example=0) == "val_attention/cross:1/example_0"


@pytest.mark.parametrize("site", ["cross", "decoder_self"])
@pytest.mark.parametrize("keys", [13, 3])  # a short source: cross-attention panels narrower than their captions
def test_head_names_never_run_into_each_other_and_the_title_is_whole(site, keys):
    queries = [short_label(t) for t in "<bos> ein mann mit einem orangefarbenen hut , der etwas anstarrt .".split()]
    key_labels = queries[:keys]
    for heads in range(1, 17):
        captions = [head_name(site, 11, head) for head in range(heads)]  # two-digit layers: the widest names
        title = layer_title(site, 11)
        grid = Grid.plan(heads, queries, key_labels, COLOUR_BAR_WIDTH, captions, title)
        assert grid.width <= IMAGE_WIDTH and grid.left + text_width(title, 12, bold=True) <= grid.width
        for index, caption in enumerate(captions):
            left, _ = grid.origin(index)
            centre, half = left + grid.panel_width / 2, text_width(caption, grid.caption_size) / 2
            assert centre - half >= grid.left - 1 and centre + half <= grid.panels_right + 1, (heads, caption)
            if index % grid.columns:  # the caption to its left ends before this one starts
                previous_left, _ = grid.origin(index - 1)
                previous_end = (
                    previous_left + grid.panel_width / 2 + text_width(captions[index - 1], grid.caption_size) / 2
                )
                assert previous_end < centre - half, (heads, caption)
        assert grid.caption_size >= 8 and grid.cell >= 4


# --- the callback -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["seq2seq", "lm", "classification"])
def test_maps_and_masks_appear_in_the_event_files(tmp_path, fit, kind):
    map_logger = AttentionMapLogger(every_n_steps=2)
    module = fit(kind, [map_logger])
    events = read_events(tmp_path)
    sites = SITES_BY_KIND[kind]

    # One image per (site, layer) after steps 2 and 4, filed under 2 and 4 as that step's scalars are (the steps
    # done, as the console and metrics.json count them); the end-of-training log at step 4 is not repeated. Masks
    # once, at step 0.
    expected_maps = {f"val_attention/{site}:{layer}" for site in sites for layer in range(LAYERS)}
    expected_masks = {f"val_mask/{site}" for site in sites}
    assert events.image_tags == expected_maps | expected_masks
    for tag in expected_maps:
        assert events.image_steps(tag) == [2, 4], tag
    for tag in expected_masks:
        assert events.image_steps(tag) == [0], tag
    widths = {record.width for records in events.images.values() for record in records}
    assert max(widths) <= IMAGE_WIDTH  # every image fits TensorBoard's card at its own size
    assert map_logger.logged_steps == [2, 4]
    assert module.model.attention_map_calls == 2  # only on the two logging steps


def test_several_examples_get_their_own_tags(tmp_path, fit):
    fit("classification", [AttentionMapLogger(every_n_steps=4, num_examples=2, log_masks=False)])
    events = read_events(tmp_path)
    # examples counted from 0, as the validation split and the text samples' example column number them
    assert events.image_tags == {
        "val_attention/encoder_self:0/example_0",
        "val_attention/encoder_self:0/example_1",
        "val_attention/encoder_self:1/example_0",
        "val_attention/encoder_self:1/example_1",
    }


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="every_n_steps"):
        AttentionMapLogger(every_n_steps=-1)
