"""How the analyses' reports write numbers: table cells, JSON without NaN, and labels readable on a heat map. Every
report module (report.py, causal_report.py, lens_report.py, induction_report.py) writes them this one way."""

from __future__ import annotations

import math

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
