"""Writing an activation-patching analysis (causal.py) out: `patching/` in the run directory, and its figures in
TensorBoard.

    patching/report.md          the answer first (the places and heads that restore most, how far attribution
                                patching can be trusted), then the tables
    patching/patching.csv       one row per patch: its name (the head or layer, as ablate.heads and
                                ablate.sublayers take it), family, point, site, layer, head, position, the metric
                                with the patch, the fraction restored, attribution patching's estimate
    patching/paths.csv          path patching: sender, receiver, channel, the metric, the fraction kept

A fraction is `nan` in the CSVs and null in summary.json (with `restored_undefined` saying why), and "not defined" in
report.md, where the clean and corrupted inputs score the same (patching.fraction).
    patching/summary.json       the headline figures (read by the sweep report), settings and timings
    patching/resid_pre.png, attn_out.png, ffn_out.png   fraction restored, layer x position, a panel per stack
    patching/heads.png          fraction restored by each head's output at every position, layer x head per site
    patching/attribution.png    attribution patching's estimate against the exact effect, a panel per family

In TensorBoard the figures go under `<split>_patching/` (images, the rank correlations as scalars, the report as
text), after the learning curves.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from src.dashboard.rendering import Pictures, rendered, save_pictures
from src.model.names import NUMBERING, head_name, layer_name, site_named

from .causal import FAMILIES, CausalAnalysis, PatchRow, stack_of, undefined_restoration, weak_separation
from .formatting import cell, grouped_heads_lines, json_ready, label_ink
from .report import (
    grids_of_heads,
    heat_map_figure,
    site_label,
    written_whole,
)

FAMILY_TITLES = {
    "resid_pre": "the residual stream entering each layer",
    "attn_out": "each attention sublayer's output",
    "ffn_out": "each feed-forward sublayer's output",
    "head": "each head's output, every position",
    "head_position": "each head's output, one position",
}


def _direction_words(direction: str) -> str:
    if direction == "denoising":
        return "denoising: the corrupted run with one clean activation patched in (is it sufficient?)"
    return "noising: the clean run with one corrupted activation patched in (is it necessary?)"


def forward_order(key: tuple[int, str]) -> tuple[int, int]:
    """A (layer, site) row's place in the forward pass within its stack: by layer, then as the sites run in a layer
    (Site.order: a decoder layer's self-attention, then its cross-attention, then its FFN), never by site name
    (cross sorts before decoder_self)."""
    layer, site = key
    return layer, site_named(site).order


def row_keys(analysis: CausalAnalysis, family: str, stack: str) -> list[tuple[int, str]]:
    """The (layer, site) rows of a family's grid of one stack, in forward order: the grid's rows and their labels."""
    found = {(r.layer, r.site) for r in analysis.rows if r.family == family and stack_of(r.site) == stack}
    return sorted(found, key=forward_order)


def position_grids(analysis: CausalAnalysis, family: str) -> dict[str, np.ndarray]:
    """Per stack, (layers, positions) of the fraction restored, with the stack's sites stacked as rows in forward
    order (row_keys)."""
    cells: dict[str, dict[tuple[int, str], dict[int, float]]] = {}
    for row in analysis.rows:
        if row.family == family:
            cells.setdefault(stack_of(row.site), {}).setdefault((row.layer, row.site), {})[row.position or 0] = (
                row.restored
            )
    found = {}
    for stack, by_row in cells.items():
        keys = row_keys(analysis, family, stack)
        width = 1 + max(p for values in by_row.values() for p in values)
        grid = np.full((len(keys), width), np.nan)
        for index, key in enumerate(keys):
            for position, value in by_row[key].items():
                grid[index, position] = value
        found[stack] = grid
    return found


def row_labels(analysis: CausalAnalysis, family: str, stack: str) -> list[str]:
    """The rows of position_grids' grid of `stack`, named as ablate.sublayers takes them (`decoder_self:1`)."""
    return [layer_name(site, layer) for layer, site in row_keys(analysis, family, stack)]


def head_grids(analysis: CausalAnalysis) -> dict[str, np.ndarray]:
    """Per attention site, (layers, heads) of the fraction restored by each head at every position."""
    return grids_of_heads({head_name(r.site, r.layer, r.head): r.restored for r in analysis.rows if r.family == "head"})


def position_figure(analysis: CausalAnalysis, family: str):
    """A panel per stack: layers down, positions across (labelled with the first pair's tokens)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = position_grids(analysis, family)
    width = max(6.5, sum(0.5 * g.shape[1] + 2.5 for g in grids.values()))
    height = max(2.6, 0.45 * max(g.shape[0] for g in grids.values()) + 1.8)
    figure, axes = plt.subplots(1, len(grids), figsize=(width, height), squeeze=False, constrained_layout=True)
    image = None
    for ax, (stack, grid) in zip(axes[0], grids.items()):
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        tokens = analysis.positions.get(stack, [])
        ax.set_xticks(range(grid.shape[1]))
        ax.set_xticklabels(
            [f"{p}: {tokens[p]}" if p < len(tokens) else str(p) for p in range(grid.shape[1])], rotation=90, fontsize=7
        )
        ax.set_yticks(range(grid.shape[0]))
        ax.set_yticklabels(row_labels(analysis, family, stack), fontsize=7)
        ax.set_title(f"{stack} (position: the first pair's clean token)", fontsize=9)
        if grid.size <= 400:
            for (i, j), value in np.ndenumerate(grid):
                if np.isfinite(value):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color=label_ink(image, value))
    if image is not None:
        figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    fraction = "fraction restored" if analysis.direction == "denoising" else "fraction kept"
    figure.suptitle(f"{fraction} by patching {FAMILY_TITLES[family]} ({analysis.direction})", fontsize=10)
    return figure


def attribution_figure(analysis: CausalAnalysis):
    """Attribution patching's estimate against the exact effect, a panel per family, with the rank correlation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [f for f in FAMILIES if any(r.family == f for r in analysis.rows)]
    base = analysis.corrupted if analysis.direction == "denoising" else analysis.clean
    figure, axes = plt.subplots(
        1, len(families), figsize=(3.2 * len(families), 3.4), squeeze=False, constrained_layout=True
    )
    for ax, family in zip(axes[0], families):
        rows = [r for r in analysis.rows if r.family == family]
        exact = [r.value - base for r in rows]
        estimate = [r.estimate for r in rows]
        ax.scatter(exact, estimate, s=8, alpha=0.7)
        low, high = min(exact + estimate), max(exact + estimate)
        ax.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle="--")
        rho = analysis.rank_correlation.get(family, math.nan)
        ax.set_title(f"{family}\nSpearman rho {cell(rho, 2)}", fontsize=9)
        ax.set_xlabel("exact effect", fontsize=8)
        ax.set_ylabel("attribution estimate", fontsize=8)
    figure.suptitle(f"attribution patching against activation patching ({analysis.metric})", fontsize=10)
    return figure


def figures(analysis: CausalAnalysis) -> dict[str, Any]:
    """name -> matplotlib figure (none of the restored-fraction maps when the fraction is undefined)."""
    made: dict[str, Any] = {}
    if undefined_restoration(analysis) is None:
        for family in ("resid_pre", "attn_out", "ffn_out"):
            if any(r.family == family for r in analysis.rows):
                made[family] = position_figure(analysis, family)
        if any(r.family == "head" for r in analysis.rows):
            made["heads"] = heat_map_figure(
                head_grids(analysis),
                f"fraction restored by patching each head's output at every position ({analysis.direction})",
                "RdBu_r",
                diverging=True,
            )
    made["attribution"] = attribution_figure(analysis)
    return made


def _top(rows: list[PatchRow], count: int, direction: str) -> list[PatchRow]:
    """The patches with the largest effect: denoising, those that restore most (the highest fraction restored);
    noising, those that destroy most (the lowest fraction kept)."""
    finite = [r for r in rows if math.isfinite(r.restored)]
    sign = -1.0 if direction == "denoising" else 1.0
    return sorted(finite, key=lambda r: sign * r.restored)[:count]


def place(row: PatchRow) -> str:
    """A patch as a reader names it: the head as ablate.heads takes it, the layer as ablate.sublayers does."""
    where = head_name(row.site, row.layer, row.head) if row.head is not None else layer_name(row.site, row.layer)
    return where + (f" position {row.position}" if row.position is not None else "")


# What a fraction's cell says where it is NaN (patching.fraction): the clean and corrupted inputs score the same
NOT_DEFINED = "not defined: the clean and corrupted inputs score the same"


def answer_lines(analysis: CausalAnalysis) -> list[str]:
    why = undefined_restoration(analysis)
    if why is not None:
        return [f"- every fraction is {NOT_DEFINED}: {why}"]
    fragile = weak_separation(analysis)
    if analysis.direction == "denoising":
        said = "restore most of the clean run (fraction restored)"
    else:
        said = "destroy most of the clean run (fraction kept; 1: no change)"
    lines = []
    for family in ("head", "resid_pre", "attn_out", "ffn_out"):
        top = _top([r for r in analysis.rows if r.family == family], 3, analysis.direction)
        if top:
            listed = ", ".join(f"`{place(r)}` {r.restored:+.2f}" for r in top)
            lines.append(f"- {FAMILY_TITLES[family]}: the patches that {said}: {listed}")
    if analysis.positions_left_out:
        lines.append(
            f"- by position: not measured, {analysis.positions_left_out} (their lengths, scored positions or changed "
            "positions differ), so a position would mean something else in each pair; each head's output is "
            "patched at every position at once"
        )
    if fragile:
        lines.insert(0, f"- **read with care**: {fragile}")
    return lines


def rank_correlation_lines(analysis: CausalAnalysis) -> list[str]:
    metric = analysis.pair_metric
    if not metric.differentiable:
        return [f"- attribution patching: not run ({metric.title} is {metric.no_gradient}: no gradient)"]
    parts = [f"{family} {cell(rho, 2)}" for family, rho in analysis.rank_correlation.items()]
    return [
        "- attribution patching vs activation patching, Spearman rho per family: "
        + "; ".join(parts)
        + " (near 1: the one-pass estimate ranks the places as exact patching does; it is least reliable on the "
        "residual stream, the first FFN and saturated attention: Kramar et al. 2024)"
    ]


def ablated_patch_words(analysis: CausalAnalysis, about: dict) -> str:
    """What patching an ablated head reads, when something is ablated. A head switched off (zero or mean ablation:
    the same zeros or the same mean in both runs) or in a removed sublayer (its output never reaches the stream)
    writes alike in the clean and the corrupted run, so its patch changes nothing: the corrupted run's value when
    denoising (0), the clean run's when noising (1)."""
    if about.get("ablation", "nothing ablated") == "nothing ablated":
        return ""
    reads = "0 (fraction restored)" if analysis.direction == "denoising" else "1 (fraction kept)"
    return (
        " (a head switched off, or in a removed sublayer, writes the same in the clean and the corrupted run, so "
        f"patching it changes nothing: it reads {reads})"
    )


def grouped_patching_words(analysis: CausalAnalysis) -> str:
    """What a grouped-query model's patches are per query head and per KV group (docs/ablation-and-analysis.md): every
    head patched is a query head (its output `z`); a path through a receiver's key or value changes the key (value)
    its whole KV group reads, and only the receiver head's output is kept."""
    words = "Each head patched is a query head, its own output `z`"
    if analysis.paths:
        words += (
            "; path patching's senders and receivers are query heads, and a path through a receiver's key or value "
            "changes its KV group's key (value) and keeps only the receiver head's output"
        )
    return words + "."


def report_markdown(analysis: CausalAnalysis, about: dict, figure_names: list[str]) -> str:
    lines = [
        f"# Activation patching: {about.get('checkpoint', '')}",
        "",
        f"{analysis.pairs} counterfactual pairs ({analysis.described}); {_direction_words(analysis.direction)}. "
        f"The metric, `{analysis.metric}`: {analysis.pair_metric.words}. Every fraction below is "
        "(metric with the patch - corrupted) / (clean - corrupted): 1 is the clean run's value, 0 the corrupted "
        f"one's. Heads and layers are named as `ablate.heads` and `ablate.sublayers` take them ({NUMBERING}).",
        "",
        *grouped_heads_lines(about, grouped_patching_words(analysis)),
        "## The answer",
        "",
        *answer_lines(analysis),
        "",
        "## What was measured",
        "",
        f"- ablation in force: {about.get('ablation', 'nothing ablated')}{ablated_patch_words(analysis, about)}",
        f"- clean {analysis.metric} {cell(analysis.clean)}, corrupted {cell(analysis.corrupted)}"
        + (f"; the clean answer is the top-1 prediction in {100 * about['clean_accuracy']:.0f}% of the pairs"
           if "clean_accuracy" in about else ""),
        *rank_correlation_lines(analysis),
        "- time: " + ", ".join(f"{k} {v:.1f} s" for k, v in about.get("seconds", {}).items()),
        "",
    ]  # fmt: skip
    heads = head_grids(analysis)
    undefined = undefined_restoration(analysis) is not None
    if heads and undefined:  # a grid of NaN would say nothing: say why once
        lines += ["## Each head's output patched at every position", "", f"Every fraction is {NOT_DEFINED}.", ""]
    elif heads:
        lines += ["## Each head's output patched at every position", ""]
        fraction = "fraction restored" if analysis.direction == "denoising" else "fraction kept"
        for site, grid in heads.items():
            lines += [f"{site_label(site)}: {fraction}, layer x head", ""]
            lines += ["| layer | " + " | ".join(f"head {h}" for h in range(grid.shape[1])) + " |"]
            lines += ["| --- |" + " --- |" * grid.shape[1]]
            for layer in range(grid.shape[0]):
                lines.append(f"| {layer} | " + " | ".join(cell(v, 2) for v in grid[layer]) + " |")
            lines.append("")
    if analysis.paths:
        lines += [
            "## Path patching",
            "",
            "The clean run with only the path sender -> receiver's query, key or value carrying the corrupted "
            "sender (Wang et al. 2022): the fraction of the clean-minus-corrupted difference kept (1: the path "
            "does not matter; lower: the sender matters through that input).",
            "",
            "A sender's output reaches a cross-attention's keys and values if it is an encoder head, its query if "
            "it is a decoder head; the other inputs are left out.",
            "",
            "| sender | receiver | through | metric | kept |",
            "| --- | --- | --- | --- | --- |",
        ]
        for p in analysis.paths:
            kept = "not defined" if math.isnan(p.restored) else cell(p.restored, 3)
            lines.append(f"| {p.sender} | {p.receiver} | {p.channel} | {cell(p.value, 4)} | {kept} |")
        lines.append("")
        if any(math.isnan(p.restored) for p in analysis.paths):
            lines += [f"Not defined: {NOT_DEFINED.removeprefix('not defined: ')}, so no fraction can be kept.", ""]
    lines += [
        "Every patch: patching.csv, with `value` (the metric with the patch), `restored` and `estimate`, attribution "
        f"patching's estimate of the patch's change of the metric (in {analysis.metric}, not a fraction).",
        "",
    ]
    lines += [f"![{name}]({name}.png)" for name in figure_names] + [""]
    return "\n".join(lines)


def summary(analysis: CausalAnalysis, about: dict) -> dict:
    """summary.json: the headline figures a sweep report averages over seeds, by name."""
    heads = {
        head_name(r.site, r.layer, r.head): r.restored for r in analysis.rows if r.family == "head"
    }  # fmt: skip
    resid = {
        f"{layer_name(r.site, r.layer)}@{r.position}": r.restored for r in analysis.rows if r.family == "resid_pre"
    }
    return json_ready(
        {
            "metric": analysis.metric,
            "direction": analysis.direction,
            "pairs": analysis.pairs,
            "clean": analysis.clean,
            "corrupted": analysis.corrupted,
            "restored_undefined": undefined_restoration(analysis),
            "weak_separation": weak_separation(analysis),
            "positions_left_out": analysis.positions_left_out,
            "rank_correlation": analysis.rank_correlation,
            "heads_restored": heads,
            "resid_pre_restored": resid,
            "paths": [asdict(p) | {"restored": p.restored} for p in analysis.paths],
            **about,
        }
    )


def write_patching(analysis: CausalAnalysis, out: Path, about: dict, pictures: Pictures | None = None) -> list[str]:
    """Write `out` (the caller made sure it does not exist), whole or not at all (written_whole). `pictures`: the
    figures already drawn (rendered(figures(analysis))), which TensorBoard gets too."""
    with written_whole(out) as partial:
        with open(partial / "patching.csv", "w", newline="") as f:
            writer = csv.writer(f)
            # name first, as heads.csv has it: the head (`decoder_self:1:2`) or layer (`decoder_self:1`) patched, as
            # ablate.heads and ablate.sublayers take it
            writer.writerow(
                ["name", "family", "point", "site", "layer", "head", "position", "value", "restored", "estimate"]
            )
            for r in analysis.rows:
                name = layer_name(r.site, r.layer) if r.head is None else head_name(r.site, r.layer, r.head)
                writer.writerow(
                    [name, r.family, r.point, r.site, r.layer, "" if r.head is None else r.head,
                     "" if r.position is None else r.position, f"{r.value:.6g}", f"{r.restored:.6g}",
                     f"{r.estimate:.6g}"]
                )  # fmt: skip
        if analysis.paths:
            with open(partial / "paths.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["sender", "receiver", "channel", "value", "restored"])
                for p in analysis.paths:
                    writer.writerow([p.sender, p.receiver, p.channel, f"{p.value:.6g}", f"{p.restored:.6g}"])
        (partial / "summary.json").write_text(json.dumps(summary(analysis, about), indent=2) + "\n")
        names = save_pictures(pictures if pictures is not None else rendered(figures(analysis)), partial)
        (partial / "report.md").write_text(report_markdown(analysis, about, names))
    return sorted(p.name for p in out.iterdir())


def write_tensorboard(
    analysis: CausalAnalysis, log_dir: Path, step: int, about: dict, split: str, pictures: Pictures | None = None
) -> None:
    """The figures, rank correlations and report into the run's TensorBoard under `<split>_patching/`; `pictures`:
    the figures already drawn (rendered(figures(analysis))), as write_patching got them."""
    from torch.utils.tensorboard import SummaryWriter

    group = f"{split}_patching"
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for name, pixels in (pictures if pictures is not None else rendered(figures(analysis))).items():
            writer.add_image(f"{group}/{name}", pixels[..., :3], step, dataformats="HWC")
        for family, rho in analysis.rank_correlation.items():
            if math.isfinite(rho):
                writer.add_scalar(f"{group}/rank_correlation_{family}", rho, step)
        writer.add_text(f"{group}/report", report_markdown(analysis, about, []), step)
    finally:
        writer.close()
