"""Every documented sweep (`python -m src.run -m ...`) that needs neither a GPU nor a cluster runs, at a test's
size, and ends in its report (a file of its own, so that the two test workers share the slow commands)."""

from __future__ import annotations

import pytest

from .test_train import TRAIN, run_documented_training

pytestmark = pytest.mark.slow

SWEEPS = [c for c in TRAIN if "-m" in c.args]


def test_the_pages_have_sweeps():
    assert len(SWEEPS) >= 6, [c.line for c in SWEEPS]


@pytest.mark.parametrize("command", SWEEPS, ids=[c.id for c in SWEEPS])
def test_a_documented_sweep_runs_and_ends_in_its_report(command, tmp_path, home, finished_run):
    run_documented_training(command, tmp_path, home, finished_run)
