"""How the analyses' reports write numbers: table cells, JSON without NaN, and labels readable on a heat map; and
what a grouped-query model's heads are (query heads). Every report module (report.py, causal_report.py,
lens_report.py, induction_report.py) writes them this one way."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def cell(value: float | None, digits: int = 3) -> str:
    """A table cell: `digits` decimals, `-` where nothing was measured (NaN)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def json_ready(value):
    """`value` with every NaN or infinity replaced by None, through dicts and lists: strict JSON has neither, and a
    null is what every JSON reader takes for an undefined figure."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def label_ink(image, value: float) -> str:
    """Black on light cells, white on dark ones (by the cell colour's luminance), so every label can be read."""
    if np.isnan(value):
        return "black"
    red, green, blue, _ = image.cmap(image.norm(value))
    return "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"


def attention_heads(cfg) -> dict[str, int]:
    """What `about` (and so summary.json, as "attention") records of the analysed model's attention, in its settings'
    names: `heads` query heads a layer and `kv_heads` key/value heads (as many as heads in multi-head attention), so
    that a report can say what its heads are (grouped_heads_lines)."""
    return {"heads": cfg.heads, "kv_heads": cfg.kv_head_count}


def grouped_heads_lines(about: Mapping[str, Any], per_query_head: str) -> list[str]:
    """For a grouped-query model (fewer key/value heads than query heads: about["attention"], attention_heads), the
    paragraph near a report's top that says its heads are query heads, in docs/model.md's words, and
    `per_query_head`: what the report measures per query head (and per KV group, where anything is). Nothing for a
    multi-head model, whose every head has its own key and value, so a head is both."""
    attention = about.get("attention") or {}
    heads, kv_heads = attention.get("heads"), attention.get("kv_heads")
    if not heads or not kv_heads or kv_heads >= heads:
        return []
    return [
        f"Grouped-query attention (`model.kv_heads={kv_heads}`): every head named here is a query head; the {heads} "
        f"query heads of a layer form {kv_heads} KV groups of {heads // kv_heads} consecutive heads, and the query "
        f"heads of a group share its one key and value. {per_query_head}",
        "",
    ]
