"""The sweep report's sections on the causal analyses of its jobs (src.analyze analysis=patching, lens, induction),
one each after the head pruning section of a group (report.py: group_section):

    Activation patching   <job>/patching/summary.json: the metric on the clean and corrupted inputs, the rank
                          correlation of attribution patching with exact patching, the heads and paths that matter most
    Logit lens            <job>/lens/summary.json: the loss and top-1 agreement of each layer's residual stream read
                          as the output, the model's own loss, the components that write most of the target's logit
    Induction heads       <job>/induction/summary.json: the loss on repeated random sequences with and without the
                          induction heads, the phase change step, how many induction and previous-token heads and how
                          strong, and which heads they are in each seed

Each figure is mean ± std (n) over a configuration's seeds with the 95% t interval of the mean, as everywhere in the
report. Two rules hold in every section. Analyses that measured different things get tables of their own and are
never pooled, since a mean over seeds is a mean of one quantity: other pairs, metric or direction (patching); another
stack, split, number of examples or sequences, checkpoint, or an ablation the analysis added (lens, induction). And a
run without a figure (the analysis not run, or the figure undefined in it) is left out of that mean and named, with
the reason or the command that analyses it.
"""

from __future__ import annotations

import math
import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from src.analysis.patching import patch_effect
from src.model.names import DECODER
from src.sweep.runs import Run
from src.sweep.statistics import (
    NO_SPREAD,
    NOT_DEFINED,
    ONE_RUN,
    decimals_for,
    mean_cell,
    setting_cell,
    t_interval,
    with_precision,
)

if TYPE_CHECKING:
    from src.sweep.report import Group, Sweep


# --- what every section shares: a table of figures by configuration, the notes under it, the section's frame ------

UNBOUNDED = (-math.inf, math.inf)  # a fraction restored can pass 1 or fall below 0; a logit has any sign
NON_NEGATIVE = (0.0, math.inf)  # a loss, a training step, a count of heads
SHARE_RANGE = (0.0, 1.0)  # a top-1 agreement; a head's mean attention


def number_or_none(value: Any) -> float | None:
    """A figure of summary.json as a finite float; None for null (undefined), a missing one or anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def bounded_interval(values: list[float], bounds: tuple[float, float]) -> tuple[str, bool]:
    """The 95% t interval of the mean of `values` as `[low, high]`, clipped to `bounds` and then marked †, to two
    significant digits of its half-width; and whether it was clipped. Why there is none otherwise (ONE_RUN,
    NO_SPREAD). As interval_cell, for figures that are not a metric tag."""
    half = t_interval(values)
    if half is None:
        return ONE_RUN, False
    if half == 0:
        return NO_SPREAD, False
    mean = statistics.mean(values)
    low, high = max(mean - half, bounds[0]), min(mean + half, bounds[1])
    clipped = (low, high) != (mean - half, mean + half)
    places = decimals_for(half)
    return f"[{with_precision(low, places)}, {with_precision(high, places)}]" + ("†" if clipped else ""), clipped


@dataclass
class Column:
    """One column of a section's table: one figure of each run's analysis."""

    title: str
    figure: Callable[[Run], float | None]  # a run's value, None where it has none (undefined, not measured)
    bounds: tuple[float, float]  # what it can take (its interval is clipped to them)
    named: str = ""  # what its values are, for the note on clipping (the title when empty): `a loss`


@dataclass
class TableNotes:
    """What the cells of a measure's tables leave to a note under them, said once for all of them: why an interval
    is missing (ONE_RUN, NO_SPREAD), and which figures' intervals were clipped (what they are -> bounds)."""

    missing: set[str] = field(default_factory=set)
    clipped: dict[str, tuple[float, float]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        lines = []
        for title, (low, high) in self.clipped.items():
            lines += [f"† clipped to the values {title} can take, [{low:g}, {high:g}].", ""]
        for why in sorted(self.missing):
            lines += [f"{why}: {NOT_DEFINED[why]}.", ""]
        return lines


def configuration_table(group: Group, analysed: list[Run], columns: list[Column], notes: TableNotes) -> list[str]:
    """A table of the group's configurations (the main table's rows, each with only its runs in `analysed`; none:
    `-`), a column per figure: mean ± std (n) over seeds, then the mean's 95% t interval; what a cell without an
    interval means, and which intervals were clipped, go to `notes`."""
    own = {id(run) for run in analysed}
    header = [*group.varied, *(column.title for column in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    missing, clipped = notes.missing, notes.clipped
    for configuration in group.configurations:
        runs = [run for run in configuration.runs if id(run) in own]
        cells = [setting_cell(dict(configuration.settings)[k]) for k in group.varied]
        for column in columns:
            values = [v for run in runs if (v := column.figure(run)) is not None]
            if not values:
                cells.append("-")
                continue
            interval, was_clipped = bounded_interval(values, column.bounds)
            cells.append(f"{mean_cell(values)} {interval}")
            missing.update({interval} & NOT_DEFINED.keys())
            if was_clipped:
                clipped[column.named or column.title] = column.bounds
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def left_out(figure: str, by_cause: dict[str, list[str]]) -> list[str]:
    """A line per cause of an undefined `figure` (`by_cause`: each cause -> the runs it is undefined in), naming the
    runs its means leave out."""
    lines = []
    for cause, names in by_cause.items():
        lines += [f"{figure} undefined, and left out, for {', '.join(names)}: {cause}.", ""]
    return lines


@dataclass(frozen=True)
class CausalAnalysis:
    """One analysis of src.analyze (`analysis=<kind>`) as the report reads it: where a job keeps its summary, what
    its figures refer to, and how its tables are made."""

    title: str  # the section's heading
    not_analysed: str  # how the line naming the jobs without it begins: `Not analysed by patching`
    summary: Callable[[Run], dict[str, Any] | None]  # the job's summary.json (Run.patching, ...), None without one
    measure: Callable[[Run], str]  # what its figures refer to, in words: analyses that differ are never pooled
    differs_in: str  # what `measure` tells apart: `pairs, metric or direction`
    tables: Callable[[Group, list[Run], str, bool], list[str]]  # (group, runs of one measure, measure, explained)
    overrides: Callable[[Run], list[str]]  # the src.analyze overrides that analyse another job as this one was


def causal_section(sweep: Sweep, group: Group, level: int, analysis: CausalAnalysis) -> list[str]:
    """One analysis's section of a group: a set of tables per measure (the first explains its columns, the others
    say only what they measured), and the finished jobs without the analysis named with the command that analyses
    them (alike the first measure's). Nothing when no job of the group has the analysis."""
    from src.sweep.report import analyse_command  # report.py imports this module: its helpers are imported late

    analysed = [run for run in group.finished if analysis.summary(run)]
    if not analysed or not group.configurations:
        return []
    measures = list(dict.fromkeys(analysis.measure(run) for run in analysed))
    lines = [f"{'#' * level} {analysis.title}", ""]
    if len(measures) > 1:
        lines += [
            f"The analyses did not all measure the same ({analysis.differs_in}), so each measure has tables of its "
            "own; they are not pooled.",
            "",
        ]
    for number, measure in enumerate(measures):
        own = [run for run in analysed if analysis.measure(run) == measure]
        lines += analysis.tables(group, own, measure, number > 0)
    missing_runs = [run for run in group.finished if not analysis.summary(run)]
    if missing_runs:
        first = next(run for run in analysed if analysis.measure(run) == measures[0])
        alike = f" (measured as {measures[0]}, as the first table)" if len(measures) > 1 else ""
        named = ", ".join(run.directory.name for run in missing_runs)
        command = analyse_command(sweep, missing_runs, analysis.overrides(first))
        lines += [f"{analysis.not_analysed}: {named}: {command}{alike}.", ""]
    return lines


def checkpoint_read(summary: dict[str, Any]) -> str:
    """Which of its job's checkpoints an analysis read, by file name (`best.ckpt`, `last.ckpt`, `step-400.ckpt`):
    every job has its own path, but the best and the last checkpoint are different models to measure."""
    checkpoint = summary.get("checkpoint")
    return f"`{Path(str(checkpoint)).name}`" if checkpoint else "an unrecorded checkpoint"


def ablation_asked(summary: dict[str, Any]) -> list[str] | None:
    """The ablate overrides on an analysis's src.analyze command line (`ablate=cross`, `ablate.heads=[cross:1:3]`):
    the ablation it put on top of the one its job trained with. summary.json's `ablation` is the whole ablation in
    force, which in a sweep over ablate.* differs by configuration: the configuration's own part is no difference
    of measure. None when no command is recorded. An override that asks for nothing (`ablate=none`,
    `ablate.heads=[]`) is no ablation."""
    command = summary.get("command")
    if not isinstance(command, str):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    asked = [word for word in words if word.lstrip("+~").split("=", 1)[0].split(".", 1)[0] == "ablate"]
    return [word for word in asked if word.partition("=")[2] not in ("none", "[]", "")]


def ablation_read(summary: dict[str, Any]) -> str:
    """The ablation an analysis added, in words (the whole ablation in force when its command is not recorded)."""
    asked = ablation_asked(summary)
    if asked is None:
        return f"ablation in force: {summary.get('ablation') or 'nothing ablated'}"
    if not asked:
        return "nothing ablated beyond what each job trained with"
    return f"with `{' '.join(asked)}` beyond what each job trained with"


# --- activation patching (src.analyze analysis=patching: <job>/patching/summary.json) -------------------------------

PATCHING_TITLE = "Activation patching (src.analyze analysis=patching)"
TOP_HEADS = 5  # the heads that matter most, a column each
TOP_PATHS = 5  # the paths that matter most, a column each
RHO_RANGE = (-1.0, 1.0)  # what Spearman's rho can take
RHO_UNDEFINED = (
    "Spearman's rho needs at least three heads, and a spread in both their exact effects and attribution "
    "patching's estimates"
)


def what_was_patched(run: Run) -> str:
    """`the task's own pairs from its val split, `logit_diff`, denoising`: the pairs, metric and direction a job's
    patching figures refer to; analyses that differ in any of them are never pooled."""
    summary = run.patching or {}
    settings = summary.get("settings") or {}
    pairs_file = settings.get("pairs")
    pairs = (
        f"the pairs of `{pairs_file}`"
        if pairs_file
        else f"the task's own pairs from its {settings.get('split', '?')} split"
    )
    metric = summary.get("metric", settings.get("metric", "?"))
    direction = summary.get("direction", settings.get("direction", "?"))
    return f"{pairs}, `{metric}`, {direction}"


def restoration_defined(run: Run) -> bool:
    """Whether the run's fractions restored are defined (summary.json's restored_undefined is null)."""
    return (run.patching or {}).get("restored_undefined") is None


def head_fraction(head: str) -> Callable[[Run], float | None]:
    """The fraction restored by patching `head` in a run (None where undefined or not patched)."""

    def figure(run: Run) -> float | None:
        if not restoration_defined(run):
            return None
        return number_or_none(((run.patching or {}).get("heads_restored") or {}).get(head))

    return figure


PathKey = tuple[str, str, str]  # sender, receiver, channel


def path_fractions(run: Run) -> dict[PathKey, float]:
    """The fraction kept by each path a run patched (path patching), by (sender, receiver, channel); empty where its
    fractions are undefined."""
    if not restoration_defined(run):
        return {}
    found = {}
    for path in (run.patching or {}).get("paths") or []:
        if not isinstance(path, dict):
            continue
        value = number_or_none(path.get("restored"))
        if value is not None:
            found[(str(path.get("sender")), str(path.get("receiver")), str(path.get("channel")))] = value
    return found


def path_fraction(key: PathKey) -> Callable[[Run], float | None]:
    return lambda run: path_fractions(run).get(key)


def path_title(key: PathKey) -> str:
    sender, receiver, channel = key
    return f"{sender} -> {receiver} ({channel})"


def top_heads(runs: list[Run], direction: str, count: int = TOP_HEADS) -> list[str]:
    """The `count` heads that matter most over `runs` (one measure's analyses, every configuration): the largest
    mean |effect| (patch_effect) over the runs that patched them, ties in the order summary.json lists them; never a
    head whose patch changed nothing in any run."""
    effects: dict[str, list[float]] = {}
    for run in runs:
        for head in (run.patching or {}).get("heads_restored") or {}:
            value = head_fraction(head)(run)
            if value is not None:
                effects.setdefault(head, []).append(abs(patch_effect(value, direction)))
    means = {head: statistics.mean(values) for head, values in effects.items()}
    ranked = sorted((head for head, mean in means.items() if mean > 0), key=lambda head: -means[head])
    return ranked[:count]


def top_paths(runs: list[Run], count: int = TOP_PATHS) -> list[PathKey]:
    """The `count` paths that matter most over `runs`: the fraction kept farthest from 1 on average (path patching
    noises the clean run: 1 is no change), ties in the order the analyses list them; all of them when no path
    changed anything."""
    effects: dict[PathKey, list[float]] = {}
    for run in runs:
        for key, value in path_fractions(run).items():
            effects.setdefault(key, []).append(abs(1 - value))
    means = {key: statistics.mean(values) for key, values in effects.items()}
    return sorted(means, key=lambda key: -means[key])[:count]


def patching_overrides(run: Run) -> list[str]:
    """The src.analyze overrides that patch another job as `run` was patched (its summary.json's settings), each one
    shell argument: analysis=patching, the split, pairs file, max_pairs, metric, direction, senders and receivers."""
    from src.provenance import shell_override

    settings = (run.patching or {}).get("settings") or {}
    overrides = ["analysis=patching"]
    for key in ("split", "pairs", "max_pairs", "metric", "direction"):
        if settings.get(key) is not None:
            overrides.append(shell_override(key, settings[key]))
    for key in ("senders", "receivers"):
        heads = settings.get(key) or []
        if heads:
            overrides.append(shlex.quote(f"{key}=[{','.join(str(head) for head in heads)}]"))
    return overrides


def patching_tables(group: Group, analysed: list[Run], measure: str, explained: bool = False) -> list[str]:
    """The patching tables of the analyses `analysed`, which all measured the same (`measure`, what_was_patched):
    the headline figures, the heads that matter most, the paths that matter most (when any was patched); what
    their columns are, unless `explained` above; which runs were left out of which figure, and why."""
    from src.analysis.causal import PAIR_METRICS

    summary = analysed[0].patching or {}
    metric = str(summary.get("metric", "?"))
    direction = str(summary.get("direction", "?"))
    counts = sorted(
        {int(n) for run in analysed if (n := number_or_none((run.patching or {}).get("pairs"))) is not None}
    )
    pairs = ""
    if counts:
        pairs = f", {counts[0]} pairs" if len(counts) == 1 else f", {counts[0]} to {counts[-1]} pairs"
    known = PAIR_METRICS.get(metric)  # None: a summary written with a metric no longer registered
    words = known.words if known else None
    lines = [f"Each analysed job's best checkpoint, on {measure}{pairs}." + (f" `{metric}`: {words}." if words else "")]
    if not explained:
        lines.append(
            f"Clean, corrupted: `{metric}` on the clean and on the corrupted inputs, mean over the pairs. Rank "
            "correlation: Spearman's rho of attribution patching's one-pass estimate with the exact effect of "
            "patching each head's output (near 1: the estimate ranks the heads as exact patching does). Each cell is "
            "mean ± std (n) over seeds, then the mean's 95% t interval."
        )
    lines.append("")
    low, high = known.value_range if known else UNBOUNDED
    notes = TableNotes()
    lines += configuration_table(
        group,
        analysed,
        [
            Column(f"clean {metric}", lambda run: number_or_none((run.patching or {}).get("clean")), (low, high)),
            Column(
                f"corrupted {metric}", lambda run: number_or_none((run.patching or {}).get("corrupted")), (low, high)
            ),
            Column(
                "rank correlation (head)",
                lambda run: number_or_none(((run.patching or {}).get("rank_correlation") or {}).get("head")),
                RHO_RANGE,
            ),
        ],
        notes,
    )
    undefined_rho = [
        run.directory.name
        for run in analysed
        if "head" in (rho := (run.patching or {}).get("rank_correlation") or {}) and number_or_none(rho["head"]) is None
    ]
    if undefined_rho:
        lines += [
            f"Rank correlation (head) undefined, and left out, for {', '.join(undefined_rho)}: {RHO_UNDEFINED}.",
            "",
        ]
    by_cause: dict[str, list[str]] = {}
    for run in analysed:
        if not restoration_defined(run):
            by_cause.setdefault(str((run.patching or {}).get("restored_undefined")), []).append(run.directory.name)
    defined = [run for run in analysed if restoration_defined(run)]
    heads = top_heads(defined, direction)
    if heads:
        if direction == "noising":
            lines.append(
                "Fraction of the clean-minus-corrupted difference kept when each head's corrupted output is patched "
                "into the clean run (1: the clean run's value, nothing lost; 0: the corrupted run's), for the "
                f"{len(heads)} heads that move `{metric}` most (largest mean |1 - fraction| over these analyses), "
                "named as `ablate.heads` takes them; every head of a job is in its patching/report.md:"
            )
        else:
            lines.append(
                "Fraction of the clean-minus-corrupted difference restored by patching each head's clean output into "
                "the corrupted run (1: the clean run's value; 0: the corrupted run's), for the "
                f"{len(heads)} heads that restore most (largest mean |fraction| over these analyses), named as "
                "`ablate.heads` takes them; every head of a job is in its patching/report.md:"
            )
        lines.append("")
        lines += configuration_table(
            group, defined, [Column(head, head_fraction(head), UNBOUNDED) for head in heads], notes
        )
        lines += [
            "A head's number is an accident of its seed in models trained from scratch (which head takes a role "
            "differs from seed to seed), so the mean by name above compares like with like only for seeds of one "
            "start (fine-tuning one pretrained model). Each seed's own heads that matter most:",
            "",
            *patching_heads_by_seed(group, defined, direction),
        ]
    paths = top_paths(defined)
    if paths:
        every = len({key for run in defined for key in path_fractions(run)}) == len(paths)
        shown = (
            "every path, the farthest from 1 on average first"
            if every
            else f"the {len(paths)} paths farthest from 1 on average"
        )
        lines += [
            "Path patching: the fraction of the clean-minus-corrupted difference kept with only the path sender -> "
            "receiver's query, key or value (q, k, v) carrying the corrupted sender (1: the path does not matter; "
            f"lower: the sender matters through that input), for {shown}; every path of a job is in its "
            "patching/paths.csv:",
            "",
        ]
        lines += configuration_table(
            group, defined, [Column(path_title(k), path_fraction(k), UNBOUNDED) for k in paths], notes
        )
    for cause, names in by_cause.items():
        lines += [f"Fractions undefined, and left out of their means, for {', '.join(names)}: {cause}.", ""]
    return lines + notes.lines()


PATCHING = CausalAnalysis(
    title=PATCHING_TITLE,
    not_analysed="Not analysed by patching",
    summary=lambda run: run.patching,
    measure=what_was_patched,
    differs_in="pairs, metric or direction",
    tables=patching_tables,
    overrides=patching_overrides,
)


def patching_section(sweep: Sweep, group: Group, level: int = 2) -> list[str]:
    """`Activation patching (src.analyze analysis=patching)`: per configuration (the main table's rows), mean ± std
    (n) over seeds and the 95% t interval of its jobs' patching figures (patching/summary.json): the metric on the
    clean and the corrupted inputs, the rank correlation of attribution with exact patching over the heads, the
    fraction restored by the heads that matter most in the group, and the fraction kept by the paths that matter
    most (path patching, where measured). Analyses that measured differently (other pairs, metric or direction)
    get tables of their own, never pooled; runs whose fractions are undefined are left out of those and named.
    The finished jobs without a patching analysis are named with the command that analyses them, once any job of
    the group has one. Nothing when none has."""
    return causal_section(sweep, group, level, PATCHING)


PATCHING_MEASURE = ("metric", "direction", "split", "pairs_file")  # results.csv: what a patching analysis measured


def patching_measure(run: Run, key: str) -> Any:
    """What a run's patching analysis measured, by PATCHING_MEASURE key (None: not said, or no pairs file)."""
    summary = run.patching or {}
    settings = summary.get("settings") or {}
    if key == "pairs_file":
        return settings.get("pairs")
    return summary.get(key, settings.get(key))


# --- the logit lens and direct logit attribution (src.analyze analysis=lens: <job>/lens/summary.json) --------------

LENS_TITLE = "Logit lens and direct logit attribution (src.analyze analysis=lens)"
TOP_COMPONENTS = 8  # the components that write most of the target's logit, a column each


def what_the_lens_read(run: Run) -> str:
    """`the decoder stack of each job's `best.ckpt` on the val split, 200 examples (1400 scored positions), nothing
    ablated ...`: what a job's lens figures refer to. A loss over other examples, of another stack or of another
    model (checkpoint, ablation) is another quantity: analyses that differ in any of them are never pooled."""
    summary = run.lens or {}
    stack = summary.get("stack") or DECODER  # lens/summary.json said no stack while the decoder was all it read
    return (
        f"the {stack} stack of each job's {checkpoint_read(summary)} on the {summary.get('split', '?')} split, "
        f"{summary.get('examples', '?')} examples ({summary.get('positions', '?')} scored positions), "
        f"{ablation_read(summary)}"
    )


def lens_rows(run: Run) -> dict[str, dict[str, Any]]:
    """A run's logit lens by row label, in the file's order: `embed` (the embeddings, before layer 0, where the
    analysis reads them), then `0`, `1`, ... (the stream after each layer)."""
    rows = (run.lens or {}).get("lens") or []
    return {str(row.get("layer")): row for row in rows if isinstance(row, dict)}


def lens_labels(runs: list[Run]) -> list[str]:
    """Every row label of `runs`' lenses, each run's in its own order: a label one run lacks (`embed` in an analysis
    written before it was read, a layer a shallower model has not) goes before the first label that follows it in
    the runs that have it."""
    order: list[str] = []
    for run in runs:
        labels = list(lens_rows(run))
        for index, label in enumerate(labels):
            if label not in order:
                after = next((order.index(later) for later in labels[index + 1 :] if later in order), len(order))
                order.insert(after, label)
    return order


def lens_figure(label: str, key: str) -> Callable[[Run], float | None]:
    """A run's `key` (loss, top1_agreement) at the lens row `label` (None where it has no such row)."""
    return lambda run: number_or_none(lens_rows(run).get(label, {}).get(key))


def row_title(label: str) -> str:
    return f"layer {label}" if label.isdigit() else label


def attribution(run: Run) -> dict[str, float]:
    """A run's direct logit attribution, component -> mean direct contribution to the target's logit (the finite
    ones); empty where it is undefined (a post-LN model)."""
    if (run.lens or {}).get("attribution_undefined") is not None:
        return {}
    shares = (run.lens or {}).get("attribution") or {}
    return {name: value for name, v in shares.items() if (value := number_or_none(v)) is not None}


def top_components(runs: list[Run], count: int = TOP_COMPONENTS) -> list[str]:
    """The `count` components that write most of the target's logit over `runs` (one measure's analyses, every
    configuration): the largest mean |contribution| over the runs that have them, ties in the order the analyses
    list them; never one that contributes nothing in any run (an ablated head)."""
    sizes: dict[str, list[float]] = {}
    for run in runs:
        for name, value in attribution(run).items():
            sizes.setdefault(name, []).append(abs(value))
    means = {name: statistics.mean(values) for name, values in sizes.items()}
    return sorted((name for name, mean in means.items() if mean > 0), key=lambda name: -means[name])[:count]


def component_share(name: str) -> Callable[[Run], float | None]:
    return lambda run: attribution(run).get(name)


def lens_overrides(run: Run) -> list[str]:
    """The src.analyze overrides that read another job's lens as `run`'s was read: analysis=lens, its split and
    max_examples, and the ablation its analysis added."""
    from src.provenance import shell_override

    summary = run.lens or {}
    settings = summary.get("settings") or {}
    overrides = ["analysis=lens"]
    for key in ("split", "max_examples"):
        if settings.get(key) is not None:
            overrides.append(shell_override(key, settings[key]))
    return overrides + [shlex.quote(word) for word in ablation_asked(summary) or []]


def lens_tables(group: Group, analysed: list[Run], measure: str, explained: bool = False) -> list[str]:
    """The lens tables of the analyses `analysed`, which all read the same (`measure`, what_the_lens_read): the
    loss by layer beside the model's own, the top-1 agreement by layer, and the components that write most of the
    target's logit (where attribution is defined); what their columns are, unless `explained` above; the runs left
    out of the attribution, and why."""
    labels = lens_labels(analysed)
    lines = [f"Read: {measure}."]
    if not explained:
        lines.append(
            "Logit lens (nostalgebraist 2020): the residual stream after each layer (`embed`: the embeddings, before "
            "layer 0) read through the final norm and the output layer as if the layers above it were skipped: its "
            "loss against the targets, beside the model's own (`the model`), and its top-1 agreement, the share of "
            "positions where its top-1 prediction is the model's. Each cell is mean ± std (n) over seeds, then the "
            "mean's 95% t interval."
        )
    lines += ["", "Loss:", ""]
    notes = TableNotes()
    model_loss = Column("the model", lambda run: number_or_none((run.lens or {}).get("loss")), NON_NEGATIVE, "a loss")
    by_layer = [Column(row_title(label), lens_figure(label, "loss"), NON_NEGATIVE, "a loss") for label in labels]
    lines += configuration_table(group, analysed, [model_loss, *by_layer], notes)
    lines += ["Top-1 agreement with the model:", ""]
    agreement = [
        Column(row_title(label), lens_figure(label, "top1_agreement"), SHARE_RANGE, "a top-1 agreement")
        for label in labels
    ]
    lines += configuration_table(group, analysed, agreement, notes)
    defined = [run for run in analysed if attribution(run)]
    components = top_components(defined)
    if components:
        lines += [
            "Direct logit attribution (Elhage et al. 2021): each component's mean direct contribution to the target "
            "token's logit, through the final norm with its scale frozen, for the "
            f"{len(components)} components with the largest mean |contribution| over these analyses (heads named as "
            "`ablate.heads` takes them); `target logit`: the logit itself, the sum of every component's share. "
            "Every component of a job is in its lens/attribution.csv:",
            "",
        ]
        target = Column("target logit", lambda run: number_or_none((run.lens or {}).get("target_logit")), UNBOUNDED)
        shares = [Column(name, component_share(name), UNBOUNDED) for name in components]
        lines += configuration_table(group, defined, [target, *shares], notes)
    by_cause: dict[str, list[str]] = {}
    for run in analysed:
        if not attribution(run):
            cause = (run.lens or {}).get("attribution_undefined") or "its summary.json records no attribution"
            by_cause.setdefault(str(cause), []).append(run.directory.name)
    return lines + left_out("Direct logit attribution", by_cause) + notes.lines()


LENS = CausalAnalysis(
    title=LENS_TITLE,
    not_analysed="Not analysed by the logit lens",
    summary=lambda run: run.lens,
    measure=what_the_lens_read,
    differs_in="stack, split, examples, checkpoint or ablation",
    tables=lens_tables,
    overrides=lens_overrides,
)


def lens_section(sweep: Sweep, group: Group, level: int = 2) -> list[str]:
    """`Logit lens and direct logit attribution (src.analyze analysis=lens)`: per configuration, mean ± std (n) over
    seeds and the 95% t interval of its jobs' lens figures (lens/summary.json): the loss of each layer's residual
    stream read as the output beside the model's own, its top-1 agreement with the model, and the direct
    contributions to the target's logit of the components that write most of it. Analyses that read differently
    get tables of their own; the jobs without the analysis are named with the command that analyses them."""
    return causal_section(sweep, group, level, LENS)


# --- induction heads (src.analyze analysis=induction: <job>/induction/summary.json) ---------------------------------

INDUCTION_TITLE = "Induction heads (src.analyze analysis=induction)"


def what_the_induction_read(run: Run) -> str:
    """`each job's `best.ckpt` on 128 sequences of 32 random tokens written twice, nothing ablated ...`: what a
    job's induction figures refer to (a loss on longer repeats is another quantity); never pooled across."""
    summary = run.induction or {}
    return (
        f"each job's {checkpoint_read(summary)} on {summary.get('sequences', '?')} sequences of "
        f"{summary.get('half', '?')} random tokens written twice, {ablation_read(summary)}"
    )


def induction_figure(key: str) -> Callable[[Run], float | None]:
    return lambda run: number_or_none((run.induction or {}).get(key))


def head_count(key: str) -> Callable[[Run], float | None]:
    """How many heads a run's analysis counted as induction (previous-token) heads: `key` is the list's."""

    def figure(run: Run) -> float | None:
        heads = (run.induction or {}).get(key)
        return float(len(heads)) if isinstance(heads, list) else None

    return figure


def strongest(score: str) -> Callable[[Run], float | None]:
    """A run's largest `score` (induction, previous_token) over its heads in use: how strongly its best head of the
    kind does it, whichever head that is in this seed. A head off before the analysis (removed_before) still has
    a pattern, and so a score, but writes nothing: it is left out, as the analysis leaves it out of its heads."""

    def figure(run: Run) -> float | None:
        rows = [row for row in (run.induction or {}).get("heads") or [] if isinstance(row, dict)]
        in_use = [row for row in rows if not row.get("removed_before")]
        values = [v for row in in_use if (v := number_or_none(row.get(score))) is not None]
        return max(values) if values else None

    return figure


def phase_change_step(run: Run) -> float | None:
    """The training step of a run's phase change (None: none found, or not looked for)."""
    phase = (run.induction or {}).get("phase_change")
    return number_or_none(phase.get("step")) if isinstance(phase, dict) else None


def heads_cell(run: Run, key: str) -> str:
    """A run's induction (previous-token) heads as `ablate.heads` takes them, `[decoder_self:1:2,...]`."""
    heads = (run.induction or {}).get(key)
    if not isinstance(heads, list):
        return "-"
    return f"`[{','.join(str(head) for head in heads)}]`" if heads else "none"


def heads_by_seed(group: Group, analysed: list[Run]) -> list[str]:
    """A row per analysed run, in the main table's order: its configuration's settings, its seed and the heads its
    analysis named, to paste into `ablate.heads`. Which head becomes an induction head is an accident of the seed,
    so heads are listed, never averaged by name."""
    own = {id(run) for run in analysed}
    header = [*group.varied, "seed", "induction heads", "previous-token heads"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for configuration in group.configurations:
        for run in configuration.runs:
            if id(run) in own:
                cells = [setting_cell(dict(configuration.settings)[k]) for k in group.varied]
                cells += [run.seed or run.directory.name, heads_cell(run, "induction_heads")]
                lines.append("| " + " | ".join([*cells, heads_cell(run, "previous_token_heads")]) + " |")
    return [*lines, ""]


def patching_heads_by_seed(group: Group, analysed: list[Run], direction: str, count: int = 3) -> list[str]:
    """A row per analysed run: its configuration's settings, its seed and its own `count` heads that matter most
    (top_heads of that run alone), each with its fraction, named as ablate.heads takes them."""
    own = {id(run) for run in analysed}
    header = [*group.varied, "seed", f"its {count} heads that matter most (fraction)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for configuration in group.configurations:
        for run in configuration.runs:
            if id(run) not in own:
                continue
            heads = top_heads([run], direction, count)
            listed = ", ".join(f"`{head}` ({head_fraction(head)(run):.2f})" for head in heads) or "none"
            cells = [setting_cell(dict(configuration.settings)[k]) for k in group.varied]
            lines.append("| " + " | ".join([*cells, run.seed or run.directory.name, listed]) + " |")
    return [*lines, ""]


def induction_overrides(run: Run) -> list[str]:
    """The src.analyze overrides that read another job as `run` was read: analysis=induction, as many sequences
    (max_examples), and the ablation its analysis added."""
    summary = run.induction or {}
    overrides = ["analysis=induction"]
    if isinstance(summary.get("sequences"), int):
        overrides.append(f"max_examples={summary['sequences']}")
    return overrides + [shlex.quote(word) for word in ablation_asked(summary) or []]


def induction_tables(group: Group, analysed: list[Run], measure: str, explained: bool = False) -> list[str]:
    """The induction tables of the analyses `analysed`, which all read the same (`measure`,
    what_the_induction_read): the loss on the repeats intact and with the induction heads ablated, the phase change
    step; how many induction and previous-token heads, and the strongest score of each kind; the heads per seed;
    what their columns are, unless `explained` above; the runs left out of a figure, and why."""
    from src.analysis.induction_report import CHANCE_TIMES, CURVE, FLOOR, SHARE, definition

    lines = [f"Read: {measure}."]
    if not explained:
        lines.append(
            "Loss on the repeats: on the second half's predictable tokens (only copying from the first half "
            "predicts them), with the model intact and with every head it counts as an induction head ablated at "
            f"once. Phase change (Olsson et al. 2022): {definition(CURVE)}. Induction heads: those whose induction "
            "score (mean attention from a repeated token to the token after its earlier occurrence) is at least "
            f"{SHARE:g} of the largest, at least {FLOOR:g} and at least {CHANCE_TIMES:g}x what uniform attention "
            "scores; previous-token heads alike, by attention to the position before; strongest: the largest score "
            "of the kind. Each cell is mean ± std (n) over seeds, then the mean's 95% t interval."
        )
    lines.append("")
    notes = TableNotes()
    lines += configuration_table(
        group,
        analysed,
        [
            Column("loss on the repeats", induction_figure("loss"), NON_NEGATIVE, "a loss"),
            Column("induction heads ablated", induction_figure("loss_without_induction_heads"), NON_NEGATIVE, "a loss"),
            Column("phase change (step)", phase_change_step, NON_NEGATIVE, "a training step"),
        ],
        notes,
    )
    lines += configuration_table(
        group,
        analysed,
        [
            Column("induction heads", head_count("induction_heads"), NON_NEGATIVE, "a count of heads"),
            Column("previous-token heads", head_count("previous_token_heads"), NON_NEGATIVE, "a count of heads"),
            Column("strongest induction score", strongest("induction"), SHARE_RANGE, "a mean attention"),
            Column("strongest previous-token score", strongest("previous_token"), SHARE_RANGE, "a mean attention"),
        ],
        notes,
    )
    lines += [
        "The heads each seed's analysis named, as `ablate.heads` takes them (which heads they are is particular to "
        "the seed; each head's scores are in its job's induction/heads.csv):",
        "",
        *heads_by_seed(group, analysed),
    ]
    unablated: dict[str, list[str]] = {}
    no_step: dict[str, list[str]] = {}
    for run in analysed:
        summary = run.induction or {}
        if induction_figure("loss_without_induction_heads")(run) is None:
            cause = (
                "no head stood out as an induction head, so none was ablated"
                if not summary.get("induction_heads")
                else "its summary.json records no such loss"
            )
            unablated.setdefault(cause, []).append(run.directory.name)
        if phase_change_step(run) is None:
            phase = summary.get("phase_change")
            cause = (
                str(phase.get("reason") or "its summary.json records no reason")
                if isinstance(phase, dict)
                else "not looked for (the analysis read no training history)"
            )
            no_step.setdefault(cause, []).append(run.directory.name)
    lines += left_out("The loss with the induction heads ablated", unablated)
    lines += left_out("The phase change step", no_step)
    return lines + notes.lines()


INDUCTION = CausalAnalysis(
    title=INDUCTION_TITLE,
    not_analysed="Not analysed for induction heads",
    summary=lambda run: run.induction,
    measure=what_the_induction_read,
    differs_in="sequences, their length, checkpoint or ablation",
    tables=induction_tables,
    overrides=induction_overrides,
)


def induction_section(sweep: Sweep, group: Group, level: int = 2) -> list[str]:
    """`Induction heads (src.analyze analysis=induction)`: per configuration, mean ± std (n) over seeds and the 95%
    t interval of its jobs' induction figures (induction/summary.json): the loss on repeated random sequences with
    the model intact and with its induction heads ablated, the phase change step, the number of induction and
    previous-token heads and the strongest score of each kind; then the heads named in each seed. Analyses that
    read differently get tables of their own; the jobs without the analysis are named with the command that
    analyses them."""
    return causal_section(sweep, group, level, INDUCTION)
