"""Attention maps and masks as TensorBoard images: the renderers and ``AttentionMapLogger``, which logs them.

The renderers are pure functions: tensors (or arrays) and token strings in, an RGB uint8 array (H, W, 3) out, so
logging is

    writer.add_image(tag, image, step, dataformats="HWC")

We draw with matplotlib's object-oriented API (``Figure`` + the Agg canvas) rather than ``pyplot``: no global
figure registry, so nothing leaks and nothing needs closing, and it works with no display. A rendered figure is
about 10x cheaper to log as a ready-made array than through ``SummaryWriter.add_figure`` (which goes through
pyplot and PNG encodes/decodes twice).

Conventions: queries on the y axis (rows, top to bottom), keys on the x axis (columns), as in the weight matrix
``P[i, j] = softmax_j(q_i . k_j)``; rows of a weight matrix sum to 1.

Tags written (the tests and the end-to-end checks rely on them):

    attention/<site>/layer_<l>     image per layer, all heads (l counts from 1; ``/example_<e>`` with several)
    mask/<site>                    image, once at train start

Besides what every dashboard callback needs (see ``probe``), the logger reads the probe's token strings
(``datamodule.src_token_strings(ids)`` / ``tgt_token_strings(ids)``) and the masks the network applies
(``pl_module.model.attention_masks(src=..., tgt=...)`` -> {site: bool (B, 1, Tq, Tk)}, True = may attend).

View with ``tensorboard --logdir outputs --samples_per_plugin images=100`` (the UI shows 10 images per tag
otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from matplotlib import colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from src.dashboard.probe import SITE_INPUTS, ProbeCallback, can_log, event_step, tensorboard_logger
from src.model.tokens import PAD_ID

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


def _label_axes(
    ax,
    query_tokens: Sequence[str] | None,
    key_tokens: Sequence[str] | None,
    num_queries: int,
    num_keys: int,
    label_queries: bool,
    label_keys: bool,
) -> None:
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
        raise ValueError(
            f"{axis} has {len(tokens)} token labels but the attention matrix has {length} "
            f"positions on that axis: pass one label per position (crop both to the same length)"
        )


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
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=0.08,
        hspace=0.4 / PANEL_INCHES,
    )
    axes = fig.subplots(rows, columns, squeeze=False)
    colorbar_axes = fig.add_axes(
        (1 - (right - 0.12) / width, bottom / height, 0.12 / width, 1 - (bottom + top) / height)
    )
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
        raise ValueError(
            f"attention weights must be (heads, queries, keys) for one example, got shape "
            f"{weights.shape}: index the batch first, e.g. weights[0]"
        )
    num_heads, num_queries, num_keys = weights.shape
    _check_tokens(query_tokens, num_queries, "the query axis")
    _check_tokens(key_tokens, num_keys, "the key axis")

    columns = min(num_heads, MAX_COLUMNS)
    rows = math.ceil(num_heads / columns)
    if vmax is None:
        vmax = float(weights.max()) if weights.size else 1.0
        vmax = vmax if vmax > 0 else 1.0  # an all-zero layer (e.g. fully masked) still needs a valid scale

    fig, axes, colorbar_axes = _panel_figure(
        rows, columns, _longest_label(query_tokens, num_queries), _longest_label(key_tokens, num_keys)
    )
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
        _label_axes(
            ax,
            query_tokens,
            key_tokens,
            num_queries,
            num_keys,
            label_queries=(head % columns == 0),
            label_keys=is_bottom_row,
        )
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
        raise ValueError(
            f"mask must be (queries, keys) for one example, got shape {mask.shape}: "
            f"index the batch and head dimensions first, e.g. mask[0, 0]"
        )
    num_queries, num_keys = mask.shape
    _check_tokens(query_tokens, num_queries, "the query axis")
    _check_tokens(key_tokens, num_keys, "the key axis")

    fig, axes, colorbar_axes = _panel_figure(
        1, 1, _longest_label(query_tokens, num_queries), _longest_label(key_tokens, num_keys)
    )
    ax = axes[0][0]
    blocked_allowed = colors.ListedColormap(["#f0f0f0", "#2b6ca3"])
    image = ax.imshow(
        mask.astype(np.float32), cmap=blocked_allowed, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest"
    )
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


# ----------------------------------------------------------------------------------------------------------------
# The callback


def _real_length(ids: torch.Tensor) -> int:
    """Number of positions before the right padding of a 1-D id tensor (at least 1, so plots are never empty)."""
    return max(1, int((ids != PAD_ID).sum()))


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
        num_examples: probe examples to draw; with more than one the tags get an ``/example_<e>`` suffix.
        log_masks: draw the mask in force at each site once, at train start (``mask/<site>``).
        log_at_end: also log once after the last step.
        vmax: top of the colour scale; None = each layer's own maximum (see ``render_attention_heads``).

    Cost (measured on a 2-core VM): about 0.15-0.25 s to render an image of 4-8 heads over up to 32 tokens, plus
    20-30 ms to PNG-encode it in ``add_image``; a 2+2-layer encoder-decoder (6 images) costs 1-2 s per logging
    step, so pick ``every_n_steps`` in the hundreds.
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

    def _tag(self, prefix: str, example: int) -> str:
        return prefix if self.num_examples == 1 else f"{prefix}/example_{example + 1}"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.log_masks and can_log(trainer):
            self._log_masks(trainer, pl_module, event_step(trainer))

    def _log(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        writer = tensorboard_logger(trainer).experiment
        batch, attentions = self._attention_weights(trainer, pl_module)
        for site, layers in attentions.items():
            query_key, key_key = SITE_INPUTS[site]
            for example in range(min(self.num_examples, batch[query_key].shape[0])):
                query_ids, key_ids = batch[query_key][example], batch[key_key][example]
                num_queries, num_keys = _real_length(query_ids), _real_length(key_ids)  # crop the padding
                query_tokens = _token_strings(trainer.datamodule, query_key, query_ids)[:num_queries]
                key_tokens = _token_strings(trainer.datamodule, key_key, key_ids)[:num_keys]
                for layer_index, weights in enumerate(layers):  # weights (B, H, Tq, Tk)
                    image = render_attention_heads(
                        weights[example, :, :num_queries, :num_keys],
                        query_tokens,
                        key_tokens,
                        title=layer_title(site, layer_index),
                        vmax=self.vmax,
                    )
                    tag = self._tag(f"attention/{site}/layer_{layer_index + 1}", example)
                    writer.add_image(tag, image, step, dataformats="HWC")

    def _log_masks(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        writer = tensorboard_logger(trainer).experiment
        batch = self.probe_batch(trainer)
        on_device = _to_device(batch, pl_module.device)
        with torch.no_grad():
            masks = pl_module.model.attention_masks(src=on_device.get("src"), tgt=on_device.get("tgt_in"))
        for site, mask in masks.items():
            if mask is None or site not in SITE_INPUTS:
                continue
            query_key, key_key = SITE_INPUTS[site]
            query_ids, key_ids = batch[query_key][0], batch[key_key][0]
            # Masks may come broadcastable, e.g. (1, 1, T, T) for causal or (B, 1, 1, S) for padding only.
            mask = torch.broadcast_to(mask.detach().cpu()[0, 0], (query_ids.shape[0], key_ids.shape[0]))
            num_queries, num_keys = _real_length(query_ids), _real_length(key_ids)
            image = render_attention_mask(
                mask[:num_queries, :num_keys],
                _token_strings(trainer.datamodule, query_key, query_ids)[:num_queries],
                _token_strings(trainer.datamodule, key_key, key_ids)[:num_keys],
                title=mask_title(site),
            )
            writer.add_image(f"mask/{site}", image, step, dataformats="HWC")
