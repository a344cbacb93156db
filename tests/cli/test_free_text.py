"""Free text on the command line is taken as typed (src/cli/free_text.py): predict's text=, input= and output=, and a
run's +meta.<name> notes reach the program as the very text the user wrote, whatever Hydra's grammar or OmegaConf's
interpolation would have made of it."""

from __future__ import annotations

import random

import pytest
from hydra import compose, initialize_config_dir

from src.cli.command_line import CONF_DIR
from src.cli.free_text import free_text_as_typed, hydra_literal
from tests.conftest import compose_config

# What Hydra or OmegaConf would have changed, refused or resolved (`${oc.env:HOME}` into the home directory).
SURPRISES = [
    "a ${x} film",
    "${oc.env:HOME}",
    "true",
    "null",
    "1e3",
    "1_000",
    "007",
    "hello, world",
    "it's great",
    "ein Hund läuft",
    "[1,2]",
    "choice(a,b)",
    "a=b",
    "  spaced  ",
    "back\\slash\\",
    "\\${x}",
    "",
]


def predict_text(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("predict", overrides=["ckpt=x.ckpt", *overrides]).text


@pytest.mark.parametrize("text", SURPRISES)
def test_predict_text_and_run_notes_are_taken_as_typed(text):
    assert predict_text(*free_text_as_typed("src.predict", [f"text={text}"])) == text
    assert compose_config(*free_text_as_typed("src.run", [f"+meta.note={text}"])).meta.note == text


def test_file_names_are_taken_as_typed():
    names = ["ckpt=runs/a,b/best.ckpt", "input=notes ${x}.txt", "output=1e3"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("predict", overrides=free_text_as_typed("src.predict", names))
        evaluated = compose("eval", overrides=free_text_as_typed("src.eval", names[:1]))
    assert (cfg.ckpt, cfg.input, cfg.output) == ("runs/a,b/best.ckpt", "notes ${x}.txt", "1e3")
    assert evaluated.ckpt == "runs/a,b/best.ckpt"


def test_a_value_quoted_for_hydra_means_what_is_inside_the_quotes_and_is_never_interpolated():
    assert predict_text(*free_text_as_typed("src.predict", ['text="ein Hund läuft"'])) == "ein Hund läuft"
    assert predict_text(*free_text_as_typed("src.predict", ["text='it\\'s'"])) == "it's"
    assert predict_text(*free_text_as_typed("src.predict", ['text="a ${x} film"'])) == "a ${x} film"
    assert (
        predict_text(*free_text_as_typed("src.predict", ['text="a \\${x} film"'])) == "a ${x} film"
    )  # OmegaConf's own escape


def test_settings_and_values_hydra_reads_as_typed_are_left_alone():
    argv = ["-m", "model.heads=2,4", "+meta.note=first", "hydra.run.dir=outputs/${now:%H}"]
    assert free_text_as_typed("src.run", argv) == argv
    assert free_text_as_typed("src.predict", ["text=hello", "input=in.txt"]) == ["text=hello", "input=in.txt"]
    assert free_text_as_typed("src.run", ["text=a b,c"]) == ["text=a b,c"]  # no setting of src.run: refused there


@pytest.mark.slow  # tens of seconds: handed out with the end-to-end files, first
def test_any_text_survives_hydra_and_omegaconf_and_a_second_reading():
    """Random strings of the characters that mean something to the shell, Hydra or OmegaConf: the rewritten
    override reads back as the text, and rewriting it again (a recorded command line, pasted) changes nothing."""
    alphabet = ["\\", "'", '"', "$", "{", "}", "${", "a", " ", ",", "=", ":", "[", "]", "ä", "\n", "(", ")", "#"]
    rng = random.Random(0)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))) for _ in range(100)]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for text in texts:
            assert compose("predict", overrides=["ckpt=x", f"text={hydra_literal(text)}"]).text == text
            once = free_text_as_typed("src.predict", [f"text={text}"])
            assert free_text_as_typed("src.predict", once) == once
            if not (len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""):  # else: quoted for Hydra
                assert compose("predict", overrides=["ckpt=x", *once]).text == text


def test_a_run_keeps_a_note_as_typed_and_predict_reads_text_as_typed(tmp_path):
    """Through the commands themselves: `+meta.note="a ${x} film"` is the run's note (its config tree, its saved
    config), and `text="a ${x} 1"` is the text predict reads (before: an interpolation traceback each; a digit task
    names every character it cannot read)."""
    from omegaconf import OmegaConf

    from tests.conftest import run_in_process
    from tests.e2e.conftest import SMALL_SYNTHETIC, TINY

    run_dir = tmp_path / "run"
    code, out, err = run_in_process(
        "src.run", *TINY, *SMALL_SYNTHETIC, "+meta.note=a ${x} film", f"hydra.run.dir={run_dir}"
    )
    assert code == 0, err
    assert "note: 'a ${x} film'" in out + err
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").meta.note == "a ${x} film"
    code, out, err = run_in_process("src.predict", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", "text=a ${x} 1")
    assert code == 2 and "error: text has 6 symbol(s) the model has no token for ('a', ' ', '$', '{', 'x', '}')" in err
