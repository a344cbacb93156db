"""Render attention weights and attention masks as images for TensorBoard.

Pure functions: tensors (or arrays) and token strings in, an RGB uint8 array (H, W, 3) out, so logging is

    writer.add_image(tag, image, step, dataformats="HWC")

We draw with matplotlib's object-oriented API (``Figure`` + the Agg canvas) rather than ``pyplot``: no global
figure registry, so nothing leaks and nothing needs closing, and it works with no display. A rendered figure is
about 10x cheaper to log as a ready-made array than through ``SummaryWriter.add_figure`` (which goes through
pyplot and PNG encodes/decodes twice).

Conventions: queries on the y axis (rows, top to bottom), keys on the x axis (columns), as in the weight matrix
``P[i, j] = softmax_j(q_i . k_j)``; rows of a weight matrix sum to 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Human-readable names of the three attention sites the model can have.
SITE_TITLES = {
    "encoder_self": "encoder self-attention",
    "decoder_self": "decoder self-attention",
    "cross": "cross-attention",
}

# Figure geometry, chosen so a 4-head layer of ~20 tokens is readable and costs tens of ms to draw.
PANEL_INCHES = 2.6  # width and height of one head's panel
MAX_COLUMNS = 4  # heads per row; 8 heads -> 2 rows of 4
DPI = 80
MAX_TICK_LABELS = 20  # label at most this many tokens per axis; longer sequences get every k-th token
MAX_LABEL_CHARS = 8  # truncate long tokens (BPE pieces, words) so labels do not overlap


def _to_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().to("cpu", torch.float32).numpy()
    return np.asarray(array)


def figure_to_rgb(fig: Figure) -> np.ndarray:
    """Draw ``fig`` on an Agg canvas and return its pixels as (H, W, 3) uint8 (alpha dropped)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # (H, W, 4), a view into the canvas' buffer
    return np.ascontiguousarray(rgba[..., :3])  # copy: the buffer dies with the figure


def label_stride(length: int, max_labels: int = MAX_TICK_LABELS) -> int:
    """Label every k-th position so that at most ``max_labels`` labels appear on an axis (k >= 1)."""
    return max(1, math.ceil(length / max(1, max_labels)))


def _short(token: str) -> str:
    token = token.replace("\n", "\\n")  # a newline in a character-level label would break the axis layout
    if len(token) > MAX_LABEL_CHARS:
        return token[: MAX_LABEL_CHARS - 1] + "…"
    return token


def _label_axes(ax, query_tokens: Sequence[str] | None, key_tokens: Sequence[str] | None,
                num_queries: int, num_keys: int, label_queries: bool, label_keys: bool) -> None:
    """Write token strings next to the rows (queries) and under the columns (keys); every k-th when long.

    The labels are plain text artists rather than matplotlib ticks: a tick is five artists (two tick marks,
    a grid line, two labels) and creating them was half the render time of a 4-head figure.
    """
    ax.set_xticks([])
    ax.set_yticks([])
    if label_keys:
        under_the_axes = ax.get_xaxis_transform()  # x in data coordinates (columns), y in axes fraction
        key_positions = range(0, num_keys, label_stride(num_keys))
        key_labels = [_short(key_tokens[j]) if key_tokens is not None else str(j) for j in key_positions]
        rotation = 90 if max(map(len, key_labels), default=0) > 2 else 0  # characters and digits stay upright
        for j, text in zip(key_positions, key_labels):
            ax.text(j, -0.015, text, transform=under_the_axes, rotation=rotation, fontsize=7, ha="center", va="top")
    if label_queries:
        left_of_the_axes = ax.get_yaxis_transform()  # x in axes fraction, y in data coordinates (rows)
        for i in range(0, num_queries, label_stride(num_queries)):
            text = _short(query_tokens[i]) if query_tokens is not None else str(i)
            ax.text(-0.015, i, text, transform=left_of_the_axes, fontsize=7, ha="right", va="center")


def _longest_label(tokens: Sequence[str] | None, length: int) -> int:
    """Characters in the longest label drawn on an axis (positions are drawn when there are no tokens)."""
    labels = [_short(token) for token in tokens] if tokens is not None else [str(length - 1)]
    return max(map(len, labels), default=1)


def _check_tokens(tokens: Sequence[str] | None, length: int, axis: str) -> None:
    if tokens is not None and len(tokens) != length:
        raise ValueError(f"{axis} has {len(tokens)} token labels but the attention matrix has {length} "
                         f"positions on that axis: pass one label per position (crop both to the same length)")


def _panel_figure(rows: int, columns: int, query_label_chars: int, key_label_chars: int):
    """A figure with a rows x columns grid of square-ish panels plus a slim colour-bar axes on the right.

    Margins are computed here rather than by ``tight_layout`` (an extra layout pass costing about a third of the
    render time): room on the left for query labels, at the bottom for the rotated key labels, on top for the
    title, on the right for the colour bar.
    """
    # 7 pt characters are about 0.075 inch wide; key labels of up to 2 characters are written upright.
    left = 0.15 + 0.075 * query_label_chars
    bottom = 0.15 + 0.075 * (key_label_chars if key_label_chars > 2 else 1)
    top, right = 0.55, 0.75
    width = left + columns * PANEL_INCHES + right
    height = bottom + rows * PANEL_INCHES + top
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=0.08, hspace=0.4 / PANEL_INCHES)
    axes = fig.subplots(rows, columns, squeeze=False)
    colorbar_axes = fig.add_axes((1 - (right - 0.12) / width, bottom / height, 0.12 / width,
                                  1 - (bottom + top) / height))
    return fig, axes, colorbar_axes


def render_attention_heads(
    weights: torch.Tensor | np.ndarray,
    query_tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str = "",
    vmax: float | None = None,
    cmap: str = "viridis",
) -> np.ndarray:
    """One image of one layer's attention: every head side by side, one shared colour scale.

    Args:
        weights: (H, Tq, Tk) attention probabilities of one example (a (Tq, Tk) matrix counts as one head).
        query_tokens: Tq labels for the y axis (or None: positions are shown).
        key_tokens: Tk labels for the x axis (or None).
        title: figure title, e.g. "decoder self-attention, layer 2" (see ``layer_title``).
        vmax: top of the colour scale; None = the largest weight in this layer, so diffuse heads stay visible.
            Pass 1.0 to compare absolute values across layers/steps.
        cmap: a matplotlib colormap name.

    Returns:
        (H_px, W_px, 3) uint8 RGB image.
    """
    weights = _to_numpy(weights)
    if weights.ndim == 2:
        weights = weights[None]
    if weights.ndim != 3:
        raise ValueError(f"attention weights must be (heads, queries, keys) for one example, got shape "
                         f"{weights.shape}: index the batch first, e.g. weights[0]")
    num_heads, num_queries, num_keys = weights.shape
    _check_tokens(query_tokens, num_queries, "the query axis")
    _check_tokens(key_tokens, num_keys, "the key axis")

    columns = min(num_heads, MAX_COLUMNS)
    rows = math.ceil(num_heads / columns)
    if vmax is None:
        vmax = float(weights.max()) if weights.size else 1.0
        vmax = vmax if vmax > 0 else 1.0  # an all-zero layer (e.g. fully masked) still needs a valid scale

    fig, axes, colorbar_axes = _panel_figure(rows, columns, _longest_label(query_tokens, num_queries),
                                             _longest_label(key_tokens, num_keys))
    image = None
    for head in range(rows * columns):
        ax = axes[head // columns][head % columns]
        if head >= num_heads:
            ax.set_visible(False)  # e.g. 6 heads on a 2x4 grid
            continue
        image = ax.imshow(weights[head], cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_title(f"head {head + 1}", fontsize=8, pad=2)
        # All heads share the same tokens: label the queries on the left column, the keys on the bottom row.
        is_bottom_row = head + columns >= num_heads
        _label_axes(ax, query_tokens, key_tokens, num_queries, num_keys,
                    label_queries=(head % columns == 0), label_keys=is_bottom_row)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.12 / fig.get_figheight())
    colorbar = fig.colorbar(image, cax=colorbar_axes)
    colorbar.ax.tick_params(labelsize=7)
    return figure_to_rgb(fig)


def render_attention_mask(
    mask: torch.Tensor | np.ndarray,
    query_tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str = "",
) -> np.ndarray:
    """One image of the mask in force at one site: (Tq, Tk) boolean, True = the query may attend to the key.

    Allowed cells are drawn dark, blocked cells light, with a two-entry legend bar.
    """
    mask = _to_numpy(mask).astype(bool)
    mask = mask.reshape(mask.shape[-2:]) if mask.ndim > 2 and math.prod(mask.shape[:-2]) == 1 else mask
    if mask.ndim != 2:
        raise ValueError(f"mask must be (queries, keys) for one example, got shape {mask.shape}: "
                         f"index the batch and head dimensions first, e.g. mask[0, 0]")
    num_queries, num_keys = mask.shape
    _check_tokens(query_tokens, num_queries, "the query axis")
    _check_tokens(key_tokens, num_keys, "the key axis")

    fig, axes, colorbar_axes = _panel_figure(1, 1, _longest_label(query_tokens, num_queries),
                                             _longest_label(key_tokens, num_keys))
    ax = axes[0][0]
    blocked_allowed = colors.ListedColormap(["#f0f0f0", "#2b6ca3"])
    image = ax.imshow(mask.astype(np.float32), cmap=blocked_allowed, vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest")
    _label_axes(ax, query_tokens, key_tokens, num_queries, num_keys, label_queries=True, label_keys=True)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.12 / fig.get_figheight())
    colorbar = fig.colorbar(image, cax=colorbar_axes, ticks=[0.25, 0.75])
    colorbar.ax.set_yticklabels(["blocked", "attend"], fontsize=7, rotation=90, va="center")
    return figure_to_rgb(fig)


def layer_title(site: str, layer_index: int) -> str:
    """'decoder self-attention, layer 2' for site='decoder_self', layer_index=1 (layers are counted from 1)."""
    return f"{SITE_TITLES.get(site, site)}, layer {layer_index + 1}"


def mask_title(site: str) -> str:
    return f"{SITE_TITLES.get(site, site)} mask (True = may attend)"
