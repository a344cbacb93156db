"""Writing an induction-head analysis (induction.py) out: `induction/` in the run directory.

induction/report.md     the answer first (the induction heads, the previous-token heads, what ablating the
                        induction heads does to the loss on the repeats), then the table
induction/heads.csv     per head: induction score, previous-token score, the loss on the repeats with that head
                        alone ablated, the increase over the intact model, and whether it was off before the
                        analysis (removed_before: ablate.heads or a removed sublayer; never an induction head)
induction/summary.json  the headline figures, settings and timings
induction/scores.png    both scores as heat maps, layer x head
induction/repeated_loss.png   the run's val/repeated_loss curve with its phase change marked (when it has one)

The same figures, the losses and each head's scores go into the run's TensorBoard under `induction/`.

The phase change (Olsson et al. 2022: the loss on the repeats falls abruptly when induction heads form) is read from
the run's metrics.json history, when it holds val/repeated_loss (task=induction): `phase_change` below.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

import numpy as np

from src.dashboard.rendering import Pictures, rendered, save_pictures
from src.model.names import NUMBERING

from .formatting import cell, grouped_heads_lines, json_ready
from .induction import InductionHeadRow
from .report import grids_of_heads, heat_map_figure, site_label, written_whole

# A head is called an induction (previous-token) head when its score is at least this share of the largest score of
# its kind, and at least FLOOR: a rule that picks the heads that stand out, whatever the model's scale of attention.
SHARE, FLOOR = 0.5, 0.1
CHANCE_TIMES = 2.0  # ... and at least twice what uniform attention would score (a random model's heads do that)


# --- the phase change, from the training history ------------------------------------------------------------------

CURVE = "val/repeated_loss"  # the loss on the repeats' predictable tokens, logged at each validation (task=induction)
EDGE = 3  # validations whose median is the early plateau (the first EDGE) and the final value (the last EDGE)
# A phase change takes the curve to at most MIN_SHARE of its plateau, and at least MIN_DROP nats down: more than the
# statistics of the context alone give (a 1-layer model of experiments/induction_heads: 3.92 -> 3.24, 83% of it).
MIN_SHARE = 0.5
MIN_DROP = 0.5  # nats (a factor 1.65 in perplexity)
WINDOW_SHARE = 0.5  # the transition window: the shortest stretch of training that holds this share of the drop


@dataclass
class PhaseChange:
    """When the loss on the repeats fell, read from one run's validation curve.

    plateau: the median of the first EDGE validations; final: the median of the last EDGE. The phase change `step`
    is the first validation step at which the curve is below the midpoint of the two; there is none (step None, and
    `reason` says why) when the final value is above MIN_SHARE of the plateau or less than MIN_DROP nats below it,
    or when there are too few validations to tell. `window`
    says how abrupt it was: the shortest stretch of training, between two validations, over which the curve fell by
    at least half of the drop (the earliest of equally short ones). `steepest` is the largest fall between two
    consecutive validations (its two steps and its size), whether or not there is a phase change."""

    metric: str
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, value), by step
    plateau: float = math.nan
    final: float = math.nan
    step: int | None = None
    reason: str | None = None
    window: tuple[int, int] | None = None
    steepest: tuple[int, int, float] | None = None

    @property
    def drop(self) -> float:
        return self.plateau - self.final

    @property
    def midpoint(self) -> float:
        return (self.plateau + self.final) / 2

    @property
    def before(self) -> float:
        """The value at the validation before the phase change step (NaN without one): above the midpoint."""
        earlier = [value for step, value in self.curve if self.step is not None and step < self.step]
        return earlier[-1] if earlier else math.nan

    @property
    def after(self) -> float:
        """The value at the phase change step (NaN without one)."""
        return next((value for step, value in self.curve if step == self.step), math.nan)

    def describe(self) -> str:
        """One line: the step and the values, or why there is none."""
        if self.step is None:
            return f"no phase change: {self.reason}"
        assert self.window is not None
        return (
            f"phase change at step {self.step}: {self.metric} {cell(self.before)} -> {cell(self.after)} (plateau "
            f"{cell(self.plateau)}, final {cell(self.final)}); half of the drop within steps {self.window[0]}-"
            f"{self.window[1]}"
        )


def validation_curve(history: Iterable[Mapping], metric: str = CURVE) -> list[tuple[int, float]]:
    """(step, value) of `metric` from a metrics.json history, by step: entries without it (or not finite) left out,
    and of two entries at one step (a resumed run) the later kept."""
    found: dict[int, float] = {}
    for entry in history:
        value = entry.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and "step" in entry:
            found[int(entry["step"])] = float(value)
    return sorted(found.items())


def find_phase_change(history: Iterable[Mapping], metric: str = CURVE) -> PhaseChange:
    """The phase change of `metric` in a metrics.json history (a lower-is-better loss): see PhaseChange."""
    curve = validation_curve(history, metric)
    result = PhaseChange(metric, curve)
    if len(curve) < 2 * EDGE:
        result.reason = (
            f"{len(curve)} validations with {metric} in the run's history: at least {2 * EDGE} are needed to tell "
            "an early plateau from a final value (validate more often: trainer.val_check_interval)"
            if curve
            else f"the run's history has no {metric} (task=induction logs it)"
        )
        return result
    steps, values = [s for s, _ in curve], [v for _, v in curve]
    result.plateau, result.final = median(values[:EDGE]), median(values[-EDGE:])
    falls = [(values[i - 1] - values[i], i) for i in range(1, len(values))]
    size, i = max(falls)
    result.steepest = (steps[i - 1], steps[i], size)
    if not (result.drop >= MIN_DROP and result.final <= MIN_SHARE * result.plateau):
        result.reason = (
            f"{metric} went from {cell(result.plateau)} (median of the first {EDGE} validations) to "
            f"{cell(result.final)} (of the last {EDGE}): {cell(result.drop)} nats down, to "
            + (f"{result.final / result.plateau:.0%} of the plateau" if result.plateau > 0 else "a plateau of 0")
            + f"; a phase change needs at most {MIN_SHARE:.0%} of it and at least {MIN_DROP:g} nats down"
        )
        return result
    crossing = next(i for i, value in enumerate(values) if value < result.midpoint)
    result.step = steps[crossing]
    spans = [
        (steps[j] - steps[i], steps[i], steps[j])
        for i in range(len(values))
        for j in range(i + 1, len(values))
        if values[i] - values[j] >= WINDOW_SHARE * result.drop
    ]
    # never empty: one of the first EDGE values is at least the plateau and one of the last EDGE at most the final
    result.window = min(spans)[1:]
    return result


def read_phase_change(run_dir: Path, metric: str = CURVE) -> PhaseChange:
    """find_phase_change on `run_dir`/metrics.json's history; without the file, none, and the reason."""
    path = Path(run_dir) / "metrics.json"
    try:
        history = json.loads(path.read_text()).get("history", [])
    except FileNotFoundError:
        return PhaseChange(metric, reason=f"no metrics.json in {run_dir} (not a run of src.run): no training curve")
    except (json.JSONDecodeError, AttributeError):
        return PhaseChange(metric, reason=f"{path} is not a metrics.json of src.run: no training curve")
    return find_phase_change(history if isinstance(history, list) else [], metric)


def phase_change_figure(phase: PhaseChange):
    """The curve, its plateau, final value and midpoint, and the phase change step."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.0, 3.4))
    axis.plot([s for s, _ in phase.curve], [v for _, v in phase.curve], marker=".", color="tab:blue")
    for value, label, style in ((phase.plateau, "plateau", ":"), (phase.final, "final", ":"),
                                (phase.midpoint, "midpoint", "--")):  # fmt: skip
        if math.isfinite(value):
            axis.axhline(value, color="grey", linestyle=style, linewidth=0.8)
            axis.annotate(label, (phase.curve[0][0], value), fontsize=7, color="grey", va="bottom")
    if phase.step is not None:
        axis.axvline(phase.step, color="tab:red", linewidth=1.0, label=f"phase change: step {phase.step}")
        axis.legend(loc="upper right", fontsize=8)
    axis.set_xlabel("step")
    axis.set_ylabel(f"{phase.metric} (nats)")
    axis.set_title("the loss on the repeats during training", fontsize=9)
    figure.tight_layout()
    return figure


@dataclass
class InductionAnalysis:
    sequences: int  # repeated random sequences read
    half: int  # tokens per half
    heads: list[InductionHeadRow]
    loss: float  # on the repeats' predictable tokens, the model as it is
    loss_without_induction_heads: float  # with every induction head ablated at once (NaN: there is none)
    phase: PhaseChange | None = None  # the training curve's phase change (None: not looked for)
    chance: dict[str, float] = field(default_factory=dict)  # score -> uniform attention's (HeadScores.chance)

    def in_use(self) -> list[InductionHeadRow]:
        """The heads that act: one already off (removed_before) still scores, from a pattern it writes nothing
        with, so it is never counted as a head of its kind nor sets the bar for the others."""
        return [row for row in self.heads if not row.removed_before]

    def threshold(self, score: str) -> float:
        """The score a head needs to be counted as one of its kind: SHARE of the largest (of the heads in use), at
        least FLOOR, and at least CHANCE_TIMES what uniform attention over the keys a query sees would score."""
        values = [v for v in (getattr(row, score) for row in self.in_use()) if math.isfinite(v)]
        chance = self.chance.get(score, math.nan)
        return max(SHARE * max(values, default=math.nan), FLOOR, CHANCE_TIMES * chance if math.isfinite(chance) else 0)

    def standing_out(self, score: str) -> list[str]:
        """The heads in use whose `score` clears the threshold, as ablate.heads takes them."""
        values = {row.head: getattr(row, score) for row in self.in_use() if math.isfinite(getattr(row, score))}
        if not values:
            return []
        return [head for head, value in values.items() if value >= self.threshold(score)]


def chance_words(analysis: InductionAnalysis) -> str:
    chance = analysis.chance
    if not chance:
        return "not recorded"
    induction, previous = chance.get("induction", math.nan), chance.get("previous_token", math.nan)
    return f"induction {induction:.3f}, previous token {previous:.3f}"


def grids(analysis: InductionAnalysis, score: str) -> dict[str, np.ndarray]:
    """Per site, (layers, heads) of one score (or of removed_before: 1 where a head was off)."""
    return grids_of_heads({row.head: float(getattr(row, score)) for row in analysis.heads})


def off_line(analysis: InductionAnalysis) -> list[str]:
    """The heads already off before the analysis, said above the table (none: nothing)."""
    off = [row.head for row in analysis.heads if row.removed_before]
    if not off:
        return []
    return [
        f"Already off before the analysis (`ablate.heads`, or a removed sublayer): {', '.join(f'`{h}`' for h in off)}. "
        "They still attend, so they have scores, but write nothing: they are counted as no head of either kind, "
        "and not ablated.",
        "",
    ]


def head_table_lines(analysis: InductionAnalysis, rows: list[InductionHeadRow]) -> list[str]:
    """The table of every head; with a column `off` when a head was off before the analysis, beside (never inside)
    the head's name, so the name pastes into ablate.heads as it reads."""
    marked = any(row.removed_before for row in analysis.heads)
    lines = [
        "| head |" + (" off |" if marked else "") + " induction score | previous-token score | loss, this head "
        "ablated | increase |",
        "| --- |" + (" --- |" if marked else "") + " --- | --- | --- | --- |",
    ]
    for r in rows:
        off = (" off |" if r.removed_before else "  |") if marked else ""
        lines.append(
            f"| {r.head} |{off} {cell(r.induction)} | {cell(r.previous_token)} | {cell(r.repeated_loss)} | "
            f"{cell(r.loss_increase)} |"
        )
    return lines


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
        f"when its score is at least {SHARE:g} of the largest of its kind, at least {FLOOR:g}, and at least "
        f"{CHANCE_TIMES:g}x what uniform attention over the keys it sees scores ({chance_words(analysis)}). Heads "
        f"named as `ablate.heads` takes them ({NUMBERING}).",
        "",
        *grouped_heads_lines(
            about, "The induction and previous-token scores are per query head: each from its own attention weights."
        ),
        "## The answer",
        "",
        f"- induction heads: {', '.join(f'`{h}`' for h in induction) or 'none'}",
        f"- previous-token heads: {', '.join(f'`{h}`' for h in previous) or 'none'}",
        f"- loss on the repeats {cell(analysis.loss)}; "
        + (
            f"with the induction heads ablated {cell(analysis.loss_without_induction_heads)}"
            if induction
            else "no head stands out as an induction head, so none is ablated"
        ),
        "",
        *off_line(analysis),
        *head_table_lines(analysis, rows),
        "",
        "![scores](scores.png)",
        "",
        *(phase_lines(analysis.phase) if analysis.phase is not None else []),
    ]
    return "\n".join(lines)


def definition(metric: str) -> str:
    """The phase change and its window in words (the report's and summary.json's)."""
    return (
        f"the first validation step at which {metric} is below the midpoint of its early plateau (median of the "
        f"first {EDGE} validations) and its final value (median of the last {EDGE}), when the final value is at most "
        f"{MIN_SHARE:g} of the plateau and at least {MIN_DROP:g} nats below it; window: the shortest stretch of "
        f"training (between two validations) in which it fell by at least {WINDOW_SHARE:g} of that drop"
    )


def phase_lines(phase: PhaseChange) -> list[str]:
    """The report's lines on the training curve: its phase change (the step and values), or why there is none."""
    lines = ["## The phase change during training", "", f"- {phase.describe()}"]
    if phase.curve:
        lines.append(
            f"- {len(phase.curve)} validations, steps {phase.curve[0][0]}-{phase.curve[-1][0]}. The phase change "
            f"step: {definition(phase.metric)}."
        )
    if phase.steepest is not None:
        first, last, size = phase.steepest
        lines.append(f"- the steepest fall between two validations: {cell(size)} nats, steps {first}-{last}")
    if phase.curve:
        lines += ["", "![the loss on the repeats during training](repeated_loss.png)"]
    return [*lines, ""]


def phase_summary(phase: PhaseChange) -> dict:
    """summary.json's `phase_change`: the step (null: none, with the reason), the values, the window."""
    return {
        "metric": phase.metric,
        "step": phase.step,
        "reason": phase.reason,
        "plateau": phase.plateau,
        "final": phase.final,
        "midpoint": phase.midpoint,
        "drop": phase.drop,
        "before": phase.before,
        "after": phase.after,
        "window": list(phase.window) if phase.window else None,
        "steepest": dict(zip(("from_step", "to_step", "fall"), phase.steepest)) if phase.steepest else None,
        "definition": definition(phase.metric),
        "curve": [list(point) for point in phase.curve],
    }


def write_induction(analysis: InductionAnalysis, out: Path, about: dict, pictures: Pictures | None = None) -> list[str]:
    """Write `out` (the caller made sure it does not exist), whole or not at all (written_whole). `pictures`: the
    figures already drawn (rendered(figures(analysis))), which TensorBoard gets too."""
    with written_whole(out) as partial:
        with open(partial / "heads.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["head", "induction", "previous_token", "repeated_loss", "loss_increase", "removed_before"])
            for r in analysis.heads:
                writer.writerow([r.head, *(f"{v:.6g}" for v in (r.induction, r.previous_token, r.repeated_loss,
                                                                r.loss_increase)), r.removed_before])  # fmt: skip
        summary = {
            "sequences": analysis.sequences,
            "half": analysis.half,
            "loss": analysis.loss,
            "loss_without_induction_heads": analysis.loss_without_induction_heads,
            "induction_heads": analysis.standing_out("induction"),
            "previous_token_heads": analysis.standing_out("previous_token"),
            "chance": analysis.chance,  # what uniform attention scores: the heads above must clear twice it
            "heads": [asdict(r) for r in analysis.heads],
            "phase_change": phase_summary(analysis.phase) if analysis.phase is not None else None,
            **about,
        }
        (partial / "summary.json").write_text(json.dumps(json_ready(summary), indent=2) + "\n")
        save_pictures(pictures if pictures is not None else rendered(figures(analysis)), partial)
        (partial / "report.md").write_text(report_markdown(analysis, about))
    return sorted(p.name for p in out.iterdir())


def figures(analysis: InductionAnalysis) -> dict:
    off = {site: grid == 1 for site, grid in grids(analysis, "removed_before").items()}
    panels = {
        f"{site_label(site)}: {words}": (grid, off[site])
        for score, words in (("induction", "induction"), ("previous_token", "previous token"))
        for site, grid in grids(analysis, score).items()
    }
    made = {
        "scores": heat_map_figure(
            {title: grid for title, (grid, _) in panels.items()},
            "induction and previous-token scores (mean attention)",
            "viridis",
            off={title: is_off for title, (_, is_off) in panels.items()},
        )
    }
    if analysis.phase is not None and analysis.phase.curve:
        made["repeated_loss"] = phase_change_figure(analysis.phase)
    return made


def write_tensorboard(
    analysis: InductionAnalysis, log_dir: Path, step: int, about: dict, pictures: Pictures | None = None
) -> None:
    """`induction/` in the run's TensorBoard, at the checkpoint's step: the figures, the loss on the repeats intact
    and with the induction heads ablated, each head's two scores (one scalar per head, named as ablate.heads takes
    it), and the report as text. `pictures`: the figures already drawn, as write_induction got them."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for name, pixels in (pictures if pictures is not None else rendered(figures(analysis))).items():
            writer.add_image(f"induction/{name}", pixels[..., :3], step, dataformats="HWC")
        writer.add_scalar("induction/repeated_loss", analysis.loss, step)
        if math.isfinite(analysis.loss_without_induction_heads):
            writer.add_scalar("induction/repeated_loss_without_induction_heads", analysis.loss_without_induction_heads,
                              step)  # fmt: skip
        for row in analysis.heads:
            writer.add_scalar(f"induction/induction_score/{row.head}", row.induction, step)
            writer.add_scalar(f"induction/previous_token_score/{row.head}", row.previous_token, step)
        writer.add_text("induction/report", report_markdown(analysis, about), step)
    finally:
        writer.close()
