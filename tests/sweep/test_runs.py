"""What the sweep report reads from a job directory (src/sweep/runs.py): a run.json or metrics.json that cannot
be used is said to be so, never taken for a run that did not record anything or for a completed one."""

from __future__ import annotations

from src.sweep.runs import NO_METRICS, read_run, resume_of
from tests.test_report import MAIN, fake_run


def test_a_completed_run_whose_metrics_hold_no_final_values_is_not_counted_as_completed(tmp_path):
    emptied = fake_run(tmp_path, 0, ["seed=0"], final={})
    listed = fake_run(tmp_path, 1, ["seed=1"])
    (listed / "metrics.json").write_text("[1, 2]")
    null = fake_run(tmp_path, 2, ["seed=2"], final={MAIN: None})  # a non-finite value: completed, named elsewhere
    assert (read_run(emptied).status, read_run(emptied).error) == (
        NO_METRICS,
        "run.json says completed, but its metrics.json holds no final metrics",
    )
    assert read_run(listed).error == "run.json says completed, but its metrics.json is not a JSON object"
    assert read_run(null).status == "completed" and read_run(null).final == {MAIN: None}


def test_a_run_json_that_is_not_an_object_is_unreadable_not_missing(tmp_path):
    job = fake_run(tmp_path, 0, ["seed=0"], final={MAIN: 0.5})
    (job / "run.json").write_text('"completed"')
    run = read_run(job)
    assert (run.status, run.error) == ("unknown", "its run.json is not a JSON object, so how it ended is unknown")


def test_the_resume_command_is_kept_where_there_is_something_to_resume_from():
    command = "python -m src.run seed=0 hydra.run.dir=/sweep/0_seed:0 ckpt_path=last"
    saved = {"status": "interrupted", "checkpoint": "/sweep/0_seed:0/checkpoints/last.ckpt", "resume": command}
    assert resume_of(saved) == command
    assert resume_of({**saved, "checkpoint": "None"}) is None  # a single run stopped before its first checkpoint
    stacked = {**saved, "checkpoint": None, "stacked": {"members": ["0_seed:0", "1_seed:1"]}}
    assert resume_of(stacked) == command  # a group resumed before it saved a state trains again from the start
    assert resume_of({"status": "failed", "resume": command}) == command  # a rank failed after a checkpoint
    # a grid sweep's job records its sweep's command, which trains a job that saved nothing from the start
    sweep = "python -m src.run -m seed=0,1 hydra.sweep.dir=/sweep ckpt_path=last"
    assert resume_of({**saved, "checkpoint": "None", "resume": sweep}) == sweep
