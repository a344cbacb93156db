"""The answer to a sweep: `python -m src.report <sweep dir> [--baseline model.heads=4]`.

Also run by itself at the end of every multirun (a Hydra callback, see conf/config.yaml), and cheap enough to run
again on a sweep still in progress. It reads only what the runs saved (.hydra/overrides.yaml, run.json,
metrics.json, and analysis/ where a job has one), never re-runs anything, and writes into the sweep directory:

    report.md     the varied settings as columns, the fixed ones stated once above; each final metric as
                  mean ± std (n) over seeds (any axis named `seed`), the best in bold; for the main metric a 95%
                  t confidence interval and a Welch t-test against the baseline configuration (the first value of
                  the axis, or --baseline); failed, diverged and unfinished runs in their own table
    results.csv   one row per run: settings, seed, status, every final metric
    curves.png    validation curves of the main metric and the loss per configuration (mean, band = min..max)
    bars.png      the main metric per configuration with its 95% interval
    heatmap.png   the main metric over two varied settings (two-axis sweeps)
    pruning.png   when jobs have a head analysis (src.analyze, or analyze_after_fit=true): the mean pruning curve
                  of each configuration; report.md then has a section with the analysis figures per configuration
                  (analysis/summary.json) and results.csv their columns (analysis/prunable_fraction, ...)
    report/       the same figures and table as a TensorBoard run, next to the sweep's runs
    study.csv     for a search whose Optuna study is kept in a database (hydra.sweeper.storage, see src/study.py):
                  one row per trial of the study, whichever sweep or machine ran it; report.md then ends with the
                  same trials, best first, with their parameters, value and where each ran

`python -m src.report --storage <url> --study <name>` prints the trials of a stored study without a sweep
directory (say, on a machine that ran none of them).
"""

from __future__ import annotations

import argparse
import csv
import math
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.schema import is_experiment_setting, varied_keys
from src.sweep.figures import draw_figures, to_tensorboard
from src.sweep.runs import (
    ANALYSIS_DIR,
    SEED,
    Run,
    is_search,
    job_directory,
    job_number,
    planned_jobs,
    read_runs,
)
from src.sweep.statistics import interval_cell, mean_cell, setting_cell, short, welch_p
from src.sweep.trials import (
    StudyView,
    print_stored_study,
    read_study,
    study_summary,
    study_table,
    write_study_csv,
)
from src.training.metrics import higher_is_better, metric_range


@dataclass
class Configuration:
    settings: tuple[tuple[str, str], ...]  # the varied settings, seed excluded
    runs: list[Run]

    def values(self, metric: str) -> list[float]:
        """The runs' final values of `metric`; a non-finite one (inf, nan) has no place in a mean or a t-test and
        is left out here, and named under the table (`non_finite`)."""
        return [v for run in self.runs if (v := run.final.get(metric)) is not None and math.isfinite(v)]

    def non_finite(self, metric: str) -> list[str]:
        """The runs whose final `metric` is not finite."""
        return [
            run.directory.name for run in self.runs if (v := run.final.get(metric)) is not None and not math.isfinite(v)
        ]

    def analysis_values(self, figure: str) -> list[float]:
        """The finite values of one analysis figure (Run.analysis_figures) over the runs analysed."""
        return [v for run in self.runs if (v := run.analysis_figures.get(figure)) is not None and math.isfinite(v)]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={short(v)}" for k, v in self.settings) or "(all)"


@dataclass
class Sweep:
    directory: Path
    runs: list[Run]
    varied: list[str]  # varied setting keys (no seed), in the order they appear
    fixed: dict[str, str]
    configurations: list[Configuration]  # of finished runs, in sweep order
    main_metric: str | None
    baseline: Configuration | None
    not_started: list[tuple[int, list[str]]] = field(default_factory=list)  # (job number, overrides) never run
    study: StudyView | None = None  # the stored Optuna study its trials belong to (every machine's), if any

    @property
    def finished(self) -> list[Run]:
        return [run for run in self.runs if run.status == "completed"]

    @property
    def progress(self) -> str:
        """`3 of 4 runs completed`, counting the jobs that never started."""
        return f"{len(self.finished)} of {len(self.runs) + len(self.not_started)} runs completed"

    @property
    def metrics(self) -> list[str]:
        names: dict[str, None] = {}
        for run in self.finished:
            names.update(dict.fromkeys(run.final))
        return list(names)


def analyse(sweep_dir: Path, baseline: str | None = None) -> Sweep:
    runs = read_runs(sweep_dir)
    # What can split configurations: the experiment's settings, and whatever the sweep itself swept. Not a setting
    # that does not change the experiment and differs only because of how a job was run: a job resumed in place
    # has ckpt_path=last, a job rerun with another trainer.enable_progress_bar is still the same configuration.
    swept = set(varied_keys(sweep_dir))
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(k for k in run.settings if k in swept or is_experiment_setting(k)))
    varied = [k for k in keys if k != SEED and len({run.value(k) for run in runs}) > 1]
    fixed = {k: runs[0].settings[k] for k in keys if k != SEED and k not in varied and k in runs[0].settings}
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.status == "completed":
            groups.setdefault(tuple(run.value(k) for k in varied), []).append(run)
    # Shown as typed by the configuration's first run (the value it was swept with).
    shown = {
        values: tuple((k, members[0].settings.get(k, v)) for k, v in zip(varied, values))
        for values, members in groups.items()
    }
    configurations = [Configuration(shown[values], members) for values, members in groups.items()]
    # What the runs were ranked by: the sweep's objective= if one was set, else the task's main metric.
    ranked_by = (run.metrics.get("objective") or run.metrics.get("main_metric") for run in runs)
    main = next((metric for metric in ranked_by if metric), None)
    if main and is_search(sweep_dir):  # an optimising sweeper's trials: best first
        sign = -1.0 if higher_is_better(main) else 1.0
        configurations.sort(key=lambda c: sign * statistics.mean(c.values(main)) if c.values(main) else math.inf)
    chosen = configurations[0] if configurations else None
    if baseline:
        wanted = dict(part.split("=", 1) for part in baseline.split(",") if "=" in part)
        matches = [
            c
            for c in configurations
            if all(k in varied and same_value(c.runs[0].value(k), v) for k, v in wanted.items())
        ]
        if not matches:
            shown = "; ".join(c.label for c in configurations) or "none finished"
            raise SystemExit(
                f"error: --baseline {baseline} matches no finished configuration: use one of the table's ({shown})"
            )
        chosen = matches[0]
    started = {job_number(run.directory) for run in runs}
    missing = [(number, job) for number, job in enumerate(planned_jobs(sweep_dir) or []) if number not in started]
    return Sweep(sweep_dir, runs, varied, fixed, configurations, main, chosen, missing, read_study(sweep_dir, main))


def study_section(sweep: Sweep) -> list[str]:
    """`## Study <name>`: every trial of the sweep's stored study, this sweep's and every other's (other machines
    share the study through its database), best first. Nothing for a grid sweep or an in-memory study."""
    from src.study import shown

    study = sweep.study
    if study is None:
        return []
    again = f"python -m src.report {shlex.quote(str(sweep.directory))}"
    lines = [f"## Study {study.name}: every trial, whichever sweep ran it", ""]
    if study.error is not None:
        return lines + [f"The study's trials could not be read ({study.error}); list them with {again}.", ""]
    if not sweep.runs:
        lines.append("This sweep ran no trial: the study's trials were all taken by other sweeps.")
    direction = " and ".join(study.directions)
    lines.append(
        f"Storage `{shown(study.url)}`, {direction} the value; {study_summary(study)}. Completed trials best first "
        "(the best in bold), then the others."
    )
    running = study.count("RUNNING")
    if running:
        lines.append(
            f"{running} {'is' if running == 1 else 'are'} still running, so {'has' if running == 1 else 'have'} no "
            f"value yet: run {again} again once {'it ends' if running == 1 else 'they end'}."
        )
    return lines + ["", *study_table(study, sweep.directory), ""]


def same_value(a: str, b: str) -> bool:
    """Whether two spellings of a setting's value are the same value: `1e-3` and `0.001` are."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def baseline_label(baseline: Configuration | None) -> str:
    """The baseline in the report's text: its settings as code, like the fixed ones (`[cross:*:*]` stays as typed)."""
    if baseline is None:
        return "-"
    return f"`{baseline.label}`" if baseline.settings else "the only configuration"


def markdown(sweep: Sweep) -> str:
    lines = [f"# Sweep report: {sweep.directory.name}", ""]
    done, total = len(sweep.finished), len(sweep.runs) + len(sweep.not_started)
    lines.append(f"{done} of {total} runs completed" + ("" if done == total else " (the rest are listed below)") + ".")
    if sweep.not_started:
        lines.append(
            f"{len(sweep.not_started)} of the sweep's {total} jobs never started (the sweep was stopped before them): "
            "each is listed below with the command that runs it into this sweep."
        )
    if total and not done:
        lines.append("No run completed, so there is nothing to compare: each run's reason is listed below.")
    if sweep.fixed:
        lines.append("Fixed for every run: " + ", ".join(f"`{k}={v}`" for k, v in sweep.fixed.items()) + ".")
    seeds = sorted({run.seed for run in sweep.runs if run.seed is not None})
    if seeds:
        lines.append(f"Seeds ({SEED}): {', '.join(seeds)}; each cell is mean ± std (n) over them.")
    if sweep.main_metric:
        lines.append(
            f"Main metric: `{sweep.main_metric}` ({'higher' if higher_is_better(sweep.main_metric) else 'lower'} is "
            "better), with its 95% t interval and a two-sided Welch t-test against the baseline "
            f"({baseline_label(sweep.baseline)}); * p < 0.05."
        )
    lines.append("")
    metrics = sweep.metrics
    if sweep.configurations and metrics:
        best: dict[str, set[int]] = {}  # metric -> the configurations with the best mean (ties all bold)
        for metric in metrics:
            means = {i: statistics.mean(v) for i, c in enumerate(sweep.configurations) if (v := c.values(metric))}
            if means:
                top = max(means.values()) if higher_is_better(metric) else min(means.values())
                best[metric] = {i for i, mean in means.items() if mean == top}
        header = [*sweep.varied, *metrics]
        if sweep.main_metric:
            header += ["95% CI", "vs baseline (p)"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + " --- |" * len(header))
        clipped = False
        for index, configuration in enumerate(sweep.configurations):
            cells = [setting_cell(dict(configuration.settings)[k]) for k in sweep.varied]
            for metric in metrics:
                values = configuration.values(metric)
                if not values:
                    cells.append("-")
                    continue
                cell = mean_cell(values)
                cells.append(f"**{cell}**" if index in best.get(metric, set()) else cell)
            if sweep.main_metric:
                values = configuration.values(sweep.main_metric)
                interval, was_clipped = interval_cell(values, sweep.main_metric)
                cells.append(interval)
                clipped = clipped or was_clipped
                if configuration is sweep.baseline:
                    cells.append("baseline")
                else:
                    p = welch_p(values, sweep.baseline.values(sweep.main_metric)) if sweep.baseline else None
                    cells.append("-" if p is None else f"{p:.3g}{' *' if p < 0.05 else ''}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        left_out = {
            metric: names
            for metric in metrics
            if (names := [n for c in sweep.configurations for n in c.non_finite(metric)])
        }
        for metric, names in left_out.items():
            lines += [f"Left out of `{metric}`: the non-finite values of {', '.join(names)}.", ""]
        if clipped:
            low, high = metric_range(sweep.main_metric)
            lines += [f"† clipped to the values `{sweep.main_metric}` can take, [{low:g}, {high:g}].", ""]
    lines += pruning_section(sweep)
    unfinished = [run for run in sweep.runs if run.status != "completed"]
    if unfinished or sweep.not_started:
        lines += ["## Runs that did not complete", "", "| run | status | reason |", "| --- | --- | --- |"]
        for run in unfinished:
            reason = (run.error or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {run.directory.name} | {run.status} | {reason} |")
        for number, job in sweep.not_started:
            command = run_into_sweep(sweep.directory, number, job).replace("|", "\\|")
            lines.append(f"| {job_directory(sweep.directory, number, job).name} | not started | run it: `{command}` |")
        lines.append("")
    lines += study_section(sweep)
    figures = [name for name in ("curves.png", "bars.png", "heatmap.png") if (sweep.directory / name).is_file()]
    if any(run.pruning for run in sweep.finished) and (sweep.directory / "pruning.png").is_file():
        figures.append("pruning.png")
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


PRUNABLE = "analysis/prunable_fraction"  # its range (src/training/metrics.py) clips the interval to [0, 1]


def what_was_analysed(run: Run) -> str:
    """`val exact_match, tolerance 5%`: the split, metric and tolerance a job's analysis figures refer to."""
    summary = run.analysis or {}
    tolerance = summary.get("tolerance")
    shown = f"{100 * tolerance:g}%" if isinstance(tolerance, (int, float)) else "?"
    return f"{summary.get('split', '?')} `{summary.get('metric', '?')}`, tolerance {shown}"


def pruning_section(sweep: Sweep) -> list[str]:
    """`## Head pruning (src.analyze)`: per configuration (the main table's rows), mean ± std (n) over seeds of the
    analysis figures of its jobs (analysis/summary.json), the prunable fraction's 95% interval and a Welch test
    against the baseline, and the finished jobs that have no analysis. Nothing when no job was analysed."""
    analysed = [run for run in sweep.finished if run.analysis]
    if not analysed or not sweep.configurations:
        return []
    measures = dict.fromkeys(what_was_analysed(run) for run in analysed)
    metrics = list(dict.fromkeys(str((run.analysis or {}).get("metric", "?")) for run in analysed))
    metric = metrics[0] if len(metrics) == 1 else "the main metric"
    named = f"`{metric}`" if len(metrics) == 1 else metric
    sites = list(dict.fromkeys(key for run in analysed for key in run.analysis_figures if key.startswith("pruned/")))
    lines = ["## Head pruning (src.analyze)", ""]
    if len(measures) == 1:
        lines.append(f"Each analysed job's best checkpoint, on {next(iter(measures))}.")
    else:
        counts = {m: sum(1 for run in analysed if what_was_analysed(run) == m) for m in measures}
        lines.append(
            "The analyses did not all measure the same, and are pooled as they are: "
            + "; ".join(f"{m} ({n} job{'s' if n > 1 else ''})" for m, n in counts.items())
            + "."
        )
    lines.append(
        f"Unablated: {named} of the whole model. Prunable: the largest fraction of the heads removed (least "
        f"important first, importance re-scored after each step) before {named} drops by more than the tolerance "
        f"(a fraction of its unablated value). Rank correlation: Spearman's rho of the heads' importance with the "
        f"exact drop of {named} when each is removed alone. `<site>` pruned: the fraction of that site's heads removed "
        "by then. Each cell is mean ± std (n) over seeds; the prunable fraction has its "
        f"95% t interval and a two-sided Welch t-test against the baseline ({baseline_label(sweep.baseline)}); "
        "* p < 0.05."
    )
    lines.append("")
    columns = [
        ("baseline", f"{metric} unablated"),
        ("prunable_fraction", "prunable"),
        ("rank_correlation_metric", "rank correlation"),
    ]
    columns += [(key, f"{key.removeprefix('pruned/')} pruned") for key in sites]
    header = [*sweep.varied, *(title for _, title in columns), "95% CI (prunable)", "vs baseline (p)"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + " --- |" * len(header))
    clipped = False
    baseline = sweep.baseline.analysis_values("prunable_fraction") if sweep.baseline else []
    for configuration in sweep.configurations:
        cells = [setting_cell(dict(configuration.settings)[k]) for k in sweep.varied]
        for key, _ in columns:
            values = configuration.analysis_values(key)
            cells.append(mean_cell(values) if values else "-")
        values = configuration.analysis_values("prunable_fraction")
        interval, was_clipped = interval_cell(values, PRUNABLE) if values else ("-", False)
        cells.append(interval)
        clipped = clipped or was_clipped
        if configuration is sweep.baseline:
            cells.append("baseline")
        else:
            p = welch_p(values, baseline)
            cells.append("-" if p is None else f"{p:.3g}{' *' if p < 0.05 else ''}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    rho = {run.directory.name: run.analysis_figures.get("rank_correlation_metric") for run in analysed}
    undefined = [name for name, value in rho.items() if value is not None and not math.isfinite(value)]
    if undefined:
        lines += [
            f"Rank correlation undefined (no single head changed {named}, or too few heads) and left out for: "
            f"{', '.join(undefined)}.",
            "",
        ]
    unmeasured = [name for name, value in rho.items() if value is None]
    if unmeasured:
        lines += [f"Rank correlation not measured (single_heads=false) for: {', '.join(unmeasured)}.", ""]
    if clipped:
        low, high = metric_range(PRUNABLE)
        lines += [f"† clipped to the values the prunable fraction can take, [{low:g}, {high:g}].", ""]
    missing = [run for run in sweep.finished if not run.analysis]
    if missing:
        from src.provenance import shell_override

        named_runs = [
            run.directory.name
            + (f" (analysis {status})" if (status := run.analysis_status) not in (None, "completed") else "")
            for run in missing
        ]
        lines += [
            f"Not analysed: {', '.join(named_runs)}: analyse {'them' if len(missing) > 1 else 'it'} with python -m "
            f"src.analyze {shell_override('ckpt', sweep.directory)} (it skips the jobs analysed already).",
            "",
        ]
    return lines


def run_into_sweep(sweep_dir: Path, number: int, job: list[str]) -> str:
    """The command that runs a job the sweep never started, into the directory the sweep would have given it, so
    the report counts it with the others."""
    from src.provenance import shell_override

    directory = job_directory(sweep_dir, number, job)
    return " ".join(["python -m src.run", *(shlex.quote(o) for o in job), shell_override("hydra.run.dir", directory)])


def write_csv(sweep: Sweep, path: Path) -> None:
    metrics = sweep.metrics
    keys = [*sweep.varied, *sweep.fixed]
    figures = list(dict.fromkeys(key for run in sweep.runs for key in run.analysis_figures))  # analysis/<figure>
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["run", *keys, SEED, "status", *metrics, *(f"{ANALYSIS_DIR}/{key}" for key in figures)])
        for run in sweep.runs:
            row = [run.directory.name, *(run.settings.get(k, "") for k in keys), run.seed or "", run.status]
            # Full precision (repr): the table rounds, the file is for further analysis.
            row += [repr(run.final[m]) if run.final.get(m) is not None else "" for m in metrics]
            own = run.analysis_figures
            writer.writerow(row + [repr(own[key]) if key in own else "" for key in figures])


def write_report(sweep_dir: Path | str, baseline: str | None = None, tensorboard: bool = True) -> Sweep:
    sweep_dir = Path(sweep_dir)
    sweep = analyse(sweep_dir, baseline)
    figures = draw_figures(sweep)
    table = markdown(sweep)
    (sweep_dir / "report.md").write_text(table)
    write_csv(sweep, sweep_dir / "results.csv")
    if sweep.study is not None and sweep.study.trials:
        write_study_csv(sweep.study, sweep_dir / "study.csv")
    if tensorboard and figures:
        to_tensorboard(sweep, figures, table)
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)
    return sweep


class ReportAtSweepEnd(Callback):
    """Hydra callback (conf/config.yaml): every multirun ends with its report. The jobs' statuses it reads (from
    their run.json) also decide the command's exit status, whichever launcher ran them (`last_sweep`).

    A sweeper may itself fail once its jobs are done, before Hydra calls `on_multirun_end`: Optuna's raises
    "No trials are completed yet" when every trial failed. `started` keeps the sweep directory, so the command
    can still write the report (`report_after_sweeper_error`)."""

    started: Path | None = None
    last_sweep: Sweep | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        ReportAtSweepEnd.started = Path(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        report_sweep(Path(config.hydra.sweep.dir), config.get("report", {}).get("baseline"))


def report_sweep(sweep_dir: Path, baseline: str | None = None) -> Sweep:
    """Write the sweep's report (or say why there is none) and keep what it read in ReportAtSweepEnd.last_sweep."""
    try:
        sweep = write_report(sweep_dir, baseline)
    except (Exception, SystemExit) as error:  # the runs are done; a report problem must not hide them
        print(
            f"warning: no sweep report ({error}): run python -m src.report {shlex.quote(str(sweep_dir))}",
            file=sys.stderr,
        )
        sweep = Sweep(sweep_dir, read_runs(sweep_dir), [], {}, [], None, None)
    else:
        print(f"report: {sweep_dir / 'report.md'} ({sweep.progress})")
        warn_if_the_study_was_unread(sweep)
    ReportAtSweepEnd.last_sweep = sweep
    return sweep


def report_after_sweeper_error() -> Sweep | None:
    """The report of a sweep whose sweeper raised after starting it (None when no sweep was started, or its report
    was written): the jobs that ran are reported, whatever became of the sweeper."""
    if ReportAtSweepEnd.started is None or ReportAtSweepEnd.last_sweep is not None:
        return None
    if not any(ReportAtSweepEnd.started.glob("*/.hydra/overrides.yaml")):
        return None
    return report_sweep(ReportAtSweepEnd.started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", nargs="?", help="a sweep directory, e.g. outputs/multirun/<date>/<time>")
    parser.add_argument("--baseline", help="the configuration others are compared with, e.g. model.heads=4")
    parser.add_argument("--storage", help="without a sweep directory: the database of an Optuna study (its URL)")
    parser.add_argument("--study", help="with --storage: the study's name (hydra.sweeper.study_name)")
    args = parser.parse_args(argv)
    if args.sweep_dir is None or args.storage or args.study:
        print_stored_study(args.sweep_dir, args.storage, args.study)
        return
    directory = Path(args.sweep_dir)
    if not directory.exists():
        print(
            f"error: {directory} does not exist: give the sweep directory `python -m src.run -m ...` printed",
            file=sys.stderr,
        )
        sys.exit(2)
    from src.study import STUDY_FILE

    runs = any(directory.glob("*/.hydra/overrides.yaml"))
    if not directory.is_dir() or not (runs or (directory / STUDY_FILE).is_file()):
        print(
            f"error: {directory} is not a sweep directory (no <job>/.hydra/overrides.yaml): give the directory "
            "`python -m src.run -m ...` printed",
            file=sys.stderr,
        )
        sys.exit(2)
    sweep = write_report(directory, args.baseline)
    print(f"report: {directory / 'report.md'} ({sweep.progress})")
    warn_if_the_study_was_unread(sweep)


def warn_if_the_study_was_unread(sweep: Sweep) -> None:
    """A stored study the report could not read (its database unreachable from here, no password): the report
    says so in its study section, and the command in one line, so the missing table is not taken for none."""
    if sweep.study is not None and sweep.study.error is not None:
        print(
            f"warning: the report lists no trial of study {sweep.study.name}: {sweep.study.error}",
            file=sys.stderr,
        )
