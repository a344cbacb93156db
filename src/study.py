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
- a trial whose job is interrupted is told failed, so the study does not hold a "running" trial for ever.

The sweep directory gets `study.yaml` (the study's name and storage), so `python -m src.report <sweep dir>` can
list the whole study later, with the trials other machines ran.
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
from dataclasses import dataclass
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
    return Search(
        directions_of(sweeper.direction), search_space(sweeper.get("params"), overrides), objective_of(config)
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


def claimed(study) -> list:
    """The study's trials that count toward n_trials: all of them but those enqueued and not yet started
    (WAITING: the next ask takes them)."""
    from optuna.trial import TrialState

    return [trial for trial in study.get_trials(deepcopy=False) if trial.state != TrialState.WAITING]


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
    wanted = int(sweeper.n_trials)
    held = claimed(study)
    if len(held) < wanted:
        return
    running = [trial for trial in held if not trial.state.is_finished()]
    where = f"study {name} in {shown(url)} already holds {len(held)} trial{'' if len(held) == 1 else 's'}"
    if not running:
        raise ConfigError(
            f"{where}, all that hydra.sweeper.n_trials={wanted} asks for (it counts the study's trials, whichever "
            f"sweep ran them): raise hydra.sweeper.n_trials to run more, or give a new hydra.sweeper.study_name"
        )
    _warn_once(
        f"{where} ({len(running)} still running), all that hydra.sweeper.n_trials={wanted} asks for: this sweep "
        "runs none, and its report lists the study"
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


def record(sweep_dir: Path, url: str, name: str, directions: list[str], n_trials: int) -> None:
    """study.yaml in the sweep directory: the study its trials belong to, for `python -m src.report <sweep dir>`."""
    import yaml

    sweep_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(
        {
            "study_name": name,
            "storage": absolute(url),
            "direction": directions[0] if len(directions) == 1 else directions,
            "n_trials": n_trials,
            "host": socket.gethostname(),
        },
        sort_keys=False,
    )
    note = "# The Optuna study this sweep ran trials of; python -m src.report <this directory> lists all its trials.\n"
    (sweep_dir / STUDY_FILE).write_text(note + text)


def read_record(sweep_dir: Path) -> dict[str, Any] | None:
    """What study.yaml says (study_name, storage, ...), None without one."""
    import yaml

    try:
        saved = yaml.safe_load((sweep_dir / STUDY_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return saved if isinstance(saved, dict) and saved.get("storage") and saved.get("study_name") else None


def sweep(impl: Any, arguments: list[str]) -> None:
    """The project's Optuna sweep (see the module's docstring): Hydra's OptunaSweeperImpl `impl` parses the search
    space and makes each trial's overrides, as it does for its own loop; this loop claims the study's trials, so
    that all the sweeps of one study run n_trials between them."""
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from optuna.trial import TrialState

    from src.cli.command_line import user_errors_as_one_line

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
    with user_errors_as_one_line():
        # Checked here too, so that the sweeper refuses in one line whoever calls it (Hydra calls a sweeper before
        # it writes anything into the sweep directory); open_study checks again under the lock, against a study
        # another machine made a moment ago.
        check_study(impl.config)
        study = open_study(url, impl.study_name, Search(directions, space, objective_of(impl.config)), impl.sampler)
    sweep_dir = Path(str(impl.config.hydra.sweep.dir))
    if url is not None:
        record(sweep_dir, url, study.study_name, directions, n_trials)
    log.info(f"Study name: {study.study_name}")
    log.info(f"Storage: {shown(url) if url else 'in memory'}")
    log.info(f"Sampler: {type(impl.sampler).__name__}")
    log.info(f"Directions: {directions}")
    samplers = None if grid else seeded_samplers(OmegaConf.select(impl.config, "hydra.sweeper.sampler"))
    host, launched = socket.gethostname(), 0
    while True:
        batch = []
        with storage_lock(url):  # count and ask as one step: no other sweep takes a place in between
            places = n_trials - len(claimed(study))
            for _ in range(min(impl.n_jobs, places)):
                if samplers is not None:
                    study.sampler = samplers(len(study.get_trials(deepcopy=False)))  # the number it will get
                trial = study.ask()
                (overrides,) = impl._configure_trials([trial], space, fixed)
                trial.set_user_attr(HOST, host)
                trial.set_user_attr(SWEEP_DIR, str(sweep_dir.resolve()))
                batch.append((trial, overrides))
        if not batch:
            break
        try:
            returns = impl.launcher.launch([overrides for _, overrides in batch], initial_job_idx=impl.job_idx)
        except BaseException:  # interrupted (or the launcher failed): the study must not keep them running
            for trial, _ in batch:
                _tell_failed(study, trial)
            raise
        impl.job_idx += len(returns)
        launched += len(returns)
        failures = []
        for (trial, _), result in zip(batch, returns):
            job_dir = OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir") if result.hydra_cfg else None
            if job_dir is not None:
                trial.set_user_attr(JOB_DIR, str(job_dir))
            try:
                values = _values(result, len(directions))
            except Exception as error:  # the job failed, or returned no number: a failed trial, as in Hydra's
                study.tell(trial, state=TrialState.FAIL)
                log.warning(f"Failed experiment: {error}")
                failures.append(error)
                continue
            try:
                study.tell(trial, state=TrialState.COMPLETE, values=values)
            except RuntimeError as error:  # the grid sampler stops the study when the grid is done
                if not (grid and "`Study.stop` is supposed to be invoked" in str(error)):
                    raise
        if len(failures) / len(returns) > impl.max_failure_rate:
            log.error(f"Failed {failures} times out of {len(returns)} with max_failure_rate={impl.max_failure_rate}.")
            for result in returns:
                _ = result.return_value  # raises the first failed job's own error, as Hydra's sweeper does
    held = len(claimed(study))
    log.info(f"The study holds {held} trials (n_trials={n_trials}); this sweep ran {launched} of them.")
    _save_best(study, sweep_dir, directions, launched)


def _product(numbers) -> int:
    total = 1
    for number in numbers:
        total *= number
    return total


def _values(result: Any, objectives: int) -> list[float]:
    """A job's return as the trial's values: one float per objective; raises when the job failed or returned
    something else (a job the project caught returns None)."""
    returned = result.return_value  # raises the job's own exception when it failed
    try:
        values = [float(returned)] if objectives == 1 else [float(v) for v in returned]
    except (TypeError, ValueError):
        raise ValueError(f"Return value must be float-castable. Got '{returned}'.") from None
    if len(values) != objectives:
        raise ValueError(f"The job returned {len(values)} values for {objectives} objectives.")
    return values


def _tell_failed(study, trial) -> None:
    from optuna.trial import TrialState

    try:
        study.tell(trial, state=TrialState.FAIL)
    except Exception as error:  # the storage itself gone: the interrupt, not this, is what to report
        print(f"warning: trial {trial.number} could not be marked failed ({_first_line(error)})", file=sys.stderr)


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
