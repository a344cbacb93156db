"""src.analyze on a sweep directory, without training: which jobs it takes and how it names the others (issue 24
item 8: a job a refused or failed run left is skipped and named as failed, with its cause). The real sweep, with a
job that diverged, is tests/e2e/test_analyze.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.analyze import existing_out_line, find_targets
from src.model import ConfigError


def job(sweep: Path, name: str, record: dict | None, checkpoint: bool = True, analysed: bool = False) -> Path:
    """A sweep job's directory as Hydra and src.run leave it: its .hydra/ (MULTIRUN), run.json (None: none, a job
    that never started), a best checkpoint file (located, not read, here) and an analysis/."""
    directory = sweep / name
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: RunMode.MULTIRUN\n")
    (directory / ".hydra" / "overrides.yaml").write_text(f"- seed={name[0]}\n")
    if record is not None:
        (directory / "run.json").write_text(json.dumps(record))
    if checkpoint:
        (directory / "checkpoints").mkdir()
        (directory / "checkpoints" / "best.ckpt").write_bytes(b"")
    if analysed:
        (directory / "analysis").mkdir()
    return directory


def test_a_sweep_analyses_its_completed_jobs_and_names_each_other_with_its_cause(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    done = job(sweep, "0_seed:0", {"status": "completed"})
    failed = job(sweep, "1_seed:1", {"status": "failed", "error": "data.txt:3: bad line\nmore"}, checkpoint=False)
    diverged = job(sweep, "2_seed:2", {"status": "diverged", "error": "loss nan at step 4"})
    job(sweep, "3_seed:3", None, checkpoint=False)
    job(sweep, "4_seed:4", {"status": "completed"}, analysed=True)
    job(sweep, "5_seed:5", {"status": "interrupted"})

    targets, found_sweep = find_targets(str(sweep), None)
    assert found_sweep == sweep
    assert [(t.checkpoint, t.run_dir, t.out) for t in targets] == [
        (done / "checkpoints" / "best.ckpt", done, done / "analysis")
    ]
    assert capsys.readouterr().err.splitlines() == [
        f"warning: 1_seed:1 is skipped: it failed: data.txt:3: bad line (see {failed / 'run.json'})",
        f"warning: 2_seed:2 is skipped: it diverged: loss nan at step 4 (see {diverged / 'run.json'})",
        "warning: 3_seed:3 is skipped: it has no run.json (it never started, or was refused before it ran)",
        f"warning: 4_seed:4 is skipped: it has an analysis already ({sweep / '4_seed:4' / 'analysis'})",
        f"warning: 5_seed:5 is skipped: it was interrupted (see {sweep / '5_seed:5' / 'run.json'})",
    ]


def test_a_sweep_with_no_job_to_analyse_is_refused(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    job(sweep, "0_seed:0", {"status": "failed", "error": "bad data"}, checkpoint=False)
    with pytest.raises(ConfigError, match="no job of this sweep is left to analyse"):
        find_targets(str(sweep), None)
    assert capsys.readouterr().err.startswith("warning: 0_seed:0 is skipped: it failed: bad data")


def test_an_existing_out_is_named_for_what_it_is(tmp_path):
    """out=<the run itself> was called "an earlier analysis"; each folder an analysis cannot write is said as what it
    is, with where the analysis can go instead."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    sweep = tmp_path / "sweep"
    job(sweep, "0_seed:0", {"status": "completed"})
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "summary.json").write_text("{}")
    plain = tmp_path / "plain"
    plain.mkdir()
    own = run / "analysis"

    def line(out: Path, given: bool = True) -> str:
        return existing_out_line(out, run, own, given)

    assert line(run) == (
        f"out={run} is the analysed run's own directory, not a folder for an analysis: leave out= out (the analysis "
        f"then goes to its own folder, {own})"
    )
    assert line(other).startswith(f"out={other} is a run directory, not a folder for an analysis: leave out= out")
    assert line(sweep).startswith(f"out={sweep} is a sweep directory, not a folder for an analysis")
    assert line(earlier).startswith(f"out={earlier} exists (an earlier analysis), and an analysis is never written")
    assert line(plain).startswith(f"out={plain} exists, and an analysis is never written over a folder")
    own.mkdir()  # the run's own analysis exists: out= is the way to another place
    assert line(own, given=False) == (
        f"{own} exists, and an analysis is never written over a folder: give another place with out={own}-2, or "
        "move it away"
    )


@pytest.mark.parametrize("tolerance", ["1", "2"])
def test_a_tolerance_of_the_whole_metric_or_more_is_refused_before_the_checkpoint_is_read(tolerance):
    """tolerance=2 reported "100% of the heads can go within 200%": refused where src.analyze checks its settings,
    before anything is read (ckpt= names nothing here)."""
    from tests.conftest import run_in_process

    code, _, err = run_in_process("src.analyze", "ckpt=/nonexistent/run", f"tolerance={tolerance}")
    assert code == 2 and err.strip().startswith(f"error: tolerance={float(tolerance)} must be below 1"), err
