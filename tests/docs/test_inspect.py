"""Every documented command that reads what training made (`src.eval`, `src.predict`, `src.analyze`,
`src.report`) runs on runs trained here at a test's size: `outputs/<date>/<time>`, `<run>` and `ckpt=...` are a
run of the task the command's input belongs to (German text: a translation model; `ROMEO:`: a character
language model; digits: the default reverse model), `outputs/multirun/<date>/<time>` and `<sweep dir>` a sweep."""

from __future__ import annotations

import shlex

import pytest

from tests.e2e.conftest import check

from .commands import of_kind, unique
from .conftest import copy_run, run_here, train, write_data_files

pytestmark = pytest.mark.slow

INSPECT = unique(of_kind("inspect"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, home, data):
    """The runs the commands read, by the task their input belongs to."""
    made = tmp_path_factory.mktemp("runs")
    translation = [
        "task=translation",
        *(
            f"task.{split}_{side}={data / f'{split}.{lang}'}"
            for split in ("train", "val", "test")
            for side, lang in (("src", "de"), ("tgt", "en"))
        ),
        "task.vocab_size=120",
    ]
    return {
        "reverse": train(made / "reverse", home),
        "translation": train(made / "translation", home, *translation),
        "char_lm": train(
            made / "char_lm", home, "task=char_lm", f"task.path={data / 'input.txt'}", "task.block_size=32"
        ),
        "sweep": train(made / "sweep", home, "model.heads=2,4", "seed=0,1", sweep=True),
    }


def the_run_for(line: str) -> str:
    """Which run a command's placeholder stands for, from what the command gives the model."""
    if "multirun/" in line or "<sweep dir>" in line:
        return "sweep"
    if "ROMEO" in line or "analysis=induction" in line:  # a decoder-only model
        return "char_lm"
    if any(word in line for word in ("Hund", "sentences.de", "decode.strategy=beam")):
        return "translation"
    return "reverse"


def test_the_pages_have_inspecting_commands():
    assert len(INSPECT) >= 15, [c.line for c in INSPECT]
    modules = {c.module for c in INSPECT}
    assert {"src.eval", "src.predict", "src.analyze", "src.report"} <= modules, modules


@pytest.mark.parametrize("command", INSPECT, ids=[c.id for c in INSPECT])
def test_a_documented_command_on_a_trained_run_runs(command, tmp_path, home, runs):
    write_data_files(tmp_path)
    made = runs[the_run_for(command.line)]
    line = command.line
    for placeholder in ("outputs/multirun/<date>/<time>", "<sweep dir>", "outputs/<date>/<time>", "<run>"):
        if placeholder in line:
            line = line.replace(placeholder, str(copy_run(made, tmp_path)))
    if "ckpt=..." in line:
        line = line.replace("ckpt=...", f"ckpt={copy_run(made, tmp_path)}")
    assert "<" not in line and "..." not in line, f"a placeholder the test cannot fill: {line}"
    done = check(run_here(["-m", *shlex.split(line)[2:]], tmp_path, home))
    assert "error:" not in done.stderr, done.stderr
    for word in shlex.split(line):  # what the command says it writes is written
        if word.startswith(("attention=", "output=")):
            assert (tmp_path / word.split("=", 1)[1]).is_file()
