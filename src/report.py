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
import json
import math
import re
import shlex
import statistics
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.provenance import RUN_FILE
from src.schema import is_experiment_setting, varied_keys
from src.training.metrics import higher_is_better, metric_range
from src.training.metrics_file import read_metrics

SEED = "seed"


@dataclass
class Run:
    directory: Path
    settings: dict[str, str]  # the job's overrides (Hydra's own left out), key -> value as typed
    status: str  # completed | failed | diverged | interrupted | running | unknown
    error: str | None
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json
    config: dict[str, Any] = field(default_factory=dict)  # the composed config (.hydra/config.yaml)
    choices: dict[str, Any] = field(default_factory=dict)  # the option of each config group (.hydra/hydra.yaml)
    # The head analysis (src.analyze, or analyze_after_fit=true): analysis/summary.json, None without one; the
    # pruning curve from analysis/pruning.csv as (% of heads removed, metric); what run.json says became of an
    # analysis after training ("completed", "failed: ...", "interrupted ...", "running"), None when none was asked.
    analysis: dict[str, Any] | None = None
    pruning: list[tuple[float, float]] = field(default_factory=list)
    analysis_status: str | None = None

    @property
    def final(self) -> dict[str, float | None]:
        return self.metrics.get("final", {})

    @property
    def seed(self) -> str | None:
        return self.settings.get(SEED)

    @property
    def analysis_figures(self) -> dict[str, float]:
        """The analysis's headline figures (HeadAnalysis.summary(): baseline, prunable_fraction, heads,
        rank_correlation_metric, ...) and, as `pruned/<site>`, the fraction of each site's heads the pruning removed
        within the tolerance; empty without an analysis."""
        if not self.analysis:
            return {}
        figures = {  # an undefined figure (null in summary.json: e.g. no prunable fraction) is NaN, never dropped
            key: float(value) if value is not None else math.nan
            for key, value in (self.analysis.get("figures") or {}).items()
            if value is None or isinstance(value, (int, float))
        }
        for site in self.analysis.get("sites") or []:
            value = site.get("pruned_within_tolerance")
            if isinstance(value, (int, float)):
                figures[f"pruned/{site.get('site')}"] = float(value)
        return figures

    @property
    def analysis_failed(self) -> bool:
        """Trained, but its analysis after training failed or was interrupted (the run itself stands)."""
        return self.status == "completed" and str(self.analysis_status).startswith(("failed", "interrupted"))

    def value(self, key: str) -> str:
        """What the run had for a setting, in one spelling for every run: the composed config's value (a group's
        chosen option), so that `lr=3e-3` typed in one job and the default 0.003 of another compare equal, and a
        job that was not given a swept key still has its value. As typed when the config is not at hand."""
        if key in self.choices:
            return str(self.choices[key])
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return self.settings.get(key, "")
            node = node[part]
        return json.dumps(node) if isinstance(node, (dict, list)) else str(node)


# What Hydra's sweeper escapes when it writes each job's overrides (`[cross:0:1]` becomes `[cross\:0\:1]`).
HYDRA_ESCAPED = re.compile(r"\\([\\()\[\]{}:=, \t])")


def as_typed(value: str) -> str:
    """An override's value as the user typed it, without the backslashes Hydra's sweeper added."""
    return HYDRA_ESCAPED.sub(r"\1", value)


def job_number(directory: Path) -> int:
    head = directory.name.split("_", 1)[0]
    return int(head) if head.isdigit() else 1 << 30


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def read_runs(sweep_dir: Path) -> list[Run]:
    """Every job directory of a sweep (those with .hydra/overrides.yaml), in job order."""
    runs = []
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml"), key=lambda p: job_number(p.parents[1])):
        directory = overrides_file.parents[1]
        overrides = _read_yaml(overrides_file) or []
        settings = {}
        for override in overrides:
            key, _, value = str(override).partition("=")
            if not key.startswith("hydra."):
                settings[key.lstrip("+~")] = as_typed(value)
        try:
            record = json.loads((directory / RUN_FILE).read_text())
        except (OSError, ValueError):
            record = {"status": "unknown"}
        config = _read_yaml(directory / ".hydra" / "config.yaml")
        hydra = _read_yaml(directory / ".hydra" / "hydra.yaml")
        try:
            choices = dict(hydra["hydra"]["runtime"]["choices"])
        except (KeyError, TypeError, ValueError):
            choices = {}
        runs.append(
            Run(
                directory,
                settings,
                record.get("status", "unknown"),
                record.get("error"),
                read_metrics(directory) or {},
                config if isinstance(config, dict) else {},
                choices,
                *read_analysis(directory),
                analysis_status=record.get("analysis"),
            )
        )
    return runs


ANALYSIS_DIR = "analysis"  # src.analyze's, <run>/analysis/


def read_analysis(directory: Path) -> tuple[dict[str, Any] | None, list[tuple[float, float]]]:
    """A job's head analysis: its summary.json (None when there is none, or it cannot be read) and its pruning
    curve from pruning.csv as (% of heads removed, the metric), empty when missing."""
    try:
        summary = json.loads((directory / ANALYSIS_DIR / "summary.json").read_text())
    except (OSError, ValueError):
        return None, []
    if not isinstance(summary, dict):
        return None, []
    curve = []
    try:
        with open(directory / ANALYSIS_DIR / "pruning.csv", newline="") as file:
            for row in list(csv.reader(file))[1:]:  # fraction_removed, heads_removed, <metric>, loss, removed
                curve.append((100 * float(row[0]), float(row[2])))
    except (OSError, ValueError, IndexError):
        curve = []
    return summary, curve


def is_search(sweep_dir: Path) -> bool:
    """Whether the sweep was run by an optimising sweeper (Optuna) rather than a grid: its config has a direction.
    Hydra's grid sweeper writes that config to multirun.yaml; the Optuna sweeper writes none, so each job's own
    .hydra/hydra.yaml is read too."""
    configs = [sweep_dir / "multirun.yaml", *sorted(sweep_dir.glob("*/.hydra/hydra.yaml"))[:1]]
    for config in configs:
        try:
            sweeper = yaml.safe_load(config.read_text())["hydra"]["sweeper"]
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            continue
        if "direction" in (sweeper or {}):
            return True
    return False


def t_interval(values: list[float], confidence: float = 0.95) -> float | None:
    """Half-width of the t confidence interval of the mean (None for fewer than two values)."""
    if len(values) < 2:
        return None
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value of the difference in means (None when either side has fewer than two)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return 1.0 if statistics.mean(a) == statistics.mean(b) else 0.0
    with warnings.catch_warnings():  # one side without spread: SciPy warns of precision loss, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


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


@dataclass
class StudyView:
    """An Optuna study kept in a database (src/study.py), as a report shows it: every trial, whichever sweep or
    machine ran it. `error` says why the trials could not be read (then `trials` is empty)."""

    url: str
    name: str
    directions: list[str] = field(default_factory=list)
    trials: list[Any] = field(default_factory=list)  # optuna's FrozenTrial, by number
    metric: str | None = None  # what the trials' value is: the objective the study recorded, or the sweep's runs'
    error: str | None = None
    space: list[str] = field(default_factory=list)  # the searched parameters, in the order the search names them

    @property
    def parameters(self) -> list[str]:
        """The searched parameters: in the search's order (Optuna returns a trial's parameters sorted by name),
        then any other a trial has."""
        return list(dict.fromkeys([*self.space, *(name for trial in self.trials for name in trial.params)]))

    def ranked(self) -> list[Any]:
        """Completed trials best first (ties by number), then the others by state (running, waiting, pruned,
        failed) and number."""
        from optuna.trial import TrialState

        sign = 1.0 if self.directions[:1] == ["minimize"] else -1.0
        done = [t for t in self.trials if t.state == TrialState.COMPLETE and t.value is not None]
        order = {TrialState.RUNNING: 0, TrialState.WAITING: 1, TrialState.PRUNED: 2, TrialState.FAIL: 3}
        finished = {t.number for t in done}
        rest = [t for t in self.trials if t.number not in finished]
        return sorted(done, key=lambda t: (sign * t.value, t.number)) + sorted(
            rest, key=lambda t: (order.get(t.state, 4), t.number)
        )

    def count(self, state: str) -> int:
        return sum(1 for trial in self.trials if trial.state.name == state)


def stored_study_of(sweep_dir: Path) -> tuple[str, str] | None:
    """(storage URL, study name) of a sweep whose Optuna study is kept in a database: from the study.yaml the
    project's sweeper writes, else from a job's saved config (Hydra's own Optuna sweeper writes no study.yaml; a
    relative sqlite path there is relative to the directory the sweep was started in). None for a grid sweep or
    an in-memory study."""
    from src.study import read_record

    saved = read_record(sweep_dir)
    if saved is not None:
        return str(saved["storage"]), str(saved["study_name"])
    for hydra_file in sorted(sweep_dir.glob("*/.hydra/hydra.yaml"))[:1]:
        hydra = (_read_yaml(hydra_file) or {}).get("hydra") or {}
        sweeper = hydra.get("sweeper") or {}
        url, name = sweeper.get("storage"), sweeper.get("study_name")
        if url and name:
            started_in = (hydra.get("runtime") or {}).get("cwd")
            return sqlite_in(str(url), started_in), str(name)
    return None


def sqlite_in(url: str, directory: str | None) -> str:
    """A relative sqlite URL made absolute against `directory` (where the command that used it ran)."""
    from src.study import absolute, sqlite_file

    path = sqlite_file(url)
    if path is None or path.is_absolute() or not directory:
        return url
    return absolute(f"sqlite:///{Path(directory) / path}")


def read_study(sweep_dir: Path, metric: str | None = None) -> StudyView | None:
    """The stored study of a sweep (None when it has none); a study that cannot be read is kept with its error,
    so the report says so rather than failing."""
    stored = stored_study_of(sweep_dir)
    if stored is None:
        return None
    return load_study_view(*stored, metric=metric)


def load_study_view(url: str, name: str, metric: str | None = None) -> StudyView:
    """The study's trials and what they mean, read from its storage (nothing is written there)."""
    from src.model import ConfigError
    from src.study import OBJECTIVE_ATTR, SPACE_ATTR, study_trials

    try:
        study, trials = study_trials(url, name)
    except (ConfigError, ImportError) as error:  # ImportError: the optuna extra is not installed here
        return StudyView(url, name, metric=metric, error=str(error))
    directions = [direction.name.lower() for direction in study.directions]
    space = list(study.user_attrs.get(SPACE_ATTR) or {})
    metric = study.user_attrs.get(OBJECTIVE_ATTR) or metric  # recorded by the sweep that made the study
    return StudyView(url, name, directions, sorted(trials, key=lambda t: t.number), metric, space=space)


def where_it_ran(trial: Any, sweep_dir: Path | None) -> str:
    """`this sweep: <job dir>` for a trial of the sweep being reported, `<host>: <job dir>` for another's;
    `<host>: <sweep dir>` while its job is still running (its directory is recorded when it ends); `-` for a trial
    made by Hydra's own sweeper, which records nothing."""
    from src.study import HOST, JOB_DIR, SWEEP_DIR

    attrs = trial.user_attrs
    host, job, swept = attrs.get(HOST), attrs.get(JOB_DIR), attrs.get(SWEEP_DIR)
    here = sweep_dir.resolve() if sweep_dir is not None else None
    if job and here is not None and Path(job).parent == here:
        return f"this sweep: {Path(job).name}"
    if job or swept:
        return f"{host or '?'}: {job or swept}"
    return "-"


def study_table(study: StudyView, sweep_dir: Path | None = None) -> list[str]:
    """The study's trials as a markdown table, best first: number, state, value, each parameter, where it ran."""
    value = f"value ({study.metric})" if study.metric else "value"
    header = ["trial", "state", value, *study.parameters, "ran in"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    best = study.ranked()[0] if study.count("COMPLETE") else None
    for trial in study.ranked():
        shown_value = _format(trial.value) if trial.value is not None else "-"
        state = STATE_NAMES.get(trial.state.name, trial.state.name.lower())
        cells = [str(trial.number), state, f"**{shown_value}**" if trial is best else shown_value]
        cells += [setting_cell(str(trial.params[p])) if p in trial.params else "-" for p in study.parameters]
        cells.append(where_it_ran(trial, sweep_dir).replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# Optuna's trial states (TrialState names) as the report words them, in the order it counts them.
STATE_WORDS = [
    ("COMPLETE", "completed"),
    ("RUNNING", "running"),
    ("WAITING", "waiting"),
    ("PRUNED", "pruned"),
    ("FAIL", "failed"),
]
STATE_NAMES = dict(STATE_WORDS)


def study_summary(study: StudyView) -> str:
    """`4 trials: 3 completed, 1 running.`"""
    counts = [(study.count(state), word) for state, word in STATE_WORDS]
    parts = [f"{n} {word}" for n, word in counts if n]
    return f"{len(study.trials)} trial{'s' if len(study.trials) != 1 else ''}" + (
        ": " + ", ".join(parts) if parts else ""
    )


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


def write_study_csv(study: StudyView, path: Path) -> None:
    """study.csv: one row per trial of the study (full precision), by number."""
    parameters = study.parameters
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["trial", "state", "value", *parameters, "ran in"])
        for trial in study.trials:
            state = STATE_NAMES.get(trial.state.name, trial.state.name.lower())
            row = [trial.number, state, repr(trial.value) if trial.value is not None else ""]
            row += [trial.params.get(p, "") for p in parameters]
            writer.writerow([*row, where_it_ran(trial, path.parent)])


def same_value(a: str, b: str) -> bool:
    """Whether two spellings of a setting's value are the same value: `1e-3` and `0.001` are."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def planned_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The jobs a grid sweep set out to run, each as its overrides, in job order: what Hydra's basic sweeper makes
    of multirun.yaml (its params, then the command line's overrides, expanded into their product). None for
    another sweeper: an optimising one plans its trials as it goes."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        saved = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())["hydra"]
        if "basic_sweeper" not in str(saved["sweeper"].get("_target_", "")):
            return None
        params = [f"{key}={value}" for key, value in (saved["sweeper"].get("params") or {}).items()]
        parsed = OverridesParser.create().parse_overrides([*params, *saved["overrides"]["task"]])
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:  # no multirun.yaml, or one this code cannot read: the runs that exist are all there is
        return None


def short(setting: str) -> str:
    """A setting as shown: long floats (an optimising sweeper's samples) to four significant digits."""
    try:
        number = float(setting)
    except ValueError:
        return setting
    return f"{number:.4g}" if "." in setting and len(setting) > 8 else setting


def setting_cell(setting: str) -> str:
    """A setting's value in a markdown table: `short`, and a list or dict (`ablate.heads=[cross:*:*]`) as code, so
    that its `*` and `_` are not read as emphasis."""
    shown = short(setting)
    if shown.startswith(("[", "{")):
        shown = f"`{shown}`"
    return shown.replace("|", "\\|")


def baseline_label(baseline: Configuration | None) -> str:
    """The baseline in the report's text: its settings as code, like the fixed ones (`[cross:*:*]` stays as typed)."""
    if baseline is None:
        return "-"
    return f"`{baseline.label}`" if baseline.settings else "the only configuration"


def _format(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"


def decimals_for(spread: float) -> int:
    """Decimal places that keep two significant digits of `spread` (0.0006303 -> 5, 1.234 -> 1, 23.4 -> 0,
    17459 -> -3): a value is shown to the precision its spread allows, the convention for reporting a measurement."""
    if spread <= 0 or not math.isfinite(spread):
        return 4
    return 1 - math.floor(math.log10(spread))


def with_precision(value: float, decimals: int) -> str:
    """`value` rounded to `decimals` places; a negative count rounds to tens, hundreds, ... (111111 at -3: 111000)."""
    return f"{value:.{decimals}f}" if decimals >= 0 else f"{round(value, decimals):.0f}"


def mean_cell(values: list[float]) -> str:
    """mean ± std (n), the mean rounded to two significant digits of its std (`0.03188 ± 0.00063 (3)`); a single
    run's value to four significant digits. results.csv keeps every run's value at full precision."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{_format(mean)} ({len(values)})"
    std = statistics.stdev(values)
    if std == 0:
        return f"{_format(mean)} ± 0 ({len(values)})"
    places = decimals_for(std)
    return f"{with_precision(mean, places)} ± {with_precision(std, places)} ({len(values)})"


def interval_cell(values: list[float], metric: str) -> tuple[str, bool]:
    """The 95% t interval of the mean as `[low, high]`, to two significant digits of its half-width, clipped to the
    values the metric can take (an exact match near 1.0 cannot have an interval past 1.0); and whether it was
    clipped. `-` for fewer than two values."""
    half = t_interval(values)
    if half is None:
        return "-", False
    mean = statistics.mean(values)
    smallest, largest = metric_range(metric)
    low, high = max(mean - half, smallest), min(mean + half, largest)
    places = decimals_for(half) if half > 0 else 4
    clipped = (low, high) != (mean - half, mean + half)
    return f"[{with_precision(low, places)}, {with_precision(high, places)}]" + ("†" if clipped else ""), clipped


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


def job_directory(sweep_dir: Path, number: int, job: list[str]) -> Path:
    """The directory Hydra gives job `number` of a sweep (conf/config.yaml: hydra.sweep.subdir)."""
    from src.schema import sweep_job_dirname

    return sweep_dir.resolve() / f"{number}_{sweep_job_dirname(job, str(sweep_dir))}"


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


def _tidy(fig) -> None:
    with warnings.catch_warnings():  # long configuration labels: matplotlib warns it cannot make room, and copes
        warnings.simplefilter("ignore")
        fig.tight_layout()


def draw_figures(sweep: Sweep) -> dict[str, Any]:
    """The report's figures, saved as PNG into the sweep directory; returns them for TensorBoard."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    if not sweep.configurations or not sweep.main_metric:
        return figures
    metrics = [sweep.main_metric] + (["val/loss"] if sweep.main_metric != "val/loss" else [])
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for configuration in sweep.configurations:
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
        ax.set_title(f"{metric} (mean over seeds; band: min to max)")
        if ax.lines:
            ax.legend(fontsize=8)
    _tidy(fig)
    figures["curves"] = fig

    labels = [c.label for c in sweep.configurations]
    means = [
        statistics.mean(c.values(sweep.main_metric)) if c.values(sweep.main_metric) else math.nan
        for c in sweep.configurations
    ]
    errors = [t_interval(c.values(sweep.main_metric)) or 0.0 for c in sweep.configurations]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels)), 4))
    ax.bar(range(len(labels)), means, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(sweep.main_metric)
    ax.set_title(f"{sweep.main_metric}: mean and 95% interval over seeds")
    _tidy(fig)
    figures["bars"] = fig

    if len(sweep.varied) == 2:
        rows = list(dict.fromkeys(dict(c.settings)[sweep.varied[0]] for c in sweep.configurations))
        columns = list(dict.fromkeys(dict(c.settings)[sweep.varied[1]] for c in sweep.configurations))
        grid = [[math.nan] * len(columns) for _ in rows]
        for c in sweep.configurations:
            values = c.values(sweep.main_metric)
            if values:
                settings = dict(c.settings)
                grid[rows.index(settings[sweep.varied[0]])][columns.index(settings[sweep.varied[1]])] = statistics.mean(
                    values
                )
        fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(columns), 1.2 + 0.8 * len(rows)))
        image = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(columns)), columns)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel(sweep.varied[1])
        ax.set_ylabel(sweep.varied[0])
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    ax.text(j, i, _format(value), ha="center", va="center", color="white", fontsize=8)
        fig.colorbar(image, ax=ax, label=sweep.main_metric)
        ax.set_title(f"{sweep.main_metric} (mean over seeds)")
        _tidy(fig)
        figures["heatmap"] = fig
    pruning = pruning_figure(sweep)
    if pruning is not None:
        figures["pruning"] = pruning
    for name, fig in figures.items():
        fig.savefig(sweep.directory / f"{name}.png", dpi=110)
    return figures


def pruning_figure(sweep: Sweep):
    """pruning.png: per configuration, the mean pruning curve over its analysed seeds (x: % of the heads removed,
    from each job's analysis/pruning.csv; y: the analysis's metric), with a band of ± one std; None when no job
    has a curve."""
    import matplotlib.pyplot as plt

    curves = [(c, [run.pruning for run in c.runs if run.pruning]) for c in sweep.configurations]
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
        spread = [statistics.stdev(points[x]) if len(points[x]) > 1 else 0.0 for x in xs]
        line = ax.plot(xs, means, marker="o", markersize=3, label=f"{configuration.label} ({len(runs)})")[0]
        ax.fill_between(
            xs,
            [m - d for m, d in zip(means, spread)],
            [m + d for m, d in zip(means, spread)],
            color=line.get_color(),
            alpha=0.2,
        )
    ax.set_xlabel("heads removed (%), least important first")
    ax.set_ylabel(" / ".join(names))
    ax.set_title("pruning curves (mean over seeds; band: ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _tidy(fig)
    return fig


def to_tensorboard(sweep: Sweep, figures: dict[str, Any], table: str) -> None:
    """The same figures and table as a `report` run in the sweep directory (TensorBoard shows it beside the runs)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(sweep.directory / "report"))
    for name, fig in figures.items():
        writer.add_figure(f"report/{name}", fig, global_step=0, close=False)
    # The markdown's image links point at files beside report.md, which TensorBoard cannot fetch: the figures are
    # in IMAGES above, so the links are left out of the text.
    text = "\n".join(line for line in table.splitlines() if not line.startswith("!["))
    writer.add_text("report/table", text, global_step=0)
    writer.close()


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


def print_stored_study(sweep_dir: str | None, storage: str | None, name: str | None) -> None:
    """`python -m src.report --storage <url> --study <name>`: the study's trials on stdout, best first, as report.md
    lists them; writes nothing. Exits with one `error:` line (status 2) when the study cannot be read."""
    from src.study import shown

    def refuse(message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)

    if sweep_dir is not None:
        refuse("give a sweep directory, or --storage and --study without one: not both")
    if not storage or not name:
        refuse(
            "give a sweep directory (python -m src.report <sweep dir>), or a stored Optuna study with --storage "
            "<url> --study <name> (hydra.sweeper.storage and hydra.sweeper.study_name of its sweeps)"
        )
    study = load_study_view(storage, name)
    if study.error is not None:
        refuse(study.error)
    print(f"# Study {study.name}")
    print()
    print(f"Storage `{shown(study.url)}`, {' and '.join(study.directions)} the value; {study_summary(study)}.")
    print()
    print("\n".join(study_table(study)))


if __name__ == "__main__":
    main()
