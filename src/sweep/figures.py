"""The sweep report's figures and their copy in TensorBoard. Per group of comparable runs (report.py: Group):

    curves.png    validation curves of the main metric and the loss per configuration (mean, band = min..max)
    bars.png      the main metric per configuration with the 95% interval the table gives (clipped as it is)
    heatmap.png   the main metric over two varied settings (two-axis sweeps), each cell the table's mean
    pruning.png   the mean pruning curve of each configuration whose jobs have a head analysis (band = min..max)

A report of several groups names them `bars_<group>.png`, and so on. Every number drawn is one the report's
tables give, computed by the same functions (statistics.py), so that a figure cannot say more than its table.
"""

from __future__ import annotations

import math
import statistics
import textwrap
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.sweep.statistics import interval, mean_text

if TYPE_CHECKING:
    from src.sweep.report import Group, Sweep


def _tidy(fig) -> None:
    with warnings.catch_warnings():  # long configuration labels: matplotlib warns it cannot make room, and copes
        warnings.simplefilter("ignore")
        fig.tight_layout()
        if _fit_titles(fig):  # a wrapped title is taller: make room for it
            fig.tight_layout()


def _fit_titles(fig) -> bool:
    """Wrap each axes' title onto as many lines as keep it inside its share of the figure's width: a title is
    centred on its axes and drawn on one line, so a long one (a group's name, a long metric, a narrow bars.png of
    two configurations) runs off the figure's edge, cut off in the PNG, or over its neighbour's title in
    curves.png. Whether any was wrapped."""
    renderer = fig.canvas.get_renderer()
    wrapped = False
    for ax in fig.axes:
        title, text = ax.title, ax.title.get_text()
        left, right = _column(ax)
        columns = len(text)
        while columns > 12:
            box = title.get_window_extent(renderer)
            if box.x0 >= left * fig.bbox.width and box.x1 <= right * fig.bbox.width:
                break
            columns -= max(1, columns // 10)
            title.set_text(textwrap.fill(text, columns))
            wrapped = True
    return wrapped


def _column(ax) -> tuple[float, float]:
    """The share of the figure's width (left, right, from 0 to 1) that belongs to an axes: its columns of the
    figure's grid of subplots; the whole width for an axes outside one (a colorbar)."""
    spec = ax.get_subplotspec()
    if spec is None:
        return 0.0, 1.0
    columns = spec.get_gridspec().ncols
    return spec.colspan.start / columns, spec.colspan.stop / columns


def bar_values(group: Group) -> list[tuple[str, float, float, float]]:
    """bars.png's numbers, per configuration: (label, mean, low, high) of the main metric, the low and high of the
    table's 95% interval (clipped to the values the metric can take); low = high = mean where the table has no
    interval (one run, no spread), so no error bar is drawn; the mean NaN without a value."""
    bars = []
    for configuration in group.configurations:
        values = configuration.values(group.main_metric or "")
        if not values:
            bars.append((configuration.label, math.nan, math.nan, math.nan))
            continue
        bounds = interval(values, group.main_metric or "")
        mean = statistics.mean(values)
        low, high = (mean, mean) if isinstance(bounds, str) else (bounds.low, bounds.high)
        bars.append((configuration.label, mean, low, high))
    return bars


def draw_figures(sweep: Sweep) -> dict[str, Any]:
    """The report's figures for each group it compares, drawn once and saved as PNG into the sweep directory; returns
    them (by file name without .png) for TensorBoard, which shows the pixels of that drawing (to_tensorboard)."""
    import matplotlib

    from src.dashboard.rendering import render, save_png

    matplotlib.use("Agg")

    figures: dict[str, Any] = {}
    for group in sweep.compared:
        suffix = f"_{group.slug}" if group.slug else ""
        figures.update({f"{name}{suffix}": fig for name, fig in group_figures(group).items()})
    for name, fig in figures.items():
        save_png(render(fig), sweep.directory / f"{name}.png")
    return figures


def group_figures(group: Group) -> dict[str, Any]:
    """curves, bars, heatmap (two varied settings) and pruning (analysed jobs) of one group; none without a
    completed run or a main metric."""
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    main = group.main_metric
    if not group.configurations or not main:
        return figures
    title = "" if not group.slug else f"{group.name}: "
    metrics = [main] + (["val/loss"] if main != "val/loss" else [])
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for configuration in group.configurations:
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
        ax.set_title(f"{title}{metric} (mean over seeds; band: min to max)")
        if ax.lines:
            ax.legend(fontsize=8)
    _tidy(fig)
    figures["curves"] = fig

    bars = bar_values(group)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(bars)), 4))
    means = [mean for _, mean, _, _ in bars]
    # Asymmetric error bars: mean - low below, high - mean above (a clipped interval is shorter on its clipped side).
    errors = [[mean - low for _, mean, low, _ in bars], [high - mean for _, mean, _, high in bars]]
    ax.bar(range(len(bars)), means, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_xticks(range(len(bars)), [label for label, *_ in bars], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(main)
    ax.set_title(f"{title}{main}: mean and 95% interval over seeds (as in the table)")
    _tidy(fig)
    figures["bars"] = fig

    if len(group.varied) == 2:
        figures["heatmap"] = heatmap_figure(group, title)
    pruning = pruning_figure(group)
    if pruning is not None:
        figures["pruning"] = pruning
    return figures


def heatmap_figure(group: Group, title: str):
    """The main metric's mean over two varied settings, each cell labelled as the table rounds it."""
    import matplotlib.pyplot as plt

    main = group.main_metric or ""
    rows = list(dict.fromkeys(dict(c.settings)[group.varied[0]] for c in group.configurations))
    columns = list(dict.fromkeys(dict(c.settings)[group.varied[1]] for c in group.configurations))
    grid = [[math.nan] * len(columns) for _ in rows]
    labels: dict[tuple[int, int], str] = {}
    for c in group.configurations:
        values = c.values(main)
        if values:
            settings = dict(c.settings)
            cell = rows.index(settings[group.varied[0]]), columns.index(settings[group.varied[1]])
            grid[cell[0]][cell[1]] = statistics.mean(values)
            labels[cell] = mean_text(values)
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(columns), 1.2 + 0.8 * len(rows)))
    image = ax.imshow(grid, cmap="viridis")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(group.varied[1])
    ax.set_ylabel(group.varied[0])
    for (i, j), text in labels.items():
        ax.text(j, i, text, ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(image, ax=ax, label=main)
    ax.set_title(f"{title}{main} (mean over seeds)")
    _tidy(fig)
    return fig


def pruning_figure(group: Group):
    """pruning.png: per configuration, the mean pruning curve over its analysed seeds (x: % of the heads removed,
    from each job's analysis/pruning.csv; y: the analysis's metric), with a band from the lowest to the highest
    seed (as curves.png: a band that stays within the values the metric can take); None when no job has a curve."""
    import matplotlib.pyplot as plt

    curves = [(c, [run.pruning for run in c.runs if run.pruning]) for c in group.configurations]
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
        line = ax.plot(xs, means, marker="o", markersize=3, label=f"{configuration.label} ({len(runs)})")[0]
        ax.fill_between(
            xs, [min(points[x]) for x in xs], [max(points[x]) for x in xs], color=line.get_color(), alpha=0.2
        )
    ax.set_xlabel("heads removed (%), least important first")
    ax.set_ylabel(" / ".join(names))
    prefix = "" if not group.slug else f"{group.name}: "
    ax.set_title(f"{prefix}pruning curves (mean over seeds; band: min to max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _tidy(fig)
    return fig


# The tags to_tensorboard writes under (report/<figure>, report/table): an events file holding only these is one of
# the report's own.
REPORT_TAG = "report/"


def to_tensorboard(sweep: Sweep, figures: dict[str, Any], table: str) -> None:
    """The same figures and table as a `report` run in the sweep directory (TensorBoard shows it beside the runs).
    Each writing replaces the one before: the report is written whole, at step 0, each time (the sweep's end,
    every src.report), and TensorBoard would show every earlier copy beside it, the first a stale one."""
    from torch.utils.tensorboard import SummaryWriter

    from src.dashboard.rendering import drawn_pixels

    folder = sweep.directory / "report"
    earlier = [path for path in sorted(folder.glob("events.out.tfevents.*")) if written_by_the_report(path)]
    writer = SummaryWriter(log_dir=str(folder))
    for name, fig in figures.items():  # as drawn for its .png (draw_figures), not drawn again
        writer.add_image(f"report/{name}", drawn_pixels(fig)[..., :3], global_step=0, dataformats="HWC")
    # The markdown's image links point at files beside report.md, which TensorBoard cannot fetch: the figures are
    # in IMAGES above, so the links are left out of the text.
    text = "\n".join(line for line in table.splitlines() if not line.startswith("!["))
    writer.add_text("report/table", text, global_step=0)
    writer.close()
    for path in earlier:  # once the new copy is whole: a failure above leaves the old one, never none
        path.unlink(missing_ok=True)


def written_by_the_report(path: Path) -> bool:
    """Whether an events file is a copy of the report (to_tensorboard's): every value in it is under REPORT_TAG.
    A file that cannot be read, holds nothing, or holds anything else is someone else's, and is kept."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    tags = []
    try:
        for event in EventFileLoader(str(path)).Load():
            tags += [value.tag for value in event.summary.value]
    except Exception:  # cut short, or not an events file: not known to be the report's
        return False
    return bool(tags) and all(tag.startswith(REPORT_TAG) for tag in tags)
