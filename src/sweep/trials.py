"""The trials of an Optuna study kept in a database (src/study.py), as the sweep report shows them: every trial,
whichever sweep or machine ran it (`python -m src.report --storage <url> --study <name>` prints them alone)."""

from __future__ import annotations

import csv
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from src.sweep.runs import read_yaml
from src.sweep.statistics import format_number, setting_cell


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
    # {number: seconds silent} of the trials still running to Optuna whose sweep is gone: no heartbeat for
    # src.study.GRACE_SECONDS (killed outright, or its machine lost); the next sweep of the study fails them
    killed: dict[int, float] = field(default_factory=dict)

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

    def stopped(self) -> list[Any]:
        """The trials stopped before their job ended: interrupted (Ctrl-C, SIGTERM) or killed (failed, to Optuna,
        and marked so), and those still running to Optuna whose sweep is gone (`killed`)."""
        from src.study import INTERRUPTED

        return [
            trial
            for trial in self.trials
            if (trial.state.name == "FAIL" and trial.user_attrs.get(INTERRUPTED)) or trial.number in self.killed
        ]

    def stopped_word(self, trial: Any) -> str:
        """`killed` or `interrupted`: how a stopped trial was stopped."""
        from src.study import stopped_word

        return "killed" if trial.number in self.killed else stopped_word(trial)

    def running(self) -> int:
        """The trials running now: RUNNING to Optuna, less those whose sweep is gone."""
        return self.count("RUNNING") - sum(1 for trial in self.trials if trial.number in self.killed)

    @functools.cached_property
    def resumed_as(self) -> dict[int, int]:
        """{an interrupted trial's number: the trial that went on with its job} (src/study.py)."""
        from src.study import resumed_as

        return resumed_as(self.trials)

    def state_of(self, trial: Any) -> str:
        """A trial's state as the report words it: Optuna's state (STATE_NAMES), except for a trial stopped by an
        interrupt or killed (failed, to Optuna), which says so, and which trial went on with its job once the search
        was resumed; a trial still running to Optuna whose sweep is gone, which says it was killed; and a trial that
        went on with another's job, which says which."""
        from src.study import RESUMES, how_long

        word = STATE_NAMES.get(trial.state.name, trial.state.name.lower())
        if trial.number in self.killed:
            word = f"killed (no heartbeat for {how_long(self.killed[trial.number])})"
        elif trial.number in {stopped.number for stopped in self.stopped()}:
            later = self.resumed_as.get(trial.number)
            word = self.stopped_word(trial) + ("" if later is None else f", resumed as trial {later}")
        if RESUMES in trial.user_attrs:
            word += f" (resumes trial {trial.user_attrs[RESUMES]})"
        return word


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
        hydra = (read_yaml(hydra_file) or {}).get("hydra") or {}
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
    from src.study import OBJECTIVE_ATTR, SPACE_ATTR, killed_trials, study_trials

    try:
        study, trials = study_trials(url, name)
    except (ConfigError, ImportError) as error:  # ImportError: the optuna extra is not installed here
        return StudyView(url, name, metric=metric, error=str(error))
    directions = [direction.name.lower() for direction in study.directions]
    space = list(study.user_attrs.get(SPACE_ATTR) or {})
    metric = study.user_attrs.get(OBJECTIVE_ATTR) or metric  # recorded by the sweep that made the study
    trials = sorted(trials, key=lambda t: t.number)
    return StudyView(url, name, directions, trials, metric, space=space, killed=killed_trials(study))


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
        shown_value = format_number(trial.value) if trial.value is not None else "-"
        state = study.state_of(trial)
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
    """`4 trials: 3 completed, 1 running`; trials stopped by an interrupt, or killed, are counted apart from the
    failed and running ones (`1 interrupted and resumed`, `1 killed`), since the trial that resumed each is counted
    too."""
    stopped = study.stopped()
    apart = {"FAIL": sum(1 for t in stopped if t.state.name == "FAIL"), "RUNNING": len(study.killed)}
    counts = [(study.count(state) - apart.get(state, 0), word) for state, word in STATE_WORDS]
    for how in ("interrupted", "killed"):
        these = [trial for trial in stopped if study.stopped_word(trial) == how]
        resumed = sum(1 for trial in these if trial.number in study.resumed_as)
        counts += [(resumed, f"{how} and resumed"), (len(these) - resumed, how)]
    parts = [f"{n} {word}" for n, word in counts if n]
    return f"{len(study.trials)} trial{'s' if len(study.trials) != 1 else ''}" + (
        ": " + ", ".join(parts) if parts else ""
    )


def not_resumed(study: StudyView, sweep_dir: Path | None = None) -> list[str]:
    """A sentence for each sweep whose trials were interrupted or killed and not resumed since: which trials, and
    the command that goes on with them from their jobs' last checkpoints (this sweep's own, from its study.yaml;
    another's, its directory and host)."""
    from src.study import HOST, SWEEP_DIR, read_record

    here = str(sweep_dir.resolve()) if sweep_dir is not None else None
    by_sweep: dict[str, list[Any]] = {}
    for trial in study.stopped():
        if trial.number not in study.resumed_as:
            by_sweep.setdefault(str(trial.user_attrs.get(SWEEP_DIR, "?")), []).append(trial)
    sentences = []
    for swept, trials in by_sweep.items():
        named = [f"{trial.number} ({study.stopped_word(trial)})" for trial in trials]
        which = f"Trial {named[0]} has" if len(named) == 1 else f"Trials {', '.join(named[:-1])} and {named[-1]} have"
        one = len(trials) == 1
        it, its = ("it", "its") if one else ("them", "their")
        resume = (read_record(Path(swept)) or {}).get("resume") if swept == here else None
        if resume:
            how = f"`{resume}` goes on with {it}"
        else:
            host = trials[0].user_attrs.get(HOST, "?")
            how = f"{its} search's own command with `hydra.sweep.dir={swept} ckpt_path=last`, run on {host}, goes on"
            how += f" with {it}"
        jobs = "its job's last checkpoint" if one else "their jobs' last checkpoints"
        sentences.append(f"{which} not been resumed: {how}, from {jobs}.")
    return sentences


def write_study_csv(study: StudyView, path: Path) -> None:
    """study.csv: one row per trial of the study (full precision), by number."""
    parameters = study.parameters
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["trial", "state", "value", *parameters, "ran in"])
        for trial in study.trials:
            row = [trial.number, study.state_of(trial), repr(trial.value) if trial.value is not None else ""]
            row += [trial.params.get(p, "") for p in parameters]
            writer.writerow([*row, where_it_ran(trial, path.parent)])


def print_stored_study(sweep_dir: str | None, storage: str | None, name: str | None) -> None:
    """`python -m src.report --storage <url> --study <name>`: the study's trials on stdout, best first, as report.md
    lists them; writes nothing. Exits with one `error:` line (status 2) when the study cannot be read."""
    from src.cli.command_line import typed_command
    from src.study import shown

    def refuse(message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)

    if sweep_dir is not None:
        refuse("give a sweep directory, or --storage and --study without one: not both")
    if not storage or not name:
        refuse(
            f"give a sweep directory ({typed_command('src.report')} <sweep dir>), or a stored Optuna study with "
            "--storage <url> --study <name> (hydra.sweeper.storage and hydra.sweeper.study_name of its sweeps)"
        )
    study = load_study_view(storage, name)
    if study.error is not None:
        refuse(study.error)
    print(f"# Study {study.name}")
    print()
    print(f"Storage `{shown(study.url)}`, {' and '.join(study.directions)} the value; {study_summary(study)}.")
    for sentence in not_resumed(study):
        print(sentence)
    print()
    print("\n".join(study_table(study)))
