"""The sweep report's figures (curves.png, bars.png, heatmap.png, pruning.png) and their copy in TensorBoard."""

from __future__ import annotations

import math
import statistics
import warnings
from typing import TYPE_CHECKING, Any

from src.sweep.statistics import format_number, t_interval

if TYPE_CHECKING:
    from src.sweep.report import Sweep


def _tidy(fig) -> None:
    with warnings.catch_warnings():  # long configuration labels: matplotlib warns it cannot make room, and copes
        warnings.simplefilter("ignore")
        fig.tight_layout()


def draw_figures(sweep: Sweep) -> dict[str, Any]:
    """The report's figures, saved as PNG into the sweep directory; returns them for TensorBoard."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    if not sweep.configurations or not sweep.main_metric:
        return figures
    metrics = [sweep.main_metric] + (["val/loss"] if sweep.main_metric != "val/loss" else [])
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for configuration in sweep.configurations:
            curves: dict[int, list[float]] = {}
            for run in configuration.runs:
                for entry in run.metrics.get("history", []):
                    if entry.get(metric) is not None:
                        curves.setdefault(entry["step"], []).append(entry[metric])
            if not curves:
                continue
            steps = sorted(curves)
            means = [statistics.mean(curves[s]) for s in steps]
            line = ax.plot(steps, means, marker="o", markersize=3, label=configuration.label)[0]
            ax.fill_between(
                steps,
                [min(curves[s]) for s in steps],
                [max(curves[s]) for s in steps],
                color=line.get_color(),
                alpha=0.2,
            )
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (mean over seeds; band: min to max)")
        if ax.lines:
            ax.legend(fontsize=8)
    _tidy(fig)
    figures["curves"] = fig

    labels = [c.label for c in sweep.configurations]
    means = [
        statistics.mean(c.values(sweep.main_metric)) if c.values(sweep.main_metric) else math.nan
        for c in sweep.configurations
    ]
    errors = [t_interval(c.values(sweep.main_metric)) or 0.0 for c in sweep.configurations]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels)), 4))
    ax.bar(range(len(labels)), means, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(sweep.main_metric)
    ax.set_title(f"{sweep.main_metric}: mean and 95% interval over seeds")
    _tidy(fig)
    figures["bars"] = fig

    if len(sweep.varied) == 2:
        rows = list(dict.fromkeys(dict(c.settings)[sweep.varied[0]] for c in sweep.configurations))
        columns = list(dict.fromkeys(dict(c.settings)[sweep.varied[1]] for c in sweep.configurations))
        grid = [[math.nan] * len(columns) for _ in rows]
        for c in sweep.configurations:
            values = c.values(sweep.main_metric)
            if values:
                settings = dict(c.settings)
                grid[rows.index(settings[sweep.varied[0]])][columns.index(settings[sweep.varied[1]])] = statistics.mean(
                    values
                )
        fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(columns), 1.2 + 0.8 * len(rows)))
        image = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(columns)), columns)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel(sweep.varied[1])
        ax.set_ylabel(sweep.varied[0])
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    ax.text(j, i, format_number(value), ha="center", va="center", color="white", fontsize=8)
        fig.colorbar(image, ax=ax, label=sweep.main_metric)
        ax.set_title(f"{sweep.main_metric} (mean over seeds)")
        _tidy(fig)
        figures["heatmap"] = fig
    pruning = pruning_figure(sweep)
    if pruning is not None:
        figures["pruning"] = pruning
    for name, fig in figures.items():
        fig.savefig(sweep.directory / f"{name}.png", dpi=110)
    return figures


def pruning_figure(sweep: Sweep):
    """pruning.png: per configuration, the mean pruning curve over its analysed seeds (x: % of the heads removed,
    from each job's analysis/pruning.csv; y: the analysis's metric), with a band of ± one std; None when no job
    has a curve."""
    import matplotlib.pyplot as plt

    curves = [(c, [run.pruning for run in c.runs if run.pruning]) for c in sweep.configurations]
    curves = [(c, runs) for c, runs in curves if runs]
    if not curves:
        return None
    analysed = [run.analysis or {} for c, _ in curves for run in c.runs if run.pruning]
    names = list(dict.fromkeys(f"{a.get('split', '?')} {a.get('metric', '?')}" for a in analysed))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for configuration, runs in curves:
        points: dict[float, list[float]] = {}
        for curve in runs:
            for removed, value in curve:
                if math.isfinite(value):
                    points.setdefault(round(removed, 6), []).append(value)
        xs = sorted(points)
        means = [statistics.mean(points[x]) for x in xs]
        spread = [statistics.stdev(points[x]) if len(points[x]) > 1 else 0.0 for x in xs]
        line = ax.plot(xs, means, marker="o", markersize=3, label=f"{configuration.label} ({len(runs)})")[0]
        ax.fill_between(
            xs,
            [m - d for m, d in zip(means, spread)],
            [m + d for m, d in zip(means, spread)],
            color=line.get_color(),
            alpha=0.2,
        )
    ax.set_xlabel("heads removed (%), least important first")
    ax.set_ylabel(" / ".join(names))
    ax.set_title("pruning curves (mean over seeds; band: ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _tidy(fig)
    return fig


def to_tensorboard(sweep: Sweep, figures: dict[str, Any], table: str) -> None:
    """The same figures and table as a `report` run in the sweep directory (TensorBoard shows it beside the runs)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(sweep.directory / "report"))
    for name, fig in figures.items():
        writer.add_figure(f"report/{name}", fig, global_step=0, close=False)
    # The markdown's image links point at files beside report.md, which TensorBoard cannot fetch: the figures are
    # in IMAGES above, so the links are left out of the text.
    text = "\n".join(line for line in table.splitlines() if not line.startswith("!["))
    writer.add_text("report/table", text, global_step=0)
    writer.close()
