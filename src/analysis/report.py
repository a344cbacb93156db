"""Writing a head analysis (heads.py) out: `analysis/` in the run directory, and the same figures in TensorBoard.

    analysis/report.md          what was measured, the headline figures, every table, the figures
    analysis/heads.csv          one row per head: importance, entropy, the metric and loss without it
    analysis/keep_one.csv       only one head kept per layer (each layer, each site, everywhere)
    analysis/pruning.csv        the pruning curve, a row per step (the heads removed so far)
    analysis/summary.json       the headline figures (read by the sweep report), settings and timings
    analysis/importance.png, single_head_effect.png, entropy.png   heat maps: a panel per site, layer x head
    analysis/pruning_curve.png  the main metric against the fraction of heads removed

In TensorBoard the figures go under `<split>_analysis/` (images, the pruning curve as scalars with the percentage
removed as the step, and the report's tables as text). TensorBoard lists tag groups in name order and opens the
first ones, so `val_analysis` comes after the learning curves (`train/`, `val/`).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .heads import HeadAnalysis

SITE_TITLES = {
    "encoder_self": "encoder self-attention",
    "decoder_self": "decoder self-attention",
    "cross": "cross-attention",
}


def _fmt(value: float, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _grid(analysis: HeadAnalysis, field: str) -> dict[str, np.ndarray]:
    """Per site, (L, H) of one HeadRow field (NaN where not measured)."""
    shapes: dict[str, tuple[int, int]] = {}
    for row in analysis.heads:
        layers, heads = shapes.get(row.site, (0, 0))
        shapes[row.site] = (max(layers, row.layer + 1), max(heads, row.head + 1))
    grids = {site: np.full(shape, np.nan) for site, shape in shapes.items()}
    for row in analysis.heads:
        grids[row.site][row.layer, row.head] = getattr(row, field)
    return grids


def site_summary(analysis: HeadAnalysis) -> list[dict]:
    """Per site: its heads, the mean and largest metric drop of removing one head, and how many of its heads the
    pruning removed by the prunable fraction (which site tolerates pruning)."""
    within = [s for s in analysis.pruning if s.fraction <= analysis.prunable_fraction + 1e-12]
    removed = set(within[-1].removed_heads) if within else set()
    rows = []
    for site in dict.fromkeys(r.site for r in analysis.heads):
        heads = [r for r in analysis.heads if r.site == site and not r.removed_before]
        drops = [r.metric_drop for r in heads if not math.isnan(r.metric_drop)]
        gone = sum(1 for r in heads if f"{r.site}:{r.layer}:{r.head}" in removed)
        rows.append(
            {
                "site": site,
                "heads": len(heads),
                "mean_drop": float(np.mean(drops)) if drops else math.nan,
                "max_drop": float(np.max(drops)) if drops else math.nan,
                "pruned_within_tolerance": gone / len(heads) if heads else math.nan,
                "mean_importance": float(np.nanmean([r.importance_normalised for r in heads])) if heads else math.nan,
            }
        )
    return rows


def write_tables(analysis: HeadAnalysis, out: Path) -> None:
    with open(out / "heads.csv", "w", newline="") as f:
        rows = [asdict(r) for r in analysis.heads]
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "keep_one.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["scope", "site", "layer", "kept", analysis.metric.name, "loss"])
        for k in analysis.keep_one:
            writer.writerow([k.scope, k.site, "" if k.layer is None else k.layer, k.kept, k.metric, k.loss])
    with open(out / "pruning.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fraction_removed", "heads_removed", analysis.metric.name, "loss", "removed"])
        for s in analysis.pruning:
            writer.writerow([s.fraction, s.removed, s.metric, s.loss, " ".join(s.removed_heads)])


def write_summary(analysis: HeadAnalysis, out: Path, about: dict) -> None:
    summary = {
        "metric": analysis.metric.name,
        "metric_description": analysis.metric.description,
        "higher_is_better": analysis.metric.higher_is_better,
        "split": analysis.split,
        "examples": analysis.examples,
        "tolerance": analysis.tolerance,
        "figures": analysis.summary(),
        "sites": site_summary(analysis),
        "seconds": analysis.seconds,
        **about,
    }
    # strict JSON: an undefined figure (NaN) is null, which every JSON reader takes
    (out / "summary.json").write_text(json.dumps(_finite(summary), indent=2, default=str, allow_nan=False) + "\n")


def _finite(value):
    """`value` with every NaN or infinity replaced by None, through dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- figures --------------------------------------------------------------------------------------------------


def heat_map_figure(grids: dict[str, np.ndarray], title: str, cmap: str, diverging: bool = False):
    """A panel per site (layers down, heads across), every cell labelled with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(grids)
    values = np.concatenate([g.ravel() for g in grids.values()])
    finite = values[np.isfinite(values)]
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    vmin = -vmax if diverging else (float(np.min(finite)) if finite.size else 0.0)
    width = max(6.5, sum(max(2.2, 0.55 * g.shape[1] + 1.2) for g in grids.values()) + 1.0)  # room for the title
    height = max(2.4, 0.45 * max(g.shape[0] for g in grids.values()) + 1.4)
    figure, axes = plt.subplots(1, len(sites), figsize=(width, height), squeeze=False, constrained_layout=True)
    image = None
    for ax, site in zip(axes[0], sites):
        grid = grids[site]
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax or 1.0, aspect="auto")
        ax.set_title(SITE_TITLES.get(site, site), fontsize=9)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(grid.shape[1]))
        ax.set_yticks(range(grid.shape[0]))
        if grid.size <= 256:
            for (layer, head), value in np.ndenumerate(grid):
                text = "off" if np.isnan(value) else f"{value:.2g}"
                ax.text(head, layer, text, ha="center", va="center", fontsize=7, color=_ink(image, value))
    if image is not None:
        figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    figure.suptitle(title, fontsize=10)
    return figure


def _ink(image, value: float) -> str:
    """Black on light cells, white on dark ones (by the cell colour's luminance), so every label can be read."""
    if np.isnan(value):
        return "black"
    red, green, blue, _ = image.cmap(image.norm(value))
    return "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"


def pruning_figure(analysis: HeadAnalysis):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    x = [100 * s.fraction for s in analysis.pruning]
    ax.plot(x, [s.metric for s in analysis.pruning], marker="o", label=analysis.metric.name)
    baseline = analysis.baseline_metric
    allowed = analysis.tolerance * abs(baseline) if baseline != 0 else analysis.tolerance
    limit = baseline - allowed if analysis.metric.higher_is_better else baseline + allowed
    ax.axhline(limit, color="grey", linestyle="--", linewidth=1, label=f"tolerance ({100 * analysis.tolerance:g}%)")
    ax.axvline(100 * analysis.prunable_fraction, color="tab:green", linestyle=":", linewidth=1, label="prunable")
    ax.set_xlabel("heads removed (%), least important first")
    ax.set_ylabel(f"{analysis.split} {analysis.metric.name}")
    ax.set_title("pruning curve (importance re-scored after each step)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def figures(analysis: HeadAnalysis) -> dict[str, object]:
    """name -> matplotlib figure."""
    made = {
        "importance": heat_map_figure(
            _grid(analysis, "importance_normalised"), "head importance (normalised per layer)", "viridis"
        ),
        "entropy": heat_map_figure(_grid(analysis, "entropy"), "attention entropy (nats)", "magma"),
        "pruning_curve": pruning_figure(analysis),
    }
    if any(not math.isnan(r.metric_drop) for r in analysis.heads):
        made["single_head_effect"] = heat_map_figure(
            _grid(analysis, "metric_drop"),
            f"{analysis.metric.name} {'drop' if analysis.metric.higher_is_better else 'rise'} when the head alone "
            "is removed (positive: it helps)",
            "RdBu_r",
            diverging=True,
        )
    return made


def figure_pixels(figure) -> np.ndarray:
    """(H, W, 3) uint8 of a drawn matplotlib figure (for TensorBoard)."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


# --- report.md --------------------------------------------------------------------------------------------------


def report_markdown(analysis: HeadAnalysis, about: dict, figure_names: list[str]) -> str:
    m = analysis.metric
    better = "higher is better" if m.higher_is_better else "lower is better"
    worse = "drop" if m.higher_is_better else "rise"  # how the metric gets worse
    ablated = about.get("ablation", "nothing ablated") != "nothing ablated"
    unablated = "with only the ablation above" if ablated else "unablated"
    lines = [
        f"# Head analysis: {about.get('checkpoint', '')}",
        "",
        f"- split: {analysis.split} ({analysis.examples} examples); main metric: {m.name} ({m.description}, {better})",
        f"- ablation in force: {about.get('ablation', 'nothing ablated')}",
        f"- {unablated}: {m.name} {_fmt(analysis.baseline_metric)}"
        + ("" if m.name == "loss" else f", loss {_fmt(analysis.baseline_loss)}"),
        (
            f"- no prunable fraction: the unablated model scores {m.name} 0 (it does not do the task)"
            if math.isnan(analysis.prunable_fraction)
            else f"- **{100 * analysis.prunable_fraction:.0f}% of the heads can be removed** (least important "
            f"first, re-scored every step) before {m.name} {'drops' if m.higher_is_better else 'rises'} by more "
            f"than {100 * analysis.tolerance:g}% of its value"
        ),
    ]
    if analysis.rank_correlation:
        rho = analysis.rank_correlation
        on = f"{_fmt(rho.get('metric'), 2) or 'undefined'} on {m.name}"
        if m.name != "loss":
            on += f", {_fmt(rho.get('loss'), 2) or 'undefined'} on the loss"
        lines.append(
            f"- importance vs the exact single-head effect: Spearman rho {on} (near 1: the gradient score ranks heads "
            "as removing them does; undefined when a column is constant)"
        )
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in analysis.seconds.items())
    lines += [f"- time: {timing}", ""]

    lines += [
        "## By site",
        "",
        f"| site | heads | mean {m.name} {worse} (one head removed) | largest {worse} | pruned within tolerance | "
        "mean importance |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in site_summary(analysis):
        lines.append(
            f"| {s['site']} | {s['heads']} | {_fmt(s['mean_drop'])} | {_fmt(s['max_drop'])} | "
            f"{_fmt(100 * s['pruned_within_tolerance'], 0)}% | {_fmt(s['mean_importance'])} |"
        )
    lines += [
        "",
        "## Heads",
        "",
        f"Importance: E|dL/dg| (Michel et al. 2019, eq. 3), and normalised per layer. {worse.capitalize()}: how much "
        "worse the main metric is with the head alone removed (positive: the head helps).",
        "",
        f"| head | importance | normalised | entropy (nats) | {m.name} without | {worse} |"
        + ("" if m.name == "loss" else " loss without |"),
        "| --- | --- | --- | --- | --- | --- |" + ("" if m.name == "loss" else " --- |"),
    ]
    for r in analysis.heads:
        name = f"{r.site}:{r.layer}:{r.head}" + (" (off)" if r.removed_before else "")
        lines.append(
            f"| {name} | {_fmt(r.importance, 4)} | {_fmt(r.importance_normalised)} | {_fmt(r.entropy)} | "
            f"{_fmt(r.metric_without)} | {_fmt(r.metric_drop)} |"
            + ("" if m.name == "loss" else f" {_fmt(r.loss_without)} |")
        )
    if analysis.keep_one:
        lines += [
            "",
            "## Keeping one head per layer",
            "",
            "The best head of a layer (lowest loss kept alone) is the only one left in it: in that layer alone, in "
            "every layer of the site, and in every layer of the model.",
            "",
            f"| scope | kept | {m.name} |" + ("" if m.name == "loss" else " loss |"),
            "| --- | --- | --- |" + ("" if m.name == "loss" else " --- |"),
        ]
        for k in analysis.keep_one:
            scope = (
                f"{k.site} layer {k.layer}" if k.scope == "layer" else ("every layer" if k.scope == "all" else k.site)
            )
            loss = "" if m.name == "loss" else f" {_fmt(k.loss)} |"
            lines.append(f"| {scope} | {k.kept} | {_fmt(k.metric)} |{loss}")
    lines += ["", "## Pruning curve", "", f"| heads removed | {m.name} |" + ("" if m.name == "loss" else " loss |")]
    lines.append("| --- | --- |" + ("" if m.name == "loss" else " --- |"))
    for s in analysis.pruning:
        loss = "" if m.name == "loss" else f" {_fmt(s.loss)} |"
        lines.append(f"| {s.removed} ({100 * s.fraction:.0f}%) | {_fmt(s.metric)} |{loss}")
    lines += [""] + [f"![{name}]({name}.png)" for name in figure_names] + [""]
    return "\n".join(lines)


def write_analysis(analysis: HeadAnalysis, out: Path, about: dict) -> list[str]:
    """Write `out` (the caller made sure it does not exist) and return the files written. Everything goes into a
    hidden folder beside it first, renamed to `out` at the end: an interrupt or an error leaves no half-written
    analysis that a rerun would refuse to replace or a sweep report would read."""
    import shutil

    import matplotlib.pyplot as plt

    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True)
    try:
        write_tables(analysis, partial)
        write_summary(analysis, partial, about)
        made = figures(analysis)
        for name, figure in made.items():
            figure.savefig(partial / f"{name}.png", dpi=110)
            plt.close(figure)
        (partial / "report.md").write_text(report_markdown(analysis, about, list(made)))
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return sorted(p.name for p in out.iterdir())


def write_tensorboard(analysis: HeadAnalysis, log_dir: Path, step: int, about: dict) -> None:
    """The analysis into the run's TensorBoard (see the module docstring for the tags)."""
    from torch.utils.tensorboard import SummaryWriter

    group = f"{analysis.split}_analysis"
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for name, figure in figures(analysis).items():
            writer.add_image(f"{group}/{name}", figure_pixels(figure), step, dataformats="HWC")
            import matplotlib.pyplot as plt

            plt.close(figure)
        for s in analysis.pruning:  # the curve: x = percentage of heads removed
            writer.add_scalar(f"{group}/pruning_{analysis.metric.name}", s.metric, round(100 * s.fraction))
            writer.add_scalar(f"{group}/pruning_loss", s.loss, round(100 * s.fraction))
        writer.add_scalar(f"{group}/prunable_fraction", analysis.prunable_fraction, step)
        for key, value in analysis.rank_correlation.items():
            if math.isfinite(value):
                writer.add_scalar(f"{group}/rank_correlation_{key}", value, step)
        writer.add_text(f"{group}/report", report_markdown(analysis, about, []), step)
    finally:
        writer.close()
