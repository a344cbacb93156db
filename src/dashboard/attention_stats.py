"""Per-head summary statistics of attention weights as TensorBoard scalars, next to the attention maps:
``head_statistics`` and ``AttentionStatsLogger``, which logs them.

For one query i with attention distribution p_i over keys j (a row of the weight matrix):

- entropy     H_i = -sum_j p_ij log p_ij          (nats; 0 = looks at one key, log(n) = uniform over n keys)
- distance    D_i =  sum_j p_ij |i - j|            (expected offset of the attended key; 0 = itself, 1 = a neighbour)
- confidence  C_i =  max_j p_ij                    (weight of the strongest key)

Each is averaged over the valid query rows of the batch, separately per head. A query row is valid when the
query is not padding (``query_mask``) and the row has any weight at all: a row whose keys were all masked comes
out of SDPA as zeros and says nothing about the head, so it is left out rather than counted as "entropy 0".
For cross-attention |i - j| compares a target position with a source position; it is still informative for
monotonic tasks (copy: diagonal, reverse: anti-diagonal) but has no built-in meaning otherwise.

Tags written (the tests and the end-to-end checks rely on them):

    val_heads/<statistic>/<site>:<layer>:<head>   scalars (entropy, distance[, confidence]),
                                                  e.g. ``val_heads/entropy/cross:1:2``

and a CUSTOM SCALARS layout with one chart per site, layer and statistic and a line per head. A tag ends in the head
as ``ablate.heads`` names it (``src.model.names``: layer 1, head 2 of the cross-attention, counted from 0), so a
chart's head can be typed into ``ablate.heads=[cross:1:2]`` as it reads. The group (a tag's first part, one
section of SCALARS) is named ``val_heads`` (validation examples, at validation steps) because TensorBoard lists
groups in name order, and the learning curves (``train/``, ``val/``) should come first in SCALARS; within it the
charts sort by statistic, then head.

The logger needs nothing beyond what every dashboard callback needs (see ``probe``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from lightning.pytorch import LightningModule, Trainer

from src.dashboard.probe import ProbeCallback, tensorboard_logger
from src.model.masks import real_positions
from src.model.names import head_name, layer_name, site_title
from src.training.inference import site_inputs

STATISTICS = ("entropy", "distance", "confidence")
GROUP = "val_heads"


def statistic_tag(site: str, layer: int, statistic: str, head: int) -> str:
    """'val_heads/entropy/cross:1:2' for head 2 of layer 1 (both counted from 0, as ``ablate.heads`` reads them)."""
    return f"{GROUP}/{statistic}/{head_name(site, layer, head)}"


def valid_query_rows(weights: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, Tq) bool: rows that take part in the averages (non-pad query with a non-empty distribution)."""
    valid = weights.sum(dim=-1) > 0  # (B, H, Tq)
    if query_mask is None:
        return valid
    batch, _, num_queries = valid.shape
    if tuple(query_mask.shape) != (batch, num_queries):
        raise ValueError(
            f"query_mask has shape {tuple(query_mask.shape)} but the weights have (batch, queries) = "
            f"{(batch, num_queries)}: pass one boolean per query position, True = real token"
        )
    return valid & query_mask.to(torch.bool)[:, None, :]


def query_entropy(weights: torch.Tensor) -> torch.Tensor:
    """(B, H, Tq, Tk) attention probabilities -> (B, H, Tq): each query row's entropy in nats, in the weights' dtype
    and on their device. xlogy(p, p) = p * log(p) with the limit 0 * log(0) = 0, so masked keys (p = 0) cost
    nothing. The one definition of a head's entropy: these scalars and the head analysis (src/analysis/heads.py)
    both average it over valid_query_rows."""
    return -torch.special.xlogy(weights, weights).sum(dim=-1)


def _mean_over_valid_rows(per_row: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """per_row (B, H, Tq), valid (B, H, Tq) -> (H,) mean over valid rows; NaN for a head with no valid row."""
    weight = valid.to(per_row.dtype)
    total = (per_row * weight).sum(dim=(0, 2))  # (H,)
    count = weight.sum(dim=(0, 2))  # (H,)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


def head_statistics(weights: torch.Tensor, query_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Entropy, mean attended distance and confidence of every head, averaged over valid query rows.

    Args:
        weights: (B, H, Tq, Tk) attention probabilities (rows sum to 1, or to 0 when fully masked).
        query_mask: optional (B, Tq) bool, True for real (non-pad) query positions.

    Returns:
        {"entropy": (H,), "distance": (H,), "confidence": (H,)} float32 tensors on the CPU.
    """
    if weights.dim() != 4:
        raise ValueError(f"attention weights must be (batch, heads, queries, keys), got shape {tuple(weights.shape)}")
    weights = weights.detach().to("cpu", torch.float32)
    if query_mask is not None:
        query_mask = query_mask.detach().to("cpu")
    valid = valid_query_rows(weights, query_mask)  # (B, H, Tq)
    num_queries, num_keys = weights.shape[-2:]

    entropy = query_entropy(weights)  # (B, H, Tq)

    query_positions = torch.arange(num_queries, dtype=torch.float32)[:, None]  # (Tq, 1)
    key_positions = torch.arange(num_keys, dtype=torch.float32)[None, :]  # (1, Tk)
    offsets = (query_positions - key_positions).abs()  # (Tq, Tk) |i - j|
    distance = (weights * offsets).sum(dim=-1)  # (B, H, Tq)

    confidence = weights.amax(dim=-1)  # (B, H, Tq)

    return {
        "entropy": _mean_over_valid_rows(entropy, valid),
        "distance": _mean_over_valid_rows(distance, valid),
        "confidence": _mean_over_valid_rows(confidence, valid),
    }


def heads_layout(layers_per_site: dict[str, int], statistics: Sequence[str]) -> dict:
    """TensorBoard's CUSTOM SCALARS tab: one chart per site, layer and statistic with a line per head, so heads can
    be compared on one chart (SCALARS has a chart per head)."""
    return {
        layout_category(site): dict(heads_chart(site, layer, name) for layer in range(count) for name in statistics)
        for site, count in layers_per_site.items()
    }


def layout_category(site: str) -> str:
    """'attention heads: cross (cross-attention)': a site's section of CUSTOM SCALARS."""
    return f"attention heads: {site} ({site_title(site)})"


def heads_chart(site: str, layer: int, statistic: str) -> tuple[str, list]:
    r"""('cross:1 entropy', ['Multiline', [r'^val_heads/entropy/cross:1:\d+$']]): the CUSTOM SCALARS chart with a
    line per head of one layer (counted from 0) and statistic."""
    pattern = rf"^{GROUP}/{re.escape(statistic)}/{re.escape(layer_name(site, layer))}:\d+$"
    return f"{layer_name(site, layer)} {statistic}", ["Multiline", [pattern]]


class AttentionStatsLogger(ProbeCallback):
    """Scalars per head: ``val_heads/<statistic>/<site>:<layer>:<head>`` (see ``head_statistics``), and a
    CUSTOM SCALARS layout that draws every head of a site, layer and statistic on one chart (``heads_layout``).

    Averaged over the non-pad query positions of a fixed probe batch of ``probe_size`` examples. It runs its own
    forward pass on the probe batch: a few milliseconds.
    """

    def __init__(
        self,
        every_n_steps: int = 500,
        probe_size: int = 8,
        statistics: Sequence[str] = ("entropy", "distance"),
        log_at_end: bool = True,
    ) -> None:
        super().__init__(every_n_steps=every_n_steps, probe_size=probe_size, log_at_end=log_at_end)
        unknown = sorted(set(statistics) - set(STATISTICS))
        if unknown:
            raise ValueError(f"unknown attention statistics {unknown}: choose from {list(STATISTICS)}")
        self.statistics = tuple(statistics)
        self._layout_written = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._layout_written = False

    def _log(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        writer = tensorboard_logger(trainer).experiment
        batch, attentions = self._attention_weights(trainer, pl_module)
        if not self._layout_written:
            writer.add_custom_scalars(
                heads_layout({site: len(layers) for site, layers in attentions.items()}, self.statistics)
            )
            self._layout_written = True
        for site, layers in attentions.items():
            query_key, _ = site_inputs(site)
            # (B, Tq) True for real tokens, by the model's pad id (the decoder's padding: masks.real_positions)
            cfg = pl_module.model.cfg
            query_mask = real_positions(batch[query_key], cfg.pad_id, cfg.eos_id, query_key == "tgt_in")
            for layer, weights in enumerate(layers):
                stats = head_statistics(weights, query_mask)  # {name: (H,)}
                for name in self.statistics:
                    for head, value in enumerate(stats[name].tolist()):
                        if math.isfinite(value):  # NaN = no valid query row; leave a gap, not a fake point
                            writer.add_scalar(statistic_tag(site, layer, name, head), value, step)
