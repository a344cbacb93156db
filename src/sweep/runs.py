"""What the sweep report reads from each job directory: the overrides a job was given, its run.json and
metrics.json, its composed config, its head analysis (analysis/ from src.analyze) and its causal analyses (patching/,
lens/ and induction/ from src.analyze analysis=patching, lens, induction), never re-running anything."""

from __future__ import annotations

import csv
import functools
import json
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.provenance import RUN_FILE
from src.training.metrics_file import METRICS_FILE

SEED = "seed"
# A run whose run.json says it completed, but whose metrics.json holds no final metrics (missing, cut short, emptied
# by hand): the report cannot count it with the completed ones, so it is listed with the runs that did not complete.
NO_METRICS = "no metrics"


@dataclass
class Run:
    directory: Path
    settings: dict[str, str]  # the job's overrides (Hydra's own left out), key -> value as typed
    status: str  # completed | failed | diverged | interrupted | running | unknown | no metrics (NO_METRICS)
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
    # The causal analyses, each its summary.json, None without one: activation patching (src.analyze
    # analysis=patching: patching/), the logit lens and direct logit attribution (analysis=lens: lens/), induction
    # heads (analysis=induction: induction/).
    patching: dict[str, Any] | None = None
    lens: dict[str, Any] | None = None
    induction: dict[str, Any] | None = None
    # The command that resumes it in its own directory (run.json's `resume`), where there is something to resume
    # from: an interrupted run's, or a run whose extra rank failed after a checkpoint.
    resume: str | None = None

    @property
    def final(self) -> dict[str, float | None]:
        """The final metrics; None for a value that was not finite (metrics.json writes inf and nan as null)."""
        final = self.metrics.get("final")
        return final if isinstance(final, dict) else {}

    @property
    def seed(self) -> str | None:
        """The seed it ran with, typed or not (the composed config's); None when nothing says."""
        return self.value(SEED) or None

    @property
    def task(self) -> str:
        """The task it trained on (its `task=` option; the task's name in its config), "" when nothing says."""
        task = self.config.get("task")
        named = task.get("name") if isinstance(task, dict) else None
        return str(self.choices.get("task") or named or self.settings.get("task") or "")

    @property
    def ranked_by(self) -> str | None:
        """The metric the run was ranked by (metrics.json): its objective= if one was set, else its task's main
        metric; None before it wrote any."""
        return self.metrics.get("objective") or self.metrics.get("main_metric")

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
        undefined_fraction = math.isnan(figures.get("prunable_fraction", 0.0))
        for site in self.analysis.get("sites") or []:
            value = site.get("pruned_within_tolerance")
            # A site's share pruned within the tolerance is undefined with the prunable fraction (an analysis
            # written before that was so says 0 there).
            if value is None or undefined_fraction:
                figures[f"pruned/{site.get('site')}"] = math.nan
            elif isinstance(value, (int, float)):
                figures[f"pruned/{site.get('site')}"] = float(value)
        return figures

    @property
    def analysis_undefined(self) -> dict[str, str]:
        """Why each undefined analysis figure (NaN in analysis_figures) is undefined, by figure: the cause the
        analysis recorded (summary.json's `undefined`; a site's share pruned has the prunable fraction's)."""
        if not self.analysis:
            return {}
        recorded = self.analysis.get("undefined") or {}
        causes = {}
        for key, value in self.analysis_figures.items():
            if not math.isnan(value):
                continue
            figure = "prunable_fraction" if key.startswith("pruned/") else key
            causes[key] = recorded.get(figure) or unrecorded_cause(self, figure)
        return causes

    @property
    def patching_figures(self) -> dict[str, float]:
        """The patching analysis's headline figures (patching/summary.json): the number of pairs, the metric's mean
        on the clean and on the corrupted inputs, and as `rank_correlation/<family>` Spearman's rho of attribution
        patching's estimate with the exact effect, per family; an undefined figure (null) is NaN, never dropped.
        Empty without a patching analysis."""
        if not self.patching:
            return {}
        figures: dict[str, Any] = {
            key: self.patching[key] for key in ("pairs", "clean", "corrupted") if key in self.patching
        }
        for family, rho in (self.patching.get("rank_correlation") or {}).items():
            figures[f"rank_correlation/{family}"] = rho
        return {
            key: float(value) if value is not None else math.nan
            for key, value in figures.items()
            if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
        }

    @property
    def analysis_failed(self) -> bool:
        """Trained, but its analysis after training failed or was interrupted (the run itself stands)."""
        return self.status == "completed" and str(self.analysis_status).startswith(("failed", "interrupted"))

    def value(self, key: str) -> str:
        """What the run had for a setting, in one spelling for every run: the composed config's value (a group's
        chosen option), so that `lr=3e-3` typed in one job and the default 0.003 of another compare equal, and a
        job that was not given a swept key still has its value; a switch as the command line writes it (`true`,
        not Python's `True`), so that the report's values paste back. As typed when the config is not at hand."""
        if key in self.choices:
            return str(self.choices[key])
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return self.settings.get(key, "")
            node = node[part]
        if isinstance(node, (dict, list, bool)) or node is None:  # true, false, null: as the command line writes them
            return json.dumps(node)
        return str(node)


# What Hydra's sweeper escapes when it writes each job's overrides (`[cross:0:1]` becomes `[cross\:0\:1]`).
HYDRA_ESCAPED = re.compile(r"\\([\\()\[\]{}:=, \t])")


def as_typed(value: str) -> str:
    """An override's value as the user typed it, without the backslashes Hydra's sweeper added."""
    return HYDRA_ESCAPED.sub(r"\1", value)


def job_number(directory: Path) -> int:
    head = directory.name.split("_", 1)[0]
    return int(head) if head.isdigit() else 1 << 30


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def read_runs(sweep_dir: Path) -> list[Run]:
    """Every job directory of a sweep (those with .hydra/overrides.yaml), in job order."""
    found = sweep_dir.glob("*/.hydra/overrides.yaml")
    # By job number, then name: a folder of single runs (outputs/<date>/<time>) has no numbers, and its times sort.
    return [read_run(p.parents[1]) for p in sorted(found, key=lambda p: (job_number(p.parents[1]), p.parents[1].name))]


def read_run(directory: Path) -> Run:
    """One run directory as the report reads it: its overrides (.hydra/overrides.yaml), run.json, metrics.json, its
    composed config and its analyses; what a run lacks is left empty."""
    overrides = read_yaml(directory / ".hydra" / "overrides.yaml") or []
    settings = {}
    for override in overrides:
        key, _, value = str(override).partition("=")
        if not key.startswith("hydra."):
            settings[key.lstrip("+~")] = as_typed(value)
    record = read_record(directory)
    status, error = str(record.get("status", "unknown")), record.get("error")
    metrics, no_final = read_final_metrics(directory)
    if status == "completed" and no_final:  # nothing to put in the table: listed with why, never dropped unsaid
        status, error = NO_METRICS, f"{RUN_FILE} says completed, but {no_final}"
    config = read_yaml(directory / ".hydra" / "config.yaml")
    hydra = read_yaml(directory / ".hydra" / "hydra.yaml")
    try:
        choices = dict(hydra["hydra"]["runtime"]["choices"])
    except (KeyError, TypeError, ValueError):
        choices = {}
    return Run(
        directory,
        settings,
        status,
        error,
        metrics,
        config if isinstance(config, dict) else {},
        choices,
        *read_analysis(directory),
        analysis_status=record.get("analysis"),
        patching=read_patching(directory),
        lens=read_lens(directory),
        induction=read_induction(directory),
        resume=resume_of(record),
    )


def read_record(directory: Path) -> dict[str, Any]:
    """A job's run.json; status `unknown` without one (it ended before it recorded anything, or has not started),
    and with an `error` saying so when there is one that cannot be read (cut short, not JSON, not an object)."""
    try:
        record = json.loads((directory / RUN_FILE).read_text())
    except FileNotFoundError:
        return {"status": "unknown"}
    except (OSError, ValueError) as error:  # ValueError: JSON cut short, or bytes that are not text
        return {"status": "unknown", "error": f"its {RUN_FILE} cannot be read ({error}), so how it ended is unknown"}
    if not isinstance(record, dict):
        return {"status": "unknown", "error": f"its {RUN_FILE} is not a JSON object, so how it ended is unknown"}
    return record


def read_final_metrics(directory: Path) -> tuple[dict[str, Any], str | None]:
    """A job's metrics.json (metrics_file.py), and why it gives no final metrics where it gives none (missing, cut
    short, no `final`), None where it does."""
    path = directory / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, f"its {METRICS_FILE} is missing"
    except (OSError, ValueError) as error:
        return {}, f"its {METRICS_FILE} cannot be read ({error})"
    if not isinstance(metrics, dict):
        return {}, f"its {METRICS_FILE} is not a JSON object"
    if not isinstance(metrics.get("final"), dict) or not metrics["final"]:
        return metrics, f"its {METRICS_FILE} holds no final metrics"
    return metrics, None


def resume_of(record: dict[str, Any]) -> str | None:
    """run.json's `resume` command, where it has something to resume from: src.run records one for every
    interrupted run, and for a single run interrupted before its first checkpoint (`checkpoint` null, or "None")
    that command would be refused (ckpt_path=last finds no checkpoint); a stacked group's member resumes with its
    group, from the group's state or from the start, and a grid sweep's job with its sweep, which starts it again."""
    command = record.get("resume")
    if not isinstance(command, str) or not command:
        return None
    nothing_saved = "checkpoint" in record and record["checkpoint"] in (None, "None")
    return None if nothing_saved and "stacked" not in record and not resumes_a_sweep(command) else command


def resumes_a_sweep(command: str) -> bool:
    """Whether a recorded resume command is a sweep's (`python -m src.run -m ... ckpt_path=last`, which a grid
    sweep's job records: src/sweep/resume.py), which trains a job that saved nothing from the start, rather than the
    run's own in its directory."""
    try:
        words = shlex.split(command)
    except ValueError:  # not a command this project wrote
        return False
    return "-m" in words[3:] or "--multirun" in words[3:]


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


PATCHING_DIR = "patching"  # src.analyze analysis=patching's, <run>/patching/
LENS_DIR = "lens"  # src.analyze analysis=lens's, <run>/lens/
INDUCTION_DIR = "induction"  # src.analyze analysis=induction's, <run>/induction/


def read_summary(directory: Path, folder: str) -> dict[str, Any] | None:
    """A job's `folder`/summary.json, None when there is none, or it cannot be read (an analysis is written whole or
    not at all, so a partial one is never there)."""
    try:
        summary = json.loads((directory / folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def read_patching(directory: Path) -> dict[str, Any] | None:
    """A job's activation-patching analysis: its patching/summary.json (read_summary)."""
    return read_summary(directory, PATCHING_DIR)


def read_lens(directory: Path) -> dict[str, Any] | None:
    """A job's logit lens and direct logit attribution: its lens/summary.json (read_summary)."""
    return read_summary(directory, LENS_DIR)


def read_induction(directory: Path) -> dict[str, Any] | None:
    """A job's induction-head analysis: its induction/summary.json (read_summary)."""
    return read_summary(directory, INDUCTION_DIR)


def unrecorded_cause(run: Run, figure: str) -> str:
    """Why an analysis written before summary.json recorded its causes (`undefined`) left `figure` undefined, worked
    out from its files as src/analysis/report.py works it out now."""
    summary = run.analysis or {}
    metric = str(summary.get("metric", "the metric"))
    if figure == "prunable_fraction" and (summary.get("figures") or {}).get("baseline") == 0:
        from src.analysis.report import no_prunable_fraction

        return no_prunable_fraction(metric, str(summary.get("split", "?")))
    if figure.startswith("rank_correlation_"):
        from src.analysis.report import read_head_rows, why_rank_correlation_undefined

        try:
            heads = read_head_rows(run.directory / ANALYSIS_DIR / "heads.csv")
        except (OSError, ValueError, KeyError, TypeError):
            return "its cause is not recorded (analysis/heads.csv cannot be read)"
        on = metric if figure.endswith("_metric") else "loss"
        cause = why_rank_correlation_undefined(heads, on)
        if cause:
            return cause
    return f"its cause is not recorded: see {run.directory / ANALYSIS_DIR / 'report.md'}"


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


def plans_a_grid(sweeper_target: str) -> bool:
    """Whether the sweeper named by this `_target_` runs a grid (every combination of the values given, planned
    before the first job): Hydra's basic sweeper, or one made from it (the project's grid sweeper); an optimising
    sweeper (Optuna) plans its trials as it goes."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.utils import get_class

    try:
        return issubclass(get_class(sweeper_target), BasicSweeper)
    except Exception:  # a sweeper that is not installed here, or no class at all
        return False


def planned_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The jobs a grid sweep set out to run, each as its overrides, in job order: what Hydra's basic sweeper makes
    of multirun.yaml (its params, then the command line's overrides, expanded into their product). None for
    another sweeper: an optimising one plans its trials as it goes."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        saved = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())["hydra"]
        if not plans_a_grid(str(saved["sweeper"].get("_target_", ""))):
            return None
        params = [f"{key}={value}" for key, value in (saved["sweeper"].get("params") or {}).items()]
        parsed = OverridesParser.create(config_loader=running_config_loader()).parse_overrides(
            [*params, *saved["overrides"]["task"]]
        )
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:  # no multirun.yaml, or one this code cannot read: the runs that exist are all there is
        return None


def running_config_loader() -> Any:
    """The config loader of the Hydra command this process runs (None outside one): Hydra's parser needs it to
    expand a glob over a group's options (`model=glob(t*)`), as its sweeper expands it."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance()
    return hydra.config_loader() if hydra.is_initialized() else None


def job_directory(sweep_dir: Path, number: int, job: list[str]) -> Path:
    """The directory Hydra gives job `number` of a sweep (conf/config.yaml: hydra.sweep.subdir)."""
    from src.cli.schema import sweep_job_dirname

    return sweep_dir.resolve() / f"{number}_{sweep_job_dirname(job, str(sweep_dir))}"


# --- which job of a sweep is which: by its settings, not by its number ------------------------------------------
# Hydra numbers a grid sweep's jobs in the order it expands the command (the last setting swept varies fastest), so
# the same job gets another number when values are added (seed=0,1,2 after seed=0,1, with seed last) or the
# settings are given in another order. A job's settings name it for good: a resumed or extended sweep
# (hydra/launcher=stacked with ckpt_path=last) and the report match its jobs to the directories by them.

NOT_SETTINGS = ("ckpt_path",)  # where a job resumes from, not what it trains: a resumed sweep adds ckpt_path=last


@functools.cache
def override_parser() -> Any:
    """Hydra's parser of overrides, made once (making it takes longer than parsing a job's overrides)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def settings_key(overrides: Any, leave_out: frozenset[str] = frozenset()) -> frozenset[str]:
    """A job's overrides written one way, to tell whether two jobs train the same: in any order, without Hydra's
    own (`hydra.`) or where the job resumes from (NOT_SETTINGS), `+seed=2` as `seed=2` (both set seed: only one
    of them composes), values as Hydra parses them (`0.10` as `0.1`, quoting and escapes taken out). `leave_out`:
    more settings (their keys as written here) left out (matched_jobs: run-only settings that no side sweeps)."""
    written = set()
    for key, value in parsed_overrides(overrides):
        if key.lstrip("~").startswith("hydra.") or key in NOT_SETTINGS or key in leave_out:
            continue
        written.add(f"{key}={value}")
    return frozenset(written)


def parsed_overrides(overrides: Any) -> list[tuple[str, str]]:
    """Each override as (key, value) written as settings_key writes them."""
    parser = override_parser()
    parsed_pairs = []
    for override in overrides:
        line = str(override)
        try:
            parsed = parser.parse_override(line)
        except Exception:  # not Hydra's grammar (a hand-edited overrides.yaml): compared as written
            key, _, value = line.lstrip("+").partition("=")
        else:
            key, value = parsed.key_or_group, parsed.get_value_element_as_str()
            key = ("~" if parsed.is_delete() else "") + key + (f"@{parsed.package}" if parsed.package else "")
        parsed_pairs.append((key, value))
    return parsed_pairs


def held_overrides(sweep_dir: Path) -> dict[Path, list[str]]:
    """The overrides of each job directory a sweep directory holds (its .hydra/overrides.yaml), in number order."""
    found = sorted(sweep_dir.glob("*/.hydra/overrides.yaml"), key=lambda p: (job_number(p.parents[1]), str(p)))
    return {path.parents[1]: [str(o) for o in read_yaml(path) or []] for path in found}


def matched_jobs(sweep_dir: Path, jobs: Any) -> tuple[list[frozenset[str]], dict[frozenset[str], Path]]:
    """The keys a sweep's planned `jobs` (their overrides, in order) are matched to the job directories `sweep_dir`
    holds by: each planned job's settings_key, and the directories by theirs (where two hold the same settings, the
    lower number's), both without the run-only settings the command does not sweep (unswept_run_only)."""
    held = held_overrides(sweep_dir)
    planned = [[str(o) for o in job] for job in jobs]
    leave_out = unswept_run_only(list(held.values()), planned)
    by_key: dict[frozenset[str], Path] = {}
    for directory, overrides in held.items():
        by_key.setdefault(settings_key(overrides, leave_out), directory)
    return [settings_key(job, leave_out) for job in planned], by_key


def unswept_run_only(held: list[list[str]], planned: list[list[str]]) -> frozenset[str]:
    """The settings that say how a run is carried out, not what it trains (src/cli/schema.py:
    NOT_EXPERIMENT_SETTINGS: torch_threads, logger, progress_every_n_steps, ...), found in the jobs a sweep
    directory holds (`held`) or the command plans (`planned`), to which the command gives at most one value (absent
    counting as one): matching a sweep's jobs leaves them out, so a sweep resumed with another thread count, or
    without the logger it had, is the same sweep. One the command sweeps (`compile=true,false`, the same run trained
    once per value) tells its jobs apart. Only the command says what is swept: the directories disagree on a
    setting once a resume has changed it (it rewrites the overrides of the jobs it runs, not of those it keeps)."""
    from src.cli.schema import is_experiment_setting

    def run_only(jobs: list[list[str]]) -> list[dict[str, str]]:
        return [
            {key: value for key, value in parsed_overrides(job) if not is_experiment_setting(key.lstrip("~"))}
            for job in jobs
        ]

    held_settings, planned_settings = run_only(held), run_only(planned)
    keys = {key for job in [*held_settings, *planned_settings] for key in job}
    swept = {key for key in keys if len({job.get(key) for job in planned_settings}) > 1}
    return frozenset(keys - swept)


def job_numbers(planned: list[frozenset[str]], held: dict[frozenset[str], int], first: int = 0) -> list[int]:
    """The number of each planned job (by its settings_key, in the sweep's order): a job whose settings a directory
    holds keeps that directory's number. A new job gets the number Hydra gives it while the jobs held are where
    Hydra numbered them (a sweep stopped and resumed with its own command), else the next number after the highest
    in use, in the sweep's order (values added to a setting that is not swept first, settings given in another
    order): its directory is then never one of an earlier job's. `first`: Hydra's number of the first planned job
    (a sweeper that launches its jobs in batches)."""
    in_place = all(held[key] == first + index for index, key in enumerate(planned) if key in held)
    taken = set(held.values())
    numbers: list[int | None] = [
        held[key] if key in held else first + index if in_place and first + index not in taken else None
        for index, key in enumerate(planned)
    ]
    following = max([*taken, *(n for n in numbers if n is not None)], default=-1) + 1
    for index, number in enumerate(numbers):
        if number is None:
            numbers[index], following = following, following + 1
    return [n for n in numbers if n is not None]
