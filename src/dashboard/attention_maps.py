"""Attention maps and masks as TensorBoard images: the renderers and ``AttentionMapLogger``, which logs them.

The renderers are pure functions: tensors (or arrays) and token strings in, an RGB uint8 array (H, W, 3) out, so
logging is

    writer.add_image(tag, image, step, dataformats="HWC")

The pixels are drawn with numpy and Pillow (``drawing``) into an image about as wide as TensorBoard's image card,
so that the default card shows it at its own size: up to 16 heads stay legible without "show actual image size".
A layer of four heads takes a few milliseconds, against about 100 ms as a matplotlib figure.

Conventions: queries on the y axis (rows, top to bottom), keys on the x axis (columns), as in the weight matrix
``P[i, j] = softmax_j(q_i . k_j)``; rows of a weight matrix sum to 1.

Tags written (the tests and the end-to-end checks rely on them):

    val_attention/<site>:<layer>     image per layer, all heads, e.g. ``val_attention/cross:1``
                                     (``/example_<e>`` appended with several probe examples)
    val_mask/<site>                  image, once at train start

Layers, heads and sites are named as ``ablate.heads`` reads them (``src.model.names``): the tag's last part is the
layer (``cross:1``: layer 1 of the cross-attention, counted from 0) and each head's caption in the image is its
full name (``cross:1:2``), so what a user reads in TensorBoard can be typed into ``ablate.heads=[cross:1:2]``. An
example number ``e`` is the example's index in the validation split (counted from 0, as the datamodule indexes it:
the probe batch is the split's first examples), the same number as the ``example`` column of the text samples.

TensorBoard lists tag groups in name order; the groups are named ``val_...`` (they show validation examples, at
validation steps) so that they come after the learning curves (``train/``, ``val/``) in TIME SERIES.

Besides what every dashboard callback needs (see ``probe``), the logger reads the probe's token strings
(``datamodule.src_token_strings(ids)`` / ``tgt_token_strings(ids)``) and the masks the network applies
(``pl_module.model.attention_masks(src=..., tgt=...)`` -> {site: bool (B, 1, Tq, Tk)}, True = may attend).

View with ``tensorboard --logdir outputs --samples_per_plugin images=100`` (the UI shows 10 images per tag
otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer

from src.dashboard.drawing import Canvas, colour_bar, colour_table, heat_panel, text_width
from src.dashboard.probe import ProbeCallback, can_log, event_step, tensorboard_logger
from src.model.masks import real_positions
from src.model.names import SITES, STACKS, head_name, layer_name, site_title
from src.training.inference import site_inputs

ATTENTION_GROUP = "val_attention"
MASK_GROUP = "val_mask"

# Geometry, in pixels of the image. TensorBoard's image cards (IMAGES and TIME SERIES) show an image about 350 px
# wide unless "show actual image size" is ticked, and shrink wider ones with their text; drawn at this width, the
# image appears at its own size, so labels stay readable for up to 16 heads (a 4 x 4 grid; 3 columns when the heads'
# names, e.g. decoder_self:1:15, need the width).
IMAGE_WIDTH = 360
LABEL_SIZE = 10  # font size of token labels, head captions and axis titles
CAPTION_SIZES = (LABEL_SIZE, 9, 8)  # a head's name shrinks to these before the grid gives up a column for it
TITLE_SIZE = 12
TITLE_HEIGHT = 18
CAPTION_HEIGHT = 13  # the head's name ("cross:1:2") above each panel
GAP = 6  # between panels
AXIS_TITLE_HEIGHT = 14
COLOUR_BAR_WIDTH = 42  # right of the panels: a gap, the 10-px colour bar and its values
LEGEND_WIDTH = 62  # right of a mask: a gap, the swatches and their names
MIN_LABEL_SPACING = 11  # pixels between the centres of two labels on an axis; denser tokens get every k-th label
MAX_LABEL_CHARS = 8  # truncate long tokens (BPE pieces, words) so labels stay short
MASK_COLOURS = np.array([(240, 240, 240)] * 128 + [(43, 108, 163)] * 128, dtype=np.uint8)  # blocked | may attend


def site_axes(site: str | None) -> tuple[str, str]:
    """(query axis title, key axis title) of a site's images: "query" and "key" where both axes hold one sequence;
    for a cross-attention, which sequence each holds (names.STACKS): "query (target)", "key (source)". No site, or
    one names.SITES does not know: "query" and "key"."""
    found = SITES.get(site or "")
    if found is None or not found.is_cross_attention:
        return "query", "key"
    return f"query ({STACKS[found.stack].sequence})", f"key ({STACKS[found.key_stack].sequence})"


def _to_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().to("cpu", torch.float32).numpy()
    return np.asarray(array, dtype=np.float32)


def label_stride(length: int, pixels_per_position: float) -> int:
    """Label every k-th position so that labels are at least ``MIN_LABEL_SPACING`` pixels apart (k >= 1)."""
    return max(1, math.ceil(MIN_LABEL_SPACING / max(pixels_per_position, 1e-9)))


def short_label(token: str) -> str:
    token = token.replace("\n", "\\n")  # a newline in a character-level label would break the line
    if token == " ":
        return "␣"  # a character-level space, visible
    if len(token) > MAX_LABEL_CHARS:
        return token[: MAX_LABEL_CHARS - 1] + "…"
    return token


def _labels(tokens: Sequence[str] | None, length: int, axis: str) -> list[str]:
    """One short label per position: the tokens, or the positions 0, 1, ... when there are none."""
    if tokens is None:
        return [str(position) for position in range(length)]
    if len(tokens) != length:
        raise ValueError(
            f"{axis} has {len(tokens)} token labels but the attention matrix has {length} "
            f"positions on that axis: pass one label per position (crop both to the same length)"
        )
    return [short_label(token) for token in tokens]


def grid_columns(num_panels: int) -> int:
    """Panels per row: 1, 2 for 2-4 heads, 3 for 5-9, 4 for 10-16 (a square-ish grid)."""
    return max(1, math.ceil(math.sqrt(num_panels)))


@dataclass
class Grid:
    """Where everything goes in an image of ``num_panels`` heat maps of (Tq, Tk) cells sharing token labels.

    From top to bottom: the title, then rows of panels (each with a caption above it), then the key labels and the
    key axis title. Left of the panels: the query axis title and the query labels. Right: the colour bar.

    Each panel sits in the middle of a column ``column_width`` pixels wide: the panel, or its caption when the
    caption is wider (a head's full name, ``decoder_self:1:15``, is wider than a 13-token panel of a 4 x 4 grid), so
    that neighbouring captions never run into each other.
    """

    num_panels: int
    columns: int
    rows: int
    cell: int  # pixels per cell; 1 when a long sequence is shrunk to fit (see ``heat_panel``)
    panel_width: int
    panel_height: int
    column_width: int  # >= panel_width: the panel or its caption, whichever is wider
    caption_size: int  # font size of the captions
    left: int  # x of the first panel column
    right: int  # pixels right of the last panel column, for the colour bar or legend
    key_label_height: int
    rotate_keys: bool
    min_width: int = 0  # the title's extent: a narrow grid (few keys) still shows the whole title

    @classmethod
    def plan(
        cls,
        num_panels: int,
        query_labels: list[str],
        key_labels: list[str],
        right: int,
        captions: Sequence[str] = (),
        title: str = "",
    ) -> Grid:
        num_queries, num_keys = len(query_labels), len(key_labels)
        left = AXIS_TITLE_HEIGHT + max(text_width(label, LABEL_SIZE) for label in query_labels) + 4

        def widest_caption(size: int) -> int:
            return max((text_width(caption, size) for caption in captions if caption), default=0)

        # A square-ish grid, unless the captions do not fit its columns even in a smaller font: then fewer columns.
        for columns in range(grid_columns(num_panels), 0, -1):
            room = (IMAGE_WIDTH - left - right - (columns - 1) * GAP) // columns  # pixels per panel side
            caption_size = next((size for size in CAPTION_SIZES if widest_caption(size) <= room), None)
            if caption_size is not None:
                break
        else:  # even one column is too narrow (a very long site name): the smallest font, the image grows wider
            caption_size = CAPTION_SIZES[-1]
        rows = math.ceil(num_panels / columns)
        longest = max(num_queries, num_keys)
        if longest > room:  # more positions than pixels: shrink the matrix, one pixel per (averaged) cell
            cell, scale = 1, room / longest
            panel_width, panel_height = max(1, round(num_keys * scale)), max(1, round(num_queries * scale))
        else:
            cell = room // longest
            panel_width, panel_height = cell * num_keys, cell * num_queries
        column_width = max(panel_width, widest_caption(caption_size))
        rotate_keys = max(map(len, key_labels)) > 2  # characters and digits stay upright
        widest_key = max(text_width(label, LABEL_SIZE) for label in key_labels)
        key_label_height = (widest_key if rotate_keys else LABEL_SIZE) + 6
        min_width = left + text_width(title, TITLE_SIZE, bold=True) + 4 if title else 0
        return cls(
            num_panels,
            columns,
            rows,
            cell,
            panel_width,
            panel_height,
            column_width,
            caption_size,
            left,
            right,
            key_label_height,
            rotate_keys,
            min_width,
        )

    @property
    def shrink_to(self) -> int | None:
        return max(self.panel_width, self.panel_height) if self.cell == 1 else None

    @property
    def panels_bottom(self) -> int:
        return TITLE_HEIGHT + self.rows * (CAPTION_HEIGHT + self.panel_height) + (self.rows - 1) * GAP

    @property
    def width(self) -> int:
        return max(self.panels_right + self.right, self.min_width)

    @property
    def panels_right(self) -> int:
        return self.left + self.columns * self.column_width + (self.columns - 1) * GAP

    @property
    def height(self) -> int:
        return self.panels_bottom + self.key_label_height + AXIS_TITLE_HEIGHT

    def origin(self, index: int) -> tuple[int, int]:
        """(left, top) pixel of panel ``index`` (its cells; the caption sits just above)."""
        row, column = divmod(index, self.columns)
        left = self.left + column * (self.column_width + GAP) + (self.column_width - self.panel_width) // 2
        top = TITLE_HEIGHT + row * (CAPTION_HEIGHT + self.panel_height + GAP) + CAPTION_HEIGHT
        return left, top

    def has_keys_below(self, index: int) -> bool:
        """The lowest panel of its column (the last row may be short): its key labels go under it."""
        return index + self.columns >= self.num_panels


def _draw_labels(canvas: Canvas, grid: Grid, index: int, query_labels: list[str], key_labels: list[str]) -> None:
    """Token labels beside the rows of the first panel of each row and under the columns of the lowest panels."""
    left, top = grid.origin(index)
    row_height = grid.panel_height / len(query_labels)
    if index % grid.columns == 0:
        for i in range(0, len(query_labels), label_stride(len(query_labels), row_height)):
            canvas.text(left - 3, top + (i + 0.5) * row_height, query_labels[i], LABEL_SIZE, anchor="rm")
    if grid.has_keys_below(index):
        column_width = grid.panel_width / len(key_labels)
        below = top + grid.panel_height + 3
        for j in range(0, len(key_labels), label_stride(len(key_labels), column_width)):
            x = left + (j + 0.5) * column_width
            if grid.rotate_keys:
                canvas.vertical_text(x, below, key_labels[j], LABEL_SIZE)
            else:
                canvas.text(x, below, key_labels[j], LABEL_SIZE, anchor="ma")


def _draw_frame(canvas: Canvas, grid: Grid, title: str, query_axis: str, key_axis: str) -> None:
    """The title above, the query axis title down the left edge, the key axis title along the bottom."""
    canvas.text(grid.left, 2, title, TITLE_SIZE, bold=True)
    grid_middle = (TITLE_HEIGHT + grid.panels_bottom) / 2
    canvas.vertical_text(AXIS_TITLE_HEIGHT / 2, grid_middle, query_axis, LABEL_SIZE, align="middle")
    canvas.text((grid.left + grid.panels_right) / 2, grid.height - 2, key_axis, LABEL_SIZE, anchor="md")


def _grid_image(
    matrices: np.ndarray,
    captions: Sequence[str],
    query_tokens: Sequence[str] | None,
    key_tokens: Sequence[str] | None,
    title: str,
    query_axis: str,
    key_axis: str,
    vmax: float,
    colours: np.ndarray,
    right: int,
) -> tuple[Canvas, Grid]:
    """(N, Tq, Tk) matrices as a grid of N captioned heat maps with shared labels; the caller adds the scale."""
    num_panels, num_queries, num_keys = matrices.shape
    query_labels = _labels(query_tokens, num_queries, "the query axis")
    key_labels = _labels(key_tokens, num_keys, "the key axis")
    grid = Grid.plan(num_panels, query_labels, key_labels, right, captions, title)
    canvas = Canvas(grid.width, grid.height)
    _draw_frame(canvas, grid, title, query_axis, key_axis)
    for index in range(num_panels):
        left, top = grid.origin(index)
        pixels = heat_panel(matrices[index], grid.cell, vmax, colours, side=grid.shrink_to)
        canvas.paste(pixels, left, top)
        if captions[index]:
            canvas.text(left + grid.panel_width / 2, top - 1, captions[index], grid.caption_size, anchor="md")
        _draw_labels(canvas, grid, index, query_labels, key_labels)
    return canvas, grid


def render_attention_heads(
    weights: torch.Tensor | np.ndarray,
    query_tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str = "",
    vmax: float | None = None,
    cmap: str = "viridis",
    query_axis: str | None = None,
    key_axis: str | None = None,
    site: str | None = None,
    layer: int | None = None,
) -> np.ndarray:
    """One image of one layer's attention: every head in a grid, one shared colour scale.

    Args:
        weights: (H, Tq, Tk) attention probabilities of one example (a (Tq, Tk) matrix counts as one head).
        query_tokens: Tq labels for the rows (or None: positions are shown).
        key_tokens: Tk labels for the columns (or None).
        title: image title; "" = ``layer_title(site, layer)`` when the layer is named, e.g.
            "decoder_self:1 (decoder self-attention)".
        vmax: top of the colour scale; None = the largest weight in this layer, so diffuse heads stay visible.
            Pass 1.0 to compare absolute values across layers/steps.
        cmap: a matplotlib colour map name.
        query_axis, key_axis: axis titles; None = the site's (``site_axes``: "query (target)", "key (source)" for
            cross-attention), or "query" and "key".
        site, layer: which layer this is (layer counted from 0). Named, each head's caption is its full name as
            ``ablate.heads`` reads it (``cross:1:0``, ``cross:1:1``, ...); unnamed, "head 0", "head 1", ...

    Returns:
        (H_px, W_px, 3) uint8 RGB image, about ``IMAGE_WIDTH`` pixels wide.
    """
    if (site is None) != (layer is None):
        raise ValueError(
            f"name both the site and the layer of the weights, or neither: got site={site!r}, layer={layer!r}"
        )
    weights = _to_numpy(weights)
    if weights.ndim == 2:
        weights = weights[None]
    if weights.ndim != 3:
        raise ValueError(
            f"attention weights must be (heads, queries, keys) for one example, got shape "
            f"{weights.shape}: index the batch first, e.g. weights[0]"
        )
    if vmax is None:
        vmax = float(weights.max()) if weights.size else 1.0
        vmax = vmax if vmax > 0 else 1.0  # an all-zero layer (e.g. fully masked) still needs a valid scale
    colours = colour_table(cmap)
    heads = range(weights.shape[0])
    if site is not None and layer is not None:
        captions = [head_name(site, layer, head) for head in heads]
        title = title or layer_title(site, layer)
    else:
        captions = [f"head {head}" for head in heads]
    default_axes = site_axes(site)
    query_axis, key_axis = query_axis or default_axes[0], key_axis or default_axes[1]
    canvas, grid = _grid_image(
        weights, captions, query_tokens, key_tokens, title, query_axis, key_axis, vmax, colours, COLOUR_BAR_WIDTH
    )
    _, first_top = grid.origin(0)
    bar_height = min(grid.panels_bottom - first_top, max(60, grid.panel_height))
    colour_bar(canvas, grid.panels_right + 8, first_top, bar_height, vmax, colours, LABEL_SIZE)
    return canvas.to_array()


def render_attention_mask(
    mask: torch.Tensor | np.ndarray,
    query_tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str = "",
    query_axis: str = "query",
    key_axis: str = "key",
) -> np.ndarray:
    """One image of the mask in force at one site: (Tq, Tk) boolean, True = the query may attend to the key.

    Allowed cells are drawn dark, blocked cells light, with a two-entry legend.
    """
    mask = _to_numpy(mask).astype(bool)
    mask = mask.reshape(mask.shape[-2:]) if mask.ndim > 2 and math.prod(mask.shape[:-2]) == 1 else mask
    if mask.ndim != 2:
        raise ValueError(
            f"mask must be (queries, keys) for one example, got shape {mask.shape}: "
            f"index the batch and head dimensions first, e.g. mask[0, 0]"
        )
    matrices = mask.astype(np.float32)[None]
    canvas, grid = _grid_image(
        matrices, [""], query_tokens, key_tokens, title, query_axis, key_axis, 1.0, MASK_COLOURS, LEGEND_WIDTH
    )
    legend_left, top = grid.panels_right + 8, grid.origin(0)[1]
    for row, (value, name) in enumerate([(1.0, "attend"), (0.0, "blocked")]):
        swatch_top = top + row * 16
        canvas.paste(heat_panel(np.full((1, 1), value), 10, 1.0, MASK_COLOURS), legend_left, swatch_top)
        canvas.rectangle((legend_left, swatch_top, legend_left + 9, swatch_top + 9))
        canvas.text(legend_left + 13, swatch_top + 5, name, LABEL_SIZE, anchor="lm")
    return canvas.to_array()


def layer_title(site: str, layer: int) -> str:
    """'decoder_self:1 (decoder self-attention)' for layer 1 (counted from 0): the layer as ``ablate.heads`` names
    it, then what the site is."""
    return f"{layer_name(site, layer)} ({site_title(site)})"


def mask_title(site: str) -> str:
    """'cross mask (cross-attention)': the mask of every layer of the site."""
    return f"{site} mask ({site_title(site)})"


def attention_tag(site: str, layer: int, example: int | None = None) -> str:
    """'val_attention/cross:1' for layer 1 (counted from 0) of the cross-attention; 'val_attention/cross:1/example_2'
    for the probe's example 2 (counted from 0: the validation split's third example)."""
    tag = f"{ATTENTION_GROUP}/{layer_name(site, layer)}"
    return tag if example is None else f"{tag}/example_{example}"


def mask_tag(site: str) -> str:
    """'val_mask/cross': the mask in force at every layer of the site, for the probe's first example."""
    return f"{MASK_GROUP}/{site}"


# ----------------------------------------------------------------------------------------------------------------
# The callback


def _real_length(ids: torch.Tensor, cfg, batch_key: str) -> int:
    """Number of positions before the right padding of a 1-D id tensor (at least 1, so plots are never empty), by
    the model's special ids, cfg.pad_id and cfg.eos_id (a decoder input's padding is its trailing run of pad ids:
    masks.real_positions)."""
    real = real_positions(ids[None], cfg.pad_id, cfg.eos_id, decoder_side=batch_key == "tgt_in")
    return max(1, int(real.sum()))


def _token_strings(datamodule, batch_key: str, ids: torch.Tensor) -> list[str]:
    ids = ids.tolist()
    if batch_key == "src":
        return list(datamodule.src_token_strings(ids))
    return list(datamodule.tgt_token_strings(ids))


def _to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


class AttentionMapLogger(ProbeCallback):
    """Images of every layer's attention (all heads side by side) on fixed probe examples.

    Args:
        every_n_steps: log when ``global_step % every_n_steps == 0`` (0 = only at the end of training).
        num_examples: probe examples to draw; with more than one the tags get an ``/example_<e>`` suffix (e counted
            from 0, the example's index in the validation split).
        log_masks: draw the mask in force at each site once, at train start (``val_mask/<site>``).
        log_at_end: also log once after the last step.
        vmax: top of the colour scale; None = each layer's own maximum (see ``render_attention_heads``).

    Cost: a few milliseconds per image to draw and PNG-encode (``python -m src.bench.loop`` measures the share of
    training time at the default interval).
    """

    def __init__(
        self,
        every_n_steps: int = 500,
        num_examples: int = 1,
        log_masks: bool = True,
        log_at_end: bool = True,
        vmax: float | None = None,
    ) -> None:
        super().__init__(every_n_steps=every_n_steps, probe_size=num_examples, log_at_end=log_at_end)
        self.num_examples = num_examples
        self.log_masks = log_masks
        self.vmax = vmax

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.log_masks and can_log(trainer):
            self._log_masks(trainer, pl_module, event_step(trainer))

    def _log(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        writer = tensorboard_logger(trainer).experiment
        batch, attentions = self._attention_weights(trainer, pl_module)
        for site, layers in attentions.items():
            query_key, key_key = site_inputs(site)
            for example in range(min(self.num_examples, batch[query_key].shape[0])):
                query_ids, key_ids = batch[query_key][example], batch[key_key][example]
                cfg = pl_module.model.cfg
                num_queries = _real_length(query_ids, cfg, query_key)  # crop the padding
                num_keys = _real_length(key_ids, cfg, key_key)
                query_tokens = _token_strings(trainer.datamodule, query_key, query_ids)[:num_queries]
                key_tokens = _token_strings(trainer.datamodule, key_key, key_ids)[:num_keys]
                for layer, weights in enumerate(layers):  # weights (B, H, Tq, Tk)
                    image = render_attention_heads(
                        weights[example, :, :num_queries, :num_keys],
                        query_tokens,
                        key_tokens,
                        vmax=self.vmax,
                        site=site,
                        layer=layer,
                    )
                    tag = attention_tag(site, layer, None if self.num_examples == 1 else example)
                    writer.add_image(tag, image, step, dataformats="HWC")

    def _log_masks(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        writer = tensorboard_logger(trainer).experiment
        batch = self.probe_batch(trainer)
        on_device = _to_device(batch, pl_module.device)
        with torch.no_grad():
            masks = pl_module.model.attention_masks(src=on_device.get("src"), tgt=on_device.get("tgt_in"))
        for site, mask in masks.items():
            if mask is None:
                continue
            query_key, key_key = site_inputs(site)
            query_axis, key_axis = site_axes(site)
            query_ids, key_ids = batch[query_key][0], batch[key_key][0]
            # Masks may come broadcastable, e.g. (1, 1, T, T) for causal or (B, 1, 1, S) for padding only.
            mask = torch.broadcast_to(mask.detach().cpu()[0, 0], (query_ids.shape[0], key_ids.shape[0]))
            cfg = pl_module.model.cfg
            num_queries, num_keys = _real_length(query_ids, cfg, query_key), _real_length(key_ids, cfg, key_key)
            image = render_attention_mask(
                mask[:num_queries, :num_keys],
                _token_strings(trainer.datamodule, query_key, query_ids)[:num_queries],
                _token_strings(trainer.datamodule, key_key, key_ids)[:num_keys],
                title=mask_title(site),
                query_axis=query_axis,
                key_axis=key_axis,
            )
            writer.add_image(mask_tag(site), image, step, dataformats="HWC")
