"""src/study.py against a real PostgreSQL server (tests/servers/postgres.py starts it): what check_study refuses,
each in one line and before anything is written, and the study made once when several sweeps start together."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from src.cli.command_line import CONF_DIR
from src.cli.schema import register_configs
from src.model import ConfigError
from tests.servers.postgres import free_port, postgres_server  # noqa: F401

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
SEARCH = "hparams_search=lr_warmup_dropout_size"


def sweep_config(*overrides: str):
    """The composed config, `hydra` included, that the preflight callback gets for `python -m src.run -m SEARCH
    <overrides>` (composed as Hydra composes a multirun's: sweep overrides such as choice(2, 4) are allowed)."""
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return GlobalHydra.instance().hydra.compose_config("config", [SEARCH, *overrides], run_mode=RunMode.MULTIRUN)


def refusal(config) -> str:
    """check_study's one line."""
    from src.study import check_study

    with pytest.raises(ConfigError) as raised:
        check_study(config)
    message = str(raised.value)
    assert "\n" not in message
    return message


def made_study(url: str, *overrides: str):
    """The study a sweep with these overrides makes (as the sweeper does, before its first trial)."""
    from src.study import open_study, search_of

    config = sweep_config(f"hydra.sweeper.storage={url}", *overrides)
    return open_study(url, config.hydra.sweeper.study_name, search_of(config))


def test_a_storage_that_cannot_be_reached_is_named_without_its_password():
    url = f"postgresql+psycopg2://me:secret@127.0.0.1:{free_port()}/studies"  # no server listens there
    started = time.perf_counter()
    line = refusal(sweep_config(f"hydra.sweeper.storage={url}"))
    assert time.perf_counter() - started < 10
    assert line.startswith(f"hydra.sweeper.storage=postgresql+psycopg2://me:***@127.0.0.1:{url.split(':')[3]}")
    assert "cannot be reached" in line and "start its database server" in line and "secret" not in line


def test_a_sqlite_file_in_a_missing_directory_is_refused_and_not_created(tmp_path):
    line = refusal(sweep_config(f"hydra.sweeper.storage=sqlite:///{tmp_path}/nowhere/studies.db"))
    assert "nowhere does not exist" in line
    assert not (tmp_path / "nowhere").exists()


def test_a_stored_study_needs_a_name():
    line = refusal(sweep_config("hydra.sweeper.storage=sqlite:///studies.db", "hydra.sweeper.study_name=null"))
    assert "hydra.sweeper.study_name is not set" in line


def test_a_direction_against_the_objective_is_refused_before_a_study_is_made(tmp_path):
    """src.run refuses it in the first job, which for a stored study would come after the study was made (the wrong
    way round, for good): checked first here."""
    line = refusal(sweep_config(f"hydra.sweeper.storage=sqlite:///{tmp_path}/s.db", "hydra.sweeper.direction=minimize"))
    assert line == (
        "hydra.sweeper.direction=minimize, but task=reverse's main metric val/exact_match is higher-is-better: set "
        "hydra.sweeper.direction=maximize"
    )
    assert not (tmp_path / "s.db").exists()


def test_a_new_study_passes_and_nothing_is_written(postgres_server):  # noqa: F811
    from src.study import check_study, has_tables

    url = postgres_server.new_database()
    check_study(sweep_config(f"hydra.sweeper.storage={url}"))
    assert not has_tables(url)  # the sweeper makes the tables and the study, under the storage's lock


def test_a_study_made_the_other_way_is_refused(postgres_server):  # noqa: F811
    url = postgres_server.new_database()
    made_study(url)  # maximize
    storage = f"hydra.sweeper.storage={url}"
    line = refusal(sweep_config(storage, "objective=val/loss", "hydra.sweeper.direction=minimize"))
    assert line == (
        f"study lr_warmup_dropout_size in {url} was made to maximize val/exact_match, but this search would minimize "
        "val/loss: give objective=val/exact_match hydra.sweeper.direction=maximize to continue it, or give this "
        "search a new hydra.sweeper.study_name"
    )
    other_metric = refusal(sweep_config(storage, "objective=val/token_acc"))
    assert "was made to maximize val/exact_match, but this search would maximize val/token_acc" in other_metric
    from src.study import check_study

    check_study(sweep_config(f"hydra.sweeper.storage={url}", "hydra.sweeper.study_name=by_loss"))  # a new name


def test_a_study_with_another_search_space_is_refused_naming_the_parameter(postgres_server):  # noqa: F811
    url = postgres_server.new_database()
    made_study(url)
    storage = f"hydra.sweeper.storage={url}"
    wider = refusal(sweep_config(storage, "model.dropout=interval(0.0, 0.5)"))  # the command line's, over params
    assert wider == (
        f"this search has model.dropout=interval(0.0, 0.5), but study lr_warmup_dropout_size in {url} searches "
        "model.dropout=interval(0.0, 0.3): give 'model.dropout=interval(0.0, 0.3)' to continue it, or give this "
        "search a new hydra.sweeper.study_name"
    )
    more = refusal(sweep_config(storage, "model.heads=choice(2, 4)"))
    assert more.startswith("this search has model.heads=choice(2, 4), which study lr_warmup_dropout_size in")
    assert "leave model.heads out of the search to continue it" in more
    fixed = refusal(sweep_config(storage, "model.d_model=64"))  # a plain value takes it out of the space
    assert fixed == (
        f"study lr_warmup_dropout_size in {url} searches model.d_model=choice(32, 64, 128), which model.d_model=64 "
        "on the command line fixes for every trial of this search: leave model.d_model=64 out to continue the "
        "study, or give this search a new hydra.sweeper.study_name"
    )


def test_a_study_made_by_hydras_own_sweeper_is_compared_by_its_trials(postgres_server):  # noqa: F811
    """No recorded search space: the distributions its trials were sampled from are the study's space."""
    import optuna
    from optuna.distributions import UniformDistribution

    url = postgres_server.new_database()
    study = optuna.create_study(study_name="lr_warmup_dropout_size", storage=url, direction="maximize")
    trial = study.ask()
    trial._suggest("model.dropout", UniformDistribution(0.0, 0.1))
    study.tell(trial, 0.5)
    line = refusal(sweep_config(f"hydra.sweeper.storage={url}"))
    assert line.startswith("this search has optimizer.lr=tag(log, interval(0.0001, 0.003)), which study")
    assert "(it searches model.dropout)" in line


def test_a_study_that_holds_all_its_trials_is_refused(postgres_server):  # noqa: F811
    url = postgres_server.new_database()
    study = made_study(url)
    for _ in range(2):
        trial = study.ask()
        study.tell(trial, 0.5)
    line = refusal(sweep_config(f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=2"))
    assert "already holds 2 trials, all that hydra.sweeper.n_trials=2 asks for" in line
    assert "raise hydra.sweeper.n_trials to run more" in line
    from src.study import check_study

    check_study(sweep_config(f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=3"))


@pytest.mark.slow  # tens of seconds: handed out with the end-to-end files, first
def test_sweeps_starting_together_on_an_empty_database_make_one_study(postgres_server):  # noqa: F811
    """Optuna creates its tables when it first opens a database: several processes doing so at once collide
    (UniqueViolation on pg_type) unless they take turns (the advisory lock)."""
    import optuna

    from src.study import search_of
    from tests.study_processes import open_together

    url = postgres_server.new_database()
    config = sweep_config(f"hydra.sweeper.storage={url}")
    name, search = config.hydra.sweeper.study_name, search_of(config)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ready = context.Barrier(4)  # every process opens the study once all four have imported what they need
    processes = [context.Process(target=open_together, args=(url, name, search, ready, results)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    outcomes = [results.get(timeout=5) for _ in processes]
    assert outcomes == ["ok"] * 4
    summaries = optuna.get_all_study_summaries(url)
    assert [summary.study_name for summary in summaries] == ["lr_warmup_dropout_size"]


def test_a_sweep_checking_the_study_waits_while_another_makes_the_tables(postgres_server, monkeypatch):  # noqa: F811
    """The moment between Optuna creating its tables and stamping their version: a sweep that checks the study then
    (its preflight, another machine's report) sees the tables and would stamp the version too, and the sweep making
    them fails on the second stamp (UniqueViolation on alembic_version; seen in CI). Here the maker stops in that
    moment (about to insert its version stamp) until the checker has finished (the race) or for 3 s (the checker
    waits for the lock)."""
    import threading

    from alembic.runtime import migration

    from src.study import stored_study

    url = postgres_server.new_database()
    tables_made, checker_done = threading.Event(), threading.Event()
    maker = {}
    original = migration.HeadMaintainer._insert_version

    def insert_version(self, version):  # the maker has found no version stamped, and is about to insert one
        if threading.current_thread().name == "maker":
            tables_made.set()
            checker_done.wait(3)  # with the lock the checker waits for the maker, so this times out
        original(self, version)

    monkeypatch.setattr(migration.HeadMaintainer, "_insert_version", insert_version)

    def make():
        try:
            maker["study"] = made_study(url)
        except BaseException as error:  # reported to the test, whatever it is
            maker["error"] = error

    thread = threading.Thread(target=make, name="maker")
    thread.start()
    assert tables_made.wait(60)
    checked = stored_study(url, "lr_warmup_dropout_size")
    checker_done.set()
    thread.join(60)
    assert "error" not in maker, maker.get("error")
    assert checked is None or checked.study_name == "lr_warmup_dropout_size"


def fixed_said(capsys, *overrides: str) -> list[str]:
    """The `warning:` lines check_fixed says for `python -m src.run -m SEARCH <overrides>`."""
    from src import study

    study._warn_once.cache_clear()  # said once per process: each case is a new command
    study.check_fixed(sweep_config(*overrides))
    return capsys.readouterr().err.splitlines()


def test_a_searched_parameter_fixed_on_the_command_line_is_one_warning_naming_it(capsys):
    """Hydra's Optuna sweeper takes a plain value for every trial and drops the parameter from the search space,
    without a word: now one line says so. Legal: a search of the rest at a learning rate of one's own."""
    assert fixed_said(capsys, "optimizer.lr=1e-3") == [
        "warning: optimizer.lr=1e-3 on the command line fixes optimizer.lr for every trial, so the search no longer "
        "searches it (hydra.sweeper.params has optimizer.lr=tag(log, interval(1e-4, 3e-3))): leave it out to search "
        "it, or give a range of its own, e.g. 'optimizer.lr=tag(log, interval(1e-4, 3e-3))'"
    ]
    (line,) = fixed_said(capsys, "optimizer.lr=1e-3", "task=sort", "model.d_model=64")
    assert line.startswith(
        "warning: optimizer.lr=1e-3 model.d_model=64 on the command line fix optimizer.lr and model.d_model for "
        "every trial, so the search no longer searches them (hydra.sweeper.params has optimizer.lr=tag(log, "
        "interval(1e-4, 3e-3)), model.d_model=choice(32, 64, 128))"
    )
    # a range of the command line's own replaces the search's, and a setting the search does not search is no news
    assert fixed_said(capsys, "optimizer.lr=interval(1e-4, 1e-3)", "model.heads=4", "task=sort") == []


def test_a_searched_parameter_fixed_so_that_it_cannot_be_meant_is_refused_in_one_line(capsys):
    from src.study import check_fixed

    with pytest.raises(ConfigError) as raised:  # the key with its prefix is not the search's: both reach the run
        check_fixed(sweep_config("++optimizer.lr=1e-3"))
    assert str(raised.value) == (
        "++optimizer.lr=1e-3 on the command line would change optimizer.lr in every trial's run after the search "
        "has sampled it (hydra.sweeper.params has optimizer.lr=tag(log, interval(1e-4, 3e-3))), and the study would "
        "record the sampled value, not the one the run used: write optimizer.lr=0.001 to fix optimizer.lr for every "
        "trial (the search then leaves it out), or leave it out to search it"
    )
    every = ("optimizer.lr=1e-3", "optimizer.warmup_steps=0", "model.dropout=0.1", "model.d_model=64")
    with pytest.raises(ConfigError) as raised:
        check_fixed(sweep_config(*every))
    assert str(raised.value).startswith(
        "optimizer.lr=1e-3 optimizer.warmup_steps=0 model.dropout=0.1 model.d_model=64 on the command line fix every "
        "parameter the search searches ("
    )
    assert str(raised.value).endswith(
        "so all its trials would run the same settings: leave one of them out to "
        "search it, or run these settings once, without -m"
    )
    assert fixed_said(capsys, *every, "model.heads=choice(2, 4)")[0].startswith("warning: optimizer.lr=1e-3 ")
