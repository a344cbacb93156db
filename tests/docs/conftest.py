"""What the documented commands need to run here: the files they name, runs to point `ckpt=` at, a model-hub
cache for `hf:<model>`, and the runner that fills placeholders in and cuts training short (see commands.py)."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.conftest import WORDS_DE, check, parallel_lines

from .commands import ROOT, Command

# The settings that size a run, set small unless the command sets them. The model keeps the size the command
# gives it: a command such as `ablate.heads=[cross:1:2]` names heads of the default model.
SMALL = {
    "trainer.max_steps": "4",
    "trainer.val_check_interval": "4",  # one validation, at the end
    "trainer.enable_progress_bar": "false",
    "optimizer.warmup_steps": "1",
    "batch_size": "8",
    "dashboard.attention_every_n_steps": "4",
    "torch_threads": "1",
}
SYNTHETIC_SIZES = {"task.train_size": "64", "task.val_size": "8", "task.test_size": "8"}
RESUMED_STEPS = "8"  # a resume trains on from a fixture run's 4 steps (validating at step 8)
TRIALS = "2"  # an Optuna search's trials


def write_data_files(directory: Path) -> None:
    """The files the documented commands name, as a user would have them in the directory they work in."""
    rows = [f"{'a great good film' if i % 2 else 'a bad awful film'} number {i}\t{i % 2}" for i in range(60)]
    (directory / "sst2.tsv").write_text("\n".join(rows) + "\n")
    play = "ROMEO:\nBut soft, what light through yonder window breaks?\nJULIET:\nAy me.\n"
    (directory / "input.txt").write_text(play * 40)
    (directory / "sentences.de").write_text("ein Hund läuft\n" + " ".join(WORDS_DE[:6]) + "\n")


def environment(home: Path) -> dict[str, str]:
    """Offline: the model hub is read from `home`'s cache, Multi30k from its cache folder."""
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        PYTHONWARNINGS="ignore",
        OMP_NUM_THREADS="1",
        HF_HOME=str(home / "hf"),
        HF_HUB_OFFLINE="1",
        XDG_CACHE_HOME=str(home / "cache"),
    )


def key_of(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def sized(command: Command, args: list[str], resumes: bool) -> list[str]:
    """`args` with the run cut to a test's size: the command's own step count and trial count cut, the SMALL
    settings added where the command does not set them."""
    steps = RESUMED_STEPS if resumes else SMALL["trainer.max_steps"]
    out = []
    for arg in args:
        if key_of(arg) == "trainer.max_steps":
            arg = f"trainer.max_steps={steps}"
        elif key_of(arg) == "hydra.sweeper.n_trials":
            arg = f"hydra.sweeper.n_trials={TRIALS}"
        out.append(arg)
    given = {key_of(arg) for arg in out}
    pretrained = any(key_of(arg) == "model.pretrained" for arg in out)
    extra = {**SMALL, "trainer.max_steps": steps}
    if "hparams_search" in given:
        extra["hydra.sweeper.n_trials"] = TRIALS
    if pretrained:
        extra.pop("dashboard.attention_every_n_steps")
    if synthetic(out):
        extra.update(SYNTHETIC_SIZES)
    return out + [f"{key}={value}" for key, value in extra.items() if key not in given]


def synthetic(args: list[str]) -> bool:
    """Whether the command trains a generated task (the default reverse, or copy/sort/addition, or a study of
    experiments/ on one), whose sizes are settings."""
    tasks = [arg.split("=", 1)[1] for arg in args if key_of(arg) == "task"]
    if tasks:
        return tasks[0] in ("copy", "reverse", "sort", "addition")
    experiments = [arg.split("=", 1)[1] for arg in args if key_of(arg) == "experiment"]
    for name in experiments:
        text = (ROOT / "experiments" / f"{name}.yaml").read_text()
        found = re.search(r"override /task: (\w+)", text)
        return bool(found) and found.group(1) in ("copy", "reverse", "sort", "addition")
    return True


def run(args: list[str], cwd: Path, home: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python <args>` in a process of its own, in `cwd`, with the environment above."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environment(home), capture_output=True, text=True, timeout=timeout
    )


def run_here(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """`python -m <module> ...` (args: ["-m", module, ...]) run in this test process, through the module's own entry
    function (tests/conftest.py run_in_process), in `cwd` and with the environment `run` gives a process, both
    restored after. The command's code is the same, and so is what it says (run_in_process forgets the warnings a
    process says once); what it saves is a new interpreter's imports, 3-4 s a command (torch, Lightning, Hydra),
    which for the documented commands was about a minute and a half of the suite on two cores."""
    from tests.conftest import run_in_process

    assert args[0] == "-m", args
    saved_environment, saved_directory = dict(os.environ), os.getcwd()
    os.environ.update(environment(home))
    os.chdir(cwd)
    try:
        with hub_settings_read_from_the_environment():
            code, out, err = run_in_process(args[1], *args[2:])
    finally:
        os.chdir(saved_directory)
        os.environ.clear()
        os.environ.update(saved_environment)
    return subprocess.CompletedProcess([sys.executable, *args], code, out, err)


@contextmanager
def hub_settings_read_from_the_environment():
    """huggingface_hub reads HF_HOME and HF_HUB_OFFLINE once, when it is first imported (huggingface_hub.constants),
    and asks its constants at every download; transformers asks huggingface_hub's. Within this block they are what a
    process started with this environment would have read (the cache folder, offline), and after it what they were:
    the commands take the real hub code path, reading the test's cache."""
    try:
        from huggingface_hub import constants
    except ImportError:  # the pretrained extra is not installed: no command reads the hub
        yield
        return
    home = os.path.expanduser(os.environ.get("HF_HOME", constants.HF_HOME))
    now = {
        "HF_HOME": home,
        "HF_HUB_CACHE": os.environ.get("HF_HUB_CACHE", os.path.join(home, "hub")),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "").upper() in constants.ENV_VARS_TRUE_VALUES,
    }
    before = {name: getattr(constants, name) for name in now}
    for name, value in now.items():
        setattr(constants, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(constants, name, value)


def train(tmp: Path, home: Path, *overrides: str, sweep: bool = False) -> Path:
    """A run (or sweep) made for the commands to read, at a test's size."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / ("sweep" if sweep else "run")
    where = f"hydra.sweep.dir={out}" if sweep else f"hydra.run.dir={out}"
    command = Command("fixture", "python -m src.run " + " ".join(overrides))
    args = sized(command, list(overrides), resumes=False)
    check(run_here(["-m", "src.run", *(["-m"] if sweep else []), *args, where], tmp, home))
    return out


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    """HF_HOME and XDG_CACHE_HOME of the commands: an empty hub cache (tests that need models fill it) and the six
    Multi30k files the task would download, made up (German and English words, word for word)."""
    root = tmp_path_factory.mktemp("home")
    m30k = root / "cache" / "transformer-ablations" / "multi30k"
    m30k.mkdir(parents=True)
    for stem, n, seed in (("train", 120, 3), ("val", 16, 4), ("test_2016_flickr", 16, 5)):
        src, tgt = parallel_lines(n, seed)
        for lang, lines in (("de", src), ("en", tgt)):
            with gzip.open(m30k / f"{stem}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
    (root / "hf").mkdir()
    return root


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_data_files(root)
    for split, n, seed in (("train", 160, 0), ("val", 16, 1), ("test", 16, 2)):
        src, tgt = parallel_lines(n, seed)
        (root / f"{split}.de").write_text("\n".join(src) + "\n")
        (root / f"{split}.en").write_text("\n".join(tgt) + "\n")
    return root


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, home) -> Path:
    """A run of the default experiment to resume (`outputs/<date>/<time>`, `<the same overrides>`)."""
    return train(tmp_path_factory.mktemp("resumable"), home)


def copy_run(run_dir: Path, into: Path) -> Path:
    """A copy for one command (a command may write into a run: an analysis/, a resumed step)."""
    target = into / "outputs" / "2026-01-31" / run_dir.name
    shutil.copytree(run_dir, target)
    return target
