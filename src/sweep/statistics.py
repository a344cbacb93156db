"""The statistics of the sweep report and how its numbers are written: means over seeds, t intervals, Welch tests,
and the rounding of a value to the precision its spread allows."""

from __future__ import annotations

import math
import statistics
import warnings

from src.training.metrics import metric_range


def short(setting: str) -> str:
    """A setting as shown: long floats (an optimising sweeper's samples) to four significant digits."""
    try:
        number = float(setting)
    except ValueError:
        return setting
    return f"{number:.4g}" if "." in setting and len(setting) > 8 else setting


def setting_cell(setting: str) -> str:
    """A setting's value in a markdown table: `short`, and a list or dict (`ablate.heads=[cross:*:*]`) as code, so
    that its `*` and `_` are not read as emphasis."""
    shown = short(setting)
    if shown.startswith(("[", "{")):
        shown = f"`{shown}`"
    return shown.replace("|", "\\|")


def t_interval(values: list[float], confidence: float = 0.95) -> float | None:
    """Half-width of the t confidence interval of the mean (None for fewer than two values)."""
    if len(values) < 2:
        return None
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value of the difference in means (None when either side has fewer than two)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return 1.0 if statistics.mean(a) == statistics.mean(b) else 0.0
    with warnings.catch_warnings():  # one side without spread: SciPy warns of precision loss, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"


def decimals_for(spread: float) -> int:
    """Decimal places that keep two significant digits of `spread` (0.0006303 -> 5, 1.234 -> 1, 23.4 -> 0,
    17459 -> -3): a value is shown to the precision its spread allows, the convention for reporting a measurement."""
    if spread <= 0 or not math.isfinite(spread):
        return 4
    return 1 - math.floor(math.log10(spread))


def with_precision(value: float, decimals: int) -> str:
    """`value` rounded to `decimals` places; a negative count rounds to tens, hundreds, ... (111111 at -3: 111000)."""
    return f"{value:.{decimals}f}" if decimals >= 0 else f"{round(value, decimals):.0f}"


def mean_cell(values: list[float]) -> str:
    """mean ± std (n), the mean rounded to two significant digits of its std (`0.03188 ± 0.00063 (3)`); a single
    run's value to four significant digits. results.csv keeps every run's value at full precision."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{format_number(mean)} ({len(values)})"
    std = statistics.stdev(values)
    if std == 0:
        return f"{format_number(mean)} ± 0 ({len(values)})"
    places = decimals_for(std)
    return f"{with_precision(mean, places)} ± {with_precision(std, places)} ({len(values)})"


def interval_cell(values: list[float], metric: str) -> tuple[str, bool]:
    """The 95% t interval of the mean as `[low, high]`, to two significant digits of its half-width, clipped to the
    values the metric can take (an exact match near 1.0 cannot have an interval past 1.0); and whether it was
    clipped. `-` for fewer than two values."""
    half = t_interval(values)
    if half is None:
        return "-", False
    mean = statistics.mean(values)
    smallest, largest = metric_range(metric)
    low, high = max(mean - half, smallest), min(mean + half, largest)
    places = decimals_for(half) if half > 0 else 4
    clipped = (low, high) != (mean - half, mean + half)
    return f"[{with_precision(low, places)}, {with_precision(high, places)}]" + ("†" if clipped else ""), clipped
