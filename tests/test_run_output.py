"""What a run prints when its output is not a terminal (a log file, a cluster job): progress lines, kept in
run.log too."""

from __future__ import annotations

import json
import shlex
import warnings

from src.provenance import hydra_value
from tests.test_bad_inputs import TINY, run_command


def test_progress_lines_when_output_is_not_a_terminal(capsys, tmp_path):
    args = [o for o in TINY if o != "trainer.enable_progress_bar=false"]
    args += ["trainer.enable_progress_bar=true", "progress_every_n_steps=2", f"hydra.run.dir={tmp_path}"]
    result = run_command("src.run", args, capsys)  # captured: not a terminal
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["2/4", "2/4", "4/4", "4/4"]  # training, then validation lines
    assert "train/loss" in lines[0] and "val/loss" in lines[1] and "val/exact_match" in lines[3]
    logged = (tmp_path / "run.log").read_text()
    assert all(line in logged for line in lines)


def test_a_run_says_how_fast_it_trained(capsys, tmp_path):
    args = [o for o in TINY if not o.startswith("trainer.max_steps=")] + ["trainer.max_steps=9"]
    result = run_command("src.run", [*args, f"hydra.run.dir={tmp_path}"], capsys)
    assert result.code == 0, result.err
    speed = json.loads((tmp_path / "run.json").read_text())["speed"]
    assert speed["timed_steps"] == 4  # the first 5 steps warm up
    assert speed["tokens_per_s"] > 0 and speed["steps_per_s"] > 0 and speed["launch_to_first_step_s"] > 0
    printed = next(line for line in result.out.splitlines() if line.startswith("speed:"))
    assert f"{speed['tokens_per_s']:,.0f} target tokens/s" in printed


def test_what_a_run_prints_shows_every_user_string_exactly(capsys, tmp_path):
    """Paths, config values and notes are printed as given: nothing read as rich markup (`[d]` vanishing, `[/]`
    ending the run) or as an emoji code (`:cat:`), no config line cut at the width of the output. The printed
    evaluate command works for such a directory."""
    run_dir = tmp_path / "a=b #c [d] {e} :cat:"
    note, long_note = "see [red]x[/red] and [/] :cat:", "[wip] " + "abcdefghij" * 12
    args = [*TINY, f"hydra.run.dir={hydra_value(run_dir)}", f"+meta.note={note}", f"+meta.long={long_note}"]
    result = run_command("src.run", args, capsys)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert f"note: {note!r}" in result.out and f"long: {long_note!r}" in result.out
    assert f"run directory: {run_dir}" in lines
    assert f"checkpoints:   {run_dir / 'checkpoints'}  (best.ckpt, last.ckpt)" in lines
    tensorboard = next(line for line in lines if line.startswith("TensorBoard:"))
    assert f"{run_dir}'" in tensorboard
    evaluate = shlex.split(next(line for line in lines if line.startswith("evaluate:")))
    assert evaluate[2:4] == ["-m", "src.eval"]
    evaluated = run_command("src.eval", evaluate[4:], capsys)
    assert evaluated.code == 0, evaluated.err
    assert f"checkpoint: {run_dir / 'checkpoints' / 'best.ckpt'}" in evaluated.out
    analyse = shlex.split(next(line for line in lines if line.startswith("analyse heads:")))
    assert analyse[3:5] == ["-m", "src.analyze"]
    analysed = run_command("src.analyze", [*analyse[5:], "single_heads=false", "keep_one=false"], capsys)
    assert analysed.code == 0, analysed.err
    assert (run_dir / "analysis" / "report.md").is_file()


def test_a_resumed_run_that_completes_keeps_no_error_txt_of_an_earlier_attempt(capsys, tmp_path):
    """error.txt belongs to the status run.json has now: a run that failed with its steps kept (a rank that died)
    and was resumed to its end has no error.txt left from before; the earlier reason stays in run.json's previous."""
    first = run_command("src.run", [*TINY, f"hydra.run.dir={tmp_path}"], capsys)
    assert first.code == 0, first.err
    record = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**record, "status": "failed", "error": "rank 1 failed"}))
    (tmp_path / "error.txt").write_text("rank 1 failed\n")  # what the failed attempt left
    args = [o for o in TINY if not o.startswith("trainer.max_steps=")] + ["trainer.max_steps=6", "ckpt_path=last"]
    resumed = run_command("src.run", [*args, f"hydra.run.dir={tmp_path}"], capsys)
    assert resumed.code == 0, resumed.err
    assert not (tmp_path / "error.txt").exists()
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed" and record["previous"][-1]["error"] == "rank 1 failed"


def test_a_run_resumed_in_place_gets_no_note_that_its_checkpoints_folder_is_not_empty(capsys, tmp_path):
    """`hydra.run.dir=<run> ckpt_path=last`, the documented resume, finds the run's checkpoints/ holding what it
    saved, as it should: Lightning's "Checkpoint directory ... exists and is not empty." is not said of it, and
    still is of any other directory."""
    first = run_command("src.run", [*TINY, f"hydra.run.dir={tmp_path}"], capsys)
    assert first.code == 0, first.err
    args = [o for o in TINY if not o.startswith("trainer.max_steps=")] + ["trainer.max_steps=6", "ckpt_path=last"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = run_command("src.run", [*args, f"hydra.run.dir={tmp_path}"], capsys)
        assert resumed.code == 0, resumed.err
        said = [str(w.message) for w in caught] + resumed.err.splitlines()
        assert not [line for line in said if "exists and is not empty" in line], said
        elsewhere = tmp_path.parent / "another" / "checkpoints"
        warnings.warn(f"Checkpoint directory {elsewhere} exists and is not empty.", UserWarning, stacklevel=1)
        assert str(caught[-1].message) == f"Checkpoint directory {elsewhere} exists and is not empty."
