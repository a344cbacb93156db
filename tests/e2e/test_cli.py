"""End to end: the real `python -m src.run / src.eval / src.predict` in subprocesses, on tiny settings.

One multirun trains every synthetic task (and doubles as the sweep test: distinct directories, each with its
composed config); each file-based task trains once from small files written here; eval and predict use the
checkpoints those runs leave; TensorBoard event files are read back to check what the dashboards show.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.dashboard.tensorboard_reader import read_events

from .conftest import ROOT, SMALL_SYNTHETIC, TINY, check, run_here, run_module, task_overrides

pytestmark = pytest.mark.slow

SYNTHETIC = ["copy", "reverse", "sort", "addition"]
FILE_TASKS = ["char_lm", "translation", "multi30k", "classification"]
MAIN_METRIC = {
    "copy": "val/exact_match",
    "reverse": "val/exact_match",
    "sort": "val/exact_match",
    "addition": "val/exact_match",
    "char_lm": "val/loss",
    "translation": "val/bleu",
    "multi30k": "val/bleu",
    "classification": "val/acc",
}
# the mid-run checkpoints of the resume test come from the sweep's reverse job
MID_RUN_CHECKPOINTS = ["checkpoint.every_n_train_steps=6"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict[str, Path]:
    """One multirun over the four synthetic tasks: task name -> its job directory."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    check(
        run_here(
            "src.run",
            "-m",
            f"task={','.join(SYNTHETIC)}",
            *TINY,
            *SMALL_SYNTHETIC,
            *MID_RUN_CHECKPOINTS,
            f"hydra.sweep.dir={sweep_dir}",
        )
    )
    jobs = {}
    for job_dir in sorted(p.parent for p in sweep_dir.glob("*/.hydra")):  # not the sweep's report/
        config = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
        jobs[config.task.name] = job_dir
    return jobs


@pytest.fixture(scope="module")
def file_runs(tmp_path_factory, data_dir) -> dict[str, Path]:
    """One run per file-based task: task name -> run directory."""
    runs = {}
    for task in FILE_TASKS:
        run_dir = tmp_path_factory.mktemp(task) / "run"
        check(run_here("src.run", *TINY, *task_overrides(task, data_dir), f"hydra.run.dir={run_dir}"))
        runs[task] = run_dir
    return runs


def assert_dashboard(run_dir: Path, task: str) -> None:
    events = read_events(run_dir)
    for tag in ("train/loss", "train/lr", "train/epoch", "val/loss", MAIN_METRIC[task]):
        assert tag in events.scalar_tags, f"{task}: no {tag} in {sorted(events.scalar_tags)[:20]}"
    assert events.scalars["train/lr"][-1][1] > 0
    # attention maps: one image per layer and site, and the masks
    sites = {"char_lm": ["decoder_self"], "classification": ["encoder_self"]}.get(
        task, ["encoder_self", "decoder_self", "cross"]
    )
    for site in sites:
        assert f"val_attention/{site}:0" in events.image_tags, f"{task}: {sorted(events.image_tags)}"
        assert f"val_mask/{site}" in events.image_tags
    assert events.tags_with_prefix("val_heads/"), f"{task}: no per-head statistics"
    assert "samples/validation" in events.text_tags
    # images, head statistics and validation points share the step axis (TINY: every 6 steps), counted as the
    # console and metrics.json count them
    val_steps = [step for step, _ in events.scalars["val/loss"]]
    assert val_steps == [6, 12] and events.image_steps(f"val_attention/{sites[0]}:0") == val_steps
    assert val_steps == [entry["step"] for entry in json.loads((run_dir / "metrics.json").read_text())["history"]]
    assert [step for step, _ in events.scalars["train/loss"]][-1] == 12
    epoch_steps = [step for step, _ in events.scalars["train/epoch"]]
    assert len(epoch_steps) == len(set(epoch_steps)), f"train/epoch filed twice at one step: {epoch_steps}"
    stats_tag = sorted(events.tags_with_prefix("val_heads/"))[0]
    assert [step for step, _ in events.scalars[stats_tag]] == val_steps
    # TensorBoard lists tag groups (the part before the first "/") in name order and opens the first ones: the
    # learning curves lead, every dashboard group comes after them.
    groups = sorted({tag.split("/")[0] for tag in events.scalar_tags | events.image_tags})
    assert groups[:2] == ["train", "val"] and all(group.startswith("val_") for group in groups[2:]), groups
    # hparams: this run's values and the metric columns, so the HPARAMS tab can compare runs
    assert events.has_hparams
    assert MAIN_METRIC[task] in events.hparam_metrics
    assert events.hparams["model.d_model"] == 16
    assert events.hparams["task.name"] == task


def assert_run_dir(run_dir: Path, task: str) -> None:
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").task.name == task
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 12  # the last step is validated and saved (max_steps=12)


# --- training every task -----------------------------------------------------------------------------------


def test_sweep_gives_each_job_its_own_directory(sweep):
    assert sorted(sweep) == sorted(SYNTHETIC)
    assert len({p.name for p in sweep.values()}) == len(SYNTHETIC)
    # <job number>_<the varied setting>, short and in sweep order
    assert sorted(p.name for p in sweep.values()) == sorted(f"{i}_task:{task}" for i, task in enumerate(SYNTHETIC))
    assert all("=" not in p.name and "," not in p.name for p in sweep.values())  # pasteable into ckpt=...


def test_a_group_sweep_tells_its_runs_apart_in_hparams(sweep):
    """`-m task=copy,reverse,...` varies a group: each job's HPARAMS row leads with the option it chose."""
    for task, job_dir in sweep.items():
        events = read_events(job_dir)
        assert events.hparams["task"] == task
        assert events.hparams_first == ["task"]


@pytest.mark.parametrize("task", SYNTHETIC)
def test_synthetic_task_trains_and_logs(sweep, task):
    assert_run_dir(sweep[task], task)
    assert_dashboard(sweep[task], task)


@pytest.mark.parametrize("task", FILE_TASKS)
def test_file_task_trains_and_logs(file_runs, task):
    assert_run_dir(file_runs[task], task)
    assert_dashboard(file_runs[task], task)
    if task in ("translation", "multi30k"):
        assert (file_runs[task] / "tokenizer.json").is_file() or any(file_runs[task].glob("*.json"))


# --- eval and predict from checkpoints ---------------------------------------------------------------------


def test_eval_reports_test_and_longer_lengths(sweep):
    result = check(run_here("src.eval", f"ckpt={sweep['reverse'] / 'checkpoints' / 'best.ckpt'}"))
    for metric in ("test/exact_match", "test/loss", "test_long/exact_match", "test_long/token_acc"):
        assert metric in result.stdout, result.stdout


def test_eval_translation_reports_bleu(file_runs):
    result = check(run_here("src.eval", f"ckpt={file_runs['translation'] / 'checkpoints' / 'last.ckpt'}"))
    assert "test/sacrebleu" in result.stdout and "test/bleu" not in result.stdout  # one BLEU, sacreBLEU's


@pytest.mark.parametrize(
    "task,args",
    [
        ("reverse", ['text="1234"']),
        ("translation", ['text="ein mann sieht den hund"', "decode.strategy=beam", "decode.beam_size=3"]),
        (
            "char_lm",
            ['text="To be"', "decode.strategy=sample", "decode.top_k=5", "num_samples=2", "decode.max_new_tokens=20"],
        ),
        ("classification", ['text="great good movie"']),
    ],
)
def test_predict(sweep, file_runs, task, args):
    run_dir = sweep.get(task) or file_runs[task]
    result = check(run_here("src.predict", f"ckpt={run_dir / 'checkpoints' / 'best.ckpt'}", *args))
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, result.stderr
    if task == "char_lm":  # two samples, each continuing the prompt
        assert result.stdout.count("--- sample") == 2 and result.stdout.count("To be") >= 2
    if task == "classification":
        assert lines[0] in ("pos", "neg")


def test_eval_rejects_a_missing_checkpoint(tmp_path):
    result = run_here("src.eval", f"ckpt={tmp_path / 'nope.ckpt'}")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ckpt=") and "Traceback" not in result.stderr


# --- resuming ----------------------------------------------------------------------------------------------


def test_resume_continues_to_max_steps_with_identical_weights(sweep, tmp_path):
    """Resume the reverse job from its step-6 checkpoint: it trains to step 12, and (dropout 0, stateful data
    loader) ends with exactly the weights of the uninterrupted run."""
    uninterrupted = sweep["reverse"]
    middle = uninterrupted / "checkpoints" / "step-6.ckpt"
    assert middle.is_file(), sorted(p.name for p in (uninterrupted / "checkpoints").iterdir())
    resumed_dir = tmp_path / "resumed"
    check(
        run_here(
            "src.run",
            "task=reverse",
            *TINY,
            *SMALL_SYNTHETIC,
            *MID_RUN_CHECKPOINTS,
            f"ckpt_path={middle}",
            f"hydra.run.dir={resumed_dir}",
        )
    )
    # it really started after step 6 (a run from scratch would reach the same weights and write step-6.ckpt)
    assert sorted(p.name for p in (resumed_dir / "checkpoints").glob("step-*")) == ["step-12.ckpt"]
    resumed = torch.load(resumed_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    reference = torch.load(uninterrupted / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == reference["global_step"] == 12
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), f"{name} differs after resuming"


def test_resume_with_dropout_gives_identical_weights(tmp_path):
    """With dropout the random generators matter too: the checkpoint carries them. 150 examples in batches of
    16 are 10 steps an epoch, so the step-6 checkpoint is mid-epoch and the resumed run crosses an epoch."""
    settings = [
        "task=copy",
        *TINY,
        "model.dropout=0.1",
        "task.train_size=150",
        "task.val_size=32",
        "task.test_size=32",
        *MID_RUN_CHECKPOINTS,
    ]
    check(run_here("src.run", *settings, f"hydra.run.dir={tmp_path / 'full'}"))
    check(
        run_here(
            "src.run",
            *settings,
            f"ckpt_path={tmp_path / 'full' / 'checkpoints' / 'step-6.ckpt'}",
            f"hydra.run.dir={tmp_path / 'resumed'}",
        )
    )
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").glob("step-*")) == ["step-12.ckpt"]
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    reference = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == reference["global_step"] == 12
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), f"{name} differs after resuming"


def test_resume_with_a_different_model_is_one_line(sweep, tmp_path):
    middle = sweep["reverse"] / "checkpoints" / "step-6.ckpt"
    result = run_here(
        "src.run",
        "task=reverse",
        *TINY,
        *SMALL_SYNTHETIC,
        "model.d_ff=64",
        f"ckpt_path={middle}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 2
    assert "d_ff" in result.stderr and "Traceback" not in result.stderr
    # another seed would mean other data and another order: not a resume either
    result = run_here(
        "src.run",
        "task=reverse",
        *TINY,
        *SMALL_SYNTHETIC,
        "seed=7",
        f"ckpt_path={middle}",
        f"hydra.run.dir={tmp_path / 'run2'}",
    )
    assert result.returncode == 2 and "seed=0, this run has seed=7" in result.stderr


# --- sweeps survive a failing job --------------------------------------------------------------------------


def test_a_failing_sweep_job_does_not_end_the_sweep(tmp_path, data_dir):
    """A job that fails while it runs (its data file is bad past the part checked before the sweep starts) is
    reported, and the sweep goes on; a job known to be unable to run refuses the sweep instead (test_preflight.py)."""
    from .test_edges import text_bad_past_the_checked_part

    bad = text_bad_past_the_checked_part(tmp_path / "big.txt")
    sweep = tmp_path / "sweep"
    char_lm = [o for o in task_overrides("char_lm", data_dir) if not o.startswith("task.path=")]
    result = run_here(
        "src.run", "-m", *char_lm, f"task.path={bad},{data_dir / 'text.txt'}", *TINY, f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode == 1  # the sweep reports the failure at the end
    assert "not valid UTF-8" in result.stderr
    jobs = sorted(p.parent for p in sweep.glob("*/.hydra"))
    assert [job.name[:2] for job in jobs] == ["0_", "1_"]
    assert (jobs[0] / "error.txt").is_file()
    assert (jobs[1] / "checkpoints" / "last.ckpt").is_file()
    assert f"| failed | {bad}:" in (sweep / "report.md").read_text()


def test_two_runs_started_together_get_their_own_directories(tmp_path):
    """The default run directory ends in microseconds: two runs started in the same second do not collide."""
    import subprocess
    import sys

    from .conftest import ROOT

    default = OmegaConf.load(ROOT / "conf" / "config.yaml").hydra.run._content["dir"]._value()  # unresolved
    assert default.startswith("outputs/")
    pattern = f"hydra.run.dir={tmp_path}/{default[len('outputs/') :]}"  # the project's own pattern, under tmp_path
    args = [
        sys.executable,
        "-m",
        "src.run",
        "task=copy",
        *TINY,
        *SMALL_SYNTHETIC,
        "trainer.max_steps=2",
        "logger=none",
        pattern,
    ]
    runs = [
        subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    run_dirs = sorted(tmp_path.glob("*/*"))
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("command", ["src.eval", "src.predict", "src.run"])
def test_a_malicious_checkpoint_is_refused_by_every_command(tmp_path, command):
    from tests.training.test_checkpoint import malicious_checkpoint

    path, marker = malicious_checkpoint(tmp_path)
    field = "ckpt_path" if command == "src.run" else "ckpt"
    extra = {"src.predict": ['text="1234"'], "src.run": [*TINY, f"hydra.run.dir={tmp_path / 'run'}"]}.get(command, [])
    result = run_module(command, f"{field}={path}", *extra)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith("error:") and "refused" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_the_commands_import_without_full_garbage_collections_and_leave_the_collector_on():
    # Each command turns the collector off for its imports and freezes what they made (0.9 s of full collections
    # otherwise); a command that forgot to turn it back on would keep every reference cycle of a long run.
    probe = (
        "import gc\n"
        "full = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and info['generation'] == 2 and full.append(1))\n"
        "import src.run, src.eval, src.predict\n"
        "print(gc.isenabled(), gc.get_freeze_count(), len(full))\n"
    )
    result = check(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True))
    enabled, frozen, full_collections = result.stdout.split()
    assert enabled == "True" and int(frozen) > 100_000 and full_collections == "0"


def test_an_optuna_search_leads_hparams_with_its_search_space(tmp_path):
    """An optimising sweeper writes no multirun.yaml: the job's sweeper params are what varies."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    sweep = tmp_path / "search"
    search = ["-m", "hparams_search=lr_warmup_dropout_size", "hydra.sweeper.n_trials=2", *TINY, *SMALL_SYNTHETIC]
    searched = ("optimizer.lr=", "optimizer.warmup_steps=", "model.dropout=", "model.d_model=")
    search = [o for o in search if not o.startswith(searched)]  # the search sets these
    check(run_here("src.run", *search, f"hydra.sweep.dir={sweep}"))
    jobs = sorted(p.parent for p in sweep.glob("*/.hydra"))
    assert len(jobs) == 2
    for job_dir in jobs:
        events = read_events(job_dir)
        searched = {"optimizer.lr", "optimizer.warmup_steps", "model.dropout", "model.d_model"}
        assert set(events.hparams_first) == searched and searched <= set(events.hparams)
