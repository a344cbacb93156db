"""A real tiny sweep, two seeds per configuration and one bad combination, ends with a report whose numbers are
the runs' own; a real day of unrelated single runs is reported per task, and every command its report prints runs."""

from __future__ import annotations

import csv
import json
import re
import shlex
import statistics

import pytest
import yaml

from src.sweep.report import analyse
from src.sweep.statistics import decimals_for, mean_cell
from tests.conftest import PYTHON

from .conftest import SMALL_SYNTHETIC, TINY, check, run_here, run_module, task_overrides

pytestmark = pytest.mark.slow


def test_a_sweep_ends_with_its_report(tmp_path):
    """Two model sizes over two seeds, each also with max_loss=0.01, which every run passes at its first step: those
    jobs diverge (a failure found only while training), the sweep goes on, and the report lists them apart."""
    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith("model.heads=")]
    result = run_here(
        "src.run",
        "-m",
        *tiny,
        *SMALL_SYNTHETIC,
        "model.heads=1,2",
        "seed=0,1",
        "max_loss=null,0.01",
        "test_after_fit=true",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 1, result.stderr[-2000:]  # four diverged jobs, the sweep went on
    assert "report:" in result.stdout and "4 of 8 runs completed" in result.stdout
    report = (sweep / "report.md").read_text()
    assert report.count("| diverged |") == 4 and report.count("above max_loss=0.01") == 4
    for name in ("results.csv", "curves.png", "bars.png"):
        assert (sweep / name).is_file(), name

    (analysed,) = analyse(sweep).groups
    assert analysed.varied == ["model.heads", "max_loss"]
    assert [c.label for c in analysed.configurations] == [
        "model.heads=1, max_loss=null",
        "model.heads=2, max_loss=null",
    ]
    for configuration in analysed.configurations:
        heads = dict(configuration.settings)["model.heads"]
        own = [json.loads((run.directory / "metrics.json").read_text())["final"] for run in configuration.runs]
        assert len(own) == 2 and {run.seed for run in configuration.runs} == {"0", "1"}
        for metric in ("val/exact_match", "val/loss", "test/loss", "test_long/exact_match"):
            assert configuration.values(metric) == [values[metric] for values in own], (heads, metric)
        loss = [values["val/loss"] for values in own]
        cell = mean_cell(loss)  # the mean to two significant digits of its std
        assert cell.startswith(f"{statistics.mean(loss):.{decimals_for(statistics.stdev(loss))}f} ± ")
        assert cell in report, (cell, report)


def test_a_sweep_into_a_directory_with_the_users_report_md_keeps_it_and_says_how_to_report(tmp_path):
    """`mkdir own; echo "my notes" > own/report.md; python -m src.run -m model.heads=1,2 hydra.sweep.dir=own`: the
    sweep's own report replaced the notes without a word. It keeps them, writes none of the report's files, and says
    in one warning line how to write the report, which then runs as printed."""
    sweep = tmp_path / "own"
    sweep.mkdir()
    (sweep / "report.md").write_text("my notes\n")
    tiny = [o for o in TINY if not o.startswith("model.heads=")]
    result = run_here("src.run", "-m", *tiny, *SMALL_SYNTHETIC, "model.heads=1,2", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (sweep / "report.md").read_text() == "my notes\n"
    (warning,) = [line for line in result.stderr.splitlines() if "report.md" in line]
    assert warning == (
        f"warning: no sweep report: {sweep / 'report.md'} is not a report src.report wrote, so it is kept and no "
        f"report was written (nor its figures and results.csv): move it away, then run {PYTHON} -m src.report {sweep}"
    )
    assert not (sweep / "results.csv").exists() and not list(sweep.glob("*.png")) and not (sweep / "report").exists()
    (sweep / "report.md").rename(tmp_path / "notes.md")
    program, flag, module, *args = shlex.split(warning.rsplit(", then run ", 1)[1])
    check(run_here(module, *args))
    assert "2 of 2 runs completed." in (sweep / "report.md").read_text()


def test_parallel_jobs_share_the_cores_out(tmp_path):
    """With the joblib launcher each job gets cores // n_jobs torch threads, so jobs do not oversubscribe: here
    n_jobs=1, so a job gets every core (the workers' environment says OMP_NUM_THREADS=1, which would give 1)."""
    import os

    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith(("model.heads=", "torch_threads="))]
    result = run_here(
        "src.run",
        "-m",
        *tiny,
        *SMALL_SYNTHETIC,
        "model.heads=1,2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr
    threads = [json.loads(p.read_text())["threads"] for p in sorted(sweep.glob("*/run.json"))]
    assert threads == [os.cpu_count() or 1] * 2


def test_an_optuna_search_returns_the_main_metric_and_reports_trials_best_first(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    sweep = tmp_path / "search"
    search = ["-m", "hparams_search=lr_warmup_dropout_size", "hydra.sweeper.n_trials=3", *TINY, *SMALL_SYNTHETIC]
    search = [o for o in search if not o.startswith(("model.d_model=", "model.dropout="))]  # the search sets these
    result = run_here("src.run", *search, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    (analysed,) = analyse(sweep).groups
    scores = [statistics.mean(c.values("val/exact_match")) for c in analysed.configurations]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and scores[0] == best

    wrong_way = run_here("src.run", *search, "hydra.sweeper.direction=minimize", f"hydra.sweep.dir={tmp_path / 'w'}")
    assert wrong_way.returncode == 2
    assert [line for line in wrong_way.stderr.splitlines() if line.startswith("error:")] == [
        "error: hydra.sweeper.direction=minimize, but task=reverse's main metric val/exact_match is "
        "higher-is-better: set hydra.sweeper.direction=maximize"
    ]


def test_an_optuna_search_optimises_the_objective_it_is_given(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    search = ["-m", "hparams_search=lr_warmup_dropout_size", "hydra.sweeper.n_trials=3", *TINY, *SMALL_SYNTHETIC]
    search = [o for o in search if not o.startswith(("model.d_model=", "model.dropout="))]
    sweep = tmp_path / "by_loss"
    result = run_here(
        "src.run", *search, "objective=val/loss", "hydra.sweeper.direction=minimize", f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode == 0, result.stderr
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    (analysed,) = analyse(sweep).groups
    assert analysed.main_metric == "val/loss"
    losses = [statistics.mean(c.values("val/loss")) for c in analysed.configurations]
    assert len(losses) == 3 and losses == sorted(losses) and losses[0] == best  # lowest first

    wrong_way = run_here("src.run", *search, "objective=val/loss", f"hydra.sweep.dir={tmp_path / 'w'}")
    assert wrong_way.returncode == 2
    assert [line for line in wrong_way.stderr.splitlines() if line.startswith("error:")] == [
        "error: hydra.sweeper.direction=maximize, but objective=val/loss is lower-is-better: "
        "set hydra.sweeper.direction=minimize"
    ]


def test_submitit_local_runs_the_jobs_and_reports_a_failed_one(tmp_path):
    """Jobs in other processes: their failure still reaches the command's exit status (from their run.json)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the cluster extra is not installed")
    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith("model.heads=")]
    result = run_module(
        "src.run",
        "-m",
        *tiny,
        *SMALL_SYNTHETIC,
        "model.heads=2",
        "max_loss=null,0.01",  # the second job diverges at its first step
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep}",
        timeout=600,
    )
    assert result.returncode == 1, result.stderr
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in sweep.glob("*/run.json")}
    assert statuses == {"0_max_loss:null": "completed", "1_max_loss:0.01": "diverged"}
    assert "1 sweep job(s) did not complete (1_max_loss:0.01)" in result.stderr


def test_a_sweep_with_analyze_after_fit_reports_the_pruning_per_configuration(tmp_path):
    """Every job analyses its best checkpoint after training (analysis.* for all of them); the report then has
    the pruning section with a row per configuration over both seeds, and the mean pruning curves."""
    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith("model.heads=")]
    result = run_here(
        "src.run",
        "-m",
        *tiny,
        *SMALL_SYNTHETIC,
        "seed=0,1",
        "model.heads=1,2",
        "analyze_after_fit=true",
        "analysis.prune_step=0.5",
        "analysis.single_heads=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = [line for line in result.stdout.splitlines() if line.startswith("analysis:")]
    warnings = [  # a 12-step model does not sort yet: its prunable fraction is undefined, and said so
        line
        for line in result.stderr.splitlines()
        if line.startswith("warning:") and "does not do the task" not in line
    ]
    assert len(written) == 4 and not warnings, result.stderr
    for job in sweep.glob("*/run.json"):
        assert json.loads(job.read_text())["analysis"] == "completed"
        summary = json.loads((job.parent / "analysis" / "summary.json").read_text())
        assert summary["settings"]["prune_step"] == 0.5

    report = (sweep / "report.md").read_text()
    section = report.split("## Head pruning (src.analyze)", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "(2)" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2"]  # model.heads, both seeds each
    assert rows[0].rstrip(" |").endswith("baseline")
    assert "val `exact_match`, tolerance 5%" in section and "Not analysed" not in section
    assert (sweep / "pruning.png").stat().st_size > 1000 and "![pruning.png](pruning.png)" in report
    columns = next(csv.DictReader(open(sweep / "results.csv")))
    assert {"analysis/prunable_fraction", "analysis/pruned/cross"} <= set(columns)


def test_a_day_of_unrelated_single_runs_is_reported_per_task_and_its_commands_run(tmp_path):
    """The issue's example, for real: outputs/<date>/ after runs of reverse (two seeds, one analysed after
    training), char_lm, and classification, which diverged (max_loss) and left a directory with its reason. The
    report compares each task with itself only, names the diverged run and its task in no table, and every command
    it prints runs as printed; once they have, the report has nothing left to ask."""
    day = tmp_path / "2026-12-04"
    data = tmp_path / "data"
    data.mkdir()
    runs = [
        ("10-00-00-000001", ["task=reverse", *SMALL_SYNTHETIC, "analyze_after_fit=true"]),
        ("10-05-00-000001", ["task=reverse", *SMALL_SYNTHETIC, "seed=1"]),
        ("11-00-00-000001", task_overrides("char_lm", data_files(data))),
        ("12-00-00-000001", [*task_overrides("classification", data_files(data)), "max_loss=0.01"]),
    ]
    for name, overrides in runs:
        result = run_here("src.run", *TINY, *overrides, f"hydra.run.dir={day / name}")
        assert result.returncode == (1 if "max_loss=0.01" in overrides else 0), result.stderr[-2000:]
    assert json.loads((day / "12-00-00-000001" / "run.json").read_text())["status"] == "diverged"

    printed = check(run_here("src.report", str(day))).stdout
    assert "3 of 4 runs completed; 2 groups compared separately: task=reverse, task=char_lm" in printed
    report = (day / "report.md").read_text()
    assert report.startswith("# Report of the runs in 2026-12-04")
    assert "## task=reverse (2 runs)" in report and "## task=char_lm (1 run)" in report
    assert "| 12-00-00-000001 | classification | diverged | " in report and "above max_loss=0.01" in report
    reverse = report.split("## task=reverse", 1)[1].split("\n## ", 1)[0]
    assert "Fixed for every run: `task=reverse`, `model=" in reverse and "val/loss | val/ppl" in reverse

    written = rf"`({re.escape(PYTHON)} -m [^`]+)`"  # a command report.md gives, as this interpreter starts it
    commands = re.findall(written, report)
    assert commands == [f"{PYTHON} -m src.analyze ckpt={day / '10-05-00-000001'}"], commands
    for command in commands:
        program, flag, module, *args = shlex.split(command)
        assert [program, flag] == [*shlex.split(PYTHON), "-m"]
        check(run_here(module, *args))
    check(run_here("src.report", str(day)))
    again = (day / "report.md").read_text()
    assert "Not analysed" not in again and not re.findall(written, again)


def data_files(folder):
    """The files task_overrides names inside the folder it is given: char_lm's text, classification's tsv."""
    (folder / "text.txt").write_text("To be, or not to be, that is the question.\n" * 60)
    rows = [
        f"{'great good fine' if i % 2 else 'bad awful poor'} movie {i}\t{'pos' if i % 2 else 'neg'}" for i in range(80)
    ]
    (folder / "sentiment.tsv").write_text("\n".join(rows) + "\n")
    return folder
