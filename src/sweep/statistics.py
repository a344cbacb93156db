"""The statistics of the sweep report and how its numbers are written: means over seeds, t intervals, Welch tests,
and the rounding of a value to the precision its spread allows."""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from typing import NamedTuple

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


# Why a statistic has no value, as its table cell says it (each explained once under the table: NOT_DEFINED).
ONE_RUN = "n/a: one run"
NO_SPREAD = "n/a: no spread"
NOT_DEFINED = {
    ONE_RUN: "a t interval and a t-test need at least two seeds of each configuration they compare",
    NO_SPREAD: "every seed gave the same value (std 0), so a t interval has no width to estimate and a t-test of "
    "two such configurations is not defined (identical values are no evidence either way). Runs of different seeds "
    "that score exactly alike usually sit at a bound of the metric (an exact match of 0 or 1): train longer, or "
    "compare a metric that separates them, such as the loss",
}


@dataclass(frozen=True)
class Interval:
    """The 95% t interval of a mean, as the table and bars.png both show it: `low` and `high` clipped to the values
    the metric can take (an exact match near 1.0 has no interval past 1.0), `clipped` when that cut it."""

    mean: float
    low: float
    high: float
    half: float  # the half-width before clipping
    clipped: bool


def interval(values: list[float], metric: str) -> Interval | str:
    """The t interval of the mean of `values` clipped to `metric`'s range; or why there is none (ONE_RUN,
    NO_SPREAD)."""
    half = t_interval(values)
    if half is None:
        return ONE_RUN
    if half == 0:
        return NO_SPREAD
    mean = statistics.mean(values)
    smallest, largest = metric_range(metric)
    low, high = max(mean - half, smallest), min(mean + half, largest)
    return Interval(mean, low, high, half, (low, high) != (mean - half, mean + half))


class Test(NamedTuple):
    """A two-sided Welch t-test: its p-value, or (p None) why there is none (ONE_RUN, NO_SPREAD)."""

    p: float | None
    why: str | None = None


def welch_test(a: list[float], b: list[float]) -> Test:
    """Two-sided Welch t-test of the difference in means of `a` and `b`. Not defined with fewer than two values on
    a side, nor when neither side varies (the t statistic is 0/0 or x/0: SciPy would return NaN, and a p-value of 1
    or 0 made up for it would read as evidence)."""
    if len(a) < 2 or len(b) < 2:
        return Test(None, ONE_RUN)
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return Test(None, NO_SPREAD)
    from scipy import stats

    with warnings.catch_warnings():  # one side without spread: SciPy warns of precision loss, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return Test(float(stats.ttest_ind(a, b, equal_var=False).pvalue))


def welch_p(a: list[float], b: list[float]) -> float | None:
    """welch_test's p-value (None when the test is not defined)."""
    return welch_test(a, b).p


def p_cell(test: Test) -> str:
    """A p-value as the table shows it (`0.012 *` below 0.05), or why there is none."""
    if test.p is None:
        return test.why or "-"
    return f"{test.p:.3g}{' *' if test.p < 0.05 else ''}"


def format_number(value: float | None) -> str:
    """A value without a spread to round it by: four significant digits (`-` for none)."""
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
    if len(values) < 2:
        return f"{mean_text(values)} ({len(values)})"
    std = statistics.stdev(values)
    if std == 0:
        return f"{mean_text(values)} ± 0 ({len(values)})"
    return f"{mean_text(values)} ± {with_precision(std, decimals_for(std))} ({len(values)})"


def interval_cell(values: list[float], metric: str) -> tuple[str, bool]:
    """The 95% t interval of the mean as `[low, high]` (`interval`: clipped to the values the metric can take), to
    two significant digits of its half-width, marked † when clipped; and whether it was. Why there is none
    otherwise (ONE_RUN, NO_SPREAD)."""
    bounds = interval(values, metric)
    if isinstance(bounds, str):
        return bounds, False
    places = decimals_for(bounds.half)
    shown = f"[{with_precision(bounds.low, places)}, {with_precision(bounds.high, places)}]"
    return shown + ("†" if bounds.clipped else ""), bounds.clipped


def mean_text(values: list[float]) -> str:
    """The mean of `values` as mean_cell writes it (heatmap.png labels its cells with it): to two significant
    digits of the std, or four significant digits without a spread."""
    if len(values) < 2 or statistics.stdev(values) == 0:
        return format_number(statistics.mean(values))
    return with_precision(statistics.mean(values), decimals_for(statistics.stdev(values)))
