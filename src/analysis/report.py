"""Writing a head analysis (heads.py) out: `analysis/` in the run directory, and the same figures in TensorBoard.

    analysis/report.md          the answer first (the heads whose removal costs most, the site that tolerates
                                pruning, the prunable fraction), the heads ranked by effect, then every table
    analysis/heads.csv          one row per head: importance, entropy, the metric and loss without it
    analysis/keep_one.csv       only one head kept per layer (each layer, each site, everywhere)
    analysis/pruning.csv        the pruning curve, a row per step (the heads removed so far)
    analysis/summary.json       the headline figures (read by the sweep report), why any is undefined, settings
                                and timings
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
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from src.dashboard.rendering import Pictures, rendered, save_pictures
from src.model.names import NUMBERING, layer_name, parse_name, site_title

from .formatting import cell, grouped_heads_lines, json_ready, label_ink
from .heads import HeadAnalysis, HeadRow


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
    pruning removed by the prunable fraction (which site tolerates pruning; undefined, NaN, with the fraction)."""
    within = [s for s in analysis.pruning if s.fraction <= analysis.prunable_fraction + 1e-12]
    removed = set(within[-1].removed_heads) if within else set()
    rows = []
    for site in dict.fromkeys(r.site for r in analysis.heads):
        heads = [r for r in analysis.heads if r.site == site and not r.removed_before]
        drops = [r.metric_drop for r in heads if not math.isnan(r.metric_drop)]
        importance = [r.importance_normalised for r in heads if not math.isnan(r.importance_normalised)]
        gone = sum(1 for r in heads if r.name in removed)
        pruned = gone / len(heads) if heads and not math.isnan(analysis.prunable_fraction) else math.nan
        rows.append(
            {
                "site": site,
                "heads": len(heads),
                "mean_drop": float(np.mean(drops)) if drops else math.nan,
                "max_drop": float(np.max(drops)) if drops else math.nan,
                "pruned_within_tolerance": pruned,
                "mean_importance": float(np.mean(importance)) if importance else math.nan,
            }
        )
    return rows


# --- why a figure is undefined ---------------------------------------------------------------------------------


def no_prunable_fraction(metric: str, split: str) -> str:
    """Why an analysis has no prunable fraction (heads.py leaves it NaN when the unablated model scores 0)."""
    return (
        f"the unablated model scores {metric} 0 on {split}: it does not do the task, so removing heads cannot make it "
        "worse and any fraction would be meaningless"
    )


def why_rank_correlation_undefined(heads: Sequence[HeadRow], on: str) -> str | None:
    """Why the Spearman rho of the heads' normalised importance with the exact effect of removing each alone is
    undefined (statistics.spearman leaves it NaN), in the words of its real cause; None when it is defined.
    `on`: "loss" (the loss increase) or the main metric's name (its drop)."""
    effect = "loss_increase" if on == "loss" else "metric_drop"
    pairs = [
        (row.importance_normalised, getattr(row, effect))
        for row in heads
        if math.isfinite(row.importance_normalised) and math.isfinite(getattr(row, effect))
    ]
    importances = {x for x, _ in pairs}
    effects = {y for _, y in pairs}
    named = "the loss" if on == "loss" else on
    per_layer = Counter((row.site, row.layer) for row in heads if not row.removed_before)
    if per_layer and max(per_layer.values()) == 1 and (len(importances) < 2 or len(pairs) < 3):
        return (
            "one head per layer: importance is normalised within each layer (Michel et al.), so every head's is 1 "
            "and it ranks no head above another"
        )
    if len(pairs) < 3:
        counted = f"{len(pairs)} head{'s' if len(pairs) != 1 else ''}"
        return f"only {counted} measured alone: a rank correlation needs at least 3"
    if len(importances) < 2:
        return f"every head has the same normalised importance ({next(iter(importances)):.3g}): it ranks none first"
    if len(effects) < 2:
        same = next(iter(effects))
        if same == 0:
            return f"removing any one head alone leaves {named} unchanged: the exact effects rank no head first"
        return f"removing any one head alone changes {named} by the same {same:.3g}: the exact effects rank none first"
    return None


def undefined_figures(analysis: HeadAnalysis) -> dict[str, str]:
    """Why each undefined headline figure (HeadAnalysis.summary(), NaN) is undefined, by its name there: written
    into summary.json, so that the sweep report names the same cause."""
    causes = {}
    if math.isnan(analysis.prunable_fraction):
        causes["prunable_fraction"] = no_prunable_fraction(analysis.metric.name, analysis.split)
    for key, rho in analysis.rank_correlation.items():
        if math.isnan(rho):
            on = "loss" if key == "loss" else analysis.metric.name
            causes[f"rank_correlation_{key}"] = why_rank_correlation_undefined(analysis.heads, on) or "undefined"
    return causes


def read_head_rows(path: Path) -> list[HeadRow]:
    """heads.csv (write_tables) read back into HeadRows."""
    parse: dict[str, Callable[[str], Any]] = {
        "site": str,
        "layer": int,
        "head": int,
        "removed_before": lambda text: text == "True",
    }
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    wanted = [f.name for f in fields(HeadRow) if f.init]
    return [HeadRow(**{k: parse.get(k, float)(row[k]) for k in wanted if k in row}) for row in rows]


def write_tables(analysis: HeadAnalysis, out: Path) -> None:
    with open(out / "heads.csv", "w", newline="") as f:
        rows = [asdict(r) for r in analysis.heads]
        by_name = csv.DictWriter(f, fieldnames=list(rows[0]))
        by_name.writeheader()
        by_name.writerows(rows)
    with open(out / "keep_one.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["scope", "site", "layer", "kept", analysis.metric.name, "loss"])
        for k in analysis.keep_one:
            writer.writerow([k.scope, k.site, "" if k.layer is None else k.layer, k.kept, k.metric, k.loss])
    with open(out / "pruning.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fraction_removed", "heads_removed", analysis.metric.name, "loss", "removed"])
        for s in analysis.pruning:
            # as `ablate.heads=` takes them, so the heads of a step paste whole into src.eval or src.predict
            writer.writerow([s.fraction, s.removed, s.metric, s.loss, f"[{','.join(s.removed_heads)}]"])


def write_summary(analysis: HeadAnalysis, out: Path, about: dict) -> None:
    summary = {
        "metric": analysis.metric.name,
        "metric_description": analysis.metric.description,
        "higher_is_better": analysis.metric.higher_is_better,
        "split": analysis.split,
        "examples": analysis.examples,
        "tolerance": analysis.tolerance,
        "figures": analysis.summary(),
        "undefined": undefined_figures(analysis),  # why a figure that is null is undefined
        "sites": site_summary(analysis),
        "seconds": analysis.seconds,
        **about,
    }
    # strict JSON: an undefined figure (NaN) is null, which every JSON reader takes
    (out / "summary.json").write_text(json.dumps(json_ready(summary), indent=2, default=str, allow_nan=False) + "\n")


# --- figures --------------------------------------------------------------------------------------------------


def site_label(site: str) -> str:
    """`decoder_self (decoder self-attention)`: a site as ablate takes it, so that a head read off a panel or a grid
    pastes into ablate.heads, then in words. Anything else (a panel of its own title) is shown as it is."""
    title = site_title(site)
    return f"{site} ({title})" if title != site else site


def heat_map_figure(
    grids: dict[str, np.ndarray],
    title: str,
    cmap: str,
    diverging: bool = False,
    off: Mapping[str, np.ndarray] | None = None,
):
    """A panel per site (layers down, heads across), every cell labelled with its value. `off`: per panel, (L, H)
    True for the heads that were off before the analysis, labelled "off" and left uncoloured, whatever value they
    have. Any other cell without a value (NaN) is labelled "-": what it lacks differs by analysis (not measured, a
    fraction not defined, no query to average over), so only `off` says a head is off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(grids)
    off = off or {}
    grids = {site: np.where(off[site], np.nan, grid) if site in off else grid for site, grid in grids.items()}
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
        ax.set_title(site_label(site), fontsize=9)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(grid.shape[1]))
        ax.set_yticks(range(grid.shape[0]))
        if grid.size <= 256:
            is_off = off.get(site, np.zeros(grid.shape, dtype=bool))
            for (layer, head), value in np.ndenumerate(grid):
                text = "off" if is_off[layer, head] else "-" if np.isnan(value) else f"{value:.2g}"
                ax.text(head, layer, text, ha="center", va="center", fontsize=7, color=label_ink(image, value))
    if image is not None:
        figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    figure.suptitle(title, fontsize=10)
    return figure


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
    if not math.isnan(analysis.prunable_fraction):  # undefined (the model scores 0): no line, as report.md says
        ax.axvline(100 * analysis.prunable_fraction, color="tab:green", linestyle=":", linewidth=1, label="prunable")
    ax.set_xlabel("heads removed (%), least important first")
    ax.set_ylabel(f"{analysis.split} {analysis.metric.name}")
    ax.set_title("pruning curve (importance re-scored after each step)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def figures(analysis: HeadAnalysis) -> dict[str, Any]:
    """name -> matplotlib figure."""
    off = {site: grid == 1 for site, grid in _grid(analysis, "removed_before").items()}
    made = {
        "importance": heat_map_figure(
            _grid(analysis, "importance_normalised"), "head importance (normalised per layer)", "viridis", off=off
        ),
        "entropy": heat_map_figure(_grid(analysis, "entropy"), "attention entropy (nats)", "magma", off=off),
        "pruning_curve": pruning_figure(analysis),
    }
    if any(not math.isnan(r.metric_drop) for r in analysis.heads):
        made["single_head_effect"] = heat_map_figure(
            _grid(analysis, "metric_drop"),
            f"{analysis.metric.name} {'drop' if analysis.metric.higher_is_better else 'rise'} when the head alone "
            "is removed (positive: it helps)",
            "RdBu_r",
            diverging=True,
            off=off,
        )
    return made


# --- report.md --------------------------------------------------------------------------------------------------


def _finite_or_lowest(value: float) -> float:
    """A sort key that puts what was not measured (NaN) last."""
    return value if math.isfinite(value) else -math.inf


def ranked_heads(analysis: HeadAnalysis) -> list[tuple[str, HeadRow]]:
    """The heads still in the model, the most consequential first, each with its rank: by the exact effect of
    removing it alone (the metric's drop, then the loss increase among heads the metric does not separate), or,
    without the single-head table, by its importance normalised per layer: the order the pruning removes heads in
    (least first) and the number the attention page shows, as Michel et al. (2019, section 4.1) compare heads of
    different layers, whose raw importances differ in scale. Tied heads share a rank, marked `=` (competition
    ranking: 1, 2=, 2=, 4)."""
    live = [row for row in analysis.heads if not row.removed_before]
    if any(math.isfinite(row.metric_drop) for row in live):

        def key(row: HeadRow) -> tuple[float, ...]:
            return (_finite_or_lowest(row.metric_drop), _finite_or_lowest(row.loss_increase))

    else:

        def key(row: HeadRow) -> tuple[float, ...]:
            return (_finite_or_lowest(row.importance_normalised),)

    ordered = sorted(live, key=key, reverse=True)  # stable: tied heads stay in site order
    keys = [key(row) for row in ordered]
    ranked = []
    for row, own in zip(ordered, keys):
        rank = 1 + sum(1 for other in keys if other > own)
        tied = keys.count(own) > 1
        ranked.append((f"{rank}=" if tied else str(rank), row))
    return ranked


def _heads_listed(rows: list[HeadRow], value, unit: str = "") -> str:
    """`cross:0:1` (0.31), `cross:0:0` (0.12): heads as `ablate.heads` reads them, each with a number."""
    return ", ".join(f"`{row.name}` ({value(row):.3g}{unit})" for row in rows)


def costliest_heads(analysis: HeadAnalysis, ranked: list[tuple[str, HeadRow]]) -> str:
    """The headline's first line: the (up to three) heads whose removal costs most."""
    m = analysis.metric
    worse = "drop" if m.higher_is_better else "rise"
    rows = [row for _, row in ranked]
    if not any(math.isfinite(row.metric_drop) for row in rows):
        top = rows[:3]
        return (
            f"- **The most important heads**, by importance normalised per layer, the order the pruning removes "
            f"heads in (the exact effect of removing each alone was not measured: single_heads=false): "
            f"{_heads_listed(top, lambda row: row.importance_normalised)}."
        )
    hurting = [row for row in rows if row.metric_drop > 0][:3]
    if hurting:
        listed = _heads_listed(hurting, lambda row: row.metric_drop)
        return f"- **The heads whose removal costs most** (each removed alone; {m.name} {worse}): {listed}."
    if not m.is_loss:  # the loss may still rank the heads where the metric does not move
        by_loss = sorted((row for row in rows if row.loss_increase > 0), key=lambda row: -row.loss_increase)[:3]
        if by_loss:
            listed = _heads_listed(by_loss, lambda row: row.loss_increase, " nats")
            return f"- **No head removed alone makes {m.name} worse.** By the loss, the costliest to remove: {listed}."
    return f"- **No head removed alone makes {m.name}{'' if m.is_loss else ' or the loss'} worse.**"


def most_tolerant_site(analysis: HeadAnalysis, sites: list[dict]) -> str:
    """The headline's second line: the site whose heads the pruning removed the largest share of, within the
    tolerance."""
    if math.isnan(analysis.prunable_fraction):
        return "- **Which site tolerates pruning is undefined**, as the prunable fraction is (next line)."

    def share(site: dict) -> str:
        return f"{100 * site['pruned_within_tolerance']:.0f}%"

    if len(sites) == 1:
        (site,) = sites
        return (
            f"- **`{site['site']}` ({site_title(site['site'])}) is the only site**: {share(site)} of its heads go "
            "within the tolerance."
        )
    best = max(site["pruned_within_tolerance"] for site in sites)
    if best == 0:
        return "- **No site tolerates pruning**: not one head can be removed within the tolerance."
    tied = [site for site in sites if site["pruned_within_tolerance"] == best]
    others = ", ".join(f"`{site['site']}` {share(site)}" for site in sites if site not in tied)
    named = " and ".join(f"`{site['site']}` ({site_title(site['site'])})" for site in tied)
    verb, whose = ("tolerates", "its") if len(tied) == 1 else ("tolerate", "each site's")
    return (
        f"- **{named} {verb} pruning best**: {share(tied[0])} of {whose} heads go within the tolerance (then {others})."
    )


def prunable_line(analysis: HeadAnalysis) -> str:
    """The headline's third line: the prunable fraction, or why there is none."""
    m = analysis.metric
    if math.isnan(analysis.prunable_fraction):
        return f"- There is no prunable fraction: {no_prunable_fraction(m.name, analysis.split)}."
    return (
        f"- **{100 * analysis.prunable_fraction:.0f}% of the heads can be removed** (least important first, "
        f"importance re-scored after each step) before {m.name} {'drops' if m.higher_is_better else 'rises'} by "
        f"more than {100 * analysis.tolerance:g}% of its unablated value."
    )


def rank_correlation_line(analysis: HeadAnalysis) -> str:
    """How well the cheap importance ranks heads as removing them does (Spearman rho), or why that is undefined."""
    m = analysis.metric
    if not analysis.rank_correlation:
        return "- importance vs the exact single-head effect: not measured (single_heads=false)"
    causes = undefined_figures(analysis)
    defined: list[str] = []
    undefined: dict[str, list[str]] = {}  # cause -> what it is undefined on
    for key, rho in analysis.rank_correlation.items():
        if key == "loss" and m.is_loss:  # the same figure as the metric's: said once
            continue
        on = "the loss" if key == "loss" else m.name
        cause = causes.get(f"rank_correlation_{key}")
        if cause:
            undefined.setdefault(cause, []).append(on)
        else:
            defined.append(f"{rho:.2f} on {on}")
    parts = [*defined, *(f"undefined on {' and '.join(on)} ({cause})" for cause, on in undefined.items())]
    meaning = " (near 1: the gradient score ranks heads as removing them does)" if defined else ""
    return f"- importance vs the exact single-head effect: Spearman rho {'; '.join(parts)}{meaning}"


def report_markdown(analysis: HeadAnalysis, about: dict, figure_names: list[str]) -> str:
    """analysis/report.md: the answer first (the headline), then the heads ranked by effect, then every table."""
    m = analysis.metric
    better = "higher is better" if m.higher_is_better else "lower is better"
    worse = "drop" if m.higher_is_better else "rise"  # how the metric gets worse
    ablated = about.get("ablation", "nothing ablated") != "nothing ablated"
    unablated = "with only the ablation above" if ablated else "unablated"
    ranked = ranked_heads(analysis)
    sites = site_summary(analysis)
    measured = any(math.isfinite(row.metric_drop) for _, row in ranked)
    loss_column = not m.is_loss  # a loss-metric analysis has one number per head, not two
    lines = [
        f"# Head analysis: {about.get('checkpoint', '')}",
        "",
        f"Every `{m.name}` below is {m.description} ({better}), on {analysis.split} ({analysis.examples} examples). "
        f"Head names, `site:layer:head`: {NUMBERING} (paste one into `ablate.heads=[...]` to switch it off).",
        "",
        *grouped_heads_lines(
            about,
            "Ablation, importance, pruning and entropy are per query head: switching a head off gates its own output "
            "alone, not its group's key and value.",
        ),
        "## The answer",
        "",
        costliest_heads(analysis, ranked),
        most_tolerant_site(analysis, sites),
        prunable_line(analysis),
        "",
        "## What was measured",
        "",
        f"- ablation in force: {about.get('ablation', 'nothing ablated')}",
        f"- {unablated}: {m.name} {cell(analysis.baseline_metric)}"
        + ("" if m.is_loss else f", loss {cell(analysis.baseline_loss)}"),
        rank_correlation_line(analysis),
        "- time: " + ", ".join(f"{k} {v:.1f} s" for k, v in analysis.seconds.items()),
        "",
        "## Heads ranked by effect",
        "",
    ]
    if measured:
        lines += [
            f"Each head removed alone, the others kept; ranked by how much {m.name} gets worse ({worse}), then by "
            "the loss increase; `=` marks heads tied on both. Importance: E|dL/dg| (Michel et al. 2019, eq. 3), "
            "and normalised per layer.",
            "",
            f"| rank | head | {m.name} {worse} |"
            + (" loss increase |" if loss_column else "")
            + " importance | normalised |",
            "| --- | --- | --- |" + (" --- |" if loss_column else "") + " --- | --- |",
        ]
        for rank, row in ranked:
            loss = f" {cell(row.loss_increase)} |" if loss_column else ""
            lines.append(
                f"| {rank} | {row.name} | {cell(row.metric_drop)} |{loss} {cell(row.importance, 4)} | "
                f"{cell(row.importance_normalised)} |"
            )
    else:
        lines += [
            "Ranked by importance, E|dL/dg| (Michel et al. 2019, eq. 3), normalised per layer as the pruning ranks "
            "heads (their section 4.1: raw importances of different layers differ in scale): the exact effect of "
            "removing each head alone was not measured (single_heads=false). `=` marks tied heads.",
            "",
            "| rank | head | importance | normalised | entropy (nats) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for rank, row in ranked:
            lines.append(
                f"| {rank} | {row.name} | {cell(row.importance, 4)} | {cell(row.importance_normalised)} | "
                f"{cell(row.entropy)} |"
            )

    lines += [
        "",
        "## By site",
        "",
        f"| site | heads | mean {m.name} {worse} (one head removed) | largest {worse} | pruned within tolerance | "
        "mean importance |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for site in sites:
        pruned = site["pruned_within_tolerance"]
        shown = "undefined" if math.isnan(pruned) else f"{100 * pruned:.0f}%"
        lines.append(
            f"| {site['site']} | {site['heads']} | {cell(site['mean_drop'])} | {cell(site['max_drop'])} | {shown} | "
            f"{cell(site['mean_importance'])} |"
        )
    lines += [
        "",
        "## Every head, in site order",
        "",
        f"Importance: E|dL/dg| (Michel et al. 2019, eq. 3), and normalised per layer. {worse.capitalize()}: how much "
        f"worse {m.name} is with the head alone removed (positive: the head helps); `-`: not measured.",
        "",
        f"| head | off | importance | normalised | entropy (nats) | {m.name} without | {worse} |"
        + (" loss without |" if loss_column else ""),
        "| --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if loss_column else ""),
    ]
    for r in analysis.heads:
        off = "off" if r.removed_before else ""  # a column of its own: the name cell pastes into ablate.heads whole
        loss = f" {cell(r.loss_without)} |" if loss_column else ""
        lines.append(
            f"| {r.name} | {off} | {cell(r.importance, 4)} | {cell(r.importance_normalised)} | {cell(r.entropy)} | "
            f"{cell(r.metric_without)} | {cell(r.metric_drop)} |{loss}"
        )
    if analysis.keep_one:
        lines += [
            "",
            "## Keeping one head per layer",
            "",
            "The best head of a layer (lowest loss kept alone) is the only one left in it: in that layer alone, in "
            "every layer of the site, and in every layer of the model.",
            "",
            f"| scope | kept | {m.name} |" + (" loss |" if loss_column else ""),
            "| --- | --- | --- |" + (" --- |" if loss_column else ""),
        ]
        for k in analysis.keep_one:
            scope = (
                layer_name(k.site, k.layer)
                if k.scope == "layer" and k.layer is not None
                else ("every layer" if k.scope == "all" else f"every layer of {k.site}")
            )
            loss = f" {cell(k.loss)} |" if loss_column else ""
            lines.append(f"| {scope} | {k.kept} | {cell(k.metric)} |{loss}")
    lines += ["", "## Pruning curve", "", f"| heads removed | {m.name} |" + (" loss |" if loss_column else "")]
    lines.append("| --- | --- |" + (" --- |" if loss_column else ""))
    for s in analysis.pruning:
        loss = f" {cell(s.loss)} |" if loss_column else ""
        lines.append(f"| {s.removed} ({100 * s.fraction:.0f}%) | {cell(s.metric)} |{loss}")
    lines += [""] + [f"![{name}]({name}.png)" for name in figure_names] + [""]
    return "\n".join(lines)


@contextmanager
def written_whole(out: Path) -> Iterator[Path]:
    """A hidden folder beside `out` (which the caller made sure does not exist) to write an analysis into, renamed
    to `out` when the block ends: an interrupt or an error leaves no half-written analysis that a rerun would refuse
    to replace or a sweep report would read. Every analysis (heads, patching, lens, induction) is written so."""
    import shutil

    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True)
    try:
        yield partial
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def grids_of_heads(values: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Per site, (layers, heads) of a value per head named as ablate.heads names it (`cross:1:2`); names that are
    no head (`embed`, `cross:1 bias`) are left out, cells without a value are NaN."""
    cells: dict[str, dict[tuple[int, int], float]] = {}
    for name, value in values.items():
        try:
            site, layer, head = parse_name(name)
        except ValueError:
            continue
        if layer is not None and head is not None:
            cells.setdefault(site, {})[(layer, head)] = value
    grids = {}
    for site, found in cells.items():
        grid = np.full((1 + max(k[0] for k in found), 1 + max(k[1] for k in found)), np.nan)
        for (layer, head), value in found.items():
            grid[layer, head] = value
        grids[site] = grid
    return grids


def write_analysis(analysis: HeadAnalysis, out: Path, about: dict, pictures: Pictures | None = None) -> list[str]:
    """Write `out` (the caller made sure it does not exist), whole or not at all (written_whole), and return the
    files written. `pictures`: the figures already drawn (rendered(figures(analysis))), which TensorBoard gets too."""
    with written_whole(out) as partial:
        write_tables(analysis, partial)
        write_summary(analysis, partial, about)
        names = save_pictures(pictures if pictures is not None else rendered(figures(analysis)), partial)
        (partial / "report.md").write_text(report_markdown(analysis, about, names))
    return sorted(p.name for p in out.iterdir())


def write_tensorboard(
    analysis: HeadAnalysis, log_dir: Path, step: int, about: dict, pictures: Pictures | None = None
) -> None:
    """The analysis into the run's TensorBoard (see the module docstring for the tags); `pictures` as in
    write_analysis."""
    from torch.utils.tensorboard import SummaryWriter

    group = f"{analysis.split}_analysis"
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for name, pixels in (pictures if pictures is not None else rendered(figures(analysis))).items():
            writer.add_image(f"{group}/{name}", pixels[..., :3], step, dataformats="HWC")
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
