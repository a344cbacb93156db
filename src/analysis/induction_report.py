"""Writing an induction-head analysis (induction.py) out: `induction/` in the run directory.

induction/report.md     the answer first (the induction heads, the previous-token heads, what ablating the
                        induction heads does to the loss on the repeats), then the table
induction/heads.csv     per head: induction score, previous-token score, the loss on the repeats with that head
                        alone ablated, and the increase over the intact model
induction/summary.json  the headline figures, settings and timings
induction/scores.png    both scores as heat maps, layer x head
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from src.model.names import NUMBERING, parse_name

from .induction import HeadRow
from .report import _finite, _fmt, heat_map_figure

# A head is called an induction (previous-token) head when its score is at least this share of the largest score of
# its kind, and at least FLOOR: a rule that picks the heads that stand out, whatever the model's scale of attention.
SHARE, FLOOR = 0.5, 0.1


@dataclass
class InductionAnalysis:
    sequences: int  # repeated random sequences read
    half: int  # tokens per half
    heads: list[HeadRow]
    loss: float  # on the repeats' predictable tokens, the model as it is
    loss_without_induction_heads: float  # with every induction head ablated at once (NaN: there is none)

    def standing_out(self, score: str) -> list[str]:
        values = {row.head: getattr(row, score) for row in self.heads if math.isfinite(getattr(row, score))}
        if not values:
            return []
        top = max(values.values())
        return [head for head, value in values.items() if value >= max(SHARE * top, FLOOR)]


def grids(analysis: InductionAnalysis, score: str) -> dict[str, np.ndarray]:
    cells = {}
    for row in analysis.heads:
        site, layer, head = parse_name(row.head)
        cells.setdefault(site, {})[(layer, head)] = getattr(row, score)
    found = {}
    for site, values in cells.items():
        grid = np.full((1 + max(k[0] for k in values), 1 + max(k[1] for k in values)), np.nan)
        for (layer, head), value in values.items():
            grid[layer, head] = value
        found[site] = grid
    return found


def report_markdown(analysis: InductionAnalysis, about: dict) -> str:
    induction, previous = analysis.standing_out("induction"), analysis.standing_out("previous_token")
    rows = sorted(analysis.heads, key=lambda r: -r.induction if math.isfinite(r.induction) else math.inf)
    lines = [
        f"# Induction heads: {about.get('checkpoint', '')}",
        "",
        f"{analysis.sequences} sequences of {analysis.half} random tokens written twice (the second half predictable "
        "from the first only by copying). Induction score: a head's mean attention from each token of the second "
        "half to the token after its earlier occurrence; previous-token score: its mean attention to the position "
        "just before (Olsson et al. 2022). Loss: on the second half's predictable tokens. A head is counted as one "
        f"when its score is at least {SHARE:g} of the largest of its kind and at least {FLOOR:g}. Heads named as "
        f"`ablate.heads` takes them ({NUMBERING}).",
        "",
        "## The answer",
        "",
        f"- induction heads: {', '.join(f'`{h}`' for h in induction) or 'none'}",
        f"- previous-token heads: {', '.join(f'`{h}`' for h in previous) or 'none'}",
        f"- loss on the repeats {_fmt(analysis.loss)}; "
        + (
            f"with the induction heads ablated {_fmt(analysis.loss_without_induction_heads)}"
            if induction
            else "no head stands out as an induction head, so none is ablated"
        ),
        "",
        "| head | induction score | previous-token score | loss, this head ablated | increase |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {r.head} | {_fmt(r.induction)} | {_fmt(r.previous_token)} | {_fmt(r.repeated_loss)} | "
            f"{_fmt(r.loss_increase)} |"
            for r in rows
        ),
        "",
        "![scores](scores.png)",
        "",
    ]
    return "\n".join(lines)


def write_induction(analysis: InductionAnalysis, out: Path, about: dict) -> list[str]:
    """Write `out` (the caller made sure it does not exist), whole or not at all."""
    import matplotlib.pyplot as plt

    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True)
    try:
        with open(partial / "heads.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["head", "induction", "previous_token", "repeated_loss", "loss_increase"])
            for r in analysis.heads:
                writer.writerow([r.head, *(f"{v:.6g}" for v in (r.induction, r.previous_token, r.repeated_loss,
                                                                r.loss_increase))])  # fmt: skip
        summary = {
            "sequences": analysis.sequences,
            "half": analysis.half,
            "loss": analysis.loss,
            "loss_without_induction_heads": analysis.loss_without_induction_heads,
            "induction_heads": analysis.standing_out("induction"),
            "previous_token_heads": analysis.standing_out("previous_token"),
            "heads": [asdict(r) for r in analysis.heads],
            **about,
        }
        (partial / "summary.json").write_text(json.dumps(_finite(summary), indent=2) + "\n")
        figure = heat_map_figure(
            {f"{site} induction": g for site, g in grids(analysis, "induction").items()}
            | {f"{site} previous token": g for site, g in grids(analysis, "previous_token").items()},
            "induction and previous-token scores (mean attention)",
            "viridis",
        )
        figure.savefig(partial / "scores.png", dpi=110)
        plt.close(figure)
        (partial / "report.md").write_text(report_markdown(analysis, about))
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return sorted(p.name for p in out.iterdir())
