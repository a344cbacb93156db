"""The sweep report (src/sweep/): its numbers are the runs' own, seeds are pooled, failures are listed, figures
show what the tables show, and runs that cannot be compared (other tasks) are never compared."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
import warnings
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from scipy import stats

from src.dashboard import read_events
from src.report import ReportAtSweepEnd, main
from src.sweep.figures import bar_values, draw_figures
from src.sweep.report import ReportRefused, analyse, write_report
from src.sweep.statistics import NO_SPREAD, ONE_RUN, mean_cell, t_interval, welch_p, welch_test
from tests.conftest import PYTHON

MAIN = "val/exact_match"


def fake_run(
    sweep: Path,
    number: int | str,
    overrides: list[str],
    status: str = "completed",
    final=None,
    error=None,
    main: str = MAIN,
    hydra: dict | None = None,
):
    """A job directory as src.run leaves it: overrides, run.json, metrics.json; with `hydra`, the parts of
    .hydra/hydra.yaml the report reads (mode: RUN or MULTIRUN, runtime.choices: the option of each config group).
    A number names it as a sweep's job, a string as a single run (outputs/<date>/<time>)."""
    name = f"{number}_{'+'.join(o.replace('=', ':') for o in overrides)}" if isinstance(number, int) else number
    directory = sweep / name
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (directory / "run.json").write_text(json.dumps({"status": status, "error": error}))
    if hydra is not None:
        (directory / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    if final is not None:
        half = {k: v / 2 if v is not None else None for k, v in final.items()}  # None: a non-finite value
        history = [{"step": 10, **half}, {"step": 20, **final}]
        content = {"main_metric": main, "mode": "max", "history": history, "final": final}
        (directory / "metrics.json").write_text(json.dumps(content))
    return directory


@pytest.fixture
def sweep(tmp_path) -> Path:
    """model.heads 1 and 4 over three seeds, one failed job, one still running."""
    scores = {"1": [0.50, 0.55, 0.52], "4": [0.90, 0.85, 0.95]}
    number = 0
    for heads, values in scores.items():
        for seed, value in enumerate(values):
            overrides = [f"model.heads={heads}", f"seed={seed}", "task=sort"]
            fake_run(tmp_path, number, overrides, final={MAIN: value, "val/loss": 1 - value})
            number += 1
    fake_run(tmp_path, number, ["model.heads=3", "seed=0", "task=sort"], status="failed", error="model.heads=3 ...")
    fake_run(tmp_path, number + 1, ["model.heads=8", "seed=0", "task=sort"], status="running")
    return tmp_path


def test_the_numbers_are_the_runs_own_grouped_over_seeds(sweep):
    (result,) = analyse(sweep).groups
    assert result.varied == ["model.heads"] and result.fixed == {"task": "sort"}
    assert [c.label for c in result.configurations] == ["model.heads=1", "model.heads=4"]
    four = result.configurations[1]
    assert four.values(MAIN) == [0.90, 0.85, 0.95]
    assert t_interval(four.values(MAIN)) == pytest.approx(
        stats.t.ppf(0.975, 2) * statistics.stdev([0.9, 0.85, 0.95]) / 3**0.5
    )
    expected_p = stats.ttest_ind([0.90, 0.85, 0.95], [0.50, 0.55, 0.52], equal_var=False).pvalue
    assert welch_p(four.values(MAIN), result.baseline.values(MAIN)) == pytest.approx(expected_p)


def test_the_report_files(sweep):
    write_report(sweep, tensorboard=True)
    report = (sweep / "report.md").read_text()
    assert "Fixed for every run: `task=sort`" in report
    assert "**0.900 ± 0.050 (3)**" in report  # the best mean in bold, with std and n
    assert "0.523 ± 0.025 (3)" in report  # each mean to two significant digits of its std
    assert "baseline" in report and " *" in report  # 4 heads differs significantly from 1
    assert "| failed | model.heads=3 ... |" in report
    # a job killed outright (kill -9) could not record its end: the row says what `running` may mean
    said = "| running | its run.json says it is running: it still runs, or it was killed before it could say so"
    assert f"{said} |" in report
    rows = list(csv.DictReader(open(sweep / "results.csv")))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"completed", "failed", "running"}
    assert [float(r[MAIN]) for r in rows if r["model.heads"] == "4"] == [0.90, 0.85, 0.95]
    for figure in ("curves.png", "bars.png"):
        assert (sweep / figure).stat().st_size > 1000
    assert list((sweep / "report").glob("events.out.tfevents.*"))  # the TensorBoard copy
    events = read_events(sweep / "report")
    assert {"report/bars", "report/curves"} <= events.image_tags
    ((_, text),) = events.texts["report/table"]
    assert "**0.900 ± 0.050 (3)**" in text
    assert "![bars.png](bars.png)" in report and "![" not in text  # TensorBoard cannot fetch the files: no links


def test_a_named_baseline_and_a_two_axis_heatmap(tmp_path):
    number = 0
    for heads in ("1", "2"):
        for norm in ("pre", "post"):
            for seed in ("0", "1"):
                value = 0.1 * int(heads) + (0.05 if norm == "pre" else 0.0) + 0.01 * int(seed)
                fake_run(
                    tmp_path,
                    number,
                    [f"model.heads={heads}", f"model.norm_position={norm}", f"seed={seed}"],
                    final={MAIN: value},
                )
                number += 1
    (result,) = write_report(tmp_path, baseline="model.heads=2,model.norm_position=post", tensorboard=False).groups
    assert result.baseline.label == "model.heads=2, model.norm_position=post"
    assert (tmp_path / "heatmap.png").is_file()


def test_not_a_sweep_directory_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main([str(tmp_path)])
    assert exit.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


# --- numbers a researcher pastes ----------------------------------------------------------------------------------


def test_each_mean_is_rounded_to_its_spread_and_the_csv_keeps_full_precision(tmp_path):
    values = [0.0312, 0.0319, 0.03254]  # mean 0.031880, std 0.00067
    for seed, value in enumerate(values):
        fake_run(tmp_path, seed, ["model.heads=2", f"seed={seed}"], final={MAIN: value, "val/loss": 1.0 + value})
    write_report(tmp_path, tensorboard=False)
    report = (tmp_path / "report.md").read_text()
    assert "0.03188 ± 0.00067 (3)" in report
    assert f"{statistics.stdev(values):.4g}" not in report
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [float(r[MAIN]) for r in rows] == values  # every digit of every run


def test_an_interval_cannot_pass_what_the_metric_can_take_and_the_table_says_so(tmp_path):
    for seed, value in enumerate([1.0, 0.96, 1.0]):
        fake_run(tmp_path, seed, ["model.heads=2", f"seed={seed}"], final={MAIN: value})
    write_report(tmp_path, tensorboard=False)
    report = (tmp_path / "report.md").read_text()
    row = next(line for line in report.splitlines() if "0.987" in line)
    interval = row.split("|")[2].strip()
    low, high = (float(x) for x in interval.rstrip("†").strip("[]").split(","))
    assert high == 1.0 and low < 0.987 and interval.endswith("†")
    assert "† clipped to the values `val/exact_match` can take, [0, 1]." in report


def test_an_interval_inside_the_range_is_not_marked(sweep):
    write_report(sweep, tensorboard=False)
    rows = {
        line.split("|")[1].strip(): line
        for line in (sweep / "report.md").read_text().splitlines()
        if line.startswith("| ") and "(3)" in line
    }
    assert "†" not in rows["1"] and "1.00]†" in rows["4"]  # 0.90 ± 0.05 over three seeds: up to 1.02, clipped


# --- what is not a setting of the experiment never splits a configuration ---------------------------------------


def test_a_job_resumed_in_place_stays_in_its_row_with_its_seeds_pooled(tmp_path):
    """The README's resume command adds ckpt_path=last (and hydra.run.dir) to one job's overrides: it is still the
    same configuration, so model.heads=1 stays one row of n=2 with an interval and a t-test."""
    fake_run(tmp_path, 0, ["model.heads=1", "seed=0"], final={MAIN: 0.5})
    resumed = fake_run(tmp_path, 1, ["model.heads=1", "seed=1"], final={MAIN: 0.6})
    in_place = ["model.heads=1", "seed=1", f"hydra.run.dir={resumed}", "ckpt_path=last"]  # as the README says
    (resumed / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(in_place))
    fake_run(tmp_path, 2, ["model.heads=2", "seed=0"], final={MAIN: 0.7})
    fake_run(
        tmp_path,
        3,
        ["model.heads=2", "seed=1", "trainer.enable_progress_bar=false", "torch_threads=1"],
        final={MAIN: 0.8},
    )
    (result,) = analyse(tmp_path).groups
    assert result.varied == ["model.heads"]
    assert [len(c.runs) for c in result.configurations] == [2, 2]
    write_report(tmp_path, tensorboard=False)
    report = (tmp_path / "report.md").read_text()
    assert "ckpt_path" not in report and "torch_threads" not in report
    assert "0.550 ± 0.071 (2)" in report


def test_settings_compare_by_the_value_each_run_had_not_by_how_they_were_typed(tmp_path):
    """One job typed the default explicitly (optimizer.lr=3e-3) and one did not: both had lr 0.003. A job that
    was given another value is its own configuration."""

    def job(number: int, overrides: list[str], lr: float, value: float) -> None:
        directory = fake_run(tmp_path, number, overrides, final={MAIN: value})
        (directory / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimizer": {"lr": lr}, "seed": number}))

    job(0, ["seed=0"], 0.003, 0.5)
    job(1, ["seed=1", "optimizer.lr=3e-3"], 0.003, 0.6)
    (result,) = analyse(tmp_path).groups
    assert result.varied == [] and len(result.configurations[0].runs) == 2
    job(2, ["seed=2", "optimizer.lr=1e-2"], 0.01, 0.7)
    (result,) = analyse(tmp_path).groups
    assert result.varied == ["optimizer.lr"]
    assert [c.label for c in result.configurations] == ["optimizer.lr=0.003", "optimizer.lr=1e-2"]


def test_large_values_are_rounded_to_their_spread_too():
    assert mean_cell([98765.0, 123456.0]) == "111000 ± 17000 (2)"
    assert mean_cell([38.8, 40.1, 37.5]) == "38.8 ± 1.3 (3)"


def test_a_setting_the_sweep_itself_swept_is_an_axis_even_if_it_does_not_change_the_experiment(tmp_path):
    """-m torch_threads=1,2: the runs are not seed replicates of one configuration (same seed), so they are not
    pooled; the same key typed for one job only (a resume) would not split its row."""
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["torch_threads=1,2"]}}}))
    fake_run(tmp_path, 0, ["torch_threads=1"], final={MAIN: 0.5})
    fake_run(tmp_path, 1, ["torch_threads=2"], final={MAIN: 0.6})
    (result,) = analyse(tmp_path).groups
    assert result.varied == ["torch_threads"] and [len(c.runs) for c in result.configurations] == [1, 1]


def test_a_non_finite_final_value_is_left_out_of_the_statistics_and_named(tmp_path):
    fake_run(tmp_path, 0, ["seed=0"], final={MAIN: 0.5, "val/loss": float("inf")})
    fake_run(tmp_path, 1, ["seed=1"], final={MAIN: 0.6, "val/loss": 1.0})
    fake_run(tmp_path, 2, ["seed=2"], final={MAIN: 0.7, "val/loss": 2.0})
    write_report(tmp_path, tensorboard=False)
    report = (tmp_path / "report.md").read_text()
    assert "1.50 ± 0.71 (2)" in report
    assert "Left out of `val/loss`: the non-finite values of 0_seed:0." in report


def test_a_null_final_value_is_non_finite_left_out_of_the_mean_and_named(tmp_path):
    """metrics.json keeps inf and nan as null (src/training/metrics_file.py): the report left such a run out of its
    configuration's n without naming it."""
    for seed, value in enumerate([0.5, None, 0.7]):
        fake_run(tmp_path, seed, ["model.heads=2", f"seed={seed}"], final={MAIN: value, "val/loss": 1.0})
    write_report(tmp_path, tensorboard=False)
    report = (tmp_path / "report.md").read_text()
    assert "3 of 3 runs completed." in report and "0.60 ± 0.14 (2)" in report
    assert "Left out of `val/exact_match`: the non-finite values of 1_model.heads:2+seed:1." in report
    assert "Left out of `val/loss`" not in report


def test_a_completed_run_without_metrics_is_listed_with_why_and_not_counted_as_completed(sweep):
    """A completed job whose metrics.json is gone, or cut short: the header counted it as completed, its
    configuration's n fell, and it was neither in the table nor among the runs that did not complete."""
    (sweep / "4_model.heads:4+seed:1+task:sort" / "metrics.json").unlink()
    (sweep / "5_model.heads:4+seed:2+task:sort" / "metrics.json").write_text('{"main_metric": "val/ex')
    write_report(sweep, tensorboard=False)
    report = (sweep / "report.md").read_text()
    assert "4 of 8 runs completed (the rest are listed below)." in report
    assert "| **0.9 (1)** |" in report  # model.heads=4: only its job 3 is left to count
    listed = {line.split(" | ")[0]: line for line in report.splitlines() if " | no metrics | " in line}
    assert listed["| 4_model.heads:4+seed:1+task:sort"].endswith(
        "| run.json says completed, but its metrics.json is missing |"
    )
    assert (
        "| run.json says completed, but its metrics.json cannot be read ("
        in listed["| 5_model.heads:4+seed:2+task:sort"]
    )
    rows = {row["run"]: row["status"] for row in csv.DictReader(open(sweep / "results.csv"))}
    assert rows["4_model.heads:4+seed:1+task:sort"] == rows["5_model.heads:4+seed:2+task:sort"] == "no metrics"


def test_an_unreadable_run_json_is_said_to_be_unreadable_not_missing(sweep):
    (sweep / "6_model.heads:3+seed:0+task:sort" / "run.json").write_text('{"status": "fail')
    (sweep / "7_model.heads:8+seed:0+task:sort" / "run.json").unlink()
    write_report(sweep, tensorboard=False)
    rows = [
        line
        for line in (sweep / "report.md").read_text().splitlines()
        if line.startswith("| 6_") or line.startswith("| 7_")
    ]
    assert rows[0].startswith(
        "| 6_model.heads:3+seed:0+task:sort | unknown | its run.json cannot be read (Unterminated string"
    ) and rows[0].endswith("so how it ended is unknown |")
    assert rows[1] == (
        "| 7_model.heads:8+seed:0+task:sort | unknown | no run.json: it ended before it recorded anything, or has "
        "not started |"
    )


def test_a_baseline_matches_the_value_however_it_is_typed_and_a_miss_lists_the_configurations(tmp_path):
    for number, (lr, typed) in enumerate([(0.001, "1e-3"), (0.001, "1e-3"), (0.003, "0.003"), (0.003, "0.003")]):
        directory = fake_run(tmp_path, number, [f"optimizer.lr={typed}", f"seed={number % 2}"], final={MAIN: lr})
        (directory / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimizer": {"lr": lr}}))
    for spelling in ("1e-3", "0.001", ".001"):
        (group,) = analyse(tmp_path, baseline=f"optimizer.lr={spelling}").groups
        assert group.baseline.label == "optimizer.lr=1e-3"
    with pytest.raises(ReportRefused) as refused:
        analyse(tmp_path, baseline="optimizer.lr=0.5")
    assert "optimizer.lr=1e-3; optimizer.lr=0.003" in str(refused.value)


def grid_sweep_file(sweep: Path, *overrides: str) -> None:
    """multirun.yaml as Hydra's basic sweeper writes it before the first job: the sweep's overrides."""
    (sweep / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "hydra": {
                    "overrides": {"task": list(overrides)},
                    "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
                }
            }
        )
    )


def test_an_interrupted_grid_sweep_counts_the_jobs_it_never_started(tmp_path):
    grid_sweep_file(tmp_path, "model.heads=1,2", "seed=0,1")
    fake_run(tmp_path, 0, ["model.heads=1", "seed=0"], final={MAIN: 0.5})
    fake_run(tmp_path, 1, ["model.heads=1", "seed=1"], status="interrupted")
    sweep = write_report(tmp_path, tensorboard=False)
    assert [number for number, _ in sweep.not_started] == [2, 3]
    assert sweep.progress == "1 of 4 runs completed"
    report = (tmp_path / "report.md").read_text()
    assert "2 of the sweep's 4 jobs never started" in report
    assert (
        f"| 2_model.heads:2+seed:0 | not started | run it: `{PYTHON} -m src.run model.heads=2 seed=0 hydra.run.dir="
        in report
    )
    # and the one command that runs them all, resuming the interrupted job and keeping the completed one
    whole = f"-m src.run -m model.heads=1,2 seed=0,1 hydra.sweep.dir={tmp_path.resolve()} ckpt_path=last`."
    assert "The sweep's own command runs them all, resumes its interrupted jobs and keeps the rest: `" in report
    assert whole in report


def test_a_sweep_extended_with_seeds_counts_its_jobs_by_their_settings_not_their_numbers(tmp_path):
    """`model.heads=1,2 seed=0,1` resumed as `model.heads=1,2 seed=0,1,2` (hydra/launcher=stacked with ckpt_path=last)
    and stopped before its new jobs: Hydra's numbers for the plan (model.heads=2 seed=0 is job 3 now) are not those
    of the directories, which keep theirs. The jobs not started are the two new seeds, numbered after the highest."""
    grid_sweep_file(tmp_path, "model.heads=1,2", "seed=0,1,2", "ckpt_path=last")
    for number, (heads, seed) in enumerate([(1, 0), (1, 1), (2, 0), (2, 1)]):
        fake_run(tmp_path, number, [f"model.heads={heads}", f"seed={seed}"], final={MAIN: 0.5})
    sweep = write_report(tmp_path, tensorboard=False)
    assert [(number, job[:2]) for number, job in sweep.not_started] == [
        (4, ["model.heads=1", "seed=2"]),
        (5, ["model.heads=2", "seed=2"]),
    ]
    assert sweep.progress == "4 of 6 runs completed"
    report = (tmp_path / "report.md").read_text()
    # the command that runs it starts it afresh: the resumed sweep's ckpt_path=last is not the job's
    assert f"| 4_model.heads:1+seed:2 | not started | run it: `{PYTHON} -m src.run model.heads=1 seed=2 hydra" in report
    assert not any("ckpt_path" in row for row in report.splitlines() if "| not started |" in row)


def test_an_interrupted_grid_sweeps_settings_and_seeds_are_the_sweeps_and_its_run_says_how_to_resume(tmp_path):
    """`model.heads=1,2 seed=0,1` stopped during its first job: the header said `model.heads=1` was fixed for every
    run and the seeds were 0, from the one job started; the interrupted row said only `SIGINT at step 41`, though
    its run.json holds the command that resumes it."""
    grid_sweep_file(tmp_path, "model.heads=1,2", "seed=0,1")
    job = fake_run(tmp_path, 0, ["model.heads=1", "seed=0", "task=sort"], status="interrupted")
    resume = f"python -m src.run model.heads=1 seed=0 task=sort hydra.run.dir={job} ckpt_path=last"
    record = {"status": "interrupted", "error": "SIGINT at step 41", "checkpoint": str(job / "last.ckpt")}
    (job / "run.json").write_text(json.dumps({**record, "resume": resume}))
    sweep = write_report(tmp_path, tensorboard=False)
    (group,) = sweep.groups
    assert group.varied == ["model.heads"] and group.fixed == {"task": "sort"} and group.seeds == ["0", "1"]
    report = (tmp_path / "report.md").read_text()
    assert "Fixed for every run: `task=sort`.\nSeeds (seed): 0, 1; each cell" in report
    assert f"| {job.name} | interrupted | SIGINT at step 41; resume it: `{resume}` |" in report


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("model.heads", "--baseline model.heads: `model.heads` is not setting=value:"),
        ("model.heads=4,foo", "--baseline model.heads=4,foo: `foo` is not setting=value:"),
        (
            "model.heads=4,model.heads=1",
            "--baseline model.heads=4,model.heads=1 names model.heads twice: give each setting once;",
        ),
        ("", "--baseline is empty:"),
    ],
)
def test_a_baseline_that_is_not_setting_value_is_refused_in_one_line_before_anything_is_written(
    sweep, capsys, given, problem
):
    """`--baseline model.heads` was taken as no setting at all (the first configuration), and the `foo` of
    `model.heads=4,foo` was dropped."""
    with pytest.raises(SystemExit) as exit:
        main([str(sweep), "--baseline", given])
    assert exit.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {problem} name a configuration of the table as setting=value, one of (model.heads=1; model.heads=4)\n"
    )
    assert not (sweep / "report.md").exists() and not (sweep / "results.csv").exists()


def test_a_baseline_value_may_hold_commas_inside_brackets():
    from src.sweep.report import parse_baseline

    assert parse_baseline("ablate.heads=[0:0,0:1],model.heads=2", []) == {
        "ablate.heads": "[0:0,0:1]",
        "model.heads": "2",
    }


def test_a_sweeps_end_keeps_the_users_report_md_and_says_how_to_write_the_report(sweep, capsys, monkeypatch):
    """`mkdir own; echo "my notes" > own/report.md; python -m src.run -m ... hydra.sweep.dir=own`: the sweep's own
    report replaced the notes without a word (only src.report checked whose report.md it was)."""
    monkeypatch.setattr(ReportAtSweepEnd, "last_sweep", None)
    (sweep / "report.md").write_text("my notes\n")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}, "report": {"baseline": None}})
    ReportAtSweepEnd().on_multirun_end(config)
    assert (sweep / "report.md").read_text() == "my notes\n"
    assert capsys.readouterr().err == (
        f"warning: no sweep report: {sweep / 'report.md'} is not a report src.report wrote, so it is kept and no "
        f"report was written (nor its figures and results.csv): move it away, then run {PYTHON} -m src.report {sweep}\n"
    )
    assert not (sweep / "results.csv").exists() and not list(sweep.glob("*.png")) and not (sweep / "report").exists()
    assert len(ReportAtSweepEnd.last_sweep.runs) == 8  # the command's exit status still reads its jobs


# --- the head analysis of each job (src.analyze, analyze_after_fit=true) -----------------------------------------


def fake_analysis(
    job: Path, baseline: float, prunable: float, rho: float, pruned: dict[str, float], curve, undefined=None
) -> None:
    """analysis/summary.json and pruning.csv as src.analyze writes them (src/analysis/report.py), by hand;
    `undefined`: the causes of undefined figures, as summary.json records them (None: an older analysis's file)."""
    out = job / "analysis"
    out.mkdir()
    summary = {
        "metric": "exact_match",
        "higher_is_better": True,
        "split": "val",
        "tolerance": 0.05,
        "figures": {"baseline": baseline, "prunable_fraction": prunable, "heads": 12.0, "rank_correlation_metric": rho},
        "sites": [{"site": site, "heads": 4, "pruned_within_tolerance": share} for site, share in pruned.items()],
    }
    if undefined is not None:
        summary["undefined"] = undefined
    (out / "summary.json").write_text(json.dumps(summary))  # NaN as json.dumps writes it, as the real file has
    rows = ["fraction_removed,heads_removed,exact_match,loss,removed"]
    rows += [f"{fraction},{round(12 * fraction)},{value},1.0,x" for fraction, value in curve]
    (out / "pruning.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture
def analysed_sweep(tmp_path) -> Path:
    """model.heads 1 and 2 over three seeds; every job analysed but one of the 2-head ones."""
    prunable = {"1": [0.25, 0.5, 0.25], "2": [0.75, 0.5, 0.75]}
    number = 0
    for heads, fractions in prunable.items():
        for seed, fraction in enumerate(fractions):
            job = fake_run(tmp_path, number, [f"model.heads={heads}", f"seed={seed}"], final={MAIN: 0.9})
            if (heads, seed) != ("2", 2):
                rho = float("nan") if (heads, seed) == ("1", 0) else 0.5 + 0.1 * seed
                curve = [(0.0, 0.9), (0.5, 0.9 - 0.2 * seed), (1.0, 0.1)]
                pruned = {"encoder_self": fraction, "cross": fraction / 2}
                fake_analysis(job, 0.9 + 0.01 * seed, fraction, rho, pruned, curve)
            number += 1
    return tmp_path


def test_the_pruning_section_holds_each_configurations_analysis_over_seeds(analysed_sweep):
    write_report(analysed_sweep, tensorboard=True)
    report = (analysed_sweep / "report.md").read_text()
    section = report.split("## Head pruning (src.analyze)", 1)[1]
    assert "val `exact_match`, tolerance 5%" in section  # what the fractions refer to
    table = [line.split("|") for line in section.splitlines() if line.startswith("|")]
    rows = {cells[1].strip(): [c.strip() for c in cells[2:-1]] for cells in table}
    header = rows["model.heads"]
    assert header[:5] == [
        "exact_match unablated",
        "prunable",
        "rank correlation",
        "encoder_self pruned",
        "cross pruned",
    ]
    one, two = rows["1"], rows["2"]
    assert one[0] == "0.910 ± 0.010 (3)"  # unablated exact match 0.90, 0.91, 0.92
    assert one[1] == "0.33 ± 0.14 (3)" and two[1] == "0.62 ± 0.18 (2)"  # prunable; one 2-head job unanalysed
    assert one[2] == "0.650 ± 0.071 (2)"  # the undefined (NaN) correlation is left out, and named
    assert one[3] == "0.33 ± 0.14 (3)" and one[4] == "0.167 ± 0.072 (3)"  # per site
    assert one[6] == "baseline"
    expected = stats.ttest_ind([0.75, 0.5], [0.25, 0.5, 0.25], equal_var=False).pvalue
    assert welch_p([0.75, 0.5], [0.25, 0.5, 0.25]) == pytest.approx(expected)
    assert rows["2"][6].split()[0] == f"{expected:.3g}"
    low, high = (float(x) for x in one[5].rstrip("†").strip("[]").split(","))
    half = stats.t.ppf(0.975, 2) * statistics.stdev([0.25, 0.5, 0.25]) / 3**0.5
    assert low == 0.0 and one[5].endswith("†")  # 0.33 - 0.36 < 0: clipped to what a fraction can take
    assert high == pytest.approx(1 / 3 + half, abs=0.01)
    assert "† clipped to the values the prunable fraction can take, [0, 1]." in section
    # An analysis written before summary.json kept the cause, with no heads.csv to work it out: said so.
    assert "Rank correlation undefined, and left out, for 0_model.heads:1+seed:0: its cause is not recorded" in section
    assert "Not analysed: 5_model.heads:2+seed:2" in section and f"{PYTHON} -m src.analyze ckpt=" in section

    rows_csv = list(csv.DictReader(open(analysed_sweep / "results.csv")))
    assert [r["analysis/prunable_fraction"] for r in rows_csv] == ["0.25", "0.5", "0.25", "0.75", "0.5", ""]
    assert rows_csv[0]["analysis/pruned/cross"] == "0.125" and rows_csv[0]["analysis/baseline"] == "0.9"
    assert (analysed_sweep / "pruning.png").stat().st_size > 1000
    assert "![pruning.png](pruning.png)" in report
    assert "report/pruning" in read_events(analysed_sweep / "report").image_tags


def test_a_sweep_without_analyses_has_no_pruning_section(sweep):
    write_report(sweep, tensorboard=False)
    assert "Head pruning" not in (sweep / "report.md").read_text()
    assert not (sweep / "pruning.png").exists()
    assert not any(key.startswith("analysis/") for key in next(csv.DictReader(open(sweep / "results.csv"))))


def test_a_failed_analysis_after_training_is_named_with_its_reason(analysed_sweep):
    job = analysed_sweep / "5_model.heads:2+seed:2"
    record = json.loads((job / "run.json").read_text())
    (job / "run.json").write_text(json.dumps({**record, "analysis": "failed: RuntimeError: out of memory"}))
    result = write_report(analysed_sweep, tensorboard=False)
    assert [run.directory.name for run in result.runs if run.analysis_failed] == [job.name]
    report = (analysed_sweep / "report.md").read_text()
    assert f"Not analysed: {job.name} (analysis failed: RuntimeError: out of memory)" in report


# --- a search whose Optuna study is kept in a database (src/study.py) ---------------------------------------------


@pytest.fixture
def stored_study(tmp_path):
    """A sqlite study of three trials, as two sweeps left it: trial 0 and 2 by this sweep (directory `here`), trial 1
    by another machine's sweep, which is still running trial 3. Returns (this sweep's directory, the URL)."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    from optuna.distributions import CategoricalDistribution, UniformDistribution

    from src.study import HOST, JOB_DIR, SWEEP_DIR, Search, open_study, record

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    here, there = tmp_path / "here", Path("/elsewhere/sweep")
    space = {"model.d_model": CategoricalDistribution([32, 64]), "model.dropout": UniformDistribution(0.0, 0.3)}
    study = open_study(url, "search", Search(["minimize"], space, "val/loss"))
    for number, (sweep_dir, d_model, dropout, loss) in enumerate(
        [(here, 32, 0.1, 0.8), (there, 64, 0.2, 0.5), (here, 64, 0.25, 0.9), (there, 32, 0.05, None)]
    ):
        with warnings.catch_warnings():  # Optuna 2 calls enqueue_trial experimental
            warnings.simplefilter("ignore")
            study.enqueue_trial({"model.d_model": d_model, "model.dropout": dropout})  # the next ask samples these
        trial = study.ask()
        trial.suggest_categorical("model.d_model", [32, 64])
        trial.suggest_float("model.dropout", 0.0, 0.3)
        trial.set_user_attr(HOST, "machine-a" if sweep_dir == here else "machine-b")
        trial.set_user_attr(SWEEP_DIR, str(sweep_dir))
        if loss is not None:
            job = sweep_dir / f"{number}_job"
            trial.set_user_attr(JOB_DIR, str(job.resolve() if sweep_dir == here else job))
            study.tell(trial, loss)
    for number in (0, 2):  # this sweep's jobs
        fake_run(here, number, [f"model.d_model={[32, 64][number // 2]}"], final={MAIN: 0.1, "val/loss": 0.8})
        (here / f"{number}_model.d_model:{[32, 64][number // 2]}").rename(here / f"{number}_job")
    record(here, url, "search", ["minimize"], 4)
    return here, url


def test_a_stored_studys_report_lists_every_trial_best_first_with_where_it_ran(stored_study):
    here, url = stored_study
    write_report(here, tensorboard=False)
    report = (here / "report.md").read_text()
    section = report.split("## Study search: every trial, whichever sweep ran it", 1)[1]
    assert "4 trials: 3 completed, 1 running" in section and "minimize the value" in section
    assert f"still running, so has no value yet: run {PYTHON} -m src.report" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == [
        "| 1 | completed | **0.5** | 64 | 0.2 | machine-b: /elsewhere/sweep/1_job |",
        "| 0 | completed | 0.8 | 32 | 0.1 | this sweep: 0_job |",
        "| 2 | completed | 0.9 | 64 | 0.25 | this sweep: 2_job |",
        "| 3 | running | - | 32 | 0.05 | machine-b: /elsewhere/sweep |",
    ]
    assert "| trial | state | value (val/loss) | model.d_model | model.dropout | ran in |" in section
    trials = list(csv.DictReader(open(here / "study.csv")))
    assert [(t["trial"], t["state"], t["value"]) for t in trials] == [
        ("0", "completed", "0.8"),
        ("1", "completed", "0.5"),
        ("2", "completed", "0.9"),
        ("3", "running", ""),
    ]


def test_src_report_prints_a_stored_study_without_a_sweep_directory(stored_study, capsys):
    _, url = stored_study
    main(["--storage", url, "--study", "search"])
    printed = capsys.readouterr().out
    assert printed.startswith("# Study search\n")
    assert "| 1 | completed | **0.5** | 64 | 0.2 | machine-b: /elsewhere/sweep/1_job |" in printed
    assert "| 0 | completed | 0.8 | 32 | 0.1 | machine-a: " in printed  # no sweep directory: every host named
    with pytest.raises(SystemExit) as exit:
        main(["--storage", url, "--study", "nothing"])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert error == f"error: {url} has no study nothing (it holds search): give one of its studies' names\n"


def test_a_report_whose_study_cannot_be_read_says_so_and_keeps_the_rest(stored_study):
    here, url = stored_study
    Path(url.removeprefix("sqlite:///")).unlink()  # the database moved away
    write_report(here, tensorboard=False)
    report = (here / "report.md").read_text()
    assert "2 of 2 runs completed" in report
    assert "The study's trials could not be read (" in report and "does not exist" in report


def test_a_grid_sweep_has_no_study_section(sweep):
    write_report(sweep, tensorboard=False)
    assert "## Study" not in (sweep / "report.md").read_text() and not (sweep / "study.csv").exists()


# --- only what can be compared is compared (issue 24, item 4) ----------------------------------------------------


def single_run(folder: Path, time: str, task: str, main: str, final=None, seed: int = 0, **kwargs) -> Path:
    """A run started on its own (`python -m src.run task=<task>`, outputs/<date>/<time>): Hydra's mode RUN, its
    task and model chosen by config group, its seed in its config (not typed)."""
    hydra = {"mode": "RunMode.RUN", "runtime": {"choices": {"task": task, "model": "tiny"}}}
    directory = fake_run(folder, time, [f"task={task}"], final=final, main=main, hydra=hydra, **kwargs)
    (directory / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "task": {"name": task}}))
    return directory


@pytest.fixture
def day(tmp_path) -> Path:
    """outputs/<date>/ after a day of unrelated single runs: two of reverse (seeds 0 and 1), one of char_lm, and a
    classification run that failed on its data."""
    single_run(tmp_path, "10-00-00", "reverse", MAIN, {MAIN: 0.5, "val/loss": 1.0}, seed=0)
    single_run(tmp_path, "10-05-00", "reverse", MAIN, {MAIN: 0.6, "val/loss": 0.9}, seed=1)
    single_run(tmp_path, "11-00-00", "char_lm", "val/loss", {"val/loss": 2.5, "val/ppl": 12.2})
    error = "data.tsv:2: no TAB in this line: each line must be `sentence<TAB>label`"
    single_run(tmp_path, "12-00-00", "classification", "val/acc", status="failed", error=error)
    return tmp_path


def sections(report: str) -> dict[str, str]:
    """report.md's `## ` sections by title."""
    parts = report.split("\n## ")[1:]
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts}


def test_a_day_of_unrelated_runs_is_reported_per_task_and_never_compared_across(day):
    """The issue's example: `src.report outputs/<date>` on runs of reverse, char_lm and classification wrote one
    table with a baseline and Welch p-values across tasks. Each task is its own section now, with its own table,
    baseline and statistics, and the report says why; the failed run is named with its task, in no table."""
    result = write_report(day, tensorboard=False)
    assert [group.name for group in result.compared] == ["task=reverse", "task=char_lm"]
    report = (day / "report.md").read_text()
    assert report.startswith(f"# Report of the runs in {day.name}\n")
    assert (
        "single runs, each started on its own" in report and "Runs in different sections are never compared" in report
    )
    parts = sections(report)
    reverse, char_lm = parts["task=reverse (2 runs)"], parts["task=char_lm (1 run)"]
    assert "Fixed for every run: `task=reverse`, `model=tiny`." in reverse
    assert "| val/exact_match | val/loss | 95% CI | vs baseline (p) |" in reverse and "val/ppl" not in reverse
    assert "| val/loss | val/ppl | 95% CI | vs baseline (p) |" in char_lm and "exact_match" not in char_lm
    for section in (reverse, char_lm):  # each its own baseline: one configuration each, nothing tested across
        rows = [line for line in section.splitlines() if line.startswith("| ") and re.search(r"\(\d+\)\**\s\|", line)]
        assert len(rows) == 1 and rows[0].endswith("| baseline |"), rows
    assert "| 12-00-00 | classification | failed | data.tsv:2: no TAB" in parts["Runs that did not complete"]
    assert "classification (" not in report.split("## Runs that did not complete")[0]
    # Figures per group, with the numbers of that group only.
    assert (day / "bars_reverse.png").is_file() and (day / "bars_char-lm.png").is_file()
    assert not (day / "bars.png").exists()
    assert "![bars_reverse.png](bars_reverse.png)" in reverse
    rows = list(csv.DictReader(open(day / "results.csv")))
    assert [(r["run"], r["group"]) for r in rows] == [
        ("10-00-00", "task=reverse"),
        ("10-05-00", "task=reverse"),
        ("11-00-00", "task=char_lm"),
        ("12-00-00", "task=classification"),
    ]


def test_src_report_says_it_grouped_the_runs(day, capsys):
    main([str(day)])
    printed = capsys.readouterr().out
    assert printed.strip() == (
        f"report: {day / 'report.md'} (3 of 4 runs completed; 2 groups compared separately: task=reverse, task=char_lm)"
    )


def test_a_sweep_over_tasks_compares_each_task_with_itself(tmp_path):
    number = 0
    for task, main_metric in (("reverse", MAIN), ("sort", MAIN)):
        for heads in ("1", "2"):
            for seed in ("0", "1"):
                value = 0.2 * int(heads) + 0.01 * int(seed) + (0.5 if task == "sort" else 0.0)
                overrides = [f"task={task}", f"model.heads={heads}", f"seed={seed}"]
                fake_run(tmp_path, number, overrides, final={main_metric: value}, hydra={"mode": "RunMode.MULTIRUN"})
                number += 1
    result = analyse(tmp_path, baseline="model.heads=2")
    assert [(g.name, g.varied, g.baseline.label) for g in result.compared] == [
        ("task=reverse", ["model.heads"], "model.heads=2"),
        ("task=sort", ["model.heads"], "model.heads=2"),
    ]
    for group in result.compared:  # never a run of the other task in a configuration
        assert {run.task for c in group.configurations for run in c.runs} == {group.task}
    write_report(tmp_path, baseline="model.heads=2", tensorboard=False)
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Sweep report: ") and "## task=reverse (4 runs)" in report
    with pytest.raises(ReportRefused) as refused:
        analyse(tmp_path, baseline="model.heads=8")
    assert "task=reverse: model.heads=1; model.heads=2 | task=sort: model.heads=1; model.heads=2" in str(refused.value)


def test_the_task_and_model_are_named_even_when_not_typed(tmp_path):
    choices = {"mode": "RunMode.MULTIRUN", "runtime": {"choices": {"task": "sort", "model": "small"}}}
    for number, heads in enumerate(("1", "2")):
        fake_run(tmp_path, number, [f"model.heads={heads}"], final={MAIN: 0.5}, hydra=choices)
    write_report(tmp_path, tensorboard=False)
    assert "Fixed for every run: `task=sort`, `model=small`." in (tmp_path / "report.md").read_text()


def test_a_report_md_of_someone_elses_is_not_replaced(day, capsys):
    (day / "report.md").write_text("MY NOTES\n")
    with pytest.raises(SystemExit) as exit:
        main([str(day)])
    assert exit.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {day / 'report.md'} is not a report src.report wrote, so it is kept and no report was written (nor "
        f"its figures and results.csv): move it away, then run {PYTHON} -m src.report {day}\n"
    )
    assert not (day / "results.csv").exists() and not list(day.glob("*.png"))
    assert (day / "report.md").read_text() == "MY NOTES\n"
    (day / "report.md").unlink()
    main([str(day)])  # its own report is replaced the next time
    main([str(day)])
    assert capsys.readouterr().out.count("report: ") == 2


def test_one_run_is_refused_with_the_folder_that_holds_it(day, capsys):
    with pytest.raises(SystemExit) as exit:
        main([str(day / "10-00-00")])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and f"{PYTHON} -m src.report {day.resolve()}" in error


# --- statistics and figures agree with the tables, and say why a number is missing (item 5) ----------------------


def test_the_error_bars_of_bars_png_are_the_tables_interval_clipped_as_it_is(tmp_path):
    """The issue's example: the table clips the interval of exact match at 1.0; bars.png drew it past 1.0."""
    for seed, value in enumerate([1.0, 0.96, 1.0]):
        fake_run(tmp_path, seed, ["model.heads=2", f"seed={seed}"], final={MAIN: value})
    for seed, value in enumerate([0.5, 0.6, 0.55]):
        fake_run(tmp_path, 3 + seed, ["model.heads=1", f"seed={seed}"], final={MAIN: value})
    sweep = write_report(tmp_path, tensorboard=False)
    report = (tmp_path / "report.md").read_text()
    table = {
        line.split("|")[1].strip(): line.split("|")[-3].strip().rstrip("†").strip("[]").split(", ")
        for line in report.splitlines()
        if line.startswith("| ") and "(3)" in line
    }
    (group,) = sweep.compared
    bars = {label: (low, high) for label, _, low, high in bar_values(group)}
    assert bars["model.heads=2"][1] == 1.0 and float(table["2"][1]) == 1.0  # clipped in both
    for heads, (low, high) in table.items():
        drawn = bars[f"model.heads={heads}"]
        assert drawn == pytest.approx((float(low), float(high)), abs=0.006), heads  # the table rounds
    figures = draw_figures(sweep)
    (container,) = [c for c in figures["bars"].axes[0].containers if hasattr(c, "errorbar")]
    tops = [max(y for _, y in segment) for segment in container.errorbar.lines[2][0].get_segments()]
    assert tops == pytest.approx([high for _, high in bars.values()])
    assert max(tops) == 1.0


def test_two_configurations_without_spread_have_no_p_value_and_the_report_says_why(tmp_path):
    """The issue's example: 0 ± 0 against 0 ± 0 printed p = 1; no test is possible, and the report says so."""
    for number, (heads, seed) in enumerate([("1", 0), ("1", 1), ("2", 0), ("2", 1), ("4", 0)]):
        final = {MAIN: 0.0 if heads != "4" else 0.3}
        fake_run(tmp_path, number, [f"model.heads={heads}", f"seed={seed}"], final=final)
    assert welch_test([0.0, 0.0], [0.0, 0.0]) == (None, NO_SPREAD)
    assert welch_test([1.0, 1.0], [0.0, 0.0]) == (None, NO_SPREAD)  # differ in every seed, yet no t statistic
    assert welch_test([0.3], [0.0, 0.0]) == (None, ONE_RUN)
    write_report(tmp_path, tensorboard=False)
    report = (tmp_path / "report.md").read_text()
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[-3:-1]]
        for line in report.splitlines()
        if line.startswith("| ") and "(" in line
    }
    assert rows["1"] == ["n/a: no spread", "baseline"]
    assert rows["2"] == ["n/a: no spread", "n/a: no spread"]
    assert rows["4"] == ["n/a: one run", "n/a: one run"]
    assert "n/a: no spread: every seed gave the same value (std 0)" in report
    assert "n/a: one run: a t interval and a t-test need at least two seeds" in report


def test_the_heatmap_labels_each_cell_as_the_table_rounds_it(tmp_path):
    number = 0
    for heads in ("1", "2"):
        for norm in ("pre", "post"):
            for seed, offset in enumerate((0.0, 0.1)):
                value = 0.51234 + offset + 0.1 * int(heads) + (0.05 if norm == "pre" else 0.0)
                overrides = [f"model.heads={heads}", f"model.norm_position={norm}", f"seed={seed}"]
                fake_run(tmp_path, number, overrides, final={MAIN: value})
                number += 1
    sweep = write_report(tmp_path, tensorboard=False)
    (group,) = sweep.compared
    labels = sorted(text.get_text() for text in draw_figures(sweep)["heatmap"].axes[0].texts)
    cells = sorted(mean_cell(c.values(MAIN)).split(" ± ")[0] for c in group.configurations)
    assert labels == cells  # e.g. 0.662 (the mean to two digits of its std), as the table has it
    assert labels != sorted(f"{statistics.mean(c.values(MAIN)):.4g}" for c in group.configurations)  # not 0.6623


def test_runs_of_one_seed_pooled_in_a_configuration_are_said_to_be_reruns(tmp_path):
    for time, value in (("10-00", 0.5), ("10-05", 0.5)):
        single_run(tmp_path, time, "reverse", MAIN, {MAIN: value}, seed=0)
    write_report(tmp_path, tensorboard=False)
    report = (tmp_path / "report.md").read_text()
    assert "`(all)`: 10-00, 10-05 all ran with seed=0: reruns, not independent samples" in report
    assert "| 0.5 ± 0 (2) | n/a: no spread | baseline |" in report  # one configuration: nothing bold, no test


def test_the_pruning_section_names_the_cause_each_analysis_recorded(tmp_path):
    """One head per layer: the analysis records why its rank correlation is undefined, and the sweep report gives
    that cause (it gave 'no single head changed exact_match, or too few heads'). An analysis without a prunable
    fraction has no share of a site pruned either: '-' and named, not 0 (an older summary.json said 0 there)."""
    one_head = "one head per layer: importance is normalised within each layer (Michel et al.), so every head's is 1"
    for seed in range(2):
        job = fake_run(tmp_path, seed, ["model.heads=1", f"seed={seed}"], final={MAIN: 0.9})
        fake_analysis(job, 0.9, 0.5, math.nan, {"cross": 0.5}, [(0.0, 0.9)], {"rank_correlation_metric": one_head})
    job = fake_run(tmp_path, 2, ["model.heads=2", "seed=0"], final={MAIN: 0.0})
    fake_analysis(job, 0.0, math.nan, 0.3, {"cross": 0.0}, [(0.0, 0.0)])  # an older analysis: no causes recorded
    write_report(tmp_path, tensorboard=False)
    section = (tmp_path / "report.md").read_text().split("## Head pruning (src.analyze)", 1)[1]
    assert f"for 0_model.heads:1+seed:0, 1_model.heads:1+seed:1: {one_head}" in section
    assert "no single head changed" not in section
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in section.splitlines()
        if line.startswith("| ") and "(" in line
    }
    assert rows["2"][:4] == ["0 (1)", "-", "0.3 (1)", "-"]  # unablated, prunable, rho, cross pruned
    assert (
        "Prunable fraction (and each site's share pruned) undefined, and left out, for 2_model.heads:2+seed:0: the "
        "unablated model scores exact_match 0 on val: it does not do the task" in section
    )


# --- the answer first (item 6) -----------------------------------------------------------------------------------


def test_the_table_is_preceded_by_its_answer(sweep):
    write_report(sweep, tensorboard=False)
    report = (sweep / "report.md").read_text()
    expected = stats.ttest_ind([0.90, 0.85, 0.95], [0.50, 0.55, 0.52], equal_var=False).pvalue
    line = (
        "**Best on `val/exact_match`: `model.heads=4`**, 0.900 ± 0.050 (3), against the baseline `model.heads=1`, "
        f"0.523 ± 0.025 (3): p = {expected:.3g}, a difference at p < 0.05."
    )
    assert line in report and report.index(line) < report.index("| model.heads |")


def test_bold_marks_the_best_only_when_something_is_worse(tmp_path):
    for number, heads in enumerate(("1", "2")):
        for seed in range(2):
            fake_run(tmp_path, 2 * number + seed, [f"model.heads={heads}", f"seed={seed}"], final={MAIN: 0.5})
    write_report(tmp_path, tensorboard=False)
    report = (tmp_path / "report.md").read_text()
    assert "**" not in report.split("| model.heads |", 1)[1]  # two configurations tied: neither is best
    assert "**No configuration is best on `val/exact_match`**: every one has the same mean." in report


def test_analyses_at_different_tolerances_are_not_pooled(tmp_path):
    for seed, tolerance in ((0, 0.05), (1, 0.05), (2, 0.1)):
        job = fake_run(tmp_path, seed, ["model.heads=2", f"seed={seed}"], final={MAIN: 0.9})
        fake_analysis(job, 0.9, 0.25 + tolerance, 0.5, {"cross": 0.5}, [(0.0, 0.9)])
        summary = json.loads((job / "analysis" / "summary.json").read_text())
        (job / "analysis" / "summary.json").write_text(json.dumps({**summary, "tolerance": tolerance}))
    write_report(tmp_path, tensorboard=False)
    section = (tmp_path / "report.md").read_text().split("## Head pruning (src.analyze)", 1)[1]
    assert "each measure has a table of its own; they are not pooled" in section
    assert "on val `exact_match`, tolerance 5%." in section and "on val `exact_match`, tolerance 10%." in section
    rows = [line for line in section.splitlines() if line.startswith("| 0.9")]
    assert [row.split(" | ")[1] for row in rows] == ["0.3 ± 0 (2)", "0.35 (1)"]  # prunable, per tolerance


def test_report_help_names_the_command_and_shows_examples(capsys):
    from src.sweep.report import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    helped = capsys.readouterr().out
    assert helped.startswith(f"usage: {PYTHON} -m src.report ")
    assert "examples:" in helped and "--baseline model.heads=4" in helped and "outputs/<date> " in helped


# --- what the command line does not take: one `error:` line with the fix, exit status 2, nothing written ----------


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["{sweep}", "--metirc", "val/loss"],
            "error: --metirc is not an option of {python} -m src.report: it takes a sweep directory, --baseline, "
            "--storage, --study ({python} -m src.report --help lists the options)",
        ),
        (
            ["{sweep}", "--basline", "model.heads=2"],
            "error: --basline is not an option of {python} -m src.report: did you mean --baseline? ({python} -m "
            "src.report --help lists the options)",
        ),
        (
            ["{sweep}", "{other}"],
            "error: 2 directories given ({sweep}, {other}): a report is of one sweep: give one ({python} -m src.report "
            "{sweep}), and run the command again for each of the others",
        ),
        (
            ["sweep_dir={sweep}"],
            "error: sweep_dir={sweep}: {python} -m src.report takes the sweep directory on its own, not as key=value: "
            "{python} -m src.report {sweep}",
        ),
        (
            ["dir={sweep}/missing"],
            "error: dir={sweep}/missing: {python} -m src.report takes the sweep directory on its own, not as "
            "key=value: {python} -m src.report {sweep}/missing",
        ),
        (
            ["hydra.sweep.dir={sweep}"],
            "error: hydra.sweep.dir={sweep}: {python} -m src.report takes the sweep directory on its own, not as "
            "key=value: {python} -m src.report {sweep}",
        ),
        (
            ["{sweep}", "baseline=model.heads=2"],
            "error: baseline=model.heads=2: baseline is an option of {python} -m src.report: write it --baseline "
            "model.heads=2",
        ),
        (
            ["{sweep}", "--baseline"],
            "error: argument --baseline: expected one argument: {python} -m src.report --help lists the options",
        ),
        (  # argparse kept the last one silently
            ["{sweep}", "--baseline", "model.heads=2", "--baseline", "model.heads=4"],
            "error: --baseline given twice (model.heads=2, model.heads=4): a report compares with one baseline: give "
            "--baseline once",
        ),
        (  # was taken for a second directory
            ["{sweep}", "model.heads=2"],
            "error: model.heads=2: {python} -m src.report takes no settings; to compare the sweep's configurations "
            "with this one, write it --baseline model.heads=2",
        ),
    ],
)
def test_what_the_report_does_not_take_is_one_line_with_the_fix(tmp_path, capsys, args, line):
    sweep, other = tmp_path / "sweep", tmp_path / "other"
    for seed in (0, 1):
        fake_run(sweep, seed, ["model.heads=2", f"seed={seed}"], final={MAIN: 0.9})
        fake_run(other, seed, ["model.heads=4", f"seed={seed}"], final={MAIN: 0.8})
    with pytest.raises(SystemExit) as exit:
        main([arg.format(sweep=sweep, other=other) for arg in args])
    assert exit.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [line.format(sweep=sweep, other=other, python=PYTHON)] and not captured.out
    assert not (sweep / "report.md").exists() and not (other / "report.md").exists()


def test_a_job_left_running_in_a_grid_sweep_gets_the_sweeps_own_resume(sweep):
    """In a grid sweep (its multirun.yaml says its command), a job whose run.json still says `running` after the
    sweep ended was killed outright: its row gives the sweep's own command, which resumes it in place."""
    from src.sweep.resume import resume_command

    task = ["model.heads=1,4,3,8", "seed=0,1,2", "task=sort"]
    OmegaConf.save({"hydra": {"overrides": {"hydra": [], "task": task}}}, sweep / "multirun.yaml")
    write_report(sweep)
    report = (sweep / "report.md").read_text()
    (row,) = [line for line in report.splitlines() if "| running |" in line]
    assert row.endswith(f"if killed, the sweep's own command resumes it: `{resume_command(sweep)}` |"), row
    assert resume_command(sweep).endswith("ckpt_path=last")


def test_a_switch_is_written_as_the_command_line_writes_it_and_a_baseline_typed_so_is_found(tmp_path):
    """Switches typed for the sweep (`model.qk_norm=true,false model.parallel_layers=true`) are `true`, not Python's
    `True`, in the report's text, so that they paste back, and a baseline typed `true` matches its runs."""
    for number, (qk_norm, value) in enumerate([("true", 0.5), ("true", 0.6), ("false", 0.7), ("false", 0.8)]):
        overrides = [f"model.qk_norm={qk_norm}", "model.parallel_layers=true", f"seed={number % 2}"]
        directory = fake_run(tmp_path, number, overrides, final={MAIN: value})
        config = {"model": {"qk_norm": qk_norm == "true", "parallel_layers": True}, "seed": number % 2}
        (directory / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (group,) = analyse(tmp_path, baseline="model.qk_norm=true").groups
    assert group.baseline is not None and group.baseline.label == "model.qk_norm=true"
    assert sorted(c.label for c in group.configurations) == ["model.qk_norm=false", "model.qk_norm=true"]
    assert group.fixed["model.parallel_layers"] == "true", group.fixed
