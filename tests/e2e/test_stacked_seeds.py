"""hydra/launcher=stacked end to end: `-m model.heads=1,2 seed=0,1` is two stacked groups of two, and every member
writes the job directory a separate job writes, with the same numbers. The same sweep run by Hydra's basic
launcher (one job after another) is the reference: metrics to 1e-5 (float32), the checkpoints src.eval reads,
TensorBoard's scalars and the sweep's report."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from .conftest import SMALL_SYNTHETIC, TINY, check, run_here

pytestmark = pytest.mark.slow

TINY_UNTIMED = [o for o in TINY if not o.startswith(("trainer.max_steps=", "trainer.val_check_interval="))]
TINY_HEADS_SWEPT = [o for o in TINY if not o.startswith("model.heads=")]
SWEEP = ["-m", "model.heads=1,2", "seed=0,1", *TINY_HEADS_SWEPT, *SMALL_SYNTHETIC, "test_after_fit=true"]
JOBS = ["0_model.heads:1+seed:0", "1_model.heads:1+seed:1", "2_model.heads:2+seed:0", "3_model.heads:2+seed:1"]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The sweep stacked, and the same sweep job by job: (stacked dir, its output, solo dir)."""
    root = tmp_path_factory.mktemp("stacked")
    stacked, solo = root / "stacked", root / "solo"
    result = check(run_here("src.run", *SWEEP, "hydra/launcher=stacked", f"hydra.sweep.dir={stacked}"))
    check(run_here("src.run", *SWEEP, f"hydra.sweep.dir={solo}"))
    return stacked, result.stdout + result.stderr, solo


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


def test_seeds_of_one_configuration_train_together_and_others_apart(sweeps):
    _, output, _ = sweeps
    lines = [line for line in output.splitlines() if line.startswith("training 2 seeds together")]
    assert lines == [
        "training 2 seeds together as one stacked model: 0_model.heads:1+seed:0, 1_model.heads:1+seed:1",
        "training 2 seeds together as one stacked model: 2_model.heads:2+seed:0, 3_model.heads:2+seed:1",
    ]
    assert "warning:" not in output


def test_every_member_writes_the_job_directory_a_separate_job_writes(sweeps):
    stacked, _, solo = sweeps
    for name in JOBS:
        job, alone = stacked / name, solo / name
        assert yaml.safe_load((job / ".hydra/config.yaml").read_text())["seed"] == int(name[-1])
        assert (job / ".hydra/overrides.yaml").read_text() == (alone / ".hydra/overrides.yaml").read_text()
        assert (job / ".hydra/hydra.yaml").exists()
        record = json.loads((job / "run.json").read_text())
        assert record["status"] == "completed"
        assert record["stacked"]["members"][record["stacked"]["member"]] == str(job)
        assert f"hydra.run.dir={job}" in record["command"] or f"hydra.run.dir='{job}'" in record["command"]
        assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
        assert (job / "run.log").read_text().count("training 2 seeds together") == 1
        assert list(job.glob("events.out.tfevents.*"))
        assert_same_hparams(job, alone)


def assert_same_hparams(job: Path, alone: Path) -> None:
    """TensorBoard's hparams.yaml: the whole config (the seed included), as Lightning writes a separate job's when
    its training starts (the job's own directory aside)."""
    mine, theirs = (yaml.safe_load((d / "hparams.yaml").read_text()) for d in (job, alone))
    assert (mine["run_dir"], theirs["run_dir"]) == (str(job), str(alone))
    assert {**mine, "run_dir": None} == {**theirs, "run_dir": None}
    assert mine["config"]["seed"] == int(job.name[-1])


def test_a_members_metrics_are_its_seed_trained_alone(sweeps):
    stacked, _, solo = sweeps
    for name in JOBS:
        mine = json.loads((stacked / name / "metrics.json").read_text())
        theirs = json.loads((solo / name / "metrics.json").read_text())
        assert [entry["step"] for entry in mine["history"]] == [entry["step"] for entry in theirs["history"]] == [6, 12]
        for entry, reference in zip(mine["history"], theirs["history"]):
            assert entry.keys() == reference.keys()
            assert all(close(entry[key], reference[key]) for key in reference if key != "step"), (entry, reference)
        assert mine["main_metric"] == theirs["main_metric"]
        assert any(key.startswith("test/") for key in theirs["final"])  # test_after_fit: each member tested
        assert mine["final"].keys() == theirs["final"].keys()
        assert all(close(mine["final"][key], theirs["final"][key]) for key in theirs["final"])


def test_tensorboard_shows_each_member_as_its_own_run_with_the_solo_runs_dashboards(sweeps):
    from src.dashboard import read_events

    stacked, _, solo = sweeps
    for name in (JOBS[0], JOBS[3]):
        mine, theirs = read_events(stacked / name), read_events(solo / name)
        # attention maps, head statistics, text samples, HPARAMS: the same tags at the same steps
        assert {tag: [image.step for image in images] for tag, images in mine.images.items()} == {
            tag: [image.step for image in images] for tag, images in theirs.images.items()
        }
        assert {tag: [step for step, _ in texts] for tag, texts in mine.texts.items()} == {
            tag: [step for step, _ in texts] for tag, texts in theirs.texts.items()
        }
        assert mine.texts == theirs.texts  # the greedy outputs of the same weights
        assert mine.has_hparams and mine.hparam_metrics == theirs.hparam_metrics
        assert {k: v for k, v in mine.hparams.items() if k != "run_dir"} == {
            k: v for k, v in theirs.hparams.items() if k != "run_dir"
        }
        heads = [tag for tag in theirs.scalars if tag.startswith("val_heads/")]
        assert heads and all(
            close(a, b) for tag in heads for (_, a), (_, b) in zip(mine.scalars[tag], theirs.scalars[tag])
        )
        for tag in ("val/loss", "train/loss", "train/lr"):
            assert [step for step, _ in mine.scalars[tag]] == [step for step, _ in theirs.scalars[tag]], tag
            assert all(close(a, b) for (_, a), (_, b) in zip(mine.scalars[tag], theirs.scalars[tag])), tag


def test_src_eval_reads_a_members_checkpoint_as_any_other(sweeps):
    stacked, _, solo = sweeps
    name = JOBS[1]
    mine = check(run_here("src.eval", f"ckpt={stacked / name}", "batch_size=16")).stdout
    theirs = check(run_here("src.eval", f"ckpt={solo / name}", "batch_size=16")).stdout
    shown = [line for line in mine.splitlines() if line.strip().startswith(("test/", "test_long/"))]
    assert shown and shown == [line for line in theirs.splitlines() if line.strip().startswith(("test/", "test_long/"))]


def test_src_predict_on_a_member_gives_its_seed_trained_alone_not_another_members(sweeps, tmp_path):
    """Greedy decoding of a few lines from a member's best checkpoint: what its seed trained alone gives, and not
    what the other member of its group gives (the tiny models disagree on these lines)."""
    stacked, _, solo = sweeps
    lines = tmp_path / "lines.txt"
    lines.write_text("1234567\n98765\n5\n13579\n2468024680\n")

    def predict(job: Path) -> tuple[list[str], str]:
        out = tmp_path / f"{job.parent.name}-{job.name}.txt"
        result = check(run_here("src.predict", f"ckpt={job}", f"input={lines}", f"output={out}", "torch_threads=1"))
        return out.read_text().splitlines(), result.stdout + result.stderr

    mine, said = predict(stacked / JOBS[1])
    assert f"using {stacked / JOBS[1] / 'checkpoints/best.ckpt'} (" in said, said
    theirs, _ = predict(solo / JOBS[1])
    other, _ = predict(stacked / JOBS[0])
    assert len(mine) == 5 and mine == theirs
    assert other != mine, "the members agree on every line: the comparison proves nothing"


def test_src_analyze_on_a_member_gives_its_seed_trained_alone_not_another_members(sweeps, tmp_path):
    """The analysis of a member's heads (importance, entropy, single-head and keep-one ablations, pruning curve),
    written to its own out= folder (the members' TensorBoard runs are left as they are): the tables of its seed
    trained alone to 1e-5, and not those of the other member of its group."""
    stacked, _, solo = sweeps

    def analyze(job: Path) -> Path:
        out = tmp_path / f"{job.parent.name}-{job.name}"
        result = check(run_here("src.analyze", f"ckpt={job}", f"out={out}", "torch_threads=1"))
        assert f"written: {out}" in result.stdout, result.stdout
        return out

    mine, theirs, other = analyze(stacked / JOBS[2]), analyze(solo / JOBS[2]), analyze(stacked / JOBS[3])
    for table in ("heads.csv", "keep_one.csv", "pruning.csv"):
        assert same_table(mine / table, theirs / table), table
    assert not same_table(mine / "heads.csv", other / "heads.csv"), "the members' heads agree: this proves nothing"
    summaries = [json.loads((d / "summary.json").read_text()) for d in (mine, theirs)]
    assert [s["figures"].keys() for s in summaries] == [summaries[1]["figures"].keys()] * 2
    assert all(close(a, b) for a, b in zip(*(s["figures"].values() for s in summaries)))


def same_table(a: Path, b: Path) -> bool:
    """Two csv tables with the same rows, their numbers equal to 1e-5 (float32: stacked and single matrix products
    round differently)."""
    import csv

    def number(text: str) -> float | str:
        try:
            return float(text)
        except ValueError:
            return text

    with open(a) as fa, open(b) as fb:
        rows_a, rows_b = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    if len(rows_a) != len(rows_b) or not rows_a:
        return False
    for row_a, row_b in zip(rows_a, rows_b):
        if row_a.keys() != row_b.keys():
            return False
        for key in row_a:
            x, y = number(row_a[key]), number(row_b[key])
            same = close(x, y) if isinstance(x, float) and isinstance(y, float) else x == y
            if not same:
                return False
    return True


def test_the_sweep_report_is_the_one_the_separate_jobs_give(sweeps):
    stacked, _, solo = sweeps
    table = [line for line in (stacked / "report.md").read_text().splitlines() if line.startswith("| ")]
    reference = [line for line in (solo / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert table == reference
    assert "4 of 4 runs completed." in (stacked / "report.md").read_text()


def test_a_group_that_cannot_be_stacked_runs_its_jobs_one_after_another_and_says_why(tmp_path):
    sweep = tmp_path / "sweep"
    result = check(
        run_here(
            "src.run",
            "-m",
            "seed=0,1",
            *TINY,
            *SMALL_SYNTHETIC,
            "trainer.accumulate_grad_batches=2",
            "hydra/launcher=stacked",
            f"hydra.sweep.dir={sweep}",
        )
    )
    output = result.stdout + result.stderr
    assert "warning: jobs 0, 1 run one after another, not stacked: trainer.accumulate_grad_batches is not 1" in output
    assert "seeds together" not in output
    for job in sweep.glob("*_seed:*"):
        record = json.loads((job / "run.json").read_text())
        assert record["status"] == "completed" and "stacked" not in record
    assert len(list(sweep.glob("*_seed:*"))) == 2


def test_seeds_whose_data_give_models_of_different_shapes_run_one_after_another_and_say_why(tmp_path):
    """Classification without task.val_path cuts its validation split by the seed, so each seed learns its own
    vocabulary: the members cannot share one model. Known once their data are built, the group falls back to its
    jobs one after another (one warning: line), and each job's directory is the separate job's, with nothing left
    of the attempt."""
    import random

    rng = random.Random(3)
    words = [f"w{i}" for i in range(150)]  # many rare words: the seeds' training splits hold different ones
    rows = [
        " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) + f"\t{rng.choice(['pos', 'neg'])}"
        for _ in range(60)
    ]
    data = tmp_path / "sentences.tsv"
    data.write_text("\n".join(rows) + "\n")
    sweep_args = ["-m", "seed=0,1", *TINY, "task=classification", f"task.train_path={data}", "task.max_len=16"]
    stacked, solo = tmp_path / "stacked", tmp_path / "solo"
    result = check(run_here("src.run", *sweep_args, "hydra/launcher=stacked", f"hydra.sweep.dir={stacked}"))
    output = result.stdout + result.stderr
    (warning,) = [line for line in output.splitlines() if line.startswith("warning:")]
    assert warning.startswith("warning: jobs 0, 1 run one after another, not stacked: the data of 0_seed:0 and ")
    assert "gave models of different shapes (src_vocab_size " in warning, warning
    assert "error:" not in output and "seeds together" not in output
    assert "2 of 2 runs completed." in (stacked / "report.md").read_text()
    check(run_here("src.run", *sweep_args, f"hydra.sweep.dir={solo}"))
    for name in ("0_seed:0", "1_seed:1"):
        job, alone = stacked / name, solo / name
        record = json.loads((job / "run.json").read_text())
        assert record["status"] == "completed" and "stacked" not in record and "previous" not in record, record
        assert not (job / "error.txt").exists()
        assert names_in(job) == names_in(alone)
        # its own lines, nothing of the attempt: it learned its vocabulary itself, as the separate job did
        log = (job / "run.log").read_text()
        assert len(log.splitlines()) == len((alone / "run.log").read_text().splitlines())
        assert "trained a word tokenizer" in log and "loading tokenizer" not in log
        assert (job / "tokenizer.json").read_text() == (alone / "tokenizer.json").read_text()


def names_in(run_dir: Path) -> list[str]:
    """What a job directory holds (TensorBoard's event file named by its kind only)."""
    return sorted(
        "events.out.tfevents" if p.name.startswith("events.out.tfevents") else p.name
        for p in run_dir.rglob("*")
        if p.is_file()
    )


def test_the_stacked_launchers_config_is_documented_where_users_look():
    text = (Path(__file__).parents[2] / "conf/hydra/launcher/stacked.yaml").read_text()
    assert "max_members" in text


def test_a_group_whose_members_all_diverge_fails_and_saves_no_nan_weights(tmp_path):
    sweep = tmp_path / "sweep"
    args = TINY_UNTIMED
    huge_lr = [
        "optimizer.lr=1e6",
        "trainer.gradient_clip_val=null",
        "trainer.max_steps=40",
        "trainer.val_check_interval=10",
    ]
    result = run_here(
        "src.run",
        "-m",
        "seed=0,1",
        *args,
        *SMALL_SYNTHETIC,
        *huge_lr,
        "hydra/launcher=stacked",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 1, result.stderr
    assert "2 sweep job(s) did not complete" in result.stderr and "Traceback" not in result.stderr
    for job in ("0_seed:0", "1_seed:1"):
        record = json.loads((sweep / job / "run.json").read_text())
        assert record["status"] == "diverged" and "diverged at step" in record["error"]
        for path in (sweep / job).glob("checkpoints/*.ckpt"):
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
            assert all(torch.isfinite(t).all() for t in state.values()), path


def test_a_member_that_diverges_stops_alone_and_the_others_complete_as_their_solo_runs(tmp_path):
    """optimizer.lr=0.5 without clipping: seed 0's training loss jumps to 6.48 at step 5 (its solo run's), while
    seed 1's stays below 3.2 for all 8 steps; max_loss=5 so stops seed 0 alone. As docs/sweeps.md says: one
    `warning:` line when the host learns it, the member's `error:` line when the group ends, the sweep's line and
    exit status 1; its run.json says diverged at its step, it keeps its checkpoints of step 4 (finite), and the
    other member completes with the metrics and checkpoints of its seed trained alone."""
    import torch

    sweep_args = [
        "-m",
        "seed=0,1",
        *TINY_UNTIMED,
        *SMALL_SYNTHETIC,
        "optimizer.lr=0.5",
        "trainer.gradient_clip_val=null",
        "trainer.max_steps=8",
        "trainer.val_check_interval=4",
        "max_loss=5",
    ]
    stacked, solo = tmp_path / "stacked", tmp_path / "solo"
    result = run_here("src.run", *sweep_args, "hydra/launcher=stacked", f"hydra.sweep.dir={stacked}")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "seeds together" in result.stdout
    output = (result.stdout + result.stderr).splitlines()
    warnings = [line for line in output if line.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert re.fullmatch(
        r"warning: 0_seed:0 diverged at step 5 \(loss 6\.4\d+, above max_loss=5\.0\); the other members go on",
        warnings[0],
    ), warnings
    errors = [line for line in output if line.startswith("error:")]
    assert len(errors) == 2, errors
    assert re.match(
        r"error: job 0_seed:0: training diverged at step 5: loss 6\.4\d+ \(above max_loss=5\.0\)", errors[0]
    )
    assert errors[1] == f"error: 1 sweep job(s) did not complete (0_seed:0): see {stacked / 'report.md'}", errors

    reference = run_here("src.run", *sweep_args, f"hydra.sweep.dir={solo}")
    assert reference.returncode == 1, reference.stderr[-3000:]
    record = json.loads((stacked / "0_seed:0/run.json").read_text())
    alone = json.loads((solo / "0_seed:0/run.json").read_text())
    assert record["status"] == alone["status"] == "diverged"
    assert (
        record["error"].startswith("training diverged at step 5: loss 6.4") and "above max_loss=5.0" in record["error"]
    )
    assert alone["error"].startswith("training diverged at step 5: ")
    assert (stacked / "0_seed:0/error.txt").is_file()
    for job in ("0_seed:0", "1_seed:1"):
        saved = sorted(p.name for p in (stacked / job / "checkpoints").iterdir())
        assert saved == sorted(p.name for p in (solo / job / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
        for name in saved:
            state, reference_state = (
                torch.load(d / job / "checkpoints" / name, map_location="cpu", weights_only=True)
                for d in (stacked, solo)
            )
            assert all(torch.isfinite(t).all() for t in state["state_dict"].values()), (job, name)
            assert state["global_step"] == reference_state["global_step"], (job, name)
        last = torch.load(stacked / job / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
        assert last["global_step"] == (4 if job == "0_seed:0" else 8), job  # the diverged one: its step-4 weights
    other = json.loads((stacked / "1_seed:1/run.json").read_text())
    assert other["status"] == "completed" and "error" not in other
    mine = json.loads((stacked / "1_seed:1/metrics.json").read_text())
    theirs = json.loads((solo / "1_seed:1/metrics.json").read_text())
    assert [e["step"] for e in mine["history"]] == [e["step"] for e in theirs["history"]] == [4, 8]
    assert mine["final"].keys() == theirs["final"].keys()
    assert all(close(mine["final"][k], theirs["final"][k]) for k in theirs["final"])
    report = (stacked / "report.md").read_text()
    assert "1 of 2 runs completed" in report
    (row,) = [line for line in report.splitlines() if line.startswith("| 0_seed:0 |")]
    assert row.startswith("| 0_seed:0 | diverged | training diverged at step 5: "), row
    assert not [line for line in report.splitlines() if line.startswith("| 1_seed:1 | diverged")]


def test_each_member_stops_early_by_its_own_early_stopping_at_its_solo_runs_step(tmp_path):
    """EarlyStopping with a threshold on val/loss: seed 0 reaches it at step 24, seed 1 at step 30 (their solo
    runs). Each member stops at its own step, with the solo run's history, final metrics and `stopped` record."""
    args = TINY_UNTIMED
    sweep = [
        "-m",
        "seed=0,1",
        *args,
        *SMALL_SYNTHETIC,
        "trainer.max_steps=60",
        "trainer.val_check_interval=6",
        "+callbacks.EarlyStopping.monitor=val/loss",
        "+callbacks.EarlyStopping.stopping_threshold=2.43",
    ]
    stacked, solo = tmp_path / "stacked", tmp_path / "solo"
    lines = "trainer.enable_progress_bar=true"  # not a terminal: a line per validation (ProgressLines)
    output = check(run_here("src.run", *sweep, lines, "hydra/launcher=stacked", f"hydra.sweep.dir={stacked}"))
    assert "seeds together" in output.stdout
    # each validation's line has every training member's values, by seed; a member that stopped leaves it
    validations = [line for line in output.stdout.splitlines() if line.startswith("step ") and "val/loss" in line]
    assert re.search(r"^step 6/60  val/exact_match .*val/loss \S+ \(seed 0\) \S+ \(seed 1\)", validations[0])
    assert "(seed 1)" in validations[-1] and "(seed 0)" not in validations[-1], validations
    check(run_here("src.run", *sweep, lines, f"hydra.sweep.dir={solo}"))  # the same config (hparams.yaml has it)
    stopped_at = []
    for job in ("0_seed:0", "1_seed:1"):
        mine = json.loads((stacked / job / "metrics.json").read_text())
        theirs = json.loads((solo / job / "metrics.json").read_text())
        assert [e["step"] for e in mine["history"]] == [e["step"] for e in theirs["history"]]
        assert all(close(mine["final"][k], theirs["final"][k]) for k in theirs["final"])
        record = json.loads((stacked / job / "run.json").read_text())
        reference = json.loads((solo / job / "run.json").read_text())
        assert record["status"] == "completed"
        assert_same_hparams(stacked / job, solo / job)  # written as training starts (no test_after_fit writes it)
        assert record["stopped"]["step"] == reference["stopped"]["step"]
        assert record["stopped"]["message"].split("; best")[0] == reference["stopped"]["message"].split("; best")[0]
        stopped_at.append(record["stopped"]["step"])
    assert stopped_at[0] != stopped_at[1]  # each by its own metric, not the group's


def test_a_group_ended_by_its_time_budget_says_so_in_each_member_and_warns_once_of_unread_settings(tmp_path):
    sweep = tmp_path / "sweep"
    args = [o for o in TINY if not o.startswith("trainer.max_steps=")]
    budget = ["trainer.max_steps=-1", "trainer.max_time=00:00:00:04", "ablate.reference_examples=64"]
    result = check(
        run_here(
            "src.run",
            "-m",
            "seed=0,1",
            *args,
            *SMALL_SYNTHETIC,
            *budget,
            "hydra/launcher=stacked",
            f"hydra.sweep.dir={sweep}",
        )
    )
    output = result.stdout + result.stderr
    assert output.count("warning: ablate.reference_examples=64 has no effect") == 1  # once for the group
    for job in ("0_seed:0", "1_seed:1"):
        record = json.loads((sweep / job / "run.json").read_text())
        assert record["status"] == "completed" and record["stopped"]["by"] == "max_time"
        assert f"{job}: stopped at the time budget trainer.max_time=00:00:00:04" in output
        assert record["speed"]["stacked_members"] == 2  # the group's speed, every member's tokens


def test_a_sweep_with_nothing_to_stack_says_so_once_and_runs_its_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "model.heads=1,2", *TINY_HEADS_SWEPT, *SMALL_SYNTHETIC, "hydra/launcher=stacked"]
    result = check(run_here("src.run", *args, f"hydra.sweep.dir={sweep}"))
    output = result.stdout + result.stderr
    assert output.count("warning: hydra/launcher=stacked stacks nothing here: no two jobs differ only in seed") == 1
    assert sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/run.json")) == ["completed"] * 2


def test_an_optuna_search_with_nothing_to_stack_says_so_once_not_once_a_batch(tmp_path):
    """The sweeper launches an Optuna search's trials a batch at a time (n_jobs=1: one trial each), so the launcher
    runs once per batch; the sweep is told once, as a grid sweep is."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    sweep = tmp_path / "search"
    searched = ("optimizer.lr=", "optimizer.warmup_steps=", "model.dropout=", "model.d_model=")
    args = [o for o in TINY if not o.startswith((*searched, "trainer.max_steps=", "trainer.val_check_interval="))]
    search = ["-m", "hparams_search=lr_warmup_dropout_size", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1"]
    short = ["trainer.max_steps=3", "trainer.val_check_interval=3"]
    result = check(
        run_here(
            "src.run", *search, *args, *short, *SMALL_SYNTHETIC, "hydra/launcher=stacked", f"hydra.sweep.dir={sweep}"
        )
    )
    output = result.stdout + result.stderr
    assert output.count("warning: hydra/launcher=stacked stacks nothing here: no two jobs differ only in seed") == 1
    assert sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/run.json")) == ["completed"] * 2
