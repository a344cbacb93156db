"""The pages themselves: every command is of a kind some test runs; the commands run by a named test are in that
test; `make` targets exist and run what the pages say; TensorBoard serves a run's tags as the pages say; a shown
command prints what the page shows; every GPU command composes and validates as on a GPU machine; links between
the pages resolve."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import time
import urllib.request

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.cli.command_line import CONF_DIR
from src.cli.schema import register_configs
from src.cli.validation import validate_config

from .commands import ALL, PAGES, ROOT, SHOWN, kind_of, of_kind, unique
from .conftest import run, train

KINDS = ("train", "inspect", "pretrained", "tools", "elsewhere", "gpu")


def test_every_command_is_one_a_test_runs():
    assert len(ALL) >= 50
    for command in ALL:
        assert kind_of(command) in KINDS, command
        if command.module is None:
            assert command.words[0] in ("make", "tensorboard"), f"{command.id}: no test runs this kind of command"


ELSEWHERE = of_kind("elsewhere")


@pytest.mark.parametrize("command", ELSEWHERE, ids=[c.id for c in ELSEWHERE])
def test_a_command_run_by_a_named_test_is_in_that_test(command):
    """The named test runs the command's launcher, sweeper, storage and options (its placeholders aside)."""
    test = ROOT / command.run_by
    assert test.is_file(), f"{command.page} names {command.run_by}, which does not exist"
    source = test.read_text()
    for word in command.args:
        if word == "-m" or "<" in word:
            continue
        key, _, value = word.partition("=")
        if key.startswith("--"):
            assert key in source, f"{command.run_by} does not use {key} ({command.id})"
        elif key.startswith("hydra/") or key in ("hparams_search", "trainer"):
            assert key in source and value in source, f"{command.run_by} does not run {word} ({command.id})"
        elif key.startswith("hydra."):
            assert key.split(".")[-1] in source, f"{command.run_by} does not set {key} ({command.id})"


GPU = of_kind("gpu")


@pytest.mark.parametrize("command", GPU, ids=[c.id for c in GPU])
def test_a_gpu_command_composes_and_validates_as_on_a_gpu_machine(command, monkeypatch):
    monkeypatch.setattr("src.cli.trainer_checks._cuda_available", lambda: True)
    line = command.line.replace("<partition>", "debug")
    overrides = [word for word in shlex.split(line)[3:] if word != "-m"]
    first_values = [re.sub(r"=([^,]+),.*$", r"=\1", o) if "," in o and "{" not in o else o for o in overrides]
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=first_values, return_hydra_config=True)
    validate_config(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), overrides=first_values)
    assert cfg.trainer.accelerator == "gpu"


MAKE = unique([c for c in of_kind("tools") if c.words[0] == "make"])


@pytest.mark.parametrize("command", MAKE, ids=[c.id for c in MAKE])
def test_a_make_target_runs_what_the_page_says(command):
    target = command.words[1]
    done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = {"run": "-m src.run", "test": "-m pytest", "lint": "ruff check", "setup": "pip install"}
    assert expected.get(target, target) in done.stdout, done.stdout


TENSORBOARD = unique([c for c in of_kind("tools") if c.words[0] == "tensorboard"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("command", TENSORBOARD, ids=[c.id for c in TENSORBOARD])
def test_tensorboard_as_the_page_starts_it_serves_a_runs_curves(command, tmp_path, home):
    made = train(tmp_path / "outputs" / "2026-01-31", home)
    assert made.parent.parent == tmp_path / "outputs"
    port = free_port()
    binary = ROOT / ".venv" / "bin" / "tensorboard"
    words = [str(binary) if binary.exists() else "tensorboard", *command.words[1:], "--port", str(port)]
    server = subprocess.Popen(words, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, tags = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "val/loss" not in tags:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as reply:
                    tags = reply.read().decode()
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
        assert "val/loss" in tags and "train/loss" in tags, tags[:2000]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize(("command", "printed"), SHOWN, ids=[c.id for c, _ in SHOWN])
def test_a_shown_command_prints_what_the_page_shows(command, printed, tmp_path, home):
    done = run(["-m", command.module or "", *command.args, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, home)
    said = (done.stdout + done.stderr).splitlines()
    for line in printed:
        assert line in said, f"{command.id} does not print {line!r}; it printed:\n" + "\n".join(said[-20:])
    if any(line.startswith("error:") for line in printed):
        assert done.returncode == 2 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_the_links_of_a_page_resolve(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://")):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


# What src.analyze writes into a run's TensorBoard (one tag of each kind per analysis, as src/analysis/*report.py
# spells it) and a sweep's `report` run (src/sweep/figures.py): README says docs/dashboards.md lists every tag.
ADDED_TAGS = {
    "src/analysis/report.py": ("val_analysis/importance", "val_analysis/prunable_fraction", "val_analysis/report"),
    "src/analysis/causal_report.py": ("val_patching/heads", "val_patching/rank_correlation_", "val_patching/report"),
    "src/analysis/lens_report.py": ("val_lens/lens", "val_lens/loss_by_layer", "val_lens/report"),
    "src/analysis/induction_report.py": ("induction/scores", "induction/induction_score/", "induction/report"),
    "src/sweep/figures.py": ("report/curves", "report/table"),
}


def test_the_dashboards_page_lists_the_tags_of_the_analyses_and_of_a_sweeps_report():
    page = (ROOT / "docs" / "dashboards.md").read_text()
    for source, tags in ADDED_TAGS.items():
        code = (ROOT / source).read_text()
        for tag in tags:
            assert tag.split("/", 1)[1] in code, f"{source} no longer writes {tag}: update ADDED_TAGS and the page"
            assert f"`{tag}" in page, f"docs/dashboards.md does not list {tag} ({source} writes it)"
    assert "run named `report`" in page
    readme = (ROOT / "README.md").read_text()
    assert "[docs/dashboards.md](docs/dashboards.md) lists every tag" in readme


def test_the_model_pages_reading_order_lists_every_file_of_src_model_once():
    """docs/model.md keeps the one reading order of src/model (its __init__ points there): a new file is listed."""
    page = (ROOT / "docs" / "model.md").read_text()
    block = page.split("Read it in this order:\n\n```\n", 1)[1].split("```", 1)[0]
    listed = re.findall(r"^(\w+\.py) ", block, flags=re.M)
    files = sorted(path.name for path in (ROOT / "src" / "model").glob("*.py") if path.name != "__init__.py")
    assert sorted(listed) == files and len(set(listed)) == len(listed)
