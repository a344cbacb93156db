"""One Optuna search shared by sweeps on several machines: the study lives in a database (`hydra.sweeper.storage`),
and every sweep that names it (`hydra.sweeper.study_name`) adds its trials to it.

    # on each machine, the same command (PostgreSQL reachable from all of them):
    python -m src.run -m hparams_search=lr_warmup_dropout_size \\
        hydra.sweeper.storage=postgresql+psycopg2://me@db-host:5432/studies hydra.sweeper.n_trials=40

Three storages, by where the sweeps run:
- none (`storage: null`, the default): the study lives in the sweep's process and ends with it;
- `sqlite:///<file>.db`: a file on one machine: no server to run, and a search continued later by the same command
  (sqlite locks the whole file, and a shared file system makes that unreliable: one machine only);
- `postgresql+psycopg2://<user>@<host>:<port>/<database>`: a server every machine can reach: several machines (or
  several sweeps on one) search together.

What this module adds to Hydra's Optuna sweeper:

`check_study(config)`, called before a sweep writes anything (src/cli/preflight.py, and the sweeper itself): one
`error:` line, and nothing written, for a storage that cannot be reached (a short connection timeout), a stored
study that optimises the other way (or another objective), a stored study whose search space differs from this
sweep's (naming the parameter), or a study that already holds all the trials `n_trials` asks for.

`sweep(...)`, the loop of the project's sweeper (hparams_search=... configs select it: hydra_plugins/
transformer_ablations/optuna_sweeper.py is where Hydra finds it). Hydra's own Optuna sweeper runs `n_trials` trials
in each process, so two machines asked for 20 would run 40. This one counts the study's trials instead:

- `hydra.sweeper.n_trials` is the study's total, whichever machine runs them: before each trial a sweep claims a
  place in the study, and stops when the study holds n_trials trials (finished, failed or still running
  elsewhere). A search is continued by raising n_trials;
- the claims, and the creation of the database's tables and of the study, happen under one lock held by the
  database itself (a PostgreSQL advisory lock; for sqlite, a lock on the file): two sweeps started at the same
  moment on an empty database would otherwise both create the tables, and one fail
  (UniqueViolation on pg_type); two sweeps at the end of a study would both take the last place;
- trial n is sampled with its own seed (the sampler's `seed` and n): the random trials that start a TPE search
  differ from machine to machine (with one shared seed every machine would draw the same ones), and trial n draws
  the same values whichever machine asks for it;
- each trial records where it ran (`sweep:host`, `sweep:dir`, `sweep:job` user attributes), which the sweep report
  lists beside its parameters and value (src/report.py);
- a trial whose job is interrupted (Ctrl-C, SIGTERM) is told failed, so the study does not hold a "running" trial
  for ever, and marked interrupted (`sweep:interrupted`), with its job's number (`sweep:number`) and directory;
- a sweep killed outright (SIGKILL, the out-of-memory killer, its machine lost) tells its study nothing, so each
  sweep records a heartbeat for each of its running trials every HEARTBEAT_SECONDS (Optuna's own heartbeat table,
  RDBStorage.record_heartbeat; the database's clock). A running trial silent for GRACE_SECONDS is killed: every
  sweep fails such trials before it claims, marked killed (`sweep:killed`) and interrupted, so that its own search
  goes on with them when resumed, as with interrupted ones; until then they keep their places, and the report says
  `killed`. A search whose directory still has a trial with a recent heartbeat is not resumed (its sweep may be
  training it): the refusal says how long to wait if that sweep was in fact killed.

The sweep directory gets `study.yaml` (the study's name and storage, the sweep's overrides and the command that
resumes it), so `python -m src.report <sweep dir>` can list the whole study later, with the trials other machines
ran.

An interrupted search goes on through the sweeper itself, as a stacked sweep does through its launcher: the same
command with `hydra.sweep.dir=<the sweep> ckpt_path=last` (what the interrupted job prints, `resume_arguments`).
Such a sweep first resumes the trials its directory's jobs left interrupted (or killed), each as a new trial of the
study with the same parameters, the same job number and directory, from its job's newest checkpoint (a job that
had finished is read back, one that never started starts); the new trial records which one it goes on from
(`sweep:resumes`), and the interrupted one no longer counts toward n_trials (`claimed`). Then it samples new
trials as any sweep, numbered after the jobs the directory holds. Optuna cannot change a finished trial, so the
interrupted one stays failed, and the report says which trial resumed it. A study in memory ends with its command:
there is nothing to go on from, and the interrupted job says so.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import re
import shlex
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.model import ConfigError

log = logging.getLogger(__name__)

STUDY_FILE = "study.yaml"  # in the sweep directory: which study its trials belong to
SPACE_ATTR = "search_space"  # the study's user attribute: {parameter: Optuna's JSON of its distribution}
OBJECTIVE_ATTR = "objective"  # the study's user attribute: the metric its trials' values are
HOST, SWEEP_DIR, JOB_DIR = "sweep:host", "sweep:dir", "sweep:job"  # each trial's: a colon is in no override's key
NUMBER = "sweep:number"  # each trial's job number in its sweep (its directory is named by it)
INTERRUPTED = "sweep:interrupted"  # set on a trial told failed because its sweep was interrupted
RESUMES = "sweep:resumes"  # on a trial that goes on with an interrupted one's job: that trial's number
KILLED = "sweep:killed"  # set (with INTERRUPTED) on a running trial whose sweep has sent no heartbeat for GRACE_SECONDS
# Every sweep records a heartbeat for each of its running trials this often (Optuna's heartbeat table), and a
# running trial whose last heartbeat is older than GRACE_SECONDS is one whose sweep is gone: its process killed
# outright (SIGKILL, the out-of-memory killer) or its machine lost. The grace is four heartbeats, so that a busy
# database or a slow moment of the sweep's process does not make a live trial look killed.
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
RESUME = "last"  # ckpt_path=last with an Optuna search's hydra.sweep.dir: the search goes on where it stopped
SWEEPER = "hydra_plugins.transformer_ablations.optuna_sweeper.SharedStudySweeper"  # the only one that resumes
INTERRUPT_EXITS = (130, 143)  # src.run's exit statuses for SIGINT and SIGTERM (the shell's 128 + signal)
CONNECT_SECONDS = 5  # how long the check waits for a database server before calling it unreachable
# The lock every sweep of this project takes on a PostgreSQL storage: one 64-bit key for the whole database (a claim
# or a creation is over in milliseconds, so sweeps of other studies hardly wait for it).
LOCK_KEY = int.from_bytes(hashlib.sha256(b"transformer-ablations optuna storage").digest()[:8], "big", signed=True)


def shown(url: str) -> str:
    """A storage URL as it may be printed: its password replaced by ***."""
    return re.sub(r"^([\w+.-]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


def storage_of(config: DictConfig) -> str | None:
    """hydra.sweeper.storage, None for an in-memory study (or a sweeper without storage: Hydra's grid sweeper)."""
    sweeper = OmegaConf.select(config, "hydra.sweeper", default=None)
    if not isinstance(sweeper, DictConfig) or "storage" not in sweeper:
        return None
    storage = sweeper.get("storage")
    return str(storage) if storage else None


def directions_of(direction: Any) -> list[str]:
    """hydra.sweeper.direction as Optuna's list of directions: `maximize`, [minimize, maximize], or the enum the
    sweeper's schema turns them into."""
    items = list(direction) if isinstance(direction, (list, tuple)) or OmegaConf.is_list(direction) else [direction]
    return [item.name if isinstance(item, Enum) else str(item) for item in items]


def backend_of(url: str) -> str:
    """`postgresql`, `sqlite`, `mysql`, ... (SQLAlchemy's name of the database), or `redis`."""
    return re.split(r"[+:]", url, maxsplit=1)[0]


def sqlite_file(url: str) -> Path | None:
    """The file of a sqlite URL (relative to the current directory, as SQLAlchemy reads it); None for another
    database or an in-memory sqlite."""
    if backend_of(url) != "sqlite":
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def absolute(url: str) -> str:
    """The URL with a sqlite file's path made absolute: what study.yaml records, so that a report run from
    another directory opens the same file (and does not create an empty one)."""
    path = sqlite_file(url)
    if path is None or path.is_absolute():
        return url
    return f"sqlite:///{path.resolve()}"


def reach(url: str) -> None:
    """Connect to the storage once (waiting CONNECT_SECONDS at most), or raise ConfigError saying why and how to
    fix it. A sqlite file that does not exist yet is fine when its directory does (sqlite creates it), and is not
    created here."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    where = f"hydra.sweeper.storage={shown(url)}"
    server_fix = (
        "start its database server or correct the URL (sqlite:///<file>.db needs no server, for sweeps on one machine)"
    )
    path = sqlite_file(url)
    if path is not None and not path.exists():
        if not path.parent.is_dir():
            raise ConfigError(f"{where}: the directory {path.parent} does not exist: create it, or give another file")
        return
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args=_connect_args(url))
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise ConfigError(
            f"{where} is not a database URL ({_first_line(error)}): give sqlite:///<file>.db (one machine) or "
            "postgresql+psycopg2://<user>@<host>:<port>/<database> (several)"
        ) from None
    except ImportError as error:
        raise ConfigError(
            f"{where} needs a database driver that is not installed ({_first_line(error)}): for PostgreSQL, pip "
            "install psycopg2-binary (part of the optuna extra: pip install -e '.[optuna]')"
        ) from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as error:
        reason = _first_line(getattr(error, "orig", None) or error)
        raise ConfigError(f"{where} cannot be reached ({reason}): {server_fix}") from None
    finally:
        engine.dispose()


def _connect_args(url: str) -> dict[str, Any]:
    """The driver's connection timeout, where it has one (psycopg2, and MySQL's drivers, count in seconds)."""
    return {"connect_timeout": CONNECT_SECONDS} if backend_of(url) in ("postgresql", "mysql") else {}


def _first_line(error: BaseException | object) -> str:
    text = str(error).strip()
    return (text.splitlines() or [type(error).__name__])[0].strip()


@contextmanager
def storage_lock(url: str | None) -> Iterator[None]:
    """Held while a sweep creates the database's tables or the study, or claims a trial: one sweep at a time, on
    every machine. PostgreSQL: an advisory lock on a connection of its own (the server drops it if the process
    dies). sqlite: an exclusive flock on the database file (sqlite's own locks are fcntl locks, which flock does
    not touch). In memory: nothing to share. Another database: no lock (a warning says so once)."""
    if url is None:
        yield
        return
    backend = backend_of(url)
    if backend == "postgresql":
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
        finally:
            engine.dispose()
        return
    path = sqlite_file(url)
    if path is not None:
        with open(path, "ab") as file:  # sqlite makes the same empty file when it opens a new database
            fcntl.flock(file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)
        return
    _warn_unlocked(backend)
    yield


def _warn_unlocked(backend: str) -> None:
    _warn_once(
        f"hydra.sweeper.storage is a {backend} database, which this project does not lock: sweeps started together "
        "may each run one trial more than n_trials asks for (PostgreSQL and sqlite are locked)"
    )


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    """One `warning:` line, once per process: the checks run both before the sweep (src/cli/preflight.py) and in the
    sweeper."""
    from src.training.report import print_warning

    print_warning(message)


def rdb_storage(url: str, timeout: bool = False):
    """Optuna's storage on the database (it creates the tables when they do not exist). `timeout`: connections
    give up after CONNECT_SECONDS (the checks), rather than the driver's default (the sweep's own)."""
    from optuna.storages import RDBStorage

    engine: dict[str, Any] = {"pool_pre_ping": True}  # a sweep's connection may sit idle for hours between trials
    if timeout and _connect_args(url):
        engine["connect_args"] = _connect_args(url)
    return RDBStorage(url, engine_kwargs=engine)


def reading_storage(url: str):
    """Optuna's storage, opened to read a database that has Optuna's tables. Opened under the storage's lock all the
    same: Optuna stamps the schema's version when it opens a database whose tables are there but not yet stamped,
    which is the moment another sweep is creating them, and two stamps collide (UniqueViolation on
    alembic_version). Under the lock, this waits until that sweep has made its tables."""
    with storage_lock(url):
        return rdb_storage(url, timeout=True)


def has_tables(url: str) -> bool:
    """Whether the database has Optuna's tables (so holds studies); a sqlite file that does not exist has none,
    and is not created."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.pool import NullPool

    path = sqlite_file(url)
    if path is not None and not path.exists():
        return False
    engine = create_engine(url, poolclass=NullPool, connect_args=_connect_args(url))
    try:
        return inspect(engine).has_table("studies")
    finally:
        engine.dispose()


def stored_study(url: str, name: str):
    """The study `name` in the storage, None when there is none, without writing anything: a database without
    Optuna's tables (or a sqlite file that does not exist) holds no study, and is left as it is."""
    import optuna

    if not has_tables(url):
        return None
    try:
        storage = reading_storage(url)
    except RuntimeError as error:  # tables of another Optuna version (optuna>=3 changed them)
        raise ConfigError(
            f"hydra.sweeper.storage={shown(url)} holds studies of another Optuna version ({_first_line(error)}): "
            "give a database of its own to this project's sweeps (they need optuna<3, which Hydra's sweeper pins)"
        ) from None
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def search_space(params: Any, overrides: Sequence[str]) -> dict[str, Any]:
    """The distributions a sweep samples, as Hydra's Optuna sweeper makes them: `hydra.sweeper.params`, then the
    command line's sweep overrides (`model.heads=choice(2,4)`); a plain override (`task=sort`) fixes a value
    instead, and leaves the space."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    lines = [f"{key!s}={value}" for key, value in (params or {}).items()] + [str(o) for o in overrides]
    space, fixed = create_params_from_overrides(lines)
    return {name: distribution for name, distribution in space.items() if name not in fixed}


def fixed_on_command_line(params: Any, overrides: Sequence[str]) -> dict[str, Any]:
    """{a parameter of `hydra.sweeper.params`: the command line's override that gives it a value of its own}, for
    every searched parameter the command line sets to one value (`optimizer.lr=1e-3`, also `++optimizer.lr=1e-3`)
    rather than to a range of its own (`optimizer.lr='interval(1e-4, 1e-3)'`, which replaces the search's)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    searched = {str(key).lstrip("+~"): str(key) for key in (params or {})}
    found = {}
    for override in OverridesParser.create().parse_overrides([str(o) for o in overrides]):
        if not override.is_sweep_override() and override.key_or_group in searched:
            found[searched[override.key_or_group]] = override
    return found


def check_fixed(config: DictConfig) -> None:
    """A searched parameter given one value on the command line (`-m hparams_search=... optimizer.lr=1e-3`).

    Hydra's Optuna sweeper reads `hydra.sweeper.params`, then the command line, into one list of overrides; a plain
    value makes the parameter a fixed one, passed to every trial's run as given, and a fixed parameter is taken out
    of the search space (hydra_optuna_sweeper/_impl.py, create_params_from_overrides and sweep). So every trial
    runs with that value, and the study records no value of it. That is legal and useful (search the rest at a
    learning rate of one's own; make every trial diverge, in a test), but was silent: it is one `warning:` line,
    naming each such parameter.

    Refused in one line, before anything is written, when it cannot be what was meant:
    - the override has a prefix (`++optimizer.lr=1e-3`): Hydra's sweeper compares the keys as written, so the
      parameter stays in the search, each run gets the sampled value and then this one, and the study records the
      sampled value, which the run did not use;
    - every searched parameter is fixed, and the command line searches none of its own: every trial would run the
      same settings.
    Nothing to check for a sweeper that does not search (Hydra's basic sweeper has no direction)."""
    sweeper = OmegaConf.select(config, "hydra.sweeper", default=None)
    if not isinstance(sweeper, DictConfig) or sweeper.get("direction") is None:
        return
    params = sweeper.get("params") or {}
    overrides = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=None) or []]
    fixed = fixed_on_command_line(params, overrides)
    if not fixed:
        return
    for key, override in fixed.items():
        if override.get_key_element() != key:  # a prefix: ++, ~
            changed = changed_after_planning(override, key, params, "every trial's run", "search has sampled")
            raise ConfigError(
                f"{changed}, and the study would record the sampled value, not the one the run used: write "
                f"{plain(override, key)} to fix {key} for every trial (the search then leaves it out), or leave it "
                "out to search it"
            )
    custom = sweeper.get("custom_search_space") or sweeper.get("search_space")
    if not search_space(params, overrides) and not custom:
        raise ConfigError(
            f"{given_on_command_line(fixed)} on the command line fix{'es' if len(fixed) == 1 else ''} every "
            f"parameter the search searches ({planned_in_params(fixed, params)}), so all its trials would run the "
            "same settings: leave one of them out to search it, or run these settings once, without -m"
        )
    it, its = pronouns(fixed)
    example = shlex.quote(f"{[*fixed][0]}={params[[*fixed][0]]}")
    _warn_once(
        f"{fixed_clause(fixed, params, 'trial', 'search', 'searches')}: leave {it} out to search {it}, or give a "
        f"range of {its} own, e.g. {example}"
    )


def fixed_clause(fixed: dict[str, Any], params: Any, each: str, sweep: str, sweeps: str) -> str:
    """How a `warning:` line says that the command line fixes parameters of `hydra.sweeper.params`
    (fixed_on_command_line), in the words of the sweeper whose plan it changes: for the Optuna search (check_fixed)
    `optimizer.lr=1e-3 on the command line fixes optimizer.lr for every trial, so the search no longer searches it
    (hydra.sweeper.params has optimizer.lr=tag(log, interval(1e-4, 3e-3)))`, for a grid sweep
    (src/cli/preflight.py check_grid_fixed) `... for every job, so the sweep no longer sweeps it (...)`."""
    names = " and ".join(fixed) if len(fixed) < 3 else ", ".join([*fixed][:-1]) + f" and {[*fixed][-1]}"
    return (
        f"{given_on_command_line(fixed)} on the command line fix{'es' if len(fixed) == 1 else ''} {names} for every "
        f"{each}, so the {sweep} no longer {sweeps} {pronouns(fixed)[0]} (hydra.sweeper.params has "
        f"{planned_in_params(fixed, params)})"
    )


def changed_after_planning(override: Any, key: str, params: Any, each: str, planned: str) -> str:
    """How a refusal says that an override with a prefix (`++optimizer.lr=1e-3`) reaches every run besides the
    planned value of `hydra.sweeper.params`: the sweepers match the command line's keys to the params' as written,
    so `++optimizer.lr` does not replace `optimizer.lr` but comes after it, in every run."""
    return (
        f"{override.input_line} on the command line would change {key} in {each} after the {planned} it "
        f"(hydra.sweeper.params has {key}={params[key]})"
    )


def plain(override: Any, key: str) -> str:
    """The override without its prefix, as it fixes the parameter: `optimizer.lr=1e-3` for `++optimizer.lr=1e-3`
    (`optimizer.lr=<value>` for `~optimizer.lr`, which has none)."""
    return f"{key}={override.get_value_element_as_str() if override.value() is not None else '<value>'}"


def given_on_command_line(fixed: dict[str, Any]) -> str:
    """The overrides that fix parameters, as they were typed: `optimizer.lr=1e-3 model.d_model=64`."""
    return " ".join(override.input_line for override in fixed.values())


def planned_in_params(fixed: dict[str, Any], params: Any) -> str:
    """What `hydra.sweeper.params` planned for the fixed parameters: `model.heads=1,2,4,8, seed=0,1,2`."""
    return ", ".join(f"{key}={params[key]}" for key in fixed)


def pronouns(fixed: dict[str, Any]) -> tuple[str, str]:
    """The words a line refers to the fixed parameters with: ('it', 'its') for one, ('them', 'their') for more."""
    return ("it", "its") if len(fixed) == 1 else ("them", "their")


def describe(distribution: Any) -> str:
    """A distribution as one writes it in hydra.sweeper.params: `tag(log, interval(0.0001, 0.003))`,
    `range(0, 400, step=100)`, `choice(32, 64, 128)`."""
    kind = type(distribution).__name__
    if kind == "CategoricalDistribution":
        return f"choice({', '.join(str(choice) for choice in distribution.choices)})"
    if kind in ("LogUniformDistribution", "IntLogUniformDistribution"):
        return f"tag(log, interval({distribution.low}, {distribution.high}))"
    if kind == "UniformDistribution":
        return f"interval({distribution.low}, {distribution.high})"
    if kind == "IntUniformDistribution":
        return f"range({distribution.low}, {distribution.high}, step={distribution.step})"
    if kind == "DiscreteUniformDistribution":
        return f"range({distribution.low}, {distribution.high}, step={distribution.q})"
    return repr(distribution)


def stored_space(study) -> dict[str, Any]:
    """The search space a stored study was made with: what the sweep that created it recorded (SPACE_ATTR), or
    else the distributions its trials were sampled from (a study made by Hydra's own sweeper)."""
    from optuna.distributions import json_to_distribution

    recorded = study.user_attrs.get(SPACE_ATTR)
    if isinstance(recorded, dict):
        return {name: json_to_distribution(text) for name, text in recorded.items()}
    space: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        space.update(trial.distributions)
    return space


@dataclass
class Search:
    """What a sweep searches, as a stored study must match it: the directions, the search space (parameter ->
    Optuna distribution) and the objective (the metric each trial returns; None when it cannot be told)."""

    directions: list[str]
    space: dict[str, Any]
    objective: str | None = None
    fixed: dict[str, str] = field(default_factory=dict)  # searched parameters the command line fixes: as given


def objective_of(config: DictConfig) -> str | None:
    """The metric a run returns to the sweeper: `objective=`, else the task's main metric (as src.run decides)."""
    objective = OmegaConf.select(config, "objective", default=None)
    if objective:
        return str(objective)
    try:
        from src.data import task_spec

        return task_spec(str(config.task.name)).main_metric[0]
    except Exception:  # an unknown task: src.run names it; nothing to compare here
        return None


def check_direction(config: DictConfig, directions: list[str]) -> None:
    """The direction agrees with the objective (what src.run checks in each job), checked before a stored study is
    made: a study made the wrong way round would stay so, and later refuse the right direction."""
    from src.cli.validation import check_objective
    from src.data import task_spec
    from src.data.errors import DataError
    from src.training.metrics import higher_is_better

    if len(directions) != 1:
        return
    try:
        spec = task_spec(str(config.task.name))
    except DataError:  # an unknown task: src.run names it
        return
    check_objective(config.get("objective"), spec, bool(config.get("test_after_fit")))  # a mistyped objective
    metric = str(config.get("objective") or spec.main_metric[0])
    higher = higher_is_better(metric)
    wanted = "maximize" if higher else "minimize"
    if directions[0] != wanted:
        what = f"objective={metric}" if config.get("objective") else f"task={spec.name}'s main metric {metric}"
        raise ConfigError(
            f"hydra.sweeper.direction={directions[0]}, but {what} is {'higher' if higher else 'lower'}-is-better: "
            f"set hydra.sweeper.direction={wanted}"
        )


def search_of(config: DictConfig) -> Search:
    """The search a sweep with this composed config (`hydra` included) would make."""
    sweeper = config.hydra.sweeper
    overrides = OmegaConf.select(config, "hydra.overrides.task", default=None) or []
    fixed = fixed_on_command_line(sweeper.get("params"), overrides)
    return Search(
        directions_of(sweeper.direction),
        search_space(sweeper.get("params"), overrides),
        objective_of(config),
        {key: override.input_line for key, override in fixed.items()},
    )


def check_stored(study, url: str, search: Search) -> None:
    """A stored study can be continued by this sweep: it optimises the same metric the same way, over the same
    search space (else its trials' values, or their parameters, would not compare)."""
    name = f"study {study.study_name} in {shown(url)}"
    new_name = "or give this search a new hydra.sweeper.study_name"
    stored = [direction.name.lower() for direction in study.directions]
    objective = study.user_attrs.get(OBJECTIVE_ATTR)
    other_metric = objective is not None and search.objective is not None and objective != search.objective
    if (stored != search.directions and "not_set" not in stored) or other_metric:
        wanted = stored[0] if len(stored) == 1 else "[" + ",".join(stored) + "]"
        made = f"{wanted} {objective}" if objective else wanted
        this = " ".join([",".join(search.directions), *([search.objective] if objective and search.objective else [])])
        fix = (f"objective={objective} " if objective else "") + f"hydra.sweeper.direction={wanted}"
        raise ConfigError(
            f"{name} was made to {made}, but this search would {this}: give {fix} to continue it, {new_name}"
        )
    space = search.space
    recorded = stored_space(study)
    if not recorded:  # made, and no trial sampled yet: nothing to compare with
        return

    def typed(parameter: str, distribution: Any) -> str:  # as the command line takes it (a sweep override)
        return shlex.quote(f"{parameter}={describe(distribution)}")

    for parameter in [*space, *(p for p in recorded if p not in space)]:
        if parameter not in recorded:
            raise ConfigError(
                f"this search has {parameter}={describe(space[parameter])}, which {name} does not search (it "
                f"searches {', '.join(recorded)}): leave {parameter} out of the search to continue it, {new_name}"
            )
        if parameter in search.fixed:  # the command line's value took it out of the search (check_fixed)
            raise ConfigError(
                f"{name} searches {parameter}={describe(recorded[parameter])}, which {search.fixed[parameter]} on "
                f"the command line fixes for every trial of this search: leave {search.fixed[parameter]} out to "
                f"continue the study, {new_name}"
            )
        if parameter not in space:
            raise ConfigError(
                f"{name} searches {parameter}={describe(recorded[parameter])}, which this search leaves out: add "
                f"{typed(parameter, recorded[parameter])} to continue it, {new_name}"
            )
        if space[parameter] != recorded[parameter]:
            raise ConfigError(
                f"this search has {parameter}={describe(space[parameter])}, but {name} searches "
                f"{parameter}={describe(recorded[parameter])}: give {typed(parameter, recorded[parameter])} to "
                f"continue it, {new_name}"
            )


def resumed_as(trials: Sequence[Any]) -> dict[int, int]:
    """{an interrupted trial's number: the number of the trial that went on with its job} (RESUMES). Read from the
    new trials: Optuna refuses to change a trial once it is finished, so the interrupted one cannot say it."""
    return {int(trial.user_attrs[RESUMES]): trial.number for trial in trials if RESUMES in trial.user_attrs}


def claimed(study) -> list:
    """The study's trials that count toward n_trials: all of them but those enqueued and not yet started
    (WAITING: the next ask takes them) and those interrupted and since resumed (the trial that went on with the
    job holds their place: one job, one place). An interrupted trial not yet resumed keeps its place, for the
    sweep that resumes it."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    superseded = resumed_as(trials)
    return [trial for trial in trials if trial.state != TrialState.WAITING and trial.number not in superseded]


def held_trials(study, n_trials: int | None = None) -> str:
    """How many trials the study holds and how many of them count toward n_trials (claimed), in the words of the
    line a sweep ends with (which gives `n_trials`) and of check_study's refusal: `2 trials (n_trials=2)`, or, when
    some do not count, `3 trials, 2 of which count toward n_trials=2 (trial 0 was resumed as trial 1)`. The
    study's own count, the one the report gives (`3 trials: 2 completed, 1 interrupted and resumed`), comes first,
    and the difference is said with the trials that make it."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    held = f"{len(trials)} trial{'' if len(trials) == 1 else 's'}"
    toward = "n_trials" if n_trials is None else f"n_trials={n_trials}"
    counted = len(claimed(study))
    if counted == len(trials):
        return held if n_trials is None else f"{held} ({toward})"
    why = [f"trial {old} was resumed as trial {new}" for old, new in sorted(resumed_as(trials).items())]
    waiting = [str(trial.number) for trial in trials if trial.state == TrialState.WAITING]
    if waiting:
        one = len(waiting) == 1
        why.append(f"trial{'' if one else 's'} {', '.join(waiting)} {'waits' if one else 'wait'} to start")
    return f"{held}, {counted} of which count toward {toward} ({'; '.join(why)})"


def _rdb(study):
    """The study's RDBStorage (Optuna wraps it in a cache), None for a study in memory or in Redis: those keep no
    heartbeats (a study in memory ends with its sweep's process anyway)."""
    from optuna.storages import RDBStorage

    storage = getattr(study._storage, "_backend", study._storage)
    return storage if isinstance(storage, RDBStorage) else None


def beat(study, trials: Sequence[Any]) -> None:
    """Record now, by the database's clock, that these running trials' sweep is alive: Optuna's own heartbeat
    (RDBStorage.record_heartbeat, the table its heartbeat_interval option fills inside study.optimize, which this
    sweeper's ask-and-tell loop does not run)."""
    storage = _rdb(study)
    for trial in trials if storage is not None else ():
        storage.record_heartbeat(trial._trial_id)


@contextmanager
def heartbeats(study, trials: Sequence[Any]) -> Iterator[None]:
    """While the trials' jobs run: a heartbeat for each every HEARTBEAT_SECONDS, from a thread of the sweep's
    process, so that it stops when that process dies, however it dies. A database that does not answer for a
    moment misses a beat, not the sweep."""
    import threading

    if _rdb(study) is None or not trials:
        yield
        return
    stop = threading.Event()

    def beating() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                beat(study, trials)
            except Exception as error:  # the next beat tries again; a trial silent for GRACE_SECONDS is taken as killed
                log.debug(f"heartbeat not recorded: {_first_line(error)}")

    thread = threading.Thread(target=beating, name="trial heartbeats", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def silent_for(study) -> dict[int, float]:
    """{trial number: seconds since its last heartbeat} for the study's running trials that have one, by the
    database's clock (the one every heartbeat was recorded by, whichever machine sent it). A running trial with no
    heartbeat (made by Hydra's own sweeper, or before sweeps recorded them) is not in it: nobody can tell whether
    it runs. Read only.

    Read here rather than with optuna.storages.fail_stale_trials: that one fails the stale trials without a word
    and cannot mark them (Optuna refuses to change a finished trial), so a resumed search could not tell them from
    trials whose job failed; and Optuna 2.10 measures a heartbeat's age with timedelta.seconds, which drops whole
    days (a trial silent for one day and a minute would look alive)."""
    from optuna.storages._rdb import models
    from optuna.trial import TrialState
    from sqlalchemy import func

    storage = _rdb(study)
    if storage is None:
        return {}
    session = storage.scoped_session()
    try:
        now = session.execute(func.now()).scalar().replace(tzinfo=None)  # PostgreSQL's is aware, its rows are not
        rows = (
            session.query(models.TrialModel.number, models.TrialHeartbeatModel.heartbeat)
            .join(models.TrialHeartbeatModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
            .filter(models.TrialModel.study_id == study._study_id, models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
    finally:
        session.close()
    return {int(number): max(0.0, (now - heartbeat).total_seconds()) for number, heartbeat in rows}


def killed_trials(study) -> dict[int, float]:
    """{trial number: seconds silent} for the running trials whose sweep is gone: no heartbeat for GRACE_SECONDS."""
    return {number: seconds for number, seconds in silent_for(study).items() if seconds > GRACE_SECONDS}


def how_long(seconds: float) -> str:
    """`45 s`, `3 min`, `2 h 5 min`, `3 days`: how long a trial has been silent, as a line says it."""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def fail_killed(study) -> list[tuple[Any, float]]:
    """Fail the study's running trials whose sweep is gone (killed_trials), each first marked killed (KILLED, the
    seconds it was silent) and interrupted (INTERRUPTED): the search it belongs to goes on with it when resumed
    (ckpt_path=last), from its job's last checkpoint, as it goes on with an interrupted one, and until then it keeps
    its place in n_trials. Returns those failed here, as (trial, seconds silent); one whose sweep told it first is
    left to that sweep. Called under the storage's lock, by every sweep before it claims."""
    from optuna.trial import TrialState

    failed = []
    trials = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
    for number, seconds in sorted(killed_trials(study).items()):
        trial_id = trials[number]._trial_id
        attrs = trials[number].user_attrs
        swept, job, here = attrs.get(SWEEP_DIR), attrs.get(NUMBER), attrs.get(HOST) == socket.gethostname()
        job_dir = job_dir_of(Path(swept), int(job)) if here and swept and job is not None else None
        try:
            if job_dir is not None:  # its sweep ran on this machine: the report names its job
                study._storage.set_trial_user_attr(trial_id, JOB_DIR, str(job_dir.resolve()))
            study._storage.set_trial_user_attr(trial_id, KILLED, int(seconds))
            study._storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
            study.tell(number, state=TrialState.FAIL)
        except RuntimeError:  # finished meanwhile: its sweep was alive after all, and has told it
            continue
        failed.append((study._storage.get_trial(trial_id), seconds))
    return failed


def stopped_word(trial) -> str:
    """How a trial the search resumes was stopped: `killed` (its sweep's process gone) or `interrupted`."""
    return "killed" if trial.user_attrs.get(KILLED) is not None else "interrupted"


def interrupted_in(study, sweep_dir: Path) -> list:
    """The trials a search resumed in `sweep_dir` goes on with: interrupted there and not yet resumed, by job
    number. Another sweep's (another machine's) are left to it."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    superseded = resumed_as(trials)
    here = str(Path(sweep_dir).resolve())
    found = [
        trial
        for trial in trials
        if trial.state == TrialState.FAIL
        and trial.user_attrs.get(INTERRUPTED)
        and trial.user_attrs.get(SWEEP_DIR) == here
        and NUMBER in trial.user_attrs
        and trial.number not in superseded
    ]
    return sorted(found, key=lambda trial: int(trial.user_attrs[NUMBER]))


def resumes_search(config: DictConfig) -> bool:
    """ckpt_path=last with the project's Optuna sweeper: the search in hydra.sweep.dir goes on where it stopped."""
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    return target == SWEEPER and OmegaConf.select(config, "ckpt_path", default=None) == RESUME


def _settings(overrides: Sequence[str]) -> dict[str, str]:
    """A sweep's task overrides as {key: value}, its ckpt_path aside (a resume adds ckpt_path=last)."""
    pairs = (str(override).partition("=") for override in overrides)
    return {key: value for key, _, value in pairs if key.lstrip("+~") != "ckpt_path"}


def check_resume(config: DictConfig) -> None:
    """ckpt_path=last with the project's Optuna sweeper (resumes_search): hydra.sweep.dir must be given and hold a
    search whose study is kept in a database (its study.yaml), of the study and storage this command names, and
    the command must have the settings that search was started with (else its trials would go on, or new ones
    start, with other settings than the study's others). Raises ConfigError (one line, naming the fix); writes
    nothing. Called before anything is written (src/cli/preflight.py), and by the sweeper."""
    from src.provenance import shell_override

    if not any(str(o).startswith("hydra.sweep.dir=") for o in config.hydra.overrides.hydra):
        raise ConfigError(
            "ckpt_path=last with an Optuna search resumes the search in its own directory: add "
            "hydra.sweep.dir=<the search's directory> (the command an interrupted trial printed has it)"
        )
    sweep_dir = Path(str(config.hydra.sweep.dir))
    saved = read_record(sweep_dir)
    if saved is None:
        if any(sweep_dir.glob("*/.hydra")):
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir} holds no search whose study is kept in a database (it has no "
                f"{STUDY_FILE}: a grid sweep, or a search whose study was in memory and ended with it), so "
                "ckpt_path=last has no search to resume: resume an interrupted job's training alone with the "
                "command it printed, or drop ckpt_path=last and give another hydra.sweep.dir to start a new search"
            )
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds no search to resume (ckpt_path=last): give the directory of the "
            "interrupted search, or drop ckpt_path=last to start a new one"
        )
    name, storage = str(saved["study_name"]), str(saved["storage"])
    fix = f"give hydra.sweeper.study_name={name} {shell_override('hydra.sweeper.storage', shown(storage))}"
    url = storage_of(config)
    searched = f"hydra.sweep.dir={sweep_dir} is a search of study {name} in {shown(storage)}"
    if url is None:
        raise ConfigError(f"{searched}, and this command keeps its study in memory: {fix} to resume it")
    this_name = str(config.hydra.sweeper.get("study_name"))
    if (this_name, absolute(url)) != (name, storage):
        raise ConfigError(
            f"{searched}, and this command names study {this_name} in {shown(absolute(url))}: {fix} to resume it, "
            "or drop ckpt_path=last and give another hydra.sweep.dir to start a new search"
        )
    recorded = saved.get("overrides")
    if not isinstance(recorded, list):  # a study.yaml written before sweeps recorded their overrides
        return
    before, now = _settings(recorded), _settings(config.hydra.overrides.task)
    if before != now:
        was = " ".join(f"{k}={v}" for k, v in before.items() if now.get(k) != v)
        changed = " ".join(f"{k}={v}" for k, v in now.items() if before.get(k) != v)
        if was and changed:
            difference = f"started with {was}, and this command has {changed}"
        elif changed:  # a setting added on resume
            difference = f"started without {changed}, which this command adds"
        else:  # a setting left out on resume
            difference = f"started with {was}, which this command leaves out"
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds a search {difference}: resume "
            f"a search with the overrides it was started with (its {STUDY_FILE} lists them), or start a new one "
            "without ckpt_path=last"
        )


def stopped_in(study, sweep_dir: Path, killed: dict[int, float]) -> list:
    """The trials a search resumed in `sweep_dir` would go on with: those interrupted there (interrupted_in), and
    those still running there to Optuna whose sweep is gone (`killed`, killed_trials), which it fails first."""
    here = str(Path(sweep_dir).resolve())
    running = [
        t for t in study.get_trials(deepcopy=False) if t.number in killed and t.user_attrs.get(SWEEP_DIR) == here
    ]
    return [*interrupted_in(study, sweep_dir), *running]


def check_stopped(study, sweep_dir: Path) -> None:
    """ckpt_path=last resumes a search that has stopped. A trial of its directory still running with a recent
    heartbeat says its sweep is alive: resuming now would train that trial's job twice at once, in one directory.
    Refused in one line, which says how long to wait when that sweep was in fact killed outright: its trials count
    as killed once they have had no heartbeat for GRACE_SECONDS, and the resume then goes on with them."""
    here = str(Path(sweep_dir).resolve())
    silent = silent_for(study)
    alive = [
        trial
        for trial in study.get_trials(deepcopy=False)
        if trial.number in silent and silent[trial.number] <= GRACE_SECONDS and trial.user_attrs.get(SWEEP_DIR) == here
    ]
    if not alive:
        return
    latest = min(silent[trial.number] for trial in alive)
    numbers = ", ".join(str(trial.number) for trial in alive)
    host = alive[0].user_attrs.get(HOST)
    raise ConfigError(
        f"hydra.sweep.dir={sweep_dir} is a search still running{f' on {host}' if host else ''}: its trial"
        f"{'' if len(alive) == 1 else 's'} {numbers} had a heartbeat {how_long(latest)} ago: let it end, or stop it "
        f"with Ctrl-C, then resume it; if its process was killed, run this again in "
        f"{how_long(GRACE_SECONDS - latest + 1)}, when its trials have had no heartbeat for {GRACE_SECONDS} s and "
        "count as killed"
    )


def check_study(config: DictConfig) -> None:
    """Before a sweep writes anything (src/cli/preflight.py, and the sweeper again): its direction agrees with its
    objective, its study storage is reachable, and a study stored under its name can be continued by it (same
    objective and direction, same search space, trials left to run). Raises ConfigError (one line, naming the
    fix); writes nothing. Nothing to check for an in-memory study (src.run checks the direction in each job) or a
    grid sweep."""
    url = storage_of(config)
    if url is None:
        return
    sweeper = config.hydra.sweeper
    if backend_of(url) == "redis":  # Optuna's other storage: not a SQL database, so nothing here applies
        _warn_unlocked("redis")
        return
    name = sweeper.get("study_name")
    if not name:
        raise ConfigError(
            f"hydra.sweeper.storage={shown(url)} keeps the study, but hydra.sweeper.study_name is not set, so no "
            "later sweep (or other machine) could find it: give hydra.sweeper.study_name=<name>"
        )
    search = search_of(config)
    check_direction(config, search.directions)
    reach(url)
    study = stored_study(url, name)
    if study is None:
        return
    check_stored(study, url, search)
    killed = killed_trials(study)
    if resumes_search(config):
        check_stopped(study, Path(str(config.hydra.sweep.dir)))
    wanted = int(sweeper.n_trials)
    held = claimed(study)
    if len(held) < wanted:
        return
    if resumes_search(config) and stopped_in(study, Path(str(config.hydra.sweep.dir)), killed):
        return  # the places of its interrupted (or killed) trials are theirs: the resumed search runs them, no more
    running = [trial for trial in held if not trial.state.is_finished() and trial.number not in killed]
    where = f"study {name} in {shown(url)} already holds {held_trials(study)}"
    if not running:
        raise ConfigError(
            f"{where}, all that hydra.sweeper.n_trials={wanted} asks for (it counts the study's trials, whichever "
            f"sweep ran them): raise hydra.sweeper.n_trials to run more, or give a new hydra.sweeper.study_name"
        )
    _warn_once(
        f"{where}, all that hydra.sweeper.n_trials={wanted} asks for, {len(running)} of them still running: this "
        "sweep runs none, and its report lists the study"
    )


def open_study(url: str | None, name: str | None, search: Search, sampler=None):
    """The study, created once: under the storage's lock, so the sweeps that start together on an empty database
    create its tables and the study one after the other, and each later one finds them. Checked again here (the
    preflight check may have seen no study a moment before another machine made one). Records the search space in
    the study (and the objective), so that a sweep that joins before any trial is sampled is still compared with
    it."""
    import optuna
    from optuna.distributions import distribution_to_json

    sql = url is not None and backend_of(url) != "redis"
    with storage_lock(url):
        storage: Any = rdb_storage(url) if sql and url is not None else url
        if sql and url is not None and name and _has_study(storage, name):
            check_stored(optuna.load_study(study_name=name, storage=storage), url, search)
        study = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, directions=search.directions, load_if_exists=True
        )
        if url is not None and SPACE_ATTR not in study.user_attrs:
            study.set_user_attr(SPACE_ATTR, {key: distribution_to_json(d) for key, d in search.space.items()})
        if url is not None and search.objective and OBJECTIVE_ATTR not in study.user_attrs:
            study.set_user_attr(OBJECTIVE_ATTR, search.objective)
    return study


def _has_study(storage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial `number` of a search seeded with `seed`: distinct for every trial, and not
    simply seed + number (a search seeded 1 would repeat the draws of one seeded 0, shifted by one trial)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def seeded_samplers(sampler_config: Any):
    """A function trial number -> a sampler made from hydra.sweeper.sampler with that trial's seed; None when the
    sampler has no seed (each process draws its own random numbers already) or is Hydra's grid sampler (made from
    the search space itself)."""
    from hydra.utils import instantiate

    if not isinstance(sampler_config, DictConfig) or sampler_config.get("seed") is None:
        return None
    if sampler_config.get("_partial_"):
        return None
    seed = int(sampler_config.seed)
    return lambda number: instantiate(sampler_config, seed=trial_seed(seed, number))


def record(
    sweep_dir: Path,
    url: str,
    name: str,
    directions: list[str],
    n_trials: int,
    overrides: list[str] | None = None,
    resume: str | None = None,
    starts_from: str | None = None,
) -> None:
    """study.yaml in the sweep directory: the study its trials belong to, for `python -m src.report <sweep dir>`;
    the sweep's own overrides and the command that resumes it, for its interrupted jobs to print (a job may run in
    another process, or on another machine, and knows only its own overrides) and for that command to be checked
    against (check_resume)."""
    import yaml

    from src.provenance import module_command

    sweep_dir.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {
        "study_name": name,
        "storage": absolute(url),
        "direction": directions[0] if len(directions) == 1 else directions,
        "n_trials": n_trials,
        "host": socket.gethostname(),
    }
    if overrides is not None:
        saved["overrides"] = [o for o in overrides if not o.lstrip("+~").startswith("ckpt_path=")]
        given = [o.partition("=")[2] for o in overrides if o.lstrip("+~").startswith("ckpt_path=")]
        starts_from = starts_from or next((value for value in given if value != RESUME), None)
    if starts_from:  # the checkpoint each trial starts from (the search's own ckpt_path): a resume keeps it
        saved["starts_from"] = starts_from
    if resume is not None:
        saved["resume"] = resume
    text = yaml.safe_dump(saved, sort_keys=False, width=10_000)  # wide: the command on one line, as it is pasted
    # this machine's interpreter, as in `resume` below: both are pasted beside the sweep they name (module_command)
    report = module_command("src.report", "<this directory>")
    note = f"# The Optuna study this sweep ran trials of; {report} lists all its trials.\n"
    (sweep_dir / STUDY_FILE).write_text(note + text)


def read_record(sweep_dir: Path) -> dict[str, Any] | None:
    """What study.yaml says (study_name, storage, ...), None without one."""
    import yaml

    try:
        saved = yaml.safe_load((sweep_dir / STUDY_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return saved if isinstance(saved, dict) and saved.get("storage") and saved.get("study_name") else None


def resume_arguments(config: DictConfig) -> list[str]:
    """The arguments that resume a search where it stopped (its composed config, `hydra` included): its own
    overrides, in its own directory, with ckpt_path=last (src/sweep/stacked.py's resume_command, for a search)."""
    from src.sweep.resume import sweep_resume_arguments

    return sweep_resume_arguments(config.hydra, Path(str(config.hydra.sweep.dir)))


def job_dir_of(sweep_dir: Path, number: int) -> Path | None:
    """The directory of job `number` of a sweep (<number>_<its settings>, conf/config.yaml), None when that job
    never started."""
    from src.sweep.runs import job_number

    found = [hydra.parent for hydra in sweep_dir.glob("*/.hydra") if job_number(hydra.parent) == number]
    return found[0] if found else None


def sweep(impl: Any, arguments: list[str]) -> None:
    """The project's Optuna sweep (see the module's docstring): Hydra's OptunaSweeperImpl `impl` parses the search
    space and makes each trial's overrides, as it does for its own loop; this loop claims the study's trials, so
    that all the sweeps of one study run n_trials between them. With ckpt_path=last it first resumes the trials
    its directory's jobs left interrupted."""
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    from src.cli.command_line import user_errors_as_one_line
    from src.provenance import command_line

    impl._process_searchspace_config()
    space, fixed = create_params_from_overrides(impl._parse_sweeper_params_config() + list(arguments))
    space = {**(impl.search_space_distributions or {}), **space}
    for parameter in fixed:
        space.pop(parameter, None)
    n_trials = impl.n_trials
    grid = isinstance(impl.sampler, functools.partial) and impl.sampler.func is optuna.samplers.GridSampler
    if grid:  # as Hydra's sweeper: the grid is made from the search space, and caps the trials
        choices = {parameter: impl._to_grid_sampler_choices(d) for parameter, d in space.items()}
        impl.sampler = impl.sampler(choices)
        n_trials = min(n_trials, _product(len(values) for values in choices.values()))
    directions = impl._get_directions()
    url = str(impl.storage) if impl.storage else None
    resuming = resumes_search(impl.config)
    with user_errors_as_one_line():
        # Checked here too, so that the sweeper refuses in one line whoever calls it (Hydra calls a sweeper before
        # it writes anything into the sweep directory); open_study checks again under the lock, against a study
        # another machine made a moment ago.
        if resuming:
            check_resume(impl.config)
        check_study(impl.config)
        check_fixed(impl.config)
        made = Search(directions, space, objective_of(impl.config), search_of(impl.config).fixed)
        study = open_study(url, impl.study_name, made, impl.sampler)
    sweep_dir = Path(str(impl.config.hydra.sweep.dir))
    # The search's own ckpt_path=<a checkpoint> (each trial starts from it), kept in study.yaml: a resume's
    # ckpt_path=last is for the interrupted trials' jobs, and its new trials start where the first command's did
    starts_from = (read_record(sweep_dir) or {}).get("starts_from") if resuming else None
    if resuming:
        fixed.pop("ckpt_path", None)
        if starts_from:
            fixed["ckpt_path"] = starts_from
    if url is not None:
        resume = command_line(argv=resume_arguments(impl.config))
        overrides = list(impl.config.hydra.overrides.task)
        record(sweep_dir, url, study.study_name, directions, n_trials, overrides, resume, starts_from)
    log.info(f"Study name: {study.study_name}")
    log.info(f"Storage: {shown(url) if url else 'in memory'}")
    log.info(f"Sampler: {type(impl.sampler).__name__}")
    log.info(f"Directions: {directions}")
    search = _Trials(impl, study, space, fixed, directions, grid, sweep_dir)
    if resuming:
        search.resume_interrupted(url)
        impl.job_idx = search.next_job_number()  # new jobs after those the directory holds
    samplers = None if grid else seeded_samplers(OmegaConf.select(impl.config, "hydra.sweeper.sampler"))
    while True:
        batch = []
        with storage_lock(url):  # count and ask as one step: no other sweep takes a place in between
            search.fail_killed()
            places = n_trials - len(claimed(study))
            for _ in range(min(impl.n_jobs, places)):
                if samplers is not None:
                    study.sampler = samplers(len(study.get_trials(deepcopy=False)))  # the number it will get
                trial = study.ask()
                (overrides,) = impl._configure_trials([trial], space, fixed)
                search.claim(trial, impl.job_idx + len(batch))
                batch.append((trial, overrides))
        if not batch:
            break
        returns = search.launch(batch, impl.job_idx)
        impl.job_idx += len(returns)
        search.tell(batch, returns)
    log.info(f"The study holds {held_trials(study, n_trials)}; this sweep ran {search.launched} of them.")
    _save_best(study, sweep_dir, directions, search.launched)


class _Trials:
    """What the sweep loop does with the trials it claims: launch their jobs (with a heartbeat for each while they
    run), tell the study how each ended, fail the study's trials whose sweep is gone, and (a resumed search) go on
    with the trials its directory's jobs left interrupted or killed."""

    def __init__(self, impl, study, space, fixed, directions: list[str], grid: bool, sweep_dir: Path) -> None:
        self.impl, self.study, self.space, self.fixed = impl, study, space, fixed
        self.directions, self.grid, self.sweep_dir = directions, grid, sweep_dir
        self.host = socket.gethostname()
        self.launched = 0  # the trials this sweep has run (or read back)

    def claim(self, trial, number: int) -> None:
        """Where the trial runs: this host, this sweep, job `number` (which names its directory)."""
        trial.set_user_attr(HOST, self.host)
        trial.set_user_attr(SWEEP_DIR, str(self.sweep_dir.resolve()))
        trial.set_user_attr(NUMBER, number)
        beat(self.study, [trial])  # alive from the start: a sweep killed before its job starts leaves a killed trial

    def launch(self, batch: list, first: int) -> list:
        """The batch's jobs, numbered from `first`. Interrupted (Ctrl-C, SIGTERM: the job has printed how to go on)
        or a launcher that failed: the trials are told failed, so the study does not keep them running, and an
        interrupted one is marked so, with its job's directory, for the resumed search to find."""
        try:
            with heartbeats(self.study, [trial for trial, _ in batch]):
                returns = self.impl.launcher.launch([overrides for _, overrides in batch], initial_job_idx=first)
        except BaseException as error:
            interrupted = isinstance(error, KeyboardInterrupt) or (
                isinstance(error, SystemExit) and error.code in INTERRUPT_EXITS
            )
            for trial, _ in batch:
                self._tell_failed(trial, interrupted)
            raise
        self.launched += len(returns)
        return list(returns)

    def tell(self, batch: list, returns: list) -> None:
        """Each job's value to its trial; a job that failed, diverged or returned no number is a failed trial, said
        in one line with its run's reason. Past hydra.sweeper.max_failure_rate a job that raised ends the sweep with
        its own error."""
        from optuna.trial import TrialState

        failures = []
        for (trial, _), result in zip(batch, returns):
            trial = self._trial_to_tell(trial)
            job_dir = OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir") if result.hydra_cfg else None
            if job_dir is not None:
                trial.set_user_attr(JOB_DIR, str(job_dir))
            try:
                values = _values(result, len(self.directions))
            except Exception as error:  # the job failed, or returned no number
                self.study.tell(trial, state=TrialState.FAIL)
                _warn_failed(trial.number, Path(job_dir) if job_dir else None, error)
                failures.append(error)
                continue
            self._tell_values(trial, values)
        if len(failures) / len(returns) > self.impl.max_failure_rate:
            # A job that raised (sweep_catch_errors=false) ends the sweep with its own error, as in Hydra's sweeper.
            # One the project caught returned None, has had its line above, and the search goes on (Hydra's
            # sweeper logged "Failed [...] times" for it, and went on too).
            for result in returns:
                _ = result.return_value

    def _tell_values(self, trial, values: list[float]) -> None:
        from optuna.trial import TrialState

        try:
            self.study.tell(trial, state=TrialState.COMPLETE, values=values)
        except RuntimeError as error:  # the grid sampler stops the study when the grid is done
            if not (self.grid and "`Study.stop` is supposed to be invoked" in str(error)):
                raise

    def _trial_to_tell(self, trial):
        """The trial to tell a job's outcome to: its own, or, when another sweep has meanwhile failed it as killed
        (its heartbeats did not reach the database for GRACE_SECONDS: a machine asleep, a database out of reach),
        a new trial that goes on with it, as a resumed search would make (Optuna cannot change a finished trial)."""
        storage = _rdb(self.study)
        stored = storage.get_trial(trial._trial_id) if storage is not None else None  # not this process's cache
        if stored is None or not stored.state.is_finished():
            return trial
        new = self._going_on_with(stored)
        from src.training.report import print_warning

        print_warning(
            f"trial {trial.number} was failed as killed by another sweep while its job ran (no heartbeat had reached "
            f"the study for {how_long(stored.user_attrs.get(KILLED) or GRACE_SECONDS)}): its job's outcome goes to "
            f"the study as trial {new.number}"
        )
        return new

    def _tell_failed(self, trial, interrupted: bool) -> None:
        from optuna.trial import TrialState

        storage = _rdb(self.study)
        try:
            if storage is not None and storage.get_trial(trial._trial_id).state.is_finished():
                return  # failed as killed by another sweep meanwhile: marked so, and resumed as an interrupted one is
            if interrupted:
                job_dir = job_dir_of(self.sweep_dir, int(trial.user_attrs.get(NUMBER, -1)))
                if job_dir is not None:  # (a job of the batch that never started has none)
                    trial.set_user_attr(JOB_DIR, str(job_dir.resolve()))
                trial.set_user_attr(INTERRUPTED, True)
            self.study.tell(trial, state=TrialState.FAIL)
        except Exception as error:  # the storage itself gone: the interrupt, not this, is what to report
            print(f"warning: trial {trial.number} could not be marked failed ({_first_line(error)})", file=sys.stderr)

    def next_job_number(self) -> int:
        """The number after every job of this sweep: those its directory holds, and those its trials claimed."""
        from src.sweep.runs import job_number

        numbers = [job_number(hydra.parent) for hydra in self.sweep_dir.glob("*/.hydra")]
        here = str(self.sweep_dir.resolve())
        for trial in self.study.get_trials(deepcopy=False):
            if trial.user_attrs.get(SWEEP_DIR) == here and NUMBER in trial.user_attrs:
                numbers.append(int(trial.user_attrs[NUMBER]))
        return max((n for n in numbers if n < 1 << 30), default=-1) + 1

    def resume_interrupted(self, url: str | None) -> None:
        """ckpt_path=last: each trial this directory's jobs left interrupted goes on as a new trial of the study
        (its parameters, its job's number and directory), whose value the study is told when it ends. A job that
        had saved a checkpoint resumes from its newest one; one that had finished (the interrupt came later in its
        batch) is read back, not trained again; one that never started, starts."""
        from src.provenance import read_status
        from src.sweep.stacked import FINISHED
        from src.training.checkpoint import newest_checkpoint
        from src.training.report import print_line

        with storage_lock(url):  # found and replaced as one step: a second resume of this directory finds none
            self.fail_killed()
            going_on = [(old, self._going_on_with(old)) for old in interrupted_in(self.study, self.sweep_dir)]
        to_train: list[tuple[int, Any, tuple[str, ...]]] = []
        for old, trial in going_on:
            number = int(old.user_attrs[NUMBER])
            (overrides,) = self.impl._configure_trials([trial], self.space, self.fixed)
            job_dir = job_dir_of(self.sweep_dir, number)
            status = read_status(job_dir) if job_dir is not None else None
            if job_dir is not None and status in FINISHED:  # its batch was stopped after it ended
                print_line(
                    f"{stopped_word(old)} trial {old.number} goes on as trial {trial.number}: job {number} had {status}"
                )
                self._read_back(trial, job_dir)
                continue
            saved = newest_checkpoint(job_dir) if job_dir is not None else None
            how = f"resumes from {saved}" if saved is not None else "starts from the beginning (nothing was saved)"
            print_line(f"{stopped_word(old)} trial {old.number} goes on as trial {trial.number}: job {number} {how}")
            to_train.append((number, trial, (*overrides, f"ckpt_path={RESUME}") if saved is not None else overrides))
        # Jobs with consecutive numbers are launched together (a parallel launcher runs them side by side, as the
        # interrupted batch ran); a launch numbers its jobs from its first.
        while to_train:
            run = [to_train.pop(0)]
            while to_train and to_train[0][0] == run[-1][0] + 1:
                run.append(to_train.pop(0))
            batch = [(trial, overrides) for _, trial, overrides in run]
            self.tell(batch, self.launch(batch, run[0][0]))

    def _going_on_with(self, old):
        """A new trial of the study with the interrupted trial `old`'s parameters and job number, running.

        Made as Study.add_trial makes a trial, from a template, not by enqueue_trial and ask: ask takes the oldest
        waiting trial of the study, which may be one someone else enqueued, and Optuna 2's enqueue_trial sets no
        user attributes. The parameters are in the search's order, so its job's overrides (_configure_trials)
        come out as they did the first time."""
        import datetime

        from optuna.trial import FrozenTrial, Trial, TrialState

        params = {name: old.params[name] for name in [*self.space, *old.params] if name in old.params}
        attrs = {
            HOST: self.host,
            SWEEP_DIR: str(self.sweep_dir.resolve()),
            NUMBER: int(old.user_attrs[NUMBER]),
            RESUMES: old.number,
        }
        template = FrozenTrial(
            number=-1,
            trial_id=-1,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=datetime.datetime.now(),
            datetime_complete=None,
            params=params,
            distributions={name: old.distributions[name] for name in params},
            user_attrs=attrs,
            system_attrs={},
            intermediate_values={},
        )
        trial_id = self.study._storage.create_new_trial(self.study._study_id, template_trial=template)
        trial = Trial(self.study, trial_id)
        beat(self.study, [trial])
        return trial

    def fail_killed(self) -> None:
        """The study's trials whose sweep is gone, failed and marked killed (fail_killed), under the storage's lock;
        another sweep's each said in one line, with what goes on with it (this sweep's own are said as it goes on
        with them)."""
        from src.training.report import print_warning

        here = str(self.sweep_dir.resolve())
        for trial, seconds in fail_killed(self.study):
            swept = trial.user_attrs.get(SWEEP_DIR)
            if swept == here:
                continue
            where = f"job {trial.user_attrs.get(NUMBER, '?')} of {trial.user_attrs.get(HOST, '?')}:{swept or '?'}"
            print_warning(
                f"trial {trial.number} ({where}) has had no heartbeat for {how_long(seconds)}: its sweep was killed or "
                "its machine lost, so the study counts it as killed; it keeps its place in n_trials until that "
                f"search is resumed (its command with hydra.sweep.dir={swept} ckpt_path=last), which goes on with it"
            )

    def _read_back(self, trial, job_dir: Path) -> None:
        """A job that had finished: its value, from its metrics.json, told to `trial` (none: a failed trial)."""
        from optuna.trial import TrialState

        from src.sweep.stacked import finished_value

        trial.set_user_attr(JOB_DIR, str(job_dir.resolve()))
        self.launched += 1
        value = finished_value(job_dir, objective_of(self.impl.config)) if len(self.directions) == 1 else None
        if value is None:
            self.study.tell(trial, state=TrialState.FAIL)
            _warn_failed(trial.number, job_dir, None)
            return
        self._tell_values(trial, [value])


def _product(numbers) -> int:
    total = 1
    for number in numbers:
        total *= number
    return total


def _values(result: Any, objectives: int) -> list[float]:
    """A job's return as the trial's values: one float per objective; raises when the job failed or returned
    something else (a job the project caught returns None: its run.json says why)."""
    returned = result.return_value  # raises the job's own exception when it failed
    if returned is None:
        raise ValueError("it returned no value")
    try:
        values = [float(returned)] if objectives == 1 else [float(v) for v in returned]
    except (TypeError, ValueError):
        raise ValueError(f"it returned {returned!r}, not a number") from None
    if len(values) != objectives:
        raise ValueError(f"it returned {len(values)} values for {objectives} objectives")
    return values


def _warn_failed(number: int, job_dir: Path | None, error: BaseException | None) -> None:
    """One `warning:` line for a trial whose job did not give it a value: the trial, its job and why, as its
    run.json says (diverged: the step and the loss; failed: the reason), else what the job returned."""
    from src.provenance import read_record as read_run
    from src.training.report import print_warning

    run = (read_run(job_dir) if job_dir is not None else None) or {}
    status, reason = run.get("status"), run.get("error")
    if status in ("diverged", "failed", "interrupted") and reason:
        why = f"{status}: {_first_line(reason)}"
    elif status == "completed":
        why = f"completed without a value for the search ({error or 'no objective in its metrics.json'})"
    else:
        why = f"failed: {_first_line(error) if error is not None else 'no value'}"
    job = f" (job {job_dir.name})" if job_dir is not None else ""
    print_warning(f"trial {number}{job} {why}; the study counts it as a failed trial")


def _save_best(study, sweep_dir: Path, directions: list[str], launched: int) -> None:
    """optimization_results.yaml, as Hydra's sweeper writes it, from the whole study (every machine's trials). No
    completed trial: raise as Hydra's sweeper does (src.run then reports the failed jobs), unless this sweep ran
    none (the study's places were all taken by other sweeps: nothing went wrong here)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) and not launched:
        log.info("No trial of the study has completed yet: no optimization_results.yaml")
        return
    if len(directions) < 2:
        best = study.best_trial  # "No trials are completed yet" when none did
        results: dict[str, Any] = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        log.info(f"Best parameters: {best.params}")
        log.info(f"Best value: {best.value}")
    else:
        front = [{"params": t.params, "values": t.values} for t in study.best_trials]
        results = {"name": "optuna", "solutions": front}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


def study_trials(url: str, name: str) -> tuple[Any, list]:
    """(the study, its trials) for a report; raises ConfigError when the storage cannot be reached or holds no
    study of that name (naming those it holds). Writes nothing."""
    import optuna

    reach(url)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise ConfigError(f"{shown(url)}: {path} does not exist: give the storage the study's sweeps used")
    study = stored_study(url, name)
    if study is None:
        storage = reading_storage(url) if has_tables(url) else None  # no tables: no study at all
        names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)] if storage else []
        held = f"it holds {', '.join(names)}" if names else "it holds no study"
        raise ConfigError(f"{shown(url)} has no study {name} ({held}): give one of its studies' names")
    return study, study.get_trials(deepcopy=False)
