"""A refused run leaves nothing (issue 24, item 8): what can be refused before a run starts is refused before Hydra
writes its directory, for a single run and for every job of a sweep; what can only be found while the run reads its
data leaves a directory whose run.json says failed, which the sweep report and src.analyze name as failed and skip.

The commands run in this process, through their own entry functions (tests/conftest.py run_in_process).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_in_process, wait_for_state
from tests.test_bad_inputs import TINY

# TINY without the synthetic task's sizes: the cases choose their own task
MODEL = [o for o in TINY if not o.startswith("task.")]
SMALL_REVERSE = ["task.train_size=40", "task.val_size=8", "task.test_size=8"]
GOOD_ROWS = "".join(f"great film {i}\tpos\nawful film {i}\tneg\n" for i in range(20))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Data files, good and bad, each named for what is wrong with it."""
    root = tmp_path_factory.mktemp("data")
    files: dict[str, str | bytes] = {
        "good.tsv": GOOD_ROWS,
        "no_tab.tsv": "a good film\tpos\na bad film\n" + GOOD_ROWS,
        "empty_label.tsv": GOOD_ROWS + "a fine film\t \n",
        "header.tsv": "sentence\tlabel\n" + GOOD_ROWS,
        "stray_label.tsv": GOOD_ROWS + "a fine film\tpso\n",
        "one_label.tsv": "".join(f"film {i}\tpos\n" for i in range(20)),
        "few_rows.tsv": "good\tpos\nbad\tneg\ngood too\tpos\nbad too\tneg\n",
        "other_label.tsv": "a fine film\tmeh\nawful\tneg\n",
        "text.txt": "to be or not to be, that is the question.\n" * 40,
        "empty.txt": "\n\n",
        "latin1.txt": "line one\nline two\nna\xefve\n".encode("latin-1"),
        "short.txt": "abc",
        "src.txt": "ein haus\nein hund\nein ball\n",
        "tgt.txt": "a house\na dog\na ball\n",
        "tgt_short.txt": "a house\na dog\n",
        "damaged.gz": gzip.compress(b"a house\na dog\na ball\n")[:-12],
    }
    for name, content in files.items():
        path = root / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    (root / "multi30k").mkdir()  # no files: the task downloads them, which the test makes fail
    return root


def joblib_sweep(*settings: str) -> list[str]:
    """A two-job sweep with the joblib launcher and its `settings`."""
    return ["-m", *SMALL_REVERSE, "seed=0,1", "hydra/launcher=joblib", *settings]


def classification(train: Path | str, *more: str) -> list[str]:
    """task=classification on `train` (a file, or files a sweep runs over: `a.tsv,b.tsv`)."""
    return ["task=classification", f"task.train_path={train}", "task.max_len=16", *more]


def translation(data: Path, tgt: str = "tgt.txt", *more: str) -> list[str]:
    files = [f"task.{split}_src={data / 'src.txt'}" for split in ("train", "val", "test")]
    files += [f"task.{split}_tgt={data / 'tgt.txt'}" for split in ("val", "test")]
    return ["task=translation", *files, f"task.train_tgt={data / tgt}", "task.max_len=16", *more]


# (id, the overrides given the data folder, words the one error line must contain). The first is the issue's
# example: a run refused for bad data.
EARLY_REFUSALS = [
    ("no TAB in a line", lambda d: classification(d / "no_tab.tsv"), "no_tab.tsv:2: no TAB in this line"),
    ("an empty label", lambda d: classification(d / "empty_label.tsv"), "empty_label.tsv:41: empty label"),
    ("a header line", lambda d: classification(d / "header.tsv"), "set task.has_header=true"),
    ("a label seen once", lambda d: classification(d / "stray_label.tsv"), "label 'pso' appears 1 time(s)"),
    ("one label", lambda d: classification(d / "one_label.tsv"), "only one label ('pos')"),
    ("too few rows", lambda d: classification(d / "few_rows.tsv"), "4 rows cannot be split"),
    (
        "a validation label training lacks",
        lambda d: classification(d / "good.tsv", f"task.val_path={d / 'other_label.tsv'}"),
        "other_label.tsv:1: label 'meh' does not occur in the training file",
    ),
    ("no room in the vocabulary", lambda d: classification(d / "good.tsv", "task.vocab_size=4"), "task.vocab_size=4"),
    ("an empty text", lambda d: ["task=char_lm", f"task.path={d / 'empty.txt'}"], "empty.txt: file is empty"),
    ("not UTF-8", lambda d: ["task=char_lm", f"task.path={d / 'latin1.txt'}"], "latin1.txt:3: not valid UTF-8"),
    ("too short a text", lambda d: ["task=char_lm", f"task.path={d / 'short.txt'}"], "only 3 tokens"),
    ("parallel files of other lengths", lambda d: translation(d, "tgt_short.txt"), "different line counts"),
    ("a damaged gzip file", lambda d: translation(d, "damaged.gz"), "damaged.gz: cannot read"),
    ("task.max_len=0", lambda d: translation(d, "tgt.txt", "task.max_len=0"), "task.max_len=0 must be >= 1"),
    (
        "a failed download",
        lambda d: ["task=multi30k", f"task.data_dir={d / 'multi30k'}"],
        "missing and the download from",
    ),
    (
        "more held-out sequences than exist",
        lambda d: [*SMALL_REVERSE, "task.vocab_size=2", "task.max_len=2"],
        "only 6 distinct sources exist for lengths 1..2",
    ),
    ("a strategy Lightning lacks", lambda d: [*SMALL_REVERSE, "trainer.strategy=dpp"], "trainer.strategy=ddp"),
    ("an accelerator Lightning lacks", lambda d: [*SMALL_REVERSE, "trainer.accelerator=tpuu"], "trainer.accelerator"),
    ("no device", lambda d: [*SMALL_REVERSE, "trainer.devices=0"], "trainer.devices=0 is no device count"),
    ("device ids on the CPU", lambda d: [*SMALL_REVERSE, "trainer.devices=[0,1]"], "trainer.devices=[0,1]"),
    ("validation every 0 epochs", lambda d: [*SMALL_REVERSE, "trainer.check_val_every_n_epoch=0"], "must be >= 1"),
    # Lightning's refusals once the Trainer was made (after the run directory), and its tracebacks
    *[
        (f"trainer {setting}", lambda d, s=setting: [*SMALL_REVERSE, s], words)
        for setting, words in [
            ("trainer.accelerator=tpu", "trainer.accelerator=tpu: this machine has no tpu device"),
            ("trainer.accelerator=mps", "trainer.accelerator=mps: this machine has no mps device"),
            ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0 must be >= 1"),
            ("+trainer.detect_anomaly=yes", "trainer.detect_anomaly=yes is not what Lightning's Trainer takes"),
            ("trainer.strategy=fsdp", "trainer.strategy=fsdp shards the model over CUDA GPUs"),
            ("trainer.val_check_interval=0.5", "trainer.val_check_interval=0.5 is a fraction of an epoch"),
            ("trainer.max_epochs=-2", "trainer.max_epochs=-2 must be >= 1, or -1"),
        ]
    ],
    # a key added at the top (+foo=1): the preflight's copy of the settings had lost the root's schema
    ("an added top-level key", lambda d: [*SMALL_REVERSE, "+foo=1"], "foo is not a setting, so nothing would read it"),
    ("an added top-level typo", lambda d: [*SMALL_REVERSE, "+seedd=1"], "did you mean seed, without the +?"),
    (
        "a sweep over an added top-level key",
        lambda d: ["-m", *SMALL_REVERSE, "+foo=1,2"],
        "job 0 of the sweep (+foo=1) cannot run, so no job was started: foo is not a setting",
    ),
    # a sweep: one job that cannot run refuses the sweep, before any job (and before its directory) exists
    (
        "a sweep with a setting one job cannot take",
        lambda d: ["-m", *SMALL_REVERSE, "model.heads=1,3"],
        "job 1 of the sweep (model.heads=3) cannot run, so no job was started: model.heads=3 does not divide",
    ),
    (
        "a sweep with one bad data file",
        lambda d: ["-m", *classification(f"{d / 'good.tsv'},{d / 'no_tab.tsv'}")],
        "job 1 of the sweep",
    ),
    ("a sweep resuming last", lambda d: ["-m", *SMALL_REVERSE, "seed=0,1", "ckpt_path=last"], "ckpt_path=last"),
    # the same job twice: one run counted twice in the report's statistics (a seed written as 0 and as 00 too)
    (
        "a sweep repeating a seed",
        lambda d: ["-m", *SMALL_REVERSE, "seed=0,1,00"],
        "jobs 0 (seed=0) and 2 (seed=00) of the sweep have the same settings",
    ),
    (
        "a stacked sweep repeating a value",
        lambda d: ["-m", *SMALL_REVERSE, "model.heads=2,2", "seed=0,1", "hydra/launcher=stacked"],
        "jobs 0 (model.heads=2 seed=0) and 2 (model.heads=2 seed=0) of the sweep have the same settings",
    ),
    # one device asked for twice over: Lightning would train on one, without a word
    (
        "several devices with a one-device strategy",
        lambda d: [*SMALL_REVERSE, "trainer.devices=2", "trainer.strategy=single_device"],
        "trainer.devices=2 with trainer.strategy=single_device would train on one device only",
    ),
    # the joblib launcher's settings, which joblib itself reads only once the sweep's directory is written
    *[
        (f"a joblib sweep with {setting}", lambda d, s=setting: joblib_sweep(s), words)
        for setting, words in [
            ("hydra.launcher.n_jobs=0", "hydra.launcher.n_jobs=0 runs no job"),
            ("hydra.launcher.prefer=xyz", "hydra.launcher.prefer=xyz is not known"),
            ("hydra.launcher.prefer=threads", "hydra.launcher.prefer=threads would be ignored"),
            ("hydra.launcher.require=sharedmem", "hydra.launcher.require=sharedmem asks for jobs that share memory"),
            ("hydra.launcher.timeout=3", "bound each job's training with trainer.max_time"),
            ("hydra.launcher.backend=nonsense", "hydra.launcher.backend=nonsense would be ignored"),
            ("hydra.launcher.batch_size=0", "hydra.launcher.batch_size=0 is refused by joblib"),
            ("hydra.launcher.pre_dispatch=foo", "hydra.launcher.pre_dispatch=foo is refused by joblib"),
        ]
    ],
    # a search that picks its jobs as it goes (Optuna): the data every trial reads is checked before the first
    (
        "a search over bad data",
        lambda d: [
            "-m",
            "hparams_search=lr_warmup_dropout_size",
            "hydra.sweeper.n_trials=2",
            *classification(d / "no_tab.tsv"),
        ],
        "no_tab.tsv:2: no TAB in this line",
    ),
    # a searched parameter given with a prefix: the run would use it, the study record the sampled value
    (
        "a searched parameter force-set",
        lambda d: ["-m", "hparams_search=lr_warmup_dropout_size", "++optimizer.lr=1e-3"],
        "++optimizer.lr=1e-3 on the command line would change optimizer.lr in every trial's run",
    ),
]


@pytest.mark.parametrize("overrides, words", [c[1:] for c in EARLY_REFUSALS], ids=[c[0] for c in EARLY_REFUSALS])
def test_a_run_refused_before_it_starts_leaves_no_directory(overrides, words, data, tmp_path, monkeypatch):
    from src.data.tasks import multi30k

    def no_network(url, destination):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(multi30k, "download", no_network)
    monkeypatch.setattr("src.cli.trainer_checks._mps_available", lambda: False)  # an Apple GPU would take mps
    monkeypatch.setattr("torch.backends.mps.is_available", lambda: False)
    places = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    given = overrides(data)
    if any(o.startswith("hparams_search=") for o in given):
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    if "hydra/launcher=joblib" in given:
        pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="the joblib launcher is not installed")
    flags = [o for o in given if o == "-m"]
    code, out, err = run_in_process("src.run", *flags, *MODEL, *[o for o in given if o != "-m"], *places)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert words in errors[0], errors[0]
    assert list(tmp_path.iterdir()) == [], "a refused run wrote into its directory"
    assert not list((data / "multi30k").iterdir())  # no partial download left either


def test_bad_data_found_only_while_reading_fails_the_run_which_reports_and_analyze_skip(data, tmp_path, monkeypatch):
    """A flaw beyond the part of a file checked before the run (here made small) is found when the run reads the
    whole file: the run directory is left with run.json saying failed and why; a sweep goes on past that job, its
    report names it failed, and src.analyze on the sweep names it and skips it."""
    monkeypatch.setattr("src.data.files.CHECKED_BYTES", 256)
    late = tmp_path / "late.tsv"
    late.write_text(GOOD_ROWS + "a fine film without a label\n")  # line 41: past the first 256 bytes
    run_dir = tmp_path / "run"
    code, _, err = run_in_process("src.run", *MODEL, *classification(late), f"hydra.run.dir={run_dir}")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and errors == [f"error: {late}:41: no TAB in this line: each line must be `sentence<TAB>label`"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == errors[0].removeprefix("error: ")

    sweep = tmp_path / "sweep"
    code, out, err = run_in_process(
        "src.run",
        "-m",
        *MODEL,
        *classification(f"{data / 'good.tsv'},{late}"),
        f"hydra.sweep.dir={sweep}",
    )
    assert code == 1, err  # the sweep went on, and says one job did not complete
    statuses = {p.parent.name[0]: json.loads(p.read_text())["status"] for p in sweep.glob("*/run.json")}
    assert statuses == {"0": "completed", "1": "failed"}
    report = (sweep / "report.md").read_text()
    assert "| failed |" in report and "late.tsv:41: no TAB in this line" in report
    code, out, err = run_in_process(
        "src.analyze", f"ckpt={sweep}", "single_heads=false", "keep_one=false", "prune_step=1.0"
    )
    assert code == 0, err
    (skipped,) = [line for line in err.splitlines() if line.startswith("warning:") and "is skipped" in line]
    assert skipped.startswith("warning: 1_") and "failed" in skipped and "late.tsv:41" in skipped
    analysed = sorted(p.parents[1].name[0] for p in sweep.glob("*/analysis/summary.json"))
    assert analysed == ["0"]


def test_a_pretrained_model_without_its_tokenizer_or_weights_is_refused_before_the_run(tmp_path):
    transformers = pytest.importorskip("transformers", reason="the optional group: pip install -e '.[pretrained]'")
    from tests.pretrained.conftest import save, tiny_gpt2
    from tests.pretrained.hf_tokenizers import save_gpt2_tokenizer

    complete = save(tiny_gpt2(), tmp_path / "gpt2", save_gpt2_tokenizer)  # 64 positions
    no_tokenizer = save(tiny_gpt2(), tmp_path / "no_tokenizer")
    no_weights = tmp_path / "no_weights"
    transformers.GPT2Config.from_pretrained(complete).save_pretrained(no_weights)
    save_gpt2_tokenizer(no_weights, vocab_size=97)
    text = tmp_path / "story.txt"
    text.write_text("the cat sat on the mat and the dog ran to the park. " * 40)
    task = ["task=char_lm", f"task.path={text}", "trainer.max_steps=2"]
    for model, words in (
        (no_tokenizer, "tokenizer files in"),
        (no_weights, "has no weights (model.safetensors or pytorch_model.bin)"),
        (complete, "has 64 positions"),  # task.block_size=100 below
    ):
        run_dir = tmp_path / "run"
        size = ["task.block_size=100"] if model == complete else ["task.block_size=16"]
        code, _, err = run_in_process(
            "src.run", f"model.pretrained={model}", *task, *size, "torch_threads=1", f"hydra.run.dir={run_dir}"
        )
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and words in errors[0], err
        assert not run_dir.exists()
    # The positions are the pretrained model's (300 here), not model.max_len's (the tiny model's 256), which a
    # pretrained model's run cannot set
    longer = save(tiny_gpt2(n_positions=300), tmp_path / "gpt2_300", save_gpt2_tokenizer)
    code, _, err = run_in_process(
        "src.run",
        f"model.pretrained={longer}",
        *task,
        "task.block_size=280",
        "trainer.val_check_interval=2",
        "torch_threads=1",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'long'}",
    )
    assert code == 0, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    code, _, err = run_in_process("src.run", *MODEL, *SMALL_REVERSE, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    return run_dir


@pytest.mark.parametrize(
    "module, args, writes",
    [
        ("src.analyze", ["prune_step=0"], "out"),
        ("src.analyze", ["ablate.heads=[cross:5]"], "out"),
        ("src.analyze", ["split=train"], "out"),
        ("src.predict", ["input=lines.txt", "decode.beam_size=0"], "output"),
        ("src.predict", ["input=odd.txt"], "output"),  # a symbol the model has no token for, on line 2
        ("src.predict", ["text=1234", "attention_site=crosss"], "attention"),
        ("src.predict", ["text=12x4"], "attention"),
        # a real-number setting that is not a finite number (nan passes a range check written as a comparison)
        ("src.analyze", ["tolerance=nan"], "out"),
        ("src.predict", ["text=1234", "decode.temperature=nan"], "attention"),
    ],
)
def test_eval_predict_and_analyze_refused_write_nothing(trained, module, args, writes, tmp_path, monkeypatch):
    """The commands that read a trained model refuse bad input before they write their output (analyze's out=,
    predict's output= and attention=): nothing is left where it would have gone."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lines.txt").write_text("1234\n567\n")
    (tmp_path / "odd.txt").write_text("1234\n12x4\n")
    target = {"out": "analysis", "output": "out.txt", "attention": "page.html"}[writes]
    code, _, err = run_in_process(module, f"ckpt={trained}", *args, f"{writes}={tmp_path / target}")
    assert code == 2 and len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    assert not (tmp_path / target).exists() and not (trained / "analysis").exists()


def test_a_slurm_sweep_is_checked_without_the_gpus_its_jobs_get_on_the_cluster(monkeypatch):
    """The submitting machine (a login node) often has no GPU: a SLURM sweep's jobs train on the cluster's nodes,
    so their GPU settings are not checked against this machine; a job that cannot run still refuses the sweep."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the cluster extra is not installed")
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from src.cli.command_line import fresh_hydra
    from src.cli.preflight import check_sweep_jobs
    from src.model import ConfigError

    monkeypatch.setattr("src.cli.trainer_checks._cuda_available", lambda: False)
    sweep = ["hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu", "trainer=gpu", *SMALL_REVERSE]
    with fresh_hydra():
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        config = hydra.compose_config("config", [*sweep, "model.heads=1,2"], run_mode=RunMode.MULTIRUN)
        check_sweep_jobs(config)  # no GPU here, and none needed
        config = hydra.compose_config("config", [*sweep, "model.heads=1,3"], run_mode=RunMode.MULTIRUN)
        with pytest.raises(ConfigError, match=r"job 1 of the sweep \(model.heads=3\) cannot run"):
            check_sweep_jobs(config)


@pytest.mark.parametrize(
    "settings",
    [
        [],
        ["hydra.launcher.n_jobs=-1", "hydra.launcher.backend=loky", "hydra.launcher.prefer=processes"],
        ["hydra.launcher.n_jobs=2", "hydra.launcher.batch_size=2", "hydra.launcher.pre_dispatch=3*n_jobs"],
        ["hydra.launcher.pre_dispatch=all", "hydra.launcher.max_nbytes=1M", "hydra.launcher.verbose=1"],
    ],
)
def test_joblib_settings_joblib_takes_pass_the_launcher_check(settings):
    """What the joblib launcher does use, as it uses it (its own default backend, loky, given or not), is let
    through: only what it would ignore or joblib refuse is refused."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="the joblib launcher is not installed")
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from src.cli.command_line import fresh_hydra
    from src.cli.preflight import check_joblib_launcher

    with fresh_hydra():
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        config = hydra.compose_config("config", ["hydra/launcher=joblib", *settings], run_mode=RunMode.MULTIRUN)
        check_joblib_launcher(config.hydra.launcher)


@pytest.mark.parametrize(
    ("n_jobs", "cores", "threads"),
    [(1, 8, 8), (2, 8, 4), (3, 8, 2), (16, 8, 1), (-1, 8, 1), (-2, 8, 1), (-5, 8, 2), (-7, 8, 4), (-20, 8, 8)],
)
def test_joblib_jobs_share_the_cores_as_joblib_counts_its_workers(monkeypatch, n_jobs, cores, threads):
    """torch_threads=0 under joblib gives each job the cores divided by the workers joblib starts: n_jobs=-2 is all
    cores but one (7 of 8 workers: 1 thread each), -7 two workers, and far below -cores still one worker."""
    import joblib
    from omegaconf import OmegaConf

    from src.cli.preflight import threads_for_jobs

    monkeypatch.setattr(joblib, "cpu_count", lambda *args, **kwargs: cores)
    target = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert threads_for_jobs(OmegaConf.create({"_target_": target, "n_jobs": n_jobs})) == threads
    assert threads_for_jobs(OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher"})) == 0


def test_resuming_last_without_a_run_directory_says_what_last_reads(tmp_path, monkeypatch):
    """`src.run ckpt_path=last` without hydra.run.dir named outputs/<date>/<time>, a directory no one made, as having
    no checkpoints: the line says that ckpt_path=last resumes the run in hydra.run.dir, and to give it."""
    monkeypatch.chdir(tmp_path)  # where Hydra's outputs/<date>/<time> would be
    code, _, err = run_in_process("src.run", *MODEL, *SMALL_REVERSE, "ckpt_path=last")
    assert code == 2 and err.strip() == (
        "error: ckpt_path=last resumes the run in hydra.run.dir, and none was given (this run would get a new one): "
        "add hydra.run.dir=<the run> (the directory the interrupted run printed), or give ckpt_path=<the run> to "
        "continue it in a new directory"
    ), err
    assert list(tmp_path.iterdir()) == []
    code, _, err = run_in_process("src.run", *MODEL, *SMALL_REVERSE, "ckpt_path=last", "hydra.run.dir=gone")
    assert code == 2 and "ckpt_path=last resumes the run in hydra.run.dir, and hydra.run.dir=gone does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_over_a_setting_that_changes_no_run_is_said_once(capsys):
    """progress_every_n_steps=50,100 trains the same run twice: legal (torch_threads=1,2 compares speed), said once."""
    from src.cli.preflight import warn_if_only_outputs_vary

    warn_if_only_outputs_vary(["progress_every_n_steps", "seed"])
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "warning: the sweep varies progress_every_n_steps, which does not change what a run trains or measures: its "
        "jobs train the same run, each value a row of its own in report.md (to compare seeds, sweep seed)"
    ]
    warn_if_only_outputs_vary(["model.heads", "seed"])
    assert capsys.readouterr().err == ""


def grid_fixed_said(capsys, *overrides: str) -> list[str]:
    """The `warning:` lines check_grid_fixed says for `python -m src.run -m <overrides>` (the config composed as the
    preflight callback gets it: nothing is run)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from src.cli.command_line import fresh_hydra
    from src.cli.preflight import check_grid_fixed

    with fresh_hydra():
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        check_grid_fixed(hydra.compose_config("config", list(overrides), run_mode=RunMode.MULTIRUN))
    return capsys.readouterr().err.splitlines()


def test_a_value_on_the_command_line_for_a_setting_the_planned_sweep_sweeps_is_one_warning(capsys):
    """experiments/heads.yaml plans model.heads 1,2,4,8 by seed 0,1,2 in hydra.sweeper.params; Hydra's basic sweeper
    lets the command line's model.heads=4 replace the planned values, so the sweep ran 3 jobs, not 12, without a
    word. Now one line says it, in the Optuna search's words (src/study.py check_fixed), with both counts."""
    assert grid_fixed_said(capsys, "experiment=heads", "model.heads=4") == [
        "warning: model.heads=4 on the command line fixes model.heads for every job, so the sweep no longer sweeps "
        "it (hydra.sweeper.params has model.heads=1,2,4,8): the sweep runs 3 jobs, not 12; leave it out to sweep "
        "it, or give it values of its own, comma-separated"
    ]
    # several, a group among them; 'not' counts what leaving them out runs, the command line's own sweeps included
    assert grid_fixed_said(capsys, "experiment=mask_leak", "mask=window", "seed=0", "optimizer.lr=1e-3") == [
        "warning: mask=window seed=0 on the command line fix mask and seed for every job, so the sweep no longer "
        "sweeps them (hydra.sweeper.params has mask=standard,none,window, seed=0,1,2): the sweep runs 1 job, not 9; "
        "leave them out to sweep them, or give them values of their own, comma-separated"
    ]
    assert grid_fixed_said(capsys, "experiment=norm", "model.norm_position=pre", "seed=0,1,2,3")[0].endswith(
        "the sweep runs 8 jobs, not 16; leave it out to sweep it, or give it values of its own, comma-separated"
    )
    # not said: the planned sweep as planned, a sweep of the command line's own over the planned setting (its values
    # are on the command line), a setting no plan sweeps, and a search (its own check_fixed says it)
    assert grid_fixed_said(capsys, "experiment=heads") == []
    assert grid_fixed_said(capsys, "experiment=heads", "model.heads=1,2", "seed=0,1,2,3,4") == []
    assert grid_fixed_said(capsys, "model.heads=4", "seed=0,1") == []
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra is not installed")
    assert grid_fixed_said(capsys, "hparams_search=lr_warmup_dropout_size", "optimizer.lr=1e-3") == []


def test_a_planned_sweeps_setting_given_with_a_prefix_is_refused_in_one_line_naming_the_prefix(capsys):
    """++model.heads=4 is another key than the plan's model.heads to Hydra's basic sweeper, so both reach every job:
    the 12 planned jobs would train 3 runs, 4 times each. Refused as the Optuna search refuses it, with the fix."""
    from src.model import ConfigError

    with pytest.raises(ConfigError) as raised:
        grid_fixed_said(capsys, "experiment=heads", "++model.heads=4")
    assert str(raised.value) == (
        "++model.heads=4 on the command line would change model.heads in every job after the sweep has set it "
        "(hydra.sweeper.params has model.heads=1,2,4,8), so the jobs planned to differ in it would all train the "
        "same run: write model.heads=4 to run that value alone, or leave it out to sweep it"
    )
    assert capsys.readouterr().err == ""


def test_the_warning_for_a_fixed_planned_setting_comes_once_before_anything_is_written(tmp_path):
    """Said by the preflight callback, before any job is composed or checked: here job 0 cannot run (3 heads do not
    divide d_model), so the sweep is refused after the warning, and nothing is written."""
    places = [f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    code, _, err = run_in_process("src.run", "-m", "experiment=heads", "model.heads=3", *places)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 2, err
    assert lines[0].startswith("warning: model.heads=3 on the command line fixes model.heads for every job"), err
    assert lines[1].startswith("error: job 0 of the sweep (model.heads=3 seed=0) cannot run"), err
    assert list(tmp_path.iterdir()) == []


def test_a_run_its_process_still_trains_is_not_entered_until_that_process_has_ended(tmp_path):
    """A run directory whose run.json names a process of this machine that still runs (a run started in another
    terminal, a sweep's worker that outlived the sweep's process): a resume into it, or a new run, would train it a
    second time over its files. Refused in one line naming the process and how to stop it, with nothing written;
    once the process has ended, the directory is a killed run's again."""
    import socket

    from src.provenance import now, process_started

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # the process the record names (any live one will do), in a process group of its own as a shell's job is, with
    # a child as a run has its DataLoader workers
    trainer = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        record = {
            "status": "running",
            "started": now(),
            "host": socket.gethostname(),
            "pid": trainer.pid,
            "process_started": process_started(trainer.pid),
        }
        (run_dir / "run.json").write_text(json.dumps(record))
        for resume in (["ckpt_path=last"], []):
            code, _, err = run_in_process("src.run", *MODEL, *SMALL_REVERSE, f"hydra.run.dir={run_dir}", *resume)
            errors = [line for line in err.splitlines() if line.startswith("error:")]
            assert code == 2 and len(errors) == 1, err
            assert f"process {trainer.pid} of this machine is training now" in errors[0], errors[0]
            assert f"`kill {trainer.pid}`" in errors[0], errors[0]
            assert sorted(p.name for p in run_dir.iterdir()) == ["run.json"]
        # Stopped (Ctrl-Z stops the whole job): still the run's process, but a `kill` alone waits until it is
        # continued, and continued alone it would wait for its stopped child: the line gives a kill -CONT of its
        # process group, and the command it gives ends the process and continues the child.
        worker = int(Path(f"/proc/{trainer.pid}/task/{trainer.pid}/children").read_text().split()[0])
        os.killpg(trainer.pid, signal.SIGSTOP)
        wait_for_state(trainer.pid, "T")
        wait_for_state(worker, "T")
        code, _, err = run_in_process("src.run", *MODEL, *SMALL_REVERSE, f"hydra.run.dir={run_dir}")
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        advice = f"kill {trainer.pid}; kill -CONT -{trainer.pid}"  # its group's id is its own: a session of its own
        assert code == 2 and f"`{advice}` (it is stopped, as by Ctrl-Z," in errors[0], err
        os.kill(trainer.pid, signal.SIGTERM)  # the kill alone: pending while the process is stopped
        with pytest.raises(subprocess.TimeoutExpired):
            trainer.wait(timeout=0.5)
        subprocess.run(["sh", "-c", advice], check=True)
        assert trainer.wait(timeout=10) == -signal.SIGTERM
        assert wait_for_state(worker, "S", "R") in ("S", "R")  # continued too
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(trainer.pid, signal.SIGKILL)
        trainer.wait()
    code, _, err = run_in_process("src.run", *MODEL, *SMALL_REVERSE, f"hydra.run.dir={run_dir}")
    assert code == 2 and "holds a run that is running, or was killed before saving a checkpoint" in err, err


def test_a_glob_sweeps_jobs_are_planned_as_hydras_sweeper_plans_them_so_its_checks_run(tmp_path):
    """`-m 'model=glob(t*)'`: Hydra expands a glob over a group's options with its config loader. The preflight
    planned the grid's jobs without one, raised "ConfigLoader is not set", and Hydra, which turns a callback's
    exception into a warning, went on with the sweep unchecked."""
    import sys

    from src.cli.command_line import fresh_hydra
    from src.cli.preflight import grid_jobs

    with fresh_hydra():  # as in the command: Hydra's own loader is there
        assert grid_jobs({}, ["model=glob(t*)", "seed=0,1"]) == [["model=tiny", "seed=0"], ["model=tiny", "seed=1"]]
    sweep = [*MODEL, *SMALL_REVERSE, "trainer.max_steps=1", "logger=none", f"hydra.sweep.dir={tmp_path / 's'}"]
    result = subprocess.run(
        [sys.executable, "-m", "src.run", "-m", "model=glob(t*)", *sweep], capture_output=True, text=True
    )
    assert (
        result.returncode == 0
        and "raised" not in result.stderr
        and "1 of 1 runs completed" in result.stdout + result.stderr
    ), result.stderr[-2000:]
