"""The answer to a sweep: `python -m src.report <sweep dir> [--baseline model.heads=4]`.

Also run by itself at the end of every multirun (a Hydra callback, see conf/config.yaml), and cheap enough to run
again on a sweep still in progress. It reads only what the runs saved (.hydra/overrides.yaml, run.json,
metrics.json, and analysis/, patching/, lens/ and induction/ where a job has them), never re-runs anything, and
writes into the sweep directory:

    report.md     the varied settings as columns, the fixed ones (the task and model always) stated once above;
                  each final metric as mean ± std (n) over seeds (any axis named `seed`), the best in bold; for the
                  main metric a 95% t confidence interval and a Welch t-test against the baseline configuration
                  (the first value of the axis, or --baseline), or why there is none (one run, no spread); failed,
                  diverged, refused and unfinished runs in their own table, never in a mean
    results.csv   one row per run: settings, seed, status, every final metric, the analysis figures (analysis/...)
                  and the patching figures with what they measured (patching/metric, patching/clean, ...)
    curves.png, bars.png, heatmap.png, pruning.png   the figures (figures.py), with the numbers of the tables
    report/       the same figures and table as a TensorBoard run, next to the sweep's runs (each writing replaces
                  the one before)
    study.csv     for a search whose Optuna study is kept in a database (hydra.sweeper.storage, see src/study.py):
                  one row per trial of the study, whichever sweep or machine ran it; report.md then ends with the
                  same trials, best first, with their parameters, value and where each ran

A report.md it did not write (the user's notes) is never replaced: it then writes nothing (ReportRefused).

Only runs that can be compared are compared: runs of one task, ranked by one metric (Group). A sweep over tasks, or
a folder of unrelated single runs (`python -m src.report outputs/<date>`), gets a section per group, each with its
own table, baseline, statistics and figures (`bars_<group>.png`), and says so; runs of two groups never meet in a
mean, an interval or a test. Every command the report prints (analyse the jobs not analysed yet, run a job the
sweep never started) is one that runs as printed.

When jobs have a head analysis (src.analyze, or analyze_after_fit=true), report.md has a section with the analysis
figures per configuration (analysis/summary.json), why any is undefined, and results.csv their columns
(analysis/prunable_fraction, ...).

When jobs have an activation-patching analysis (src.analyze analysis=patching: patching/summary.json), report.md has
a section after it, per configuration mean ± std (n) over seeds with a 95% t interval of: the metric on the clean and
the corrupted inputs, the rank correlation of attribution with exact patching over the heads, the fraction restored
by the heads that matter most in the group (named as ablate.heads takes them), and the fraction kept by the paths
that matter most (path patching, where measured). Analyses of other pairs, another metric or direction get tables of
their own, never pooled; runs whose fractions are undefined are left out of those, each named with the reason; and
once one job of a group is patched, the finished ones that are not are named with the command that patches them.

The logit lens (src.analyze analysis=lens: lens/summary.json) and induction heads (analysis=induction:
induction/summary.json) each have a section after that, alike (src/sweep/causal_sections.py holds all three). The
lens: per configuration the loss of each layer's residual stream read as the output (from the embeddings, `embed`,
where read), beside the model's own loss, its top-1 agreement with the model, and where direct logit attribution is
defined the mean contributions to the target's logit of the components that write most of it. Induction: the loss on
repeated random sequences intact and with the induction heads ablated, the phase change step, how many induction and
previous-token heads and the strongest score of each kind, and then the heads each seed named, to paste into
ablate.heads (which head becomes one is the seed's accident: heads are listed per seed, never averaged by name).
Analyses that read differently (another stack, split, number of examples or sequences, checkpoint, or an ablation
the analysis added) get tables of their own, never pooled.

`python -m src.report --storage <url> --study <name>` prints the trials of a stored study without a sweep
directory (say, on a machine that ran none of them).
"""

from __future__ import annotations

import argparse
import csv
import difflib
import math
import re
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeGuard

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.cli.schema import is_experiment_setting, varied_keys
from src.provenance import RUN_FILE, module_command
from src.sweep.causal_sections import (
    PATCHING_MEASURE,
    induction_section,
    lens_section,
    patching_measure,
    patching_section,
)
from src.sweep.figures import draw_figures, to_tensorboard
from src.sweep.resume import resume_command
from src.sweep.runs import (
    ANALYSIS_DIR,
    PATCHING_DIR,
    SEED,
    Run,
    as_typed,
    is_search,
    job_directory,
    job_number,
    job_numbers,
    matched_jobs,
    planned_jobs,
    read_runs,
)
from src.sweep.statistics import (
    NOT_DEFINED,
    Test,
    interval_cell,
    mean_cell,
    p_cell,
    setting_cell,
    short,
    welch_test,
)
from src.sweep.trials import (
    StudyView,
    not_resumed,
    print_stored_study,
    read_study,
    study_summary,
    study_table,
    write_study_csv,
)
from src.training.metrics import describe_metric, higher_is_better, metric_range


@dataclass
class Configuration:
    settings: tuple[tuple[str, str], ...]  # the varied settings, seed excluded
    runs: list[Run]

    def values(self, metric: str) -> list[float]:
        """The runs' final values of `metric`; a non-finite one (inf, nan) has no place in a mean or a t-test and
        is left out here, and named under the table (`non_finite`)."""
        return [v for run in self.runs if is_finite(v := run.final.get(metric))]

    def non_finite(self, metric: str) -> list[str]:
        """The runs that recorded `metric` with a value that is not finite: null in metrics.json, which writes inf
        and nan so (JSON has neither), or inf and nan themselves (a metrics.json written otherwise). A run that did
        not record the metric at all (no test split) is not one of them."""
        return [run.directory.name for run in self.runs if metric in run.final and not is_finite(run.final[metric])]

    def analysis_values(self, figure: str) -> list[float]:
        """The finite values of one analysis figure (Run.analysis_figures) over the runs analysed."""
        return [v for run in self.runs if (v := run.analysis_figures.get(figure)) is not None and math.isfinite(v)]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={short(v)}" for k, v in self.settings) or "(all)"


def is_finite(value: Any) -> TypeGuard[float]:
    """Whether a final metric is a number a mean can take: not None (a non-finite value, as metrics.json keeps it),
    inf or nan."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class Group:
    """Runs that can be compared with one another: of one task, ranked by one metric. The report gives each group
    its own table, baseline and statistics, and never compares runs of two groups: a Welch test of a char_lm loss
    against a reverse exact match means nothing. Within a group every other setting that differs between runs
    (model, steps, data files) is a column of the table, so that what a row changed is in sight."""

    task: str  # "" when the runs do not say (job directories written by hand)
    main_metric: str | None
    runs: list[Run]  # every run of the group, completed or not, in job order
    varied: list[str]  # varied setting keys (no seed), in the order they appear
    fixed: dict[str, str]  # the same for every run: the task and model first, typed or not
    configurations: list[Configuration]  # of finished runs, in job order (an optimising sweeper's: best first)
    baseline: Configuration | None
    name: str = "all runs"  # the section's title: `task=reverse`, and `ranked by <metric>` when a task has two
    slug: str = ""  # what its figures' file names end with (`bars_reverse.png`); "" when the report has one group
    baseline_note: str | None = None  # why --baseline is not this group's baseline
    seeds: list[str] = field(default_factory=list)  # the seeds of its runs and of the sweep's jobs not run yet

    @property
    def finished(self) -> list[Run]:
        return [run for run in self.runs if run.status == "completed"]

    @property
    def metrics(self) -> list[str]:
        names: dict[str, None] = {}
        for run in self.finished:
            names.update(dict.fromkeys(run.final))
        return list(names)


@dataclass
class Sweep:
    """A sweep directory (or a folder of single runs, such as outputs/<date>/) as the report reads it."""

    directory: Path
    runs: list[Run]
    groups: list[Group]  # what can be compared, each reported on its own
    not_started: list[tuple[int, list[str]]] = field(default_factory=list)  # (job number, overrides) never run
    study: StudyView | None = None  # the stored Optuna study its trials belong to (every machine's), if any
    single_runs: bool = False  # runs each started on its own (not with -m): a day's folder, not one sweep

    @property
    def finished(self) -> list[Run]:
        return [run for run in self.runs if run.status == "completed"]

    @property
    def progress(self) -> str:
        """`3 of 4 runs completed`, counting the jobs that never started; and how many groups they were reported
        in, when more than one."""
        counted = f"{len(self.finished)} of {len(self.runs) + len(self.not_started)} runs completed"
        compared = self.compared
        if len(compared) > 1:
            counted += f"; {len(compared)} groups compared separately: {', '.join(g.name for g in compared)}"
        return counted

    @property
    def compared(self) -> list[Group]:
        """The groups the report has a section for: those with a completed run (the others' runs are listed with
        every run that did not complete); the one group, whatever its runs did, when there is only one."""
        if len(self.groups) < 2:
            return list(self.groups)
        return [group for group in self.groups if group.finished]


def comparable(runs: list[Run]) -> list[tuple[str, str | None, list[Run]]]:
    """The runs split into groups that can be compared, as (task, metric ranked by, runs), in job order: by task,
    and within a task by the metric the runs were ranked by (their objective=, else the task's main metric), when
    its completed runs were not all ranked by the same one. A run that did not complete joins its task's group of
    its own metric, or the task's first."""
    by_task: dict[str, list[Run]] = {}
    for run in runs:
        by_task.setdefault(run.task, []).append(run)
    groups = []
    for task, members in by_task.items():
        metrics = list(dict.fromkeys(r.ranked_by for r in members if r.status == "completed" and r.ranked_by))
        if len(metrics) < 2:
            metric = metrics[0] if metrics else next((r.ranked_by for r in members if r.ranked_by), None)
            groups.append((task, metric, members))
            continue
        for metric in metrics:
            own = [r for r in members if r.ranked_by == metric or (metric == metrics[0] and r.ranked_by not in metrics)]
            groups.append((task, metric, own))
    return groups


GROUPED_BY = ("task", "objective")  # the settings that split runs into groups (comparable), never columns


def make_group(
    task: str,
    main: str | None,
    runs: list[Run],
    swept: set[str],
    search: bool,
    planned: list[dict[str, str]] | None = None,
) -> Group:
    """One group's table: its varied and fixed settings and its configurations (runs pooled over seeds); the first
    configuration is its baseline (analyse may name another). `swept`: the keys the sweep's command line swept;
    `search`: whether an optimising sweeper ran it (its configurations best first); `planned`: the settings of
    each job the grid sweep set out to run for this group (planned_settings), started or not."""
    # What can split configurations: the experiment's settings, and whatever the sweep itself swept. Not a setting
    # that does not change the experiment and differs only because of how a job was run: a job resumed in place
    # has ckpt_path=last, a job rerun with another trainer.enable_progress_bar is still the same configuration.
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(k for k in run.settings if k in swept or is_experiment_setting(k)))
    # A sweep stopped before its second value of a setting ran (model.heads=1,2, stopped during heads=1) still varies
    # it: what its jobs were given says so, not only the runs that exist. Not the settings that split runs into
    # groups rather than columns (comparable): a task or objective whose jobs never ran is no column of this group.
    planned_values: dict[str, set[str]] = {}
    for job in planned or []:
        for key, value in job.items():
            if key not in GROUPED_BY:
                planned_values.setdefault(key, set()).add(value)
    varied = [
        k for k in keys if k != SEED and (len({run.value(k) for run in runs}) > 1 or len(planned_values.get(k, ())) > 1)
    ]
    # The task and the model are said even when nobody typed them (a day's runs on the default model); then every
    # setting typed for the runs that is the same in all of them, as typed.
    fixed = {"task": task} if task else {}
    models = {run.choices.get("model") for run in runs}
    # a pretrained model's config.json is its architecture: the model group's option (the default, tiny) is not
    pretrained = any((run.config.get("model") or {}).get("pretrained") for run in runs)
    if "model" not in varied and len(models) == 1 and None not in models and not pretrained:
        fixed["model"] = str(models.pop())
    first = runs[0]
    for k in keys:
        if k != SEED and k not in varied and k not in fixed:
            fixed[k] = first.settings[k] if k in first.settings else first.value(k)
    pooled: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.status == "completed":
            pooled.setdefault(tuple(run.value(k) for k in varied), []).append(run)
    # Shown as typed by the configuration's first run (the value it was swept with).
    shown = {
        values: tuple((k, members[0].settings.get(k, v)) for k, v in zip(varied, values))
        for values, members in pooled.items()
    }
    configurations = [Configuration(shown[values], members) for values, members in pooled.items()]
    if main and search:  # an optimising sweeper's trials: best first
        sign = -1.0 if higher_is_better(main) else 1.0
        configurations.sort(key=lambda c: sign * statistics.mean(c.values(main)) if c.values(main) else math.inf)
    baseline = configurations[0] if configurations else None
    seeds = {run.seed for run in runs if run.seed is not None} | planned_values.get(SEED, set())
    group = Group(task, main, runs, varied, fixed, configurations, baseline)
    group.seeds = sorted(seeds, key=lambda s: (len(s), s))
    return group


def planned_settings(sweep_dir: Path) -> list[dict[str, str]]:
    """The settings of each job a grid sweep set out to run (planned_jobs), as read_run reads a job's overrides:
    key -> value as typed, Hydra's own left out; none for another sweeper, or without multirun.yaml."""
    jobs = []
    for job in planned_jobs(sweep_dir) or []:
        settings = {}
        for override in job:
            key, _, value = str(override).partition("=")
            if not key.startswith("hydra."):
                settings[key.lstrip("+~")] = as_typed(value)
        jobs.append(settings)
    return jobs


def planned_for(planned: list[dict[str, str]], task: str) -> list[dict[str, str]]:
    """The planned jobs of one task's group: those given that task, and all of them when the sweep did not set it."""
    return [job for job in planned if "task" not in job or job["task"] == task]


def name_groups(groups: list[Group]) -> None:
    """Each group's title and figure suffix: `task=reverse`; `task=reverse, ranked by val/loss` where a task has
    groups of two metrics."""
    tasks = [group.task for group in groups]
    for group in groups:
        name = f"task={group.task}" if group.task else "all runs"
        if tasks.count(group.task) > 1:
            name += f", ranked by {group.main_metric}"
        group.name = name
        group.slug = re.sub(r"[^A-Za-z0-9.]+", "-", name.removeprefix("task=")).strip("-") if len(groups) > 1 else ""


class ReportRefused(Exception):
    """Input the report cannot honour (a --baseline it cannot read or match, a report.md it did not write), found
    before anything is written: src.report says it in one `error:` line (exit status 2), the end of a sweep in one
    `warning:` line (report_sweep), whose jobs' results stand."""


def baseline_choices(groups: list[Group]) -> str:
    """The configurations a --baseline can name, as the refusals list them: `model.heads=1; model.heads=2`."""
    listed = [
        ("" if len(groups) == 1 else f"{group.name}: ") + ("; ".join(c.label for c in group.configurations))
        for group in groups
        if group.configurations
    ]
    return " | ".join(listed) or "none finished"


def parse_baseline(baseline: str, groups: list[Group]) -> dict[str, str]:
    """--baseline as {setting: value}: `model.heads=4,model.norm_position=post`, split at the commas between
    settings, not at those inside a value's brackets (`ablate.heads=[0:0,0:1]`). A part that is not setting=value
    (`model.heads`, the `foo` of `model.heads=2,foo`) is refused, never dropped: the configuration it leaves would
    not be the one meant."""
    fix = f"name a configuration of the table as setting=value, one of ({baseline_choices(groups)})"
    if not baseline.strip():
        raise ReportRefused(f"--baseline is empty: {fix}")
    parts, depth, start = [], 0, 0
    for i, char in enumerate(baseline):
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth <= 0:
            parts.append(baseline[start:i])
            start = i + 1
    parts.append(baseline[start:])
    wanted: dict[str, str] = {}
    for part in parts:
        key, equals, value = (text.strip() for text in part.partition("="))
        if not (key and equals and value):
            raise ReportRefused(f"--baseline {baseline}: `{part.strip()}` is not setting=value: {fix}")
        if key in wanted:
            raise ReportRefused(f"--baseline {baseline} names {key} twice: give each setting once; {fix}")
        wanted[key] = value
    return wanted


def choose_baselines(groups: list[Group], baseline: str) -> None:
    """--baseline in every group that has a configuration matching it; a group without one keeps its first (and
    says so). ReportRefused when it cannot be read, or matches no group's configuration."""
    wanted = parse_baseline(baseline, groups)
    matched = False
    for group in groups:
        matches = [
            c
            for c in group.configurations
            if all(k in group.varied and same_value(c.runs[0].value(k), v) for k, v in wanted.items())
        ]
        if matches:
            group.baseline, matched = matches[0], True
        elif group.configurations:
            group.baseline_note = f"--baseline {baseline} matches none of this group's configurations"
    if not matched:
        raise ReportRefused(
            f"--baseline {baseline} matches no finished configuration: use one of the table's "
            f"({baseline_choices(groups)})"
        )


def analyse(sweep_dir: Path, baseline: str | None = None) -> Sweep:
    """What the sweep directory (or folder of runs) holds, grouped into what can be compared (see Group)."""
    from src.training.checkpoint import is_sweep_dir

    runs = read_runs(sweep_dir)
    swept, search = set(varied_keys(sweep_dir)), is_search(sweep_dir)
    planned = planned_settings(sweep_dir)
    groups = [
        make_group(task, main, members, swept, search, planned_for(planned, task))
        for task, main, members in comparable(runs)
    ]
    name_groups(groups)
    if baseline is not None:
        choose_baselines(groups, baseline)
    missing = not_started(sweep_dir)
    # Single runs (outputs/<date>/), as src.analyze tells them from a sweep; a sweep whose jobs have not written
    # their Hydra config yet is still one (multirun.yaml), and so is a folder of jobs that say nothing.
    said = any(sweep_dir.glob("*/.hydra/hydra.yaml"))
    single = said and not (sweep_dir / "multirun.yaml").is_file() and not is_sweep_dir(sweep_dir)
    main = groups[0].main_metric if groups else None
    return Sweep(sweep_dir, runs, groups, missing, read_study(sweep_dir, main), single)


def not_started(sweep_dir: Path) -> list[tuple[int, list[str]]]:
    """The jobs a grid sweep planned that no directory holds, each with the number its directory would get. Matched
    by their settings: a stacked sweep resumed with seeds added, or with its settings in another order, numbers its
    jobs otherwise than its plan (src/sweep/runs.py: job_numbers). A directory whose settings are no planned job's
    (a job run into the sweep by hand, with a setting changed) is the job its number names, as Hydra numbered it."""
    planned = planned_jobs(sweep_dir) or []
    keys, by_key = matched_jobs(sweep_dir, planned)
    held = {key: job_number(directory) for key, directory in by_key.items()}
    planned_keys = set(keys)
    by_number = {number for key, number in held.items() if key not in planned_keys}
    numbers = job_numbers(keys, held)
    return [
        (number, job)
        for index, (number, key, job) in enumerate(zip(numbers, keys, planned))
        if key not in held and index not in by_number
    ]


def study_section(sweep: Sweep) -> list[str]:
    """`## Study <name>`: every trial of the sweep's stored study, this sweep's and every other's (other machines
    share the study through its database), best first. Nothing for a grid sweep or an in-memory study."""
    from src.study import shown

    study = sweep.study
    if study is None:
        return []
    again = module_command("src.report", shlex.quote(str(sweep.directory)))
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
    running = study.running()
    if running:
        lines.append(
            f"{running} {'is' if running == 1 else 'are'} still running, so {'has' if running == 1 else 'have'} no "
            f"value yet: run {again} again once {'it ends' if running == 1 else 'they end'}."
        )
    lines += not_resumed(study, sweep.directory)
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
    """report.md: what ran, then a section per group of comparable runs (one group: no section heading), the runs
    that did not complete, the stored study's trials, the figures."""
    if sweep.single_runs:
        lines = [f"# Report of the runs in {sweep.directory.name}", ""]
    else:
        lines = [f"# Sweep report: {sweep.directory.name}", ""]
    done, total = len(sweep.finished), len(sweep.runs) + len(sweep.not_started)
    lines.append(f"{done} of {total} runs completed" + ("" if done == total else " (the rest are listed below)") + ".")
    if sweep.single_runs:
        lines.append("They are single runs, each started on its own (not one sweep with -m).")
    if sweep.not_started:
        lines.append(
            f"{len(sweep.not_started)} of the sweep's {total} jobs never started (the sweep was stopped before them): "
            "each is listed below with the command that runs it into this sweep."
        )
        whole = resume_command(sweep.directory)
        if whole is not None:  # src/sweep/resume.py
            lines.append(
                f"The sweep's own command runs them all, resumes its interrupted jobs and keeps the rest: `{whole}`."
            )
    if total and not done:
        lines.append("No run completed, so there is nothing to compare: each run's reason is listed below.")
    compared = sweep.compared
    if len(compared) > 1:
        tasks = len({group.task for group in compared})
        lines += [
            f"They are of {tasks} task{'s' if tasks > 1 else ''}"
            + (" and ranked by different metrics" if tasks < len(compared) else "")
            + ", so they are reported in groups that can be compared: a section per task"
            + (" and metric" if tasks < len(compared) else "")
            + ", each with its own table, baseline and statistics. Runs in different sections are never compared.",
            "",
        ]
        for group in compared:
            count, unfinished = len(group.runs), len(group.runs) - len(group.finished)
            not_in_table = f", {unfinished} of them did not complete (listed at the end)" if unfinished else ""
            lines += [f"## {group.name} ({count} run{'s' if count != 1 else ''}{not_in_table})", ""]
            lines += group_section(sweep, group, level=3)
            lines += [f"![{name}]({name})" for name in figure_files(sweep, group)] + [""]
    else:
        for group in compared:  # one group: the sweep's own table, without a section of its own
            lines += group_section(sweep, group, level=2)
    lines += unfinished_section(sweep)
    lines += study_section(sweep)
    if len(compared) == 1:
        lines += [f"![{name}]({name})" for name in figure_files(sweep, compared[0])]
    return "\n".join(lines).rstrip("\n") + "\n"


def figure_files(sweep: Sweep, group: Group) -> list[str]:
    """The figures drawn for a group (figures.py), as files beside report.md."""
    suffix = f"_{group.slug}" if group.slug else ""
    names = [f"{name}{suffix}.png" for name in ("curves", "bars", "heatmap")]
    if any(run.pruning for run in group.finished):
        names.append(f"pruning{suffix}.png")
    return [name for name in names if (sweep.directory / name).is_file()]


def group_section(sweep: Sweep, group: Group, level: int) -> list[str]:
    """A group's settings, its table of configurations (each metric as mean ± std (n) over seeds, the main metric's
    interval and test against the baseline), what each missing number means, and the sections of its jobs'
    analyses: head pruning, activation patching, the logit lens, induction heads (causal_sections.py)."""
    lines = []
    if group.fixed:
        lines.append("Fixed for every run: " + ", ".join(f"`{k}={v}`" for k, v in group.fixed.items()) + ".")
    if group.seeds:
        lines.append(f"Seeds ({SEED}): {', '.join(group.seeds)}; each cell is mean ± std (n) over them.")
    main = group.main_metric
    if main:
        about = describe_metric(main)
        lines.append(
            f"Main metric: `{main}` ({about + '; ' if about else ''}{'higher' if higher_is_better(main) else 'lower'} "
            "is better), with its 95% t interval and a two-sided Welch t-test against the baseline "
            f"({baseline_label(group.baseline)}); * p < 0.05."
        )
    if group.baseline_note:
        lines.append(f"{group.baseline_note}: its first configuration is its baseline.")
    lines.append("")
    metrics = group.metrics
    if group.configurations and metrics:
        lines += answer(group)
        lines += group_table(group, metrics)
    lines += pruning_section(sweep, group, level)
    lines += patching_section(sweep, group, level)
    lines += lens_section(sweep, group, level)
    lines += induction_section(sweep, group, level)
    return lines


def best_of(configurations: list[Configuration], metric: str) -> set[int]:
    """The configurations (by index) with the best mean of `metric`, ties all; none when nothing is better than
    anything else (one configuration, or every one with the same mean): bold that marks every row says nothing."""
    means = {i: statistics.mean(v) for i, c in enumerate(configurations) if (v := c.values(metric))}
    top = (max if higher_is_better(metric) else min)(means.values(), default=None)
    best = {i for i, mean in means.items() if mean == top}
    return best if len(best) < len(means) else set()


def answer(group: Group) -> list[str]:
    """The group's answer, before its table: the configuration best on the main metric, and how it compares with
    the baseline (the Welch test's p-value, or why there is none). Nothing for a single configuration."""
    main = group.main_metric
    if not main or len(group.configurations) < 2:
        return []
    best = [group.configurations[i] for i in sorted(best_of(group.configurations, main))]
    if not best:
        return [f"**No configuration is best on `{main}`**: every one has the same mean.", ""]
    top = best[0]
    named = " and ".join(f"`{c.label}`" for c in best) + (" (tied)" if len(best) > 1 else "")
    text = f"**Best on `{main}`: {named}**, {mean_cell(top.values(main))}"
    baseline = group.baseline
    if baseline is None or any(c is baseline for c in best):
        return [text + ": the baseline" + (" is among them." if len(best) > 1 else " itself."), ""]
    test = welch_test(top.values(main), baseline.values(main))
    versus = f"against the baseline `{baseline.label}`, {mean_cell(baseline.values(main))}"
    if test.p is None:
        return [f"{text}, {versus}: no test ({(test.why or '').removeprefix('n/a: ')}).", ""]
    verdict = "a difference at p < 0.05" if test.p < 0.05 else "no difference at p < 0.05"
    return [f"{text}, {versus}: p = {test.p:.3g}, {verdict}.", ""]


def group_table(group: Group, metrics: list[str]) -> list[str]:
    """The table of a group's configurations, and under it what a cell without a number means."""
    lines = []
    best = {metric: best_of(group.configurations, metric) for metric in metrics}  # the bold cells
    main = group.main_metric
    header = [*group.varied, *metrics]
    if main:
        header += ["95% CI", "vs baseline (p)"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + " --- |" * len(header))
    clipped = False
    missing: set[str] = set()  # why an interval or a p-value is missing (ONE_RUN, NO_SPREAD)
    for index, configuration in enumerate(group.configurations):
        cells = [setting_cell(dict(configuration.settings)[k]) for k in group.varied]
        for metric in metrics:
            values = configuration.values(metric)
            if not values:
                cells.append("-")
                continue
            cell = mean_cell(values)
            cells.append(f"**{cell}**" if index in best.get(metric, set()) else cell)
        if main:
            values = configuration.values(main)
            interval, was_clipped = interval_cell(values, main) if values else ("-", False)
            cells.append(interval)
            clipped = clipped or was_clipped
            if configuration is group.baseline:
                cells.append("baseline")
            else:
                test = welch_test(values, group.baseline.values(main)) if group.baseline else Test(None)
                cells.append(p_cell(test))
                missing.update({test.why} if test.why else set())
            missing.update({interval} & NOT_DEFINED.keys())
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for metric in metrics:
        names = [name for c in group.configurations for name in c.non_finite(metric)]
        if names:
            lines += [f"Left out of `{metric}`: the non-finite values of {', '.join(names)}.", ""]
    if clipped and main:
        low, high = metric_range(main)
        lines += [f"† clipped to the values `{main}` can take, [{low:g}, {high:g}].", ""]
    for why in sorted(missing):
        lines += [f"{why}: {NOT_DEFINED[why]}.", ""]
    lines += shared_seeds(group)
    return lines


def shared_seeds(group: Group) -> list[str]:
    """A line per configuration pooling runs of one seed: reruns, not independent samples (on the same machine they
    repeat the same numbers, so their spread says nothing of the seed's effect)."""
    lines = []
    for configuration in group.configurations:
        by_seed: dict[str, list[str]] = {}
        for run in configuration.runs:
            if run.seed is not None:
                by_seed.setdefault(run.seed, []).append(run.directory.name)
        for seed, names in by_seed.items():
            if len(names) > 1:
                lines += [
                    f"`{configuration.label}`: {', '.join(names)} all ran with {SEED}={seed}: reruns, not independent "
                    f"samples, yet each counts in n; give each run its own {SEED} to measure the spread over seeds.",
                    "",
                ]
    return lines


def unfinished_section(sweep: Sweep) -> list[str]:
    """`## Runs that did not complete`: each with its status and reason (the task too, when the report has several
    groups), and each job the sweep never started with the command that runs it into the sweep."""
    unfinished = [run for run in sweep.runs if run.status != "completed"]
    if not unfinished and not sweep.not_started:
        return []
    from src.sweep.resume import resume_command

    by_task = len(sweep.groups) > 1
    columns = ["run", *(["task"] if by_task else []), "status", "reason"]
    lines = ["## Runs that did not complete", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    whole = resume_command(sweep.directory) if any(run.status == "running" for run in unfinished) else None
    for run in unfinished:
        reason = run.error or ""
        if run.status == "unknown" and not run.error:
            reason = f"no {RUN_FILE}: it ended before it recorded anything, or has not started"
        if run.status == "running" and not run.error and not run.resume:
            # A job killed outright (kill -9, the out-of-memory killer, its machine lost) could not record its end
            reason = f"its {RUN_FILE} says it is running: it still runs, or it was killed before it could say so"
            reason += f"; if killed, the sweep's own command resumes it: `{whole}`" if whole else ""
        if run.resume:  # run.json's own command: the run goes on from its checkpoint, in its directory
            reason += f"{'; ' if reason else ''}resume it: `{run.resume}`"
        cells = [run.directory.name, *([run.task or "?"] if by_task else []), run.status, reason]
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    for number, job in sweep.not_started:
        command = run_into_sweep(sweep.directory, number, job).replace("|", "\\|")
        cells = [job_directory(sweep.directory, number, job).name, *(["?"] if by_task else [])]
        lines.append("| " + " | ".join([*cells, "not started", f"run it: `{command}`"]) + " |")
    return [*lines, ""]


PRUNABLE = "analysis/prunable_fraction"  # its range (src/training/metrics.py) clips the interval to [0, 1]


def what_was_analysed(run: Run) -> str:
    """`val exact_match, tolerance 5%`: the split, metric and tolerance a job's analysis figures refer to."""
    summary = run.analysis or {}
    tolerance = summary.get("tolerance")
    shown = f"{100 * tolerance:g}%" if isinstance(tolerance, (int, float)) else "?"
    return f"{summary.get('split', '?')} `{summary.get('metric', '?')}`, tolerance {shown}"


def analyse_command(sweep: Sweep, runs: list[Run], overrides: list[str] | None = None) -> str:
    """The src.analyze command(s) that analyse `runs`: one for the whole sweep (src.analyze skips the jobs analysed
    already), or one per run of a folder of single runs, which src.analyze does not take as a whole; `overrides`
    (each one shell argument, `analysis=patching` ...) after ckpt=."""
    from src.provenance import shell_override

    extra = overrides or []
    # report.md names this machine's directories, read where it was written: this interpreter (module_command)
    if not sweep.single_runs:
        command = module_command("src.analyze", shell_override("ckpt", sweep.directory), *extra)
        return f"analyse {'them' if len(runs) > 1 else 'it'} with `{command}` (it skips the jobs analysed already)"
    commands = [f"`{module_command('src.analyze', shell_override('ckpt', run.directory), *extra)}`" for run in runs]
    return f"analyse {'each' if len(runs) > 1 else 'it'} with " + ", ".join(commands)


def pruning_section(sweep: Sweep, group: Group, level: int = 2) -> list[str]:
    """`Head pruning (src.analyze)`: per configuration (the main table's rows), mean ± std (n) over seeds of the
    analysis figures of its jobs (analysis/summary.json), the prunable fraction's 95% interval and a Welch test
    against the baseline, why a figure is undefined where it is, and the finished jobs that have no analysis.
    Analyses that measured differently (another split, metric or tolerance) get a table each: a prunable fraction
    at a 5% tolerance is not pooled with one at 10%. Nothing when no job was analysed."""
    analysed = [run for run in group.finished if run.analysis]
    if not analysed or not group.configurations:
        return []
    measures = list(dict.fromkeys(what_was_analysed(run) for run in analysed))
    lines = [f"{'#' * level} Head pruning (src.analyze)", ""]
    if len(measures) > 1:
        lines += [
            "The analyses did not all measure the same (split, metric or tolerance), so each measure has a table of "
            "its own; they are not pooled.",
            "",
        ]
    for number, measure in enumerate(measures):
        own = [run for run in analysed if what_was_analysed(run) == measure]
        lines += pruning_table(group, own, measure, explained=number > 0)
    missing_runs = [run for run in group.finished if not run.analysis]
    if missing_runs:
        named_runs = [
            run.directory.name
            + (f" (analysis {status})" if (status := run.analysis_status) not in (None, "completed") else "")
            for run in missing_runs
        ]
        lines += [f"Not analysed: {', '.join(named_runs)}: {analyse_command(sweep, missing_runs)}.", ""]
    return lines


def pruning_table(group: Group, analysed: list[Run], measure: str, explained: bool = False) -> list[str]:
    """The pruning table of the analyses `analysed`, which all measured the same (`measure`, what_was_analysed);
    what its columns are, unless `explained` above."""
    summary = analysed[0].analysis or {}
    metric = str(summary.get("metric", "?"))
    named = f"`{metric}`"
    description = summary.get("metric_description")
    sites = list(dict.fromkeys(key for run in analysed for key in run.analysis_figures if key.startswith("pruned/")))
    # The group's configurations, each with only these analysed runs (none: the row shows `-`).
    own = {id(run) for run in analysed}
    configurations = [Configuration(c.settings, [r for r in c.runs if id(r) in own]) for c in group.configurations]
    baseline = configurations[group.configurations.index(group.baseline)] if group.baseline else None
    lines = [
        f"Each analysed job's best checkpoint, on {measure}." + (f" {named}: {description}." if description else "")
    ]
    if not explained:
        lines.append(
            f"Unablated: {named} of the whole model. Prunable: the largest fraction of the heads removed (least "
            f"important first, importance re-scored after each step) before {named} drops by more than the "
            "tolerance (a fraction of its unablated value). Rank correlation: Spearman's rho of the heads' importance "
            f"with the exact drop of {named} when each is removed alone. `<site>` pruned: the fraction of that site's "
            "heads removed by then. Each cell is mean ± std (n) over seeds; the prunable fraction has its 95% t "
            f"interval and a two-sided Welch t-test against the baseline ({baseline_label(group.baseline)}); "
            "* p < 0.05."
        )
    lines.append("")
    columns = [
        ("baseline", f"{metric} unablated"),
        ("prunable_fraction", "prunable"),
        ("rank_correlation_metric", "rank correlation"),
    ]
    columns += [(key, f"{key.removeprefix('pruned/')} pruned") for key in sites]
    header = [*group.varied, *(title for _, title in columns), "95% CI (prunable)", "vs baseline (p)"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + " --- |" * len(header))
    clipped = False
    missing: set[str] = set()
    compared_with = baseline.analysis_values("prunable_fraction") if baseline else []
    for configuration in configurations:
        cells = [setting_cell(dict(configuration.settings)[k]) for k in group.varied]
        for key, _ in columns:
            values = configuration.analysis_values(key)
            cells.append(mean_cell(values) if values else "-")
        values = configuration.analysis_values("prunable_fraction")
        interval, was_clipped = interval_cell(values, PRUNABLE) if values else ("-", False)
        cells.append(interval)
        clipped = clipped or was_clipped
        missing.update({interval} & NOT_DEFINED.keys())
        if configuration is baseline:
            cells.append("baseline")
        elif not values or not compared_with:
            cells.append("-")
        else:
            test = welch_test(values, compared_with)
            cells.append(p_cell(test))
            missing.update({test.why} if test.why else set())
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += undefined_figures(analysed)
    if clipped:
        low, high = metric_range(PRUNABLE)
        lines += [f"† clipped to the values the prunable fraction can take, [{low:g}, {high:g}].", ""]
    for why in sorted(missing):
        lines += [f"{why}: {NOT_DEFINED[why]}.", ""]
    return lines


def undefined_figures(analysed: list[Run]) -> list[str]:
    """A line per cause of an undefined analysis figure (left out of its mean), naming its runs: the prunable
    fraction (and with it each site's share pruned) and the rank correlation, each with the cause its analysis
    recorded; and the runs whose rank correlation was not measured."""
    lines = []
    for figure, title in (
        ("prunable_fraction", "Prunable fraction (and each site's share pruned)"),
        ("rank_correlation_metric", "Rank correlation"),
    ):
        by_cause: dict[str, list[str]] = {}
        for run in analysed:
            cause = run.analysis_undefined.get(figure)
            if cause is not None:
                by_cause.setdefault(cause, []).append(run.directory.name)
        for cause, names in by_cause.items():
            lines += [f"{title} undefined, and left out, for {', '.join(names)}: {cause}.", ""]
    unmeasured = [run.directory.name for run in analysed if "rank_correlation_metric" not in run.analysis_figures]
    if unmeasured:
        lines += [f"Rank correlation not measured (single_heads=false) for: {', '.join(unmeasured)}.", ""]
    return lines


def run_into_sweep(sweep_dir: Path, number: int, job: list[str]) -> str:
    """The command that runs a job the sweep never started, into the directory the sweep would have given it, so
    the report counts it with the others."""
    from src.provenance import shell_override

    directory = job_directory(sweep_dir, number, job)
    # A resumed sweep's jobs carry its ckpt_path=last; a job that never started has nothing to resume, and
    # ckpt_path=last into a directory that does not exist yet is refused
    job = [o for o in job if o.lstrip("+~") != "ckpt_path=last"]
    # in report.md beside run.json's `resume` commands, and like them this machine's (module_command)
    return module_command("src.run", *(shlex.quote(o) for o in job), shell_override("hydra.run.dir", directory))


def write_csv(sweep: Sweep, path: Path) -> None:
    """results.csv: one row per run, every setting of the report's tables, its seed, status and final metrics (full
    precision), the analysis figures, the patching analysis's headline figures with what they measured; and its
    group when the report has several."""
    metrics = list(dict.fromkeys(metric for group in sweep.groups for metric in group.metrics))
    keys = list(dict.fromkeys(key for group in sweep.groups for key in [*group.varied, *group.fixed]))
    figures = list(dict.fromkeys(key for run in sweep.runs for key in run.analysis_figures))  # analysis/<figure>
    # patching/<figure>, after what they measured (patching/metric, ...): runs patched alike compare, others not
    patched = list(dict.fromkeys(key for run in sweep.runs for key in run.patching_figures))
    measured = PATCHING_MEASURE if any(run.patching for run in sweep.runs) else ()
    group_of = {id(run): group.name for group in sweep.groups for run in group.runs}
    grouped = len(sweep.groups) > 1
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        head = ["run", *(["group"] if grouped else []), *keys, SEED, "status", *metrics]
        head += [f"{ANALYSIS_DIR}/{key}" for key in figures]
        writer.writerow(head + [f"{PATCHING_DIR}/{key}" for key in [*measured, *patched]])
        for run in sweep.runs:
            row = [run.directory.name, *([group_of[id(run)]] if grouped else [])]
            row += [run.settings[k] if k in run.settings else run.value(k) for k in keys]
            row += [run.seed or "", run.status]
            # Full precision (repr): the table rounds, the file is for further analysis.
            row += [repr(run.final[m]) if run.final.get(m) is not None else "" for m in metrics]
            own = run.analysis_figures
            row += [repr(own[key]) if key in own else "" for key in figures]
            row += [str(value) if (value := patching_measure(run, key)) is not None else "" for key in measured]
            own = run.patching_figures
            writer.writerow(row + [repr(own[key]) if key in own else "" for key in patched])


def write_report(sweep_dir: Path | str, baseline: str | None = None, tensorboard: bool = True) -> Sweep:
    """report.md, results.csv, study.csv, the figures and their TensorBoard copy, into the sweep directory; whoever
    asks (src.report, the end of a sweep, src.analyze). ReportRefused, with nothing written, when the directory's
    report.md is someone's own or the baseline cannot be chosen."""
    sweep_dir = Path(sweep_dir)
    refuse_to_replace(sweep_dir)
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


# How report.md begins (markdown): a report.md that does not is someone's own file, never replaced.
REPORT_TITLES = ("# Sweep report: ", "# Report of the runs in ")


def refuse_to_replace(sweep_dir: Path) -> None:
    """ReportRefused when the sweep directory's report.md is not one the report wrote (the user's notes): it is
    kept, and the report, its figures and results.csv are not written either, so that they never disagree with the
    report.md beside them."""
    own = sweep_dir / "report.md"
    if not own.exists():
        return
    if own.is_file():
        with open(own, "rb") as file:  # its first line says whose it is
            ours = file.read(64).decode(errors="replace").startswith(REPORT_TITLES)
        if ours:
            return
    again = module_command("src.report", shlex.quote(str(sweep_dir)))
    raise ReportRefused(
        f"{own} is not a report src.report wrote, so it is kept and no report was written (nor its figures and "
        f"results.csv): move it away, then run {again}"
    )


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
    except ReportRefused as error:  # the user's report.md, a baseline that matches nothing: the runs stand
        print(f"warning: no sweep report: {error}", file=sys.stderr)
        sweep = Sweep(sweep_dir, read_runs(sweep_dir), [])
    except (Exception, SystemExit) as error:  # the runs are done; a report problem must not hide them
        print(
            f"warning: no sweep report ({error}): run {module_command('src.report', shlex.quote(str(sweep_dir)))}",
            file=sys.stderr,
        )
        sweep = Sweep(sweep_dir, read_runs(sweep_dir), [])
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


def refuse(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class _OneLineParser(argparse.ArgumentParser):
    """argparse's refusals (its usage, then `error: ...`: four lines) as the other commands give theirs: one
    `error:` line with the fix, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        refuse(f"{message}: {self.prog} --help lists the options")


class _Once(argparse.Action):
    """An option given at most once: argparse keeps the last of several silently (two --baseline: which one?)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            refuse(
                f"{option_string} given twice ({getattr(namespace, self.dest)}, {values}): a report compares with "
                f"one baseline: give {option_string} once"
            )
        setattr(namespace, self.dest, values)


# The report's options, for the one that a mistyped option probably meant.
OPTIONS = ("--baseline", "--storage", "--study", "--help")
# key=value forms of the sweep directory: the other commands take settings so (hydra.sweep.dir= is src.run's)
DIRECTORY_KEYS = ("sweep_dir", "sweep", "dir", "directory", "hydra.sweep.dir", "ckpt")


def refuse_what_the_report_does_not_take(positional: list[str], extra: list[str], prog: str) -> None:
    """One `error:` line with the fix for what argparse would answer with its usage (and, for a sweep directory
    given as key=value, with "does not exist"): an unknown option (the option it probably meant), a key=value
    argument (the directory on its own, or the option it names), a second directory. `positional`: the arguments
    that are no option, the sweep directory first; `extra`: what argparse did not take."""
    for argument in extra:
        if argument.startswith("-") and len(argument) > 1:
            option = argument.split("=", 1)[0]
            close = difflib.get_close_matches(option, OPTIONS, n=1, cutoff=0.6)
            fix = f"did you mean {close[0]}?" if close else "it takes a sweep directory, --baseline, --storage, --study"
            refuse(f"{option} is not an option of {prog}: {fix} ({prog} --help lists the options)")
    for argument in positional:
        key, equals, value = argument.partition("=")
        if not equals or Path(argument).expanduser().exists():
            continue
        if key.lstrip("+") in ("baseline", "storage", "study"):
            refuse(f"{argument}: {key} is an option of {prog}: write it --{key} {shlex.quote(value)}")
        if key.lstrip("+") in DIRECTORY_KEYS or (value and Path(value).expanduser().is_dir()):
            refuse(
                f"{argument}: {prog} takes the sweep directory on its own, not as key=value: "
                f"{prog} {shlex.quote(value)}"
            )
        # a setting (model.heads=2): the configuration to compare with, the one setting the report takes
        refuse(
            f"{argument}: {prog} takes no settings; to compare the sweep's configurations with this one, write it "
            f"--baseline {shlex.quote(argument)}"
        )
    if len(positional) > 1:
        refuse(
            f"{len(positional)} directories given ({', '.join(positional)}): a report is of one sweep: give one "
            f"({prog} {shlex.quote(positional[0])}), and run the command again for each of the others"
        )


def main(argv: list[str] | None = None) -> None:
    from src.cli.command_line import typed_command
    from src.cli.startup import started

    started()  # Ctrl-C from here on is the report's to handle (src/cli/startup.py)

    prog = typed_command("src.report")  # transformer-report when started through the console script
    examples = [
        ("outputs/multirun/<date>/<time>", "a sweep's report.md, written again"),
        ("outputs/multirun/<date>/<time> --baseline model.heads=4", "compared with another configuration"),
        ("outputs/<date>", "a day's single runs, a section per task"),
        ("--storage sqlite:///studies.db --study <name>", "a stored Optuna study's trials"),
    ]
    width = max(len(f"{prog} {args}") for args, _ in examples)
    epilog = "examples:\n" + "\n".join(f"  {f'{prog} {args}':<{width}}  {what}" for args, what in examples)
    parser = _OneLineParser(
        prog=prog,
        description=__doc__.splitlines()[0],
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sweep_dir", nargs="?", help="a sweep directory (outputs/multirun/<date>/<time>) or a folder of runs"
    )
    parser.add_argument(
        "--baseline", action=_Once, help="the configuration others are compared with, e.g. model.heads=4"
    )
    parser.add_argument("--storage", help="without a sweep directory: the database of an Optuna study (its URL)")
    parser.add_argument("--study", help="with --storage: the study's name (hydra.sweeper.study_name)")
    args, extra = parser.parse_known_args(argv)
    positional = [args.sweep_dir] if args.sweep_dir is not None else []
    refuse_what_the_report_does_not_take(positional + [a for a in extra if not a.startswith("-")], extra, prog)
    if args.sweep_dir is None or args.storage or args.study:
        print_stored_study(args.sweep_dir, args.storage, args.study)
        return
    directory = Path(args.sweep_dir)
    if not directory.exists():
        refuse(
            f"{directory} does not exist: give the sweep directory `{module_command('src.run', '-m', '...')}` printed"
        )
    from src.study import STUDY_FILE

    runs = any(directory.glob("*/.hydra/overrides.yaml"))
    if directory.is_dir() and not runs and (directory / ".hydra" / "overrides.yaml").is_file():
        refuse(
            f"{directory} is one run: a report compares runs; give the folder that holds it and its neighbours "
            f"({prog} {shlex.quote(str(directory.resolve().parent))})"
        )
    if not directory.is_dir() or not (runs or (directory / STUDY_FILE).is_file()):
        refuse(
            f"{directory} is not a sweep directory (no <job>/.hydra/overrides.yaml): give the directory "
            f"`{module_command('src.run', '-m', '...')}` printed, or a folder of runs such as outputs/<date>"
        )
    try:
        sweep = write_report(directory, args.baseline)
    except ReportRefused as error:
        refuse(str(error))
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
