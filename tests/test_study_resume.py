"""The pieces of an Optuna search resumed through its sweeper (src/study.py; the whole path, with real signals, is
tests/e2e/test_search_resume.py): which trials count toward n_trials once an interrupted one has been resumed,
which trials a resumed search goes on with, what a resume refuses (one line, before anything is written), and how
the report words the trials."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from src.model import ConfigError

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")

from tests.test_study import made_study, sweep_config  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:add_trial is experimental")  # Optuna 2's, of a stable call


def add(study, state: str, value: float | None = None, **attrs) -> None:
    """A trial of `study` in `state` with these user attributes (its parameters are not what is tested)."""
    from optuna.trial import FrozenTrial, TrialState

    now = datetime.datetime.now()
    finished = TrialState[state].is_finished()
    study.add_trial(
        FrozenTrial(
            number=-1,
            trial_id=-1,
            state=TrialState[state],
            value=value,
            datetime_start=None if state == "WAITING" else now,
            datetime_complete=now if finished else None,
            params={},
            distributions={},
            user_attrs=attrs,
            system_attrs={},
            intermediate_values={},
        )
    )


def interrupted_at(sweep: Path, number: int) -> dict:
    """The user attributes of a trial stopped by an interrupt while its sweep in `sweep` ran job `number`."""
    from src.study import INTERRUPTED, NUMBER, SWEEP_DIR

    return {SWEEP_DIR: str(sweep.resolve()), NUMBER: number, INTERRUPTED: True}


def test_a_resumed_trial_no_longer_counts_toward_n_trials_the_trial_that_resumed_it_does(tmp_path):
    import optuna

    from src.study import RESUMES, claimed, held_trials, interrupted_in

    sweep, elsewhere = tmp_path / "sweep", tmp_path / "other_machine"
    study = optuna.create_study(direction="minimize")
    add(study, "COMPLETE", 1.0)  # 0
    add(study, "FAIL", **interrupted_at(sweep, 1))  # 1: interrupted, keeps its place until resumed
    add(study, "FAIL", **interrupted_at(elsewhere, 0))  # 2: another sweep's, left to it
    add(study, "FAIL")  # 3: failed on its own: counts, and is not resumed
    assert [t.number for t in claimed(study)] == [0, 1, 2, 3]
    assert [t.number for t in interrupted_in(study, sweep)] == [1]
    assert held_trials(study, 4) == "4 trials (n_trials=4)"

    add(study, "RUNNING", **{RESUMES: 1})  # 4: goes on with trial 1's job
    add(study, "WAITING")  # 5: enqueued, not started
    assert [t.number for t in claimed(study)] == [0, 2, 3, 4]  # one job, one place
    # what a sweep's last line and check_study say: the study's own count (the report's), then what n_trials counts
    assert held_trials(study, 4) == (
        "6 trials, 4 of which count toward n_trials=4 (trial 1 was resumed as trial 4; trial 5 waits to start)"
    )
    assert interrupted_in(study, sweep) == []
    assert [t.number for t in interrupted_in(study, elsewhere)] == [2]


def stored_search(tmp_path: Path, *overrides: str) -> tuple[str, Path]:
    """A search's directory (its study.yaml and one job's .hydra) and its sqlite storage, as a sweep that was
    interrupted leaves them."""
    from src.study import record

    url, sweep = f"sqlite:///{tmp_path / 'studies.db'}", tmp_path / "sweep"
    (sweep / "0_optimizer.lr:0.001" / ".hydra").mkdir(parents=True)
    record(sweep, url, "lr_warmup_dropout_size", ["maximize"], 4, list(overrides), "python -m src.run -m ...")
    return url, sweep


def test_study_yaml_names_the_command_that_lists_the_trials_with_this_interpreter(tmp_path, monkeypatch):
    """study.yaml's first line: a comment with the src.report command, started as its `resume` is (module_command)."""
    from src import provenance
    from src.study import STUDY_FILE

    monkeypatch.setattr(provenance, "python_command", lambda: ".venv/bin/python")
    _, sweep = stored_search(tmp_path)
    assert (sweep / STUDY_FILE).read_text().splitlines()[0] == (
        "# The Optuna study this sweep ran trials of; .venv/bin/python -m src.report <this directory> lists all its "
        "trials."
    )


def refusal(*overrides: str) -> str:
    from src.study import check_resume

    with pytest.raises(ConfigError) as raised:
        check_resume(sweep_config(*overrides))
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_what_a_resume_of_a_search_refuses_in_one_line_and_before_anything_is_written(tmp_path):
    url, sweep = stored_search(tmp_path, "hparams_search=lr_warmup_dropout_size", "trainer.max_steps=12")
    before = sorted(tmp_path.rglob("*"))
    storage, there = f"hydra.sweeper.storage={url}", f"hydra.sweep.dir={sweep}"
    same = ("trainer.max_steps=12", "ckpt_path=last")

    assert "add hydra.sweep.dir=<the search's directory>" in refusal(storage, *same)
    empty = tmp_path / "empty"
    line = refusal(storage, f"hydra.sweep.dir={empty}", *same)
    assert line.startswith(f"hydra.sweep.dir={empty} holds no search to resume (ckpt_path=last)")
    grid = tmp_path / "grid"
    (grid / "0_model.heads:1" / ".hydra").mkdir(parents=True)
    line = refusal(storage, f"hydra.sweep.dir={grid}", *same)
    assert "holds no search whose study is kept in a database (it has no study.yaml" in line
    (grid / "0_model.heads:1" / ".hydra").rmdir()
    (grid / "0_model.heads:1").rmdir()
    grid.rmdir()

    fix = f"give hydra.sweeper.study_name=lr_warmup_dropout_size hydra.sweeper.storage={url} to resume it"
    line = refusal(there, *same)  # the storage left out: a study in memory
    assert line == (
        f"hydra.sweep.dir={sweep} is a search of study lr_warmup_dropout_size in {url}, and this command keeps its "
        f"study in memory: {fix}"
    )
    line = refusal(storage, there, "hydra.sweeper.study_name=other", *same)
    assert f"and this command names study other in {url}: {fix}" in line
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    line = refusal(f"hydra.sweeper.storage={other_url}", there, *same)
    assert f"this command names study lr_warmup_dropout_size in {other_url}: {fix}" in line
    line = refusal(storage, there, "trainer.max_steps=20", "ckpt_path=last")
    assert line.startswith(
        f"hydra.sweep.dir={sweep} holds a search started with trainer.max_steps=12, and this command has "
        "trainer.max_steps=20: resume a search with the overrides it was started with"
    )
    line = refusal(storage, there, *same, "optimizer.lr=0.001")  # a setting added on resume
    assert "holds a search started without optimizer.lr=0.001, which this command adds: resume" in line, line
    line = refusal(storage, there, "ckpt_path=last")  # one left out
    assert "holds a search started with trainer.max_steps=12, which this command leaves out: resume" in line, line
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, no database made

    from src.study import check_resume

    check_resume(sweep_config(storage, there, *same))  # the search's own command


def test_a_full_study_is_resumed_when_its_sweep_left_trials_interrupted(tmp_path):
    """n_trials counts the interrupted trial until it is resumed: a new sweep is refused, the resume is not."""
    from src.study import RESUMES, check_study

    url, sweep = f"sqlite:///{tmp_path / 'studies.db'}", tmp_path / "sweep"
    study = made_study(url, "objective=val/loss", "hydra.sweeper.direction=minimize")
    add(study, "COMPLETE", 1.0)
    add(study, "FAIL", **interrupted_at(sweep, 1))
    search = [f"hydra.sweeper.storage={url}", "objective=val/loss", "hydra.sweeper.direction=minimize"]
    search += ["hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}"]
    with pytest.raises(ConfigError, match="already holds 2 trials"):
        check_study(sweep_config(*search))
    check_study(sweep_config(*search, "ckpt_path=last"))
    add(study, "COMPLETE", 2.0, **{RESUMES: 1})  # resumed and done: nothing left for a resume to run
    with pytest.raises(ConfigError) as raised:
        check_study(sweep_config(*search, "ckpt_path=last"))
    assert (
        "already holds 3 trials, 2 of which count toward n_trials (trial 1 was resumed as trial 2), all that "
        "hydra.sweeper.n_trials=2 asks for" in str(raised.value)
    )


def test_the_report_says_which_trial_went_on_with_an_interrupted_one(tmp_path):
    import optuna

    from src.study import RESUMES
    from src.sweep.trials import StudyView, study_summary, study_table

    sweep = tmp_path / "sweep"
    study = optuna.create_study(direction="minimize")
    add(study, "FAIL", **interrupted_at(sweep, 0))  # 0: resumed as 2
    add(study, "FAIL", **interrupted_at(sweep, 1))  # 1: not resumed yet
    add(study, "COMPLETE", 0.5, **{RESUMES: 0})  # 2
    add(study, "FAIL")  # 3: failed on its own
    view = StudyView("sqlite:///s.db", "s", ["minimize"], study.get_trials())
    states = {int(row.split(" | ")[0].strip("| ")): row.split(" | ")[1] for row in study_table(view)[2:]}
    assert states == {
        0: "interrupted, resumed as trial 2",
        1: "interrupted",
        2: "completed (resumes trial 0)",
        3: "failed",
    }
    assert study_summary(view) == "4 trials: 1 completed, 1 failed, 1 interrupted and resumed, 1 interrupted"


def silence(url: str, minutes: int) -> None:
    """Every heartbeat of the study's database `minutes` old, by the database's own clock: as if the sweeps that
    sent them had stopped then (killed outright, their machine lost)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE trial_heartbeats SET heartbeat = datetime('now', '-{minutes} minutes')"))
    engine.dispose()


def test_a_trial_whose_sweep_was_killed_is_told_apart_failed_as_killed_and_resumed_as_an_interrupted_one(
    tmp_path, capsys
):
    """A sweep killed outright (SIGKILL, its machine lost) cannot tell its running trial anything: the trial's
    heartbeats stop. While they are recent the trial runs, and its search cannot be resumed (its job would train
    twice); once they have stopped for GRACE_SECONDS it counts as killed: the report says so, another sweep's
    check does not count it as running, and the first sweep that claims fails it, marked killed and interrupted,
    for its own search to go on with when resumed. A real sqlite study: the heartbeats are Optuna's table."""
    from src.study import (
        GRACE_SECONDS,
        HOST,
        INTERRUPTED,
        KILLED,
        beat,
        check_study,
        claimed,
        fail_killed,
        interrupted_in,
        killed_trials,
        stopped_word,
    )
    from src.sweep.trials import load_study_view, not_resumed, study_summary

    url, sweep = f"sqlite:///{tmp_path / 'studies.db'}", tmp_path / "sweep"
    study = made_study(url, "objective=val/loss", "hydra.sweeper.direction=minimize")
    trial = study.ask()
    for key, value in {**interrupted_at(sweep, 0), HOST: "lost-machine"}.items():
        if key != INTERRUPTED:
            trial.set_user_attr(key, value)
    beat(study, [trial])
    search = [f"hydra.sweeper.storage={url}", "objective=val/loss", "hydra.sweeper.direction=minimize"]
    search += ["hydra.sweeper.n_trials=1"]
    resume = [*search, f"hydra.sweep.dir={sweep}", "ckpt_path=last"]

    assert killed_trials(study) == {}
    with pytest.raises(ConfigError) as raised:  # its sweep may well be training it now
        check_study(sweep_config(*resume))
    assert str(raised.value).startswith(
        f"hydra.sweep.dir={sweep} is a search still running on lost-machine: its trial 0 had a heartbeat "
    )
    assert "if its process was killed, run this again in " in str(raised.value)
    check_study(sweep_config(*search, f"hydra.sweep.dir={tmp_path / 'other'}"))  # another sweep: full, 1 running
    assert "all that hydra.sweeper.n_trials=1 asks for, 1 of them still running" in capsys.readouterr().err

    silence(url, 5)
    assert list(killed_trials(study)) == [0] and killed_trials(study)[0] > GRACE_SECONDS
    view = load_study_view(url, "lr_warmup_dropout_size")
    assert view.state_of(view.trials[0]) == "killed (no heartbeat for 5 min)"
    assert study_summary(view) == "1 trial: 1 killed" and view.running() == 0
    assert not_resumed(view) == [
        f"Trial 0 (killed) has not been resumed: its search's own command with `hydra.sweep.dir={sweep.resolve()} "
        "ckpt_path=last`, run on lost-machine, goes on with it, from its job's last checkpoint."
    ]
    check_study(sweep_config(*resume))  # its place is the resume's: it goes on with it
    with pytest.raises(ConfigError, match="raise hydra.sweeper.n_trials to run more"):  # not running: full
        check_study(sweep_config(*search, f"hydra.sweep.dir={tmp_path / 'other'}"))

    ((failed, seconds),) = fail_killed(study)  # what the next sweep to claim does, under the storage's lock
    assert failed.number == 0 and failed.state.name == "FAIL" and seconds > GRACE_SECONDS
    assert failed.user_attrs[INTERRUPTED] is True and failed.user_attrs[KILLED] >= 300
    assert stopped_word(failed) == "killed" and fail_killed(study) == []
    assert interrupted_in(study, sweep) == [failed] and [t.number for t in claimed(study)] == [0]
    view = load_study_view(url, "lr_warmup_dropout_size")
    assert view.state_of(view.trials[0]) == "killed" and study_summary(view) == "1 trial: 1 killed"


def test_a_trial_failed_as_killed_while_its_sweep_lived_gives_its_value_to_a_new_trial(tmp_path, capsys):
    """A sweep whose heartbeats did not reach the database for the grace period (a machine asleep) finds its trial
    failed as killed by another sweep when its job ends: Optuna cannot change a finished trial, so the job's value
    goes to a new trial that resumes it, as a resumed search would make."""
    from types import SimpleNamespace

    import optuna

    from src.study import KILLED, RESUMES, _Trials, beat, claimed, fail_killed

    url, sweep = f"sqlite:///{tmp_path / 'studies.db'}", tmp_path / "sweep"
    study = made_study(url, "objective=val/loss", "hydra.sweeper.direction=minimize")
    impl = SimpleNamespace(max_failure_rate=0.0)
    search = _Trials(impl, study, {}, {}, ["minimize"], False, sweep)
    trial = study.ask()
    search.claim(trial, 0)  # records its first heartbeat
    silence(url, 5)
    elsewhere = optuna.load_study(study_name="lr_warmup_dropout_size", storage=url)
    assert [t.number for t, _ in fail_killed(elsewhere)] == [0]
    capsys.readouterr()  # what the set-up said (Optuna's "A new study created", unless its logging was quieted)

    search.tell([(trial, ())], [SimpleNamespace(return_value=0.25, hydra_cfg=None)])
    trials = optuna.load_study(study_name="lr_warmup_dropout_size", storage=url).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"] and trials[0].user_attrs[KILLED] >= 300
    assert trials[1].value == 0.25 and trials[1].user_attrs[RESUMES] == 0
    assert [t.number for t in claimed(study)] == [1]
    assert capsys.readouterr().err.splitlines() == [
        "warning: trial 0 was failed as killed by another sweep while its job ran (no heartbeat had reached the study "
        "for 5 min): its job's outcome goes to the study as trial 1"
    ]
    beat(study, [trials[1]])  # a heartbeat for a finished trial changes nothing


def test_study_yaml_keeps_the_checkpoint_a_searchs_trials_start_from_across_its_resumes(tmp_path):
    """A search started with ckpt_path=<a checkpoint> (each trial starts from it): study.yaml keeps it, so that a
    resume (whose ckpt_path=last is for the interrupted trials' jobs) starts its new trials from it, not from
    scratch (src/study.py sweep: the resumed search's fixed ckpt_path)."""
    from src.study import read_record, record

    url = f"sqlite:///{tmp_path / 'study.db'}"
    record(tmp_path, url, "search", ["minimize"], 4, ["seed=0", "ckpt_path=base/last.ckpt"], "resume it")
    assert read_record(tmp_path)["starts_from"] == "base/last.ckpt"
    assert read_record(tmp_path)["overrides"] == ["seed=0"]
    kept = read_record(tmp_path)["starts_from"]  # what a resume reads before it records itself again
    record(tmp_path, url, "search", ["minimize"], 4, ["seed=0", "ckpt_path=last"], "resume it", kept)
    assert read_record(tmp_path)["starts_from"] == "base/last.ckpt"
    record(tmp_path, url, "search", ["minimize"], 4, ["seed=0", "ckpt_path=last"], "resume it")  # none to keep
    assert "starts_from" not in read_record(tmp_path)
