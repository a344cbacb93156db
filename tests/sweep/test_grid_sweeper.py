"""The grid sweeper (hydra_plugins/transformer_ablations/grid_sweeper.py) composes each job as Hydra's basic sweeper
does, less the second composition Hydra makes to fail early: the preflight has composed every job already. And a
sweep command composes the sweep's config once, not also to read `hydra.mode` (src/cli/command_line.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.hydra import Hydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from tests.e2e.conftest import SMALL_SYNTHETIC, TINY, check, run_here


def test_each_job_of_a_sweep_is_composed_once_before_it_runs_and_runs_with_that_composition(tmp_path, monkeypatch):
    composed: list[tuple[str, ...]] = []
    compose = ConfigLoaderImpl.load_sweep_config

    def counted(self, master_config, sweep_overrides):
        composed.append(tuple(sweep_overrides))
        return compose(self, master_config, sweep_overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", counted)
    whole: list[object] = []  # the run mode of each composition (the jobs' are RUN)
    compose_whole = ConfigLoaderImpl.load_configuration

    def whole_counted(self, config_name, overrides, run_mode, *args, **kwargs):
        whole.append(run_mode)
        return compose_whole(self, config_name, overrides, run_mode, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", whole_counted)
    tiny = [o for o in TINY if not o.startswith(("trainer.max_steps=", "model.heads="))]
    sweep = tmp_path / "sweep"
    check(
        run_here(
            "src.run",
            "-m",
            *tiny,
            *SMALL_SYNTHETIC,
            "trainer.max_steps=2",
            "model.heads=1,2",
            f"hydra.sweep.dir={sweep}",
        )
    )
    jobs = sorted(set(composed))
    assert [job for job in jobs if "model.heads=1" in job] and len(jobs) == 2, jobs
    # the preflight's; the launcher runs each job with a copy of it (GridSweeper.sweep)
    assert all(composed.count(job) == 1 for job in jobs), composed
    assert ConfigLoaderImpl.load_sweep_config.__name__ == "counted"  # Hydra's (here counted) again after the sweep
    assert whole.count(RunMode.MULTIRUN) == 1, whole  # the sweep's, not one more to read hydra.mode (get_mode)
    assert "hydra.mode=MULTIRUN" in OmegaConf.load(sweep / "multirun.yaml").hydra.overrides.hydra  # as Hydra adds it
    assert Hydra.get_mode.__qualname__ == "Hydra.get_mode"  # Hydra's own again once the command has ended


def test_a_command_line_without_m_asks_hydra_for_the_mode_only_where_a_config_may_set_it(monkeypatch, tmp_path):
    """Without -m, a run unless a config sets hydra.mode: our configs set none, so Hydra's composition that reads it
    is left out; a config of the user's that may set it (here one that makes the run a sweep, from a --config-dir)
    is left to Hydra, which composes to read it, and the command sweeps."""
    asked: list[list[str]] = []
    get_mode = Hydra.get_mode

    def counted(self, config_name, overrides):
        asked.append(list(overrides))
        return get_mode(self, config_name, overrides)

    monkeypatch.setattr(Hydra, "get_mode", counted)
    refused = ["model.d_model=30", "model.heads=4"]  # 30 % 4: refused before anything is written
    result = run_here("src.run", *refused, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "model.heads=4 does not divide model.d_model=30" in result.stderr, result.stderr
    assert asked == []
    extra = tmp_path / "extra"
    (extra / "experiment").mkdir(parents=True)
    (extra / "experiment" / "as_sweep.yaml").write_text("# @package _global_\nhydra:\n  mode: MULTIRUN\n")
    result = run_here("src.run", "--config-dir", str(extra), "experiment=as_sweep", *refused)
    assert result.returncode == 2 and len(asked) == 1, result.stderr
    assert "job 0 of the sweep cannot run" in result.stderr, result.stderr  # a sweep, as the config says


@pytest.mark.parametrize(
    "text, sets",
    [
        ("hydra:\n  mode: MULTIRUN\n", True),
        ("hydra: {mode: MULTIRUN}\n", True),
        ("hydra:\n  searchpath: [file://elsewhere]\n", True),
        ("model:\n  d_model: 64\ndecode_mode: 1\n", False),
        ("defaults:\n  - override /model: small\n", False),
        ('{"hydra": {"mode": "MULTIRUN"}}\n', True),
    ],
)
def test_a_config_that_may_set_the_mode_is_found_by_its_keys(text, sets):
    from src.cli.command_line import SETS_THE_MODE

    assert bool(SETS_THE_MODE.search(text)) is sets


def test_a_job_the_preflight_did_not_compose_is_composed_before_the_batch_launches(monkeypatch):
    """Without the preflight's composition (a sweep whose callbacks were changed), Hydra's own check stands."""
    from hydra_plugins.transformer_ablations.grid_sweeper import GridSweeper
    from src.cli import preflight

    checked: list = []
    monkeypatch.setattr(
        "hydra.plugins.sweeper.Sweeper.validate_batch_is_legal",
        lambda self, batch: checked.append(list(batch)),
    )
    monkeypatch.setattr(preflight, "COMPOSED_JOBS", {("seed=0",)})
    GridSweeper(max_batch_size=None).validate_batch_is_legal([["seed=0"], ["seed=1"]])
    assert checked == [[["seed=1"]]]


def search_path(*folders):
    """What a_config_may_set_the_mode reads of Hydra: its config search path (Hydra's own package, folders)."""
    from types import SimpleNamespace

    elements = [SimpleNamespace(path="pkg://hydra.conf"), *(SimpleNamespace(path=str(f)) for f in folders)]
    path = SimpleNamespace(get_path=lambda: elements)
    return SimpleNamespace(config_loader=SimpleNamespace(get_search_path=lambda: path))


def test_a_mode_set_in_a_linked_folder_is_found_and_what_is_no_config_file_is_passed_over(tmp_path):
    """conf/experiment is a link to experiments/: a config there that sets hydra.mode is found through the link (as
    Hydra finds it); an editor's dangling lock file and a folder named like a config are no config files."""
    from src.cli.command_line import CommandLine, a_config_may_set_the_mode

    line = CommandLine("src.run", [], multirun=False)
    conf, experiments = tmp_path / "conf", tmp_path / "experiments"
    conf.mkdir()
    experiments.mkdir()
    (conf / "config.yaml").write_text("defaults:\n  - experiment: null\nseed: 0\n")
    (conf / "experiment").symlink_to(experiments)
    (conf / ".#config.yaml").symlink_to(tmp_path / "gone")  # an editor's lock file: a link to nothing
    (experiments / "plain.yaml").write_text("# @package _global_\nseed: 1\n")
    assert not a_config_may_set_the_mode(search_path(conf), line)
    (experiments / "as_sweep.yaml").write_text("# @package _global_\nhydra:\n  mode: MULTIRUN\n")
    assert a_config_may_set_the_mode(search_path(conf), line)
    (experiments / "as_sweep.yaml").unlink()
    (conf / "folder.yaml").mkdir()  # a folder is no config file: passed over, not read
    assert not a_config_may_set_the_mode(search_path(conf), line)
    (conf / "experiment" / "loop").symlink_to(conf)  # a link back up: each folder read once
    assert not a_config_may_set_the_mode(search_path(conf), line)


def test_this_projects_configs_set_no_mode_and_its_experiments_are_read():
    """conf/ as the commands compose it: experiments/ read through conf/experiment, and no file sets the mode."""
    from src.cli.command_line import SETS_THE_MODE, config_files

    conf = Path(__file__).resolve().parents[2] / "conf"
    files = list(config_files(conf))
    assert {"experiment", "model", "task"} <= {path.relative_to(conf).parts[0] for path in files}
    assert not [path for path in files if SETS_THE_MODE.search(path.read_text())]
