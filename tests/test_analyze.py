"""src.analyze on a sweep directory, without training: which jobs it takes and how it names the others (issue 24
item 8: a job a refused or failed run left is skipped and named as failed, with its cause). The real sweep, with a
job that diverged, is tests/e2e/test_analyze.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.analyze import find_targets
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
