"""Statistics the analyses share."""

from __future__ import annotations

import math

from scipy.stats import spearmanr


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation of `a` and `b` over the pairs where both are finite; NaN where it is undefined:
    fewer than 3 such pairs, or either side all one value (nothing to rank)."""
    pairs = [(x, y) for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 3 or len({x for x, _ in pairs}) < 2 or len({y for _, y in pairs}) < 2:
        return math.nan
    return float(spearmanr([x for x, _ in pairs], [y for _, y in pairs]).statistic)
