"""A head named in TensorBoard is the head `ablate.heads` switches off (issue 24, item 1).

The user's path, with a real (tiny) network: read a layer's name in an image tag and a head's name in the caption
above its map, or a head's name at the end of a statistic's tag, paste it into `ablate.heads`, and switch off that
very head: the (layer, head) the spec selects is the one whose map is drawn under the caption, or whose statistic
the tag carries. Before the names were unified, tags and captions counted from 1 (`val_attention/cross/layer_2`,
"head 1") and this path switched off another head, or was refused.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from src.dashboard import AttentionMapLogger, AttentionStatsLogger, read_events
from src.dashboard.attention_maps import CAPTION_HEIGHT, COLOUR_BAR_WIDTH, GAP, Grid, layer_title, short_label
from src.dashboard.attention_stats import head_statistics
from src.dashboard.drawing import Canvas, colour_table, heat_panel
from src.model import TransformerConfig, build_model
from src.model.ablation import apply_ablation, layout_of, parse_ablation
from src.model.head_mask import attention_sites
from src.model.masks import real_positions
from src.model.names import head_name
from src.training import inference

from .conftest import VOCAB, FakeDataModule

HEADS = 3  # head numbers 0-2 next to layer numbers 0-1: a swapped layer and head would show
STATISTICS = ("entropy", "distance", "confidence")


def tiny_network() -> torch.nn.Module:
    torch.manual_seed(0)
    config = TransformerConfig(
        arch="encoder_decoder",
        src_vocab_size=len(VOCAB),
        tgt_vocab_size=len(VOCAB),
        d_model=12,
        heads=HEADS,
        enc_layers=2,
        dec_layers=2,
        d_ff=24,
        dropout=0.0,
        max_len=16,
    )
    return build_model(config)


def every_head_name(layout: dict[str, tuple[int, int]]) -> list[str]:
    return [
        head_name(site, layer, head)
        for site, (layers, heads) in layout.items()
        for layer in range(layers)
        for head in range(heads)
    ]


def read_caption(image: np.ndarray, grid: Grid, index: int, names: list[str]) -> str | None:
    """The name written above panel `index`, read the way a person does: the one of `names` that, written in the
    caption's place, gives exactly the pixels there (None when none does)."""
    left, top = grid.origin(index)
    column = index % grid.columns
    column_left = grid.left + column * (grid.column_width + GAP)
    region = (slice(top - CAPTION_HEIGHT, top), slice(column_left, column_left + grid.column_width))
    for name in names:
        canvas = Canvas(grid.width, grid.height)
        canvas.text(left + grid.panel_width / 2, top - 1, name, grid.caption_size, anchor="md")
        if np.array_equal(canvas.to_array()[region], image[region]):
            return name
    return None


def tokens(ids: torch.Tensor) -> list[str]:
    return [VOCAB[int(i)] for i in ids]


def test_a_head_read_in_an_image_caption_or_a_tag_is_the_head_ablate_heads_switches_off(tmp_path, fit):
    network = tiny_network()
    cfg = network.cfg
    layout = layout_of(cfg)
    module = fit(
        "seq2seq",
        [
            AttentionMapLogger(every_n_steps=2, log_masks=False),
            AttentionStatsLogger(every_n_steps=2, statistics=STATISTICS),
        ],
        network=network,
    )
    events = read_events(tmp_path)
    datamodule = FakeDataModule("seq2seq")
    # The last images and scalars were logged after the last step: the network as it is now.
    probe = datamodule.probe_batch(1)
    maps = inference.attention_maps(module.model, "seq2seq", probe).attentions  # site -> [(1, H, Tq, Tk)] per layer
    names = every_head_name(layout)
    viridis = colour_table("viridis")

    image_tags = sorted(tag for tag in events.image_tags if tag.startswith("val_attention/"))
    assert len(image_tags) == sum(layers for layers, _ in layout.values())
    for tag in image_tags:
        layer_spec = tag.split("/")[1]  # "cross:1": pasted as it reads, every head of that layer
        ((site, pairs),) = parse_ablation({"heads": [layer_spec]}, cfg).heads.items()
        (layer,) = {layer for layer, _ in pairs}
        image = np.asarray(Image.open(io.BytesIO(events.images[tag][-1].png)).convert("RGB"))
        query_key, key_key = inference.site_inputs(site)
        queries, keys = tokens(probe[query_key][0]), tokens(probe[key_key][0])  # the probe example has no padding
        weights = maps[site][layer][0].float()  # (H, Tq, Tk)
        grid = Grid.plan(
            HEADS,
            [short_label(t) for t in queries],
            [short_label(t) for t in keys],
            COLOUR_BAR_WIDTH,
            [head_name(site, layer, head) for head in range(HEADS)],
            layer_title(site, layer),
        )
        assert image.shape[:2] == (grid.height, grid.width), tag
        drawn = [heat_panel(weights[head].numpy(), grid.cell, float(weights.max()), viridis) for head in range(HEADS)]
        for index in range(HEADS):
            caption = read_caption(image, grid, index, names)
            assert caption is not None, f"{tag}: panel {index} has no head name above it"
            ((caption_site, ((caption_layer, caption_head),)),) = parse_ablation(
                {"heads": [caption]}, cfg
            ).heads.items()
            left, top = grid.origin(index)
            panel = image[top : top + grid.panel_height, left : left + grid.panel_width]
            whose = [head for head in range(HEADS) if np.array_equal(panel, drawn[head])]
            # the map under the caption is that head's, and no other head's
            assert (caption_site, caption_layer, whose) == (site, layer, [caption_head]), (tag, caption, whose)

    # A statistic's tag ends in its head's name: the value is that head's statistic on the probe batch.
    batch = datamodule.probe_batch(8)
    stats_maps = inference.attention_maps(module.model, "seq2seq", batch).attentions
    stats_tags = sorted(tag for tag in events.scalar_tags if tag.startswith("val_heads/"))
    assert len(stats_tags) == len(names) * len(STATISTICS)
    for tag in stats_tags:
        _, statistic, name = tag.split("/")
        ((site, ((layer, head),)),) = parse_ablation({"heads": [name]}, cfg).heads.items()
        query_key, _ = inference.site_inputs(site)
        query_mask = real_positions(batch[query_key], cfg.pad_id, cfg.eos_id, query_key == "tgt_in")
        values = head_statistics(stats_maps[site][layer], query_mask)[statistic]  # (H,)
        logged = events.scalars[tag][-1][1]
        whose = [h for h in range(HEADS) if abs(float(values[h]) - logged) <= 1e-5 * max(1.0, abs(logged))]
        assert whose == [head], (tag, whose)

    # And pasted into ablate.heads, the caption's name switches off that head alone: its slice of W^O's input is 0.
    site, layer, head = "cross", 1, 2
    ablation = parse_ablation({"heads": [head_name(site, layer, head)]}, cfg)
    apply_ablation(module.model, ablation)
    seen = {}
    out_proj = attention_sites(module.model)[site][layer].out_proj
    hook = out_proj.register_forward_pre_hook(lambda _module, inputs: seen.update(heads=inputs[0]))
    try:
        inference.attention_maps(module.model, "seq2seq", probe)
    finally:
        hook.remove()
    per_head = seen["heads"].unflatten(-1, (HEADS, -1))  # (B, T, H, Dh)
    silent = [h for h in range(HEADS) if bool((per_head[..., h, :] == 0).all())]
    assert silent == [head]
