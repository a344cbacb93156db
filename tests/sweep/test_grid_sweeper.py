"""The grid sweeper (hydra_plugins/transformer_ablations/grid_sweeper.py) composes each job as Hydra's basic sweeper
does, less the second composition Hydra makes to fail early: the preflight has composed every job already."""

from __future__ import annotations

from hydra._internal.config_loader_impl import ConfigLoaderImpl

from tests.e2e.conftest import SMALL_SYNTHETIC, TINY, check, run_here


def test_each_job_of_a_sweep_is_composed_once_before_it_runs_and_once_to_run(tmp_path, monkeypatch):
    composed: list[tuple[str, ...]] = []
    compose = ConfigLoaderImpl.load_sweep_config

    def counted(self, master_config, sweep_overrides):
        composed.append(tuple(sweep_overrides))
        return compose(self, master_config, sweep_overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", counted)
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
    assert all(composed.count(job) == 2 for job in jobs), composed  # the preflight's, and the launcher's


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
