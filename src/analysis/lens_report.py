"""Writing a logit-lens analysis (lens.py: analyze_lens) out: `lens/` in the run directory, and its figures in
TensorBoard.

    lens/report.md        the answer first (the first layer whose stream already predicts as the model does, the
                          components that write most of the target's logit), then the tables
    lens/lens.csv         per row (the embeddings, then each layer of the stack the output reads: a decoder, a
                          classifier's encoder): the loss and top-1 agreement of its residual stream read as the output
    lens/attribution.csv  per component (embed, each head, each FFN, biases): its mean direct contribution to the
                          target's logit
    lens/summary.json     the headline figures (read by the sweep report), settings and timings
    lens/lens.png         loss and top-1 agreement by layer
    lens/attribution.png  each head's direct contribution, layer x head per site

In TensorBoard: `<split>_lens/` (images, the per-layer loss and agreement as scalars with the layer as the step, the
embeddings' row in the figure and the report, the report as text).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from src.dashboard.rendering import Pictures, rendered, save_pictures
from src.model.names import NUMBERING, STACKS

from .formatting import cell, grouped_heads_lines, json_ready
from .lens import LensAnalysis, LensLayer
from .report import grids_of_heads, heat_map_figure, written_whole


def head_attribution_grids(analysis: LensAnalysis) -> dict[str, np.ndarray]:
    """Per attention site, (layers, heads) of each head's mean direct contribution (embed, biases left out)."""
    return grids_of_heads(analysis.attribution)


def lens_figure(analysis: LensAnalysis):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, left = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    x = list(range(len(analysis.layers)))  # the embeddings at 0, then each layer
    left.plot(x, [layer.loss for layer in analysis.layers], marker="o", color="tab:blue", label="loss")
    left.axhline(analysis.loss, color="tab:blue", linestyle=":", linewidth=1, label="the model's loss")
    left.set_xlabel(f"{analysis.stack} layer ({NUMBERING.split(',')[0]}), after the embeddings")
    left.set_ylabel("loss", color="tab:blue")
    left.set_xticks(x, [layer.label for layer in analysis.layers])
    right = left.twinx()
    right.plot(
        x, [layer.top1_agreement for layer in analysis.layers], marker="s", color="tab:orange", label="top-1 agreement"
    )
    right.set_ylabel("top-1 agreement with the model", color="tab:orange")
    right.set_ylim(0, 1.05)
    left.set_title("logit lens: each layer's residual stream read as the output", fontsize=10)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles=handles, fontsize=8, loc="upper center")
    return figure


def figures(analysis: LensAnalysis) -> dict[str, Any]:
    made = {"lens": lens_figure(analysis)}
    grids = head_attribution_grids(analysis)
    if grids:
        made["attribution"] = heat_map_figure(
            grids, "each head's mean direct contribution to the target's logit", "RdBu_r", diverging=True
        )
    return made


def where(analysis: LensAnalysis, layer: LensLayer) -> str:
    return "the embeddings" if layer.layer is None else f"{analysis.stack} layer {layer.layer}"


def answer_lines(analysis: LensAnalysis) -> list[str]:
    final = analysis.layers[-1]
    reached = next((layer for layer in analysis.layers if layer.top1_agreement >= 0.9 * final.top1_agreement), final)
    lines = [
        f"- the residual stream predicts as the model does (top-1 agreement {reached.top1_agreement:.2f}, within 90% "
        f"of the last layer's) from {where(analysis, reached)} on; loss there {reached.loss:.3f}, the model's "
        f"{analysis.loss:.3f}"
    ]
    if analysis.attribution_undefined:
        lines.append(f"- direct logit attribution: not defined here: {analysis.attribution_undefined}")
    else:
        ranked = sorted(analysis.attribution.items(), key=lambda item: -abs(item[1]))[:5]
        listed = ", ".join(f"`{name}` {value:+.3g}" for name, value in ranked)
        lines.append(
            f"- the components that write most of the target's logit (its mean: {analysis.target_logit:.3g}): {listed}"
        )
    return lines


def ablated_share_words(about: dict) -> str:
    """What an ablated component's share is, when something is ablated: 0 only where it writes nothing."""
    if about.get("ablation", "nothing ablated") == "nothing ablated":
        return ""
    return (
        " (a head or FFN in a removed sublayer, and a head switched off by zero ablation, write nothing: their share "
        "is 0; a head switched off by mean ablation writes its mean output, and its share is that output's)"
    )


def output_words(analysis: LensAnalysis) -> str:
    return STACKS[analysis.stack].output


def attributed_heads_lines(about: dict) -> list[str]:
    """A grouped-query model's direct logit attribution: per query head (docs/ablation-and-analysis.md)."""
    return grouped_heads_lines(
        about, "Direct logit attribution is per query head: each head's share is its own output's."
    )


def report_markdown(analysis: LensAnalysis, about: dict, figure_names: list[str]) -> str:
    lines = [
        f"# Logit lens and direct logit attribution: {about.get('checkpoint', '')}",
        "",
        f"{analysis.split}: {analysis.examples} examples, {analysis.positions} scored positions. Logit lens "
        f"(nostalgebraist 2020): the {analysis.stack}'s residual stream, as it enters and after each layer, read "
        f"through the final norm and the {output_words(analysis)}, as if the layers above it were skipped. Direct "
        "logit attribution (Elhage et al. 2021): each component's share of the target's logit, through the final "
        "norm with its scale frozen (pre-LN models only); the shares sum to the logit. Heads named as "
        f"`ablate.heads` takes them ({NUMBERING}). "
        f"Ablation in force: {about.get('ablation', 'nothing ablated')}{ablated_share_words(about)}.",
        "",
        # the logit lens reads whole layers: only direct logit attribution (pre-LN models) names heads
        *(attributed_heads_lines(about) if analysis.attribution else []),
        "## The answer",
        "",
        *answer_lines(analysis),
        "",
        "## Logit lens",
        "",
        f"| {analysis.stack} layer | loss | top-1 agreement |",
        "| --- | --- | --- |",
        *(f"| {layer.label} | {cell(layer.loss)} | {cell(layer.top1_agreement)} |" for layer in analysis.layers),
        "",
    ]
    if analysis.attribution:
        lines += ["## Direct logit attribution", "", "| component | mean contribution |", "| --- | --- |"]
        ranked = sorted(analysis.attribution.items(), key=lambda item: -abs(item[1]))
        lines += [f"| {name} | {cell(value, 4)} |" for name, value in ranked] + [""]
    lines += ["- time: " + ", ".join(f"{k} {v:.1f} s" for k, v in about.get("seconds", {}).items()), ""]
    lines += [f"![{name}]({name}.png)" for name in figure_names] + [""]
    return "\n".join(lines)


def write_lens(analysis: LensAnalysis, out: Path, about: dict, pictures: Pictures | None = None) -> list[str]:
    """Write `out` (the caller made sure it does not exist), whole or not at all (written_whole). `pictures`: the
    figures already drawn (rendered(figures(analysis))), which TensorBoard gets too."""
    with written_whole(out) as partial:
        with open(partial / "lens.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["layer", "loss", "top1_agreement"])
            for layer in analysis.layers:
                writer.writerow([layer.label, f"{layer.loss:.6g}", f"{layer.top1_agreement:.6g}"])
        if analysis.attribution:
            with open(partial / "attribution.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["component", "mean_contribution"])
                for name, value in analysis.attribution.items():
                    writer.writerow([name, f"{value:.6g}"])
        summary = {
            "split": analysis.split,
            "stack": analysis.stack,
            "examples": analysis.examples,
            "positions": analysis.positions,
            "loss": analysis.loss,
            "target_logit": analysis.target_logit,
            "lens": [  # the embeddings' row is named `embed`, the layers' by their number
                {"layer": "embed" if x.layer is None else x.layer, "loss": x.loss, "top1_agreement": x.top1_agreement}
                for x in analysis.layers
            ],
            "attribution": analysis.attribution,
            "attribution_undefined": analysis.attribution_undefined,
            **about,
        }
        (partial / "summary.json").write_text(json.dumps(json_ready(summary), indent=2) + "\n")
        names = save_pictures(pictures if pictures is not None else rendered(figures(analysis)), partial)
        (partial / "report.md").write_text(report_markdown(analysis, about, names))
    return sorted(p.name for p in out.iterdir())


def write_tensorboard(
    analysis: LensAnalysis, log_dir: Path, step: int, about: dict, pictures: Pictures | None = None
) -> None:
    """`<split>_lens/` in the run's TensorBoard; `pictures`: the figures already drawn, as write_lens got them."""
    from torch.utils.tensorboard import SummaryWriter

    group = f"{analysis.split}_lens"
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for name, pixels in (pictures if pictures is not None else rendered(figures(analysis))).items():
            writer.add_image(f"{group}/{name}", pixels[..., :3], step, dataformats="HWC")
        for layer in analysis.layers:  # x: the layer (the embeddings have no number: they are in the figure)
            if layer.layer is None:
                continue
            writer.add_scalar(f"{group}/loss_by_layer", layer.loss, layer.layer)
            writer.add_scalar(f"{group}/top1_agreement_by_layer", layer.top1_agreement, layer.layer)
        writer.add_text(f"{group}/report", report_markdown(analysis, about, []), step)
    finally:
        writer.close()
