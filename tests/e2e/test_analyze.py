"""`python -m src.analyze` on real runs of every architecture: the files it writes, what they hold, the figures in
the run's TensorBoard, and the refusals that keep earlier results."""

from __future__ import annotations

import csv
import json

import pytest

from src.dashboard import read_events
from tests.conftest import PYTHON

from .conftest import TINY, check, run_here, task_overrides

pytestmark = pytest.mark.slow

# Two layers of two heads: enough heads to prune in steps, small enough for seconds.
TWO_LAYERS = [*TINY, "model.layers=2", "trainer.max_steps=8", "trainer.val_check_interval=8"]
FILES = {
    "report.md",
    "heads.csv",
    "keep_one.csv",
    "pruning.csv",
    "summary.json",
    "importance.png",
    "entropy.png",
    "single_head_effect.png",
    "pruning_curve.png",
}
SITES = {
    "reverse": ["encoder_self", "decoder_self", "cross"],
    "translation": ["encoder_self", "decoder_self", "cross"],
    "char_lm": ["decoder_self"],
    "classification": ["encoder_self"],
}
# As src.eval prints them (translation: sacreBLEU on the raw references, `<split>/sacrebleu`, not val/bleu).
METRIC = {"reverse": "exact_match", "translation": "sacrebleu", "char_lm": "loss", "classification": "acc"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One tiny trained run per task kind (and translation, whose metric is decoded sacreBLEU)."""
    runs = {}
    for task in SITES:
        run_dir = tmp_path_factory.mktemp(task) / "run"
        check(run_here("src.run", *task_overrides(task, data_dir), *TWO_LAYERS, f"hydra.run.dir={run_dir}"))
        runs[task] = run_dir
    return runs


@pytest.mark.parametrize("task", list(SITES))
def test_analysis_of_each_architecture_writes_its_tables_figures_and_tensorboard(trained, task, monkeypatch):
    from matplotlib.figure import Figure

    draws = []
    draw = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda self, renderer: draws.append(self) or draw(self, renderer))
    run_dir = trained[task]
    result = check(run_here("src.analyze", f"ckpt={run_dir}", "torch_threads=1", "prune_step=0.25"))
    out = run_dir / "analysis"
    assert FILES <= {p.name for p in out.iterdir()}, result.stdout
    # each figure drawn once, for its .png and its TensorBoard image alike (src/dashboard/rendering.py)
    assert len(draws) == len(set(map(id, draws))) == len(list(out.glob("*.png"))), result.stdout
    # a tiny model may score 0 on a decoded metric: then the fraction is undefined, and says so
    assert "% of the heads can go" in result.stdout or "prunable fraction is undefined" in result.stdout

    with open(out / "heads.csv") as f:
        heads = list(csv.DictReader(f))
    assert len(heads) == 2 * 2 * len(SITES[task])  # layers x heads x sites
    assert list(dict.fromkeys(r["site"] for r in heads)) == SITES[task]
    for row in heads:
        assert float(row["importance"]) >= 0 and float(row["entropy"]) >= 0
        assert row["metric_without"] != "" and row["loss_without"] != ""

    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == METRIC[task]
    assert summary["examples"] > 0 and summary["split"] == "val"
    fraction = summary["figures"]["prunable_fraction"]
    assert (fraction is None and summary["figures"]["baseline"] == 0) or 0.0 <= fraction <= 1.0
    assert summary["command"].endswith(f"-m src.analyze ckpt={run_dir} torch_threads=1 prune_step=0.25")
    with open(out / "pruning.csv") as f:
        steps = list(csv.DictReader(f))
    per_step = len(heads) // 4  # prune_step=0.25
    assert [int(s["heads_removed"]) for s in steps] == [0, per_step, 2 * per_step, 3 * per_step, len(heads)]
    assert float(steps[-1]["fraction_removed"]) == 1.0
    # each step's heads as ablate.heads takes them: the list pastes whole into src.eval
    removed = steps[1]["removed"]
    assert removed.startswith("[") and removed.endswith("]") and len(removed[1:-1].split(",")) == per_step
    assert set(removed[1:-1].split(",")) <= {f"{row['site']}:{row['layer']}:{row['head']}" for row in heads}
    report = (out / "report.md").read_text()
    assert "## Pruning curve" in report and "![pruning_curve](pruning_curve.png)" in report

    events = read_events(run_dir)
    tags = events.tags_with_prefix("val_analysis/")
    assert {"val_analysis/importance", "val_analysis/pruning_curve", "val_analysis/report"} <= tags
    from PIL import Image

    shown = events.images["val_analysis/pruning_curve"][-1]
    with Image.open(out / "pruning_curve.png") as png:  # the same picture in both places
        assert (shown.width, shown.height) == png.size
    curve = events.scalars[f"val_analysis/pruning_{METRIC[task]}"]
    assert [step for step, _ in curve][0] == 0 and [step for step, _ in curve][-1] == 100
    assert sorted(events.scalar_tags)[0].startswith(("test", "train")), "the analysis must not come first"


def test_a_second_analysis_is_refused_and_the_first_is_kept(trained, tmp_path):
    run_dir = trained["reverse"]
    if not (run_dir / "analysis").exists():
        check(run_here("src.analyze", f"ckpt={run_dir}", "torch_threads=1", "single_heads=false"))
    before = {p.name: p.read_bytes() for p in (run_dir / "analysis").iterdir()}
    result = run_here("src.analyze", f"ckpt={run_dir}", "torch_threads=1")
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "out=" in result.stderr, result.stderr
    assert {p.name: p.read_bytes() for p in (run_dir / "analysis").iterdir()} == before

    elsewhere = tmp_path / "second"
    check(
        run_here(
            "src.analyze",
            f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}",
            f"out={elsewhere}",
            "torch_threads=1",
            "single_heads=false",
            "keep_one=false",
            "max_examples=8",
        )
    )
    summary = json.loads((elsewhere / "summary.json").read_text())
    assert summary["examples"] == 8
    assert not (elsewhere / "single_head_effect.png").exists()  # nothing to draw without the single-head table


@pytest.mark.parametrize(
    "args, message",
    [
        (["split=train"], "split='train' is not known"),
        (["prune_step=0"], "prune_step=0.0 must be in (0, 1]"),
        (["tolerance=-1"], "tolerance=-1.0 must be >= 0"),
        (["max_examples=0"], "max_examples=0 must be >= 1"),
        (["ablate.heads=[cross:9:0]"], "layer 9 is out of range"),
        (["accelerator=tpu"], "accelerator='tpu' is not known"),
    ],
)
def test_bad_settings_are_one_line_before_any_work(trained, tmp_path, args, message):
    out = tmp_path / "never"
    result = run_here("src.analyze", f"ckpt={trained['reverse']}", f"out={out}", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not out.exists()


def test_a_path_that_is_no_run_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    for ckpt, message in ((tmp_path / "empty", "neither a run"), (tmp_path / "nope", "does not exist")):
        result = run_here("src.analyze", f"ckpt={ckpt}")
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_analysing_with_heads_ablated_leaves_them_out(trained, tmp_path):
    out = tmp_path / "ablated"
    result = check(
        run_here(
            "src.analyze",
            f"ckpt={trained['reverse']}",
            f"out={out}",
            "ablate.heads=[cross:1:*]",
            "torch_threads=1",
            "single_heads=false",
        )
    )
    assert "ablated: cross:1 (all 2 heads)" in result.stdout
    with open(out / "heads.csv") as f:
        off = [r for r in csv.DictReader(f) if r["removed_before"] == "True"]
    assert [(r["site"], r["layer"]) for r in off] == [("cross", "1"), ("cross", "1")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ablation_specs"]["heads"] == ["cross:1:0", "cross:1:1"]


# --- analyze_after_fit=true in src.run, and src.analyze on a sweep -------------------------------------------------


def test_a_run_with_analyze_after_fit_analyses_its_best_checkpoint_after_the_test(tmp_path):
    """After training and test_after_fit's test: analysis/ from the best checkpoint with the run's analysis.*
    settings, the figures in the run's TensorBoard, one line saying so, and run.json recording it."""
    run_dir = tmp_path / "run"
    result = check(
        run_here(
            "src.run",
            *task_overrides("reverse", tmp_path),
            *TWO_LAYERS,
            "test_after_fit=true",
            "analyze_after_fit=true",
            "analysis.prune_step=0.25",
            "analysis.max_examples=16",
            f"hydra.run.dir={run_dir}",
        )
    )
    assert FILES <= {p.name for p in (run_dir / "analysis").iterdir()}
    lines = [line for line in result.stdout.splitlines() if line.startswith("analysis:")]
    assert len(lines) == 1 and lines[0].endswith(f"written: {run_dir / 'analysis'}"), result.stdout
    said = [line for line in result.stderr.splitlines() if line.startswith(("warning:", "error:"))]
    # TWO_LAYERS overrides TINY's values; a tiny model may not do the task yet (no prunable fraction then)
    assert all("is given twice" in line or "does not do the task" in line for line in said), result.stderr
    assert result.stdout.index("evaluate:") < result.stdout.index("analysis:")  # after the run's own summary
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["analysis"] == "completed"
    assert "test/exact_match" in json.loads((run_dir / "metrics.json").read_text())["final"]

    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    assert summary["checkpoint"] == str(run_dir / "checkpoints" / "best.ckpt")
    assert summary["settings"]["prune_step"] == 0.25 and summary["examples"] == 16
    assert " -m src.run " in summary["command"] and summary["threads"] == 1
    with open(run_dir / "analysis" / "pruning.csv") as f:
        assert len(list(csv.DictReader(f))) == 5  # 0, 25, 50, 75, 100%
    events = read_events(run_dir)
    assert {"val_analysis/importance", "val_analysis/pruning_curve", "val_analysis/report"} <= events.image_tags | (
        events.text_tags
    )
    assert "val_analysis/prunable_fraction" in events.scalar_tags
    assert "analysis:" in (run_dir / "run.log").read_text()


@pytest.mark.parametrize("failure", ["crash", "SIGTERM", "SIGINT"])
def test_a_failed_or_interrupted_analysis_after_training_keeps_the_trained_run(tmp_path, monkeypatch, failure):
    """The run is trained and recorded as completed first: a crash in the analysis, or a signal during it, leaves
    it so, records what became of the analysis, removes the partial analysis/ and says, in one line, how to analyse
    the run later; the command still exits non-zero (1 for a crash, 130 / 143 for a signal, as in training)."""
    import os
    import signal
    import time

    from src import run as run_module_in_process
    from tests.conftest import run_in_process

    real = run_module_in_process.analyze_checkpoint

    def failing(target, *args, **kwargs):
        target.out.mkdir()  # partly written
        (target.out / "heads.csv").write_text("site\n")
        if failure == "crash":
            raise RuntimeError("the analysis broke\nsecond line")
        os.kill(os.getpid(), getattr(signal, failure))
        time.sleep(5)  # the signal lands here
        return real(target, *args, **kwargs)

    monkeypatch.setattr(run_module_in_process, "analyze_checkpoint", failing)
    run_dir = tmp_path / "run"
    code, _, err = run_in_process(
        "src.run", *task_overrides("reverse", tmp_path), *TINY, "analyze_after_fit=true", f"hydra.run.dir={run_dir}"
    )
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == {"crash": 1, "SIGTERM": 143, "SIGINT": 130}[failure], err
    assert len(errors) == 1 and f"analyse it with {PYTHON} -m src.analyze ckpt={run_dir}" in errors[0], err
    assert "Traceback" not in err
    assert "the trained run is kept (completed" in errors[0]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert not (run_dir / "analysis").exists()  # so that the printed command works as it is
    if failure == "crash":
        assert record["analysis"] == "failed: RuntimeError: the analysis broke"
        assert "RuntimeError: the analysis broke" in (run_dir / "analysis_error.txt").read_text()
    else:
        assert record["analysis"].startswith(f"interrupted by {failure}")
    # and the command it printed does the analysis
    check(run_here("src.analyze", f"ckpt={run_dir}", "torch_threads=1", "single_heads=false", "keep_one=false"))
    assert (run_dir / "analysis" / "summary.json").is_file()


def test_src_analyze_on_a_sweep_analyses_every_job_once_and_rewrites_its_report(tmp_path):
    """A sweep trained without analysis: src.analyze ckpt=<sweep> analyses every job and the report gains the
    pruning section; run again, it skips the jobs analysed (one warning each) and refuses when none is left."""
    import shutil

    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith("model.heads=")]
    check(
        run_here("src.run", "-m", *tiny, *task_overrides("reverse", tmp_path), "seed=0,1", f"hydra.sweep.dir={sweep}")
    )
    assert "Head pruning" not in (sweep / "report.md").read_text()
    jobs = sorted(p for p in sweep.iterdir() if (p / "run.json").is_file())
    assert len(jobs) == 2

    analysis = ["torch_threads=1", "prune_step=0.5", "single_heads=false", "keep_one=false"]
    result = check(run_here("src.analyze", f"ckpt={sweep}", *analysis))
    assert all((job / "analysis" / "summary.json").is_file() for job in jobs)
    report = (sweep / "report.md").read_text()
    assert "## Head pruning (src.analyze)" in report and "val `exact_match`, tolerance 5%" in report
    assert "(2) |" in report.split("## Head pruning", 1)[1]  # both seeds in the one configuration
    assert (sweep / "pruning.png").is_file() and "Not analysed" not in report
    assert "report:" in result.stdout

    shutil.move(jobs[1] / "analysis", tmp_path / "moved")  # one job left to analyse
    result = check(run_here("src.analyze", f"ckpt={sweep}", *analysis))
    warnings = [  # (a tiny model that does not do the task yet is warned about too: not what this test checks)
        line
        for line in result.stderr.splitlines()
        if line.startswith("warning:") and "does not do the task" not in line
    ]
    assert warnings == [f"warning: {jobs[0].name} is skipped: it has an analysis already ({jobs[0] / 'analysis'})"]
    assert (jobs[1] / "analysis" / "summary.json").is_file()

    before = (sweep / "report.md").read_text()
    result = run_here("src.analyze", f"ckpt={sweep}", *analysis)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert [line.split(" is skipped")[0] for line in lines[:2]] == [f"warning: {job.name}" for job in jobs]
    assert len(lines) == 3 and lines[2].startswith("error:") and "no job of this sweep is left" in lines[2]
    assert (sweep / "report.md").read_text() == before

    # a pairs file the second job would refuse is refused for every job before the first is patched
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a\tb\tc\td\nno tabs here\n")
    result = run_here("src.analyze", f"ckpt={sweep}", "analysis=patching", f"pairs={pairs}", "torch_threads=1")
    assert result.returncode == 2 and f"error: pairs={pairs} line 2 has 1 tab-separated fields" in result.stderr
    assert not any((job / "patching").exists() for job in jobs) and "checkpoint:" not in result.stdout
    assert (sweep / "report.md").read_text() == before


def test_a_sweep_job_whose_analysis_fails_is_reported_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """As a job that fails to train: the sweep goes on, the report names the job without an analysis (with the
    reason), and the command ends with one line naming it and exit status 1; the job itself stays completed."""
    from src import run as run_module_in_process
    from tests.conftest import run_in_process

    real = run_module_in_process.analyze_checkpoint

    def first_fails(target, *args, **kwargs):
        if target.run_dir.name.startswith("0_"):
            raise RuntimeError("no memory left")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(run_module_in_process, "analyze_checkpoint", first_fails)
    sweep = tmp_path / "sweep"
    code, _, err = run_in_process(
        "src.run",
        "-m",
        *TINY,
        *task_overrides("reverse", tmp_path),
        "seed=0,1",
        "analyze_after_fit=true",
        "analysis.single_heads=false",
        f"hydra.sweep.dir={sweep}",
    )
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 2, err
    assert errors[0].startswith("error: job 0 (0_seed:0): the analysis after training failed: RuntimeError: no mem")
    assert errors[1].startswith(
        "error: the analysis after training of 1 sweep job(s) failed (0_seed:0); they are trained and kept: "
        f"analyse them with {PYTHON} -m src.analyze ckpt={sweep}"
    )
    statuses = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/run.json")}
    assert {name: record["status"] for name, record in statuses.items()} == {
        "0_seed:0": "completed",
        "1_seed:1": "completed",
    }
    assert statuses["1_seed:1"]["analysis"] == "completed"
    report = (sweep / "report.md").read_text()
    assert "Not analysed: 0_seed:0 (analysis failed: RuntimeError: no memory left)" in report
    section = report.split("## Head pruning", 1)[1]
    (row,) = [line for line in section.splitlines() if line.startswith("| ") and "baseline |" in line]
    # the one analysed seed: unablated, and the prunable fraction with each site's share pruned, unless the tiny
    # model scores 0 (then those are undefined, shown as -, and the report says why)
    assert row.count(" (1) |") == (1 if row.startswith("| 0 (1) |") else 5), row
    assert "Rank correlation not measured (single_heads=false) for: 1_seed:1." in section


def test_a_sweep_job_that_failed_is_skipped_and_named_failed_with_its_cause(tmp_path):
    """Issue 24 item 8: a job that failed to train (here it diverged at its first step, max_loss=0.01, and saved no
    checkpoint) is skipped by src.analyze ckpt=<sweep>, named with its status and the error run.json recorded;
    the job that completed is analysed. src.eval and src.predict, which read one model, refuse the sweep and name
    the completed job to give instead."""
    from tests.conftest import run_in_process

    sweep = tmp_path / "sweep"
    code, _, err = run_in_process(
        "src.run", "-m", *TINY, *task_overrides("reverse", tmp_path), "max_loss=100,0.01", f"hydra.sweep.dir={sweep}"
    )
    assert code == 1 and "1 sweep job(s) did not complete (1_max_loss:0.01)" in err, err
    failed, completed = sweep / "1_max_loss:0.01", sweep / "0_max_loss:100"

    code, out, err = run_in_process("src.analyze", f"ckpt={sweep}", "single_heads=false", "keep_one=false")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:") and "does not do the task" not in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"warning: {failed.name} is skipped: it diverged: training diverged at step 1"
    ), err
    assert warnings[0].endswith(f"(see {failed / 'run.json'})")
    assert (completed / "analysis" / "summary.json").is_file() and not (failed / "analysis").exists()

    code, out, err = run_in_process("src.eval", f"ckpt={sweep}")
    assert code == 2 and err.strip() == (
        f"error: ckpt={sweep} is a sweep directory: give one of its runs, e.g. ckpt={completed} "
        f"(src.analyze ckpt=<sweep> analyses every run of a sweep)"
    )


def test_a_folder_of_single_runs_is_not_a_sweep_and_its_files_are_kept(trained, tmp_path):
    """`outputs/<date>/` holds single runs, not a sweep: analysing it is refused in one line, and a report.md the
    user keeps there is not replaced by a sweep report comparing unrelated runs."""
    import shutil

    day = tmp_path / "day"
    day.mkdir()
    shutil.copytree(trained["reverse"], day / "run_a", ignore=shutil.ignore_patterns("analysis*"))
    (day / "report.md").write_text("MY NOTES\n")
    result = run_here("src.analyze", f"ckpt={day}")
    refusal = f"is a folder of runs, not a run: give one of them, e.g. ckpt={day / 'run_a'}"
    assert result.returncode == 2 and refusal in result.stderr, result.stderr
    assert (day / "report.md").read_text() == "MY NOTES\n"
    assert not (day / "run_a" / "analysis").exists()


def test_only_the_runs_own_analysis_goes_into_its_tensorboard(trained, tmp_path):
    """An analysis with out= (or an ablation of its own) writes files only: the run's TensorBoard keeps one set
    of analysis tags, not a mix of curves from different analyses."""
    run_dir = trained["classification"]
    before = sorted(p.name for p in run_dir.glob("events.out.tfevents.*"))
    result = check(
        run_here("src.analyze", f"ckpt={run_dir}", f"out={tmp_path / 'other'}", "torch_threads=1", "single_heads=false")
    )
    assert "TensorBoard: left as it is" in result.stdout
    assert sorted(p.name for p in run_dir.glob("events.out.tfevents.*")) == before


def test_heads_of_a_removed_sublayer_are_off_and_not_pruned(trained, tmp_path):
    out = tmp_path / "sublayer"
    check(
        run_here(
            "src.analyze", f"ckpt={trained['reverse']}", f"out={out}", "ablate.sublayers=[cross:1]", "torch_threads=1"
        )
    )
    with open(out / "heads.csv") as f:
        heads = list(csv.DictReader(f))
    off = [(r["site"], r["layer"]) for r in heads if r["removed_before"] == "True"]
    assert off == [("cross", "1"), ("cross", "1")]
    with open(out / "pruning.csv") as f:
        steps = list(csv.DictReader(f))
    assert int(steps[-1]["heads_removed"]) == len(heads) - 2
    assert all("cross:1:" not in s["removed"] for s in steps)


# --- analysis=patching and analysis=lens (issue 26): every architecture, its own pairs or a pairs file ------------
def pairs_file(task: str, directory) -> list[str]:
    """The pairs a task's run is patched on: the synthetic task's own (nothing to give), or a file of one-character
    changes for the text tasks (their vocabularies are characters or words of the data)."""
    lines = {
        "char_lm": "not to be\tnot to he\t,\t.",  # characters of the run's text
        "classification": "good movie\tpoor movie\tpos\tneg",
        "translation": "ein hund\tein katze\tdog\tcat",  # words of the run's data
    }
    if task not in lines:
        return []
    path = directory / "pairs.tsv"
    path.write_text(lines[task] + "\n")
    return [f"pairs={path}"]


@pytest.mark.parametrize("task", list(SITES))
def test_patching_each_architecture_writes_its_tables_figures_and_tensorboard(trained, task, tmp_path):
    run_dir = trained[task]
    result = run_here("src.analyze", f"ckpt={run_dir}", "analysis=patching", "torch_threads=1",
                      *pairs_file(task, tmp_path))  # fmt: skip
    check(result)
    out = run_dir / "patching"
    assert {"report.md", "patching.csv", "summary.json", "heads.png", "attribution.png"} <= {
        p.name for p in out.iterdir()
    }
    with open(out / "patching.csv") as f:
        rows = list(csv.DictReader(f))
    heads = {(r["site"], r["layer"], r["head"]) for r in rows if r["family"] == "head"}
    assert len(heads) == 2 * 2 * len(SITES[task])  # every head of every site
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["heads_restored"]) == {f"{s}:{layer}:{h}" for s, layer, h in heads}  # ablate.heads names
    assert set(summary["rank_correlation"]) >= {"resid_pre", "attn_out", "head"}
    events = read_events(run_dir)
    assert any(tag.startswith("val_patching/") for tag in events.image_tags)


def test_path_patching_and_the_lens_of_a_trained_run(trained, tmp_path):
    run_dir = trained["reverse"]
    out = tmp_path / "paths"
    # encoder heads into a cross-attention head (its keys and values), and a decoder layer's self-attention into
    # the same layer's cross-attention, which runs after it (its query)
    args = ["analysis=patching", "senders=[encoder_self:0:*,decoder_self:1:0]", "receivers=[cross:1:0]", "max_pairs=8"]
    check(run_here("src.analyze", f"ckpt={run_dir}", f"out={out}", "torch_threads=1", *args))
    with open(out / "paths.csv") as f:
        paths = [(p["sender"], p["channel"]) for p in csv.DictReader(f)]
    encoder = [(f"encoder_self:0:{h}", c) for h in range(2) for c in ("k", "v")]
    assert paths == [*encoder, ("decoder_self:1:0", "q")]
    lens = tmp_path / "lens"
    result = check(run_here("src.analyze", f"ckpt={run_dir}", f"out={lens}", "analysis=lens", "torch_threads=1"))
    assert "warning: direct logit attribution needs a pre-LN model" in result.stderr
    summary = json.loads((lens / "summary.json").read_text())
    assert [row["layer"] for row in summary["lens"]] == ["embed", 0, 1]  # what the decoder receives, then each layer
    assert summary["lens"][-1]["loss"] == pytest.approx(summary["loss"], rel=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["analysis=circuits"], "analysis='circuits' is not known: choose one of: heads"),
        (["analysis=patching", "metric=acc"], "metric='acc' is not known: choose one of logit_diff, loss"),
        (["analysis=patching", "direction=up"], "direction='up' is not known"),
        (["analysis=patching", "max_pairs=0"], "max_pairs=0 must be >= 1"),
        (["analysis=patching", "pairs=nope.tsv"], "pairs=nope.tsv does not exist"),
        (["analysis=patching", "senders=[cross:0:0]"], "senders= is given without receivers="),
        (["analysis=patching", "senders=[cross:1:0]", "receivers=[cross:0:0]"], "no sender runs before a receiver"),
        (["analysis=lens", "split=train"], "split='train' is not known"),
        (
            ["analysis=patching", "senders=[decoder_ffn:0]", "receivers=[cross:1:0]"],
            "senders: 'decoder_ffn:0': decoder_ffn has no heads: choose one of encoder_self, decoder_self, cross",
        ),
        (["analysis=induction", "max_examples=0"], "max_examples=0 must be >= 1 (or leave it out: 128 sequences made"),
        (
            ["analysis=patching", "senders=[encoder_self:0:0]", "receivers=[decoder_self:1:0]"],
            "no sender's output reaches a receiver: an encoder head reaches the decoder only through cross-attention",
        ),
        (["analysis=patching", "senders=[cross:0:1]", "receivers=cross:1:*"], "write 'receivers=[cross:1:*]'"),
    ],
)
def test_bad_causal_settings_are_one_line_before_anything_is_written(trained, tmp_path, args, message):
    out = tmp_path / "never"
    result = run_here("src.analyze", f"ckpt={trained['reverse']}", f"out={out}", *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("using ")]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not out.exists()


def test_a_text_task_without_a_pairs_file_is_told_to_give_one(trained, tmp_path):
    result = run_here("src.analyze", f"ckpt={trained['char_lm']}", f"out={tmp_path / 'x'}", "analysis=patching")
    assert result.returncode == 2
    assert "task=char_lm makes no counterfactual pairs of its own: give pairs=<file>" in result.stderr
    assert "checkpoint:" not in result.stdout  # refused before the checkpoint and its data are loaded


def test_induction_scores_of_a_decoder_only_run_and_the_refusal_of_other_architectures(trained, tmp_path):
    run_dir = trained["char_lm"]
    out = run_dir / "induction"  # the run's own analysis: into its folder and its TensorBoard
    args = ["analysis=induction", "max_examples=16", "torch_threads=1"]
    check(run_here("src.analyze", f"ckpt={run_dir}", *args))
    with open(out / "heads.csv") as f:
        heads = list(csv.DictReader(f))
    assert [h["head"] for h in heads] == [f"decoder_self:{layer}:{head}" for layer in range(2) for head in range(2)]
    for head in heads:  # mean attention weights
        assert 0.0 <= float(head["induction"]) <= 1.0 and 0.0 <= float(head["previous_token"]) <= 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sequences"] == 16 and summary["loss"] > 0
    events = read_events(run_dir)
    assert "induction/scores" in events.image_tags and "induction/induction_score/decoder_self:1:0" in events.scalars
    refused = run_here("src.analyze", f"ckpt={trained['reverse']}", f"out={tmp_path / 'no'}", *args)
    assert refused.returncode == 2 and "analysis=induction reads a decoder-only model" in refused.stderr
    # every other analysis reads an encoder-decoder
    assert "use analysis=heads or analysis=patching or analysis=lens" in refused.stderr
    assert not (tmp_path / "no").exists()
