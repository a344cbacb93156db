"""The command-line wrapper every entry point shares (src/cli/command_line.py)."""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys

import pytest
from omegaconf import OmegaConf

from src.cli.command_line import (
    CommandLine,
    as_command,
    closest_setting,
    compose_every_swept_option,
    compose_or_none,
    fresh_hydra,
    refuse_choosing_a_folder_of_options_wrongly,
    setting_paths,
    warn_about_keys_given_twice,
)
from src.cli.schema import AnalyzeConfig, Config, EvalConfig, PredictConfig
from tests.conftest import PYTHON
from tests.test_bad_inputs import run_command

# Each command, the config it composes, and the schema of its settings (src/cli/schema.py).
COMMANDS = {
    "src.run": ("config", Config),
    "src.eval": ("eval", EvalConfig),
    "src.predict": ("predict", PredictConfig),
    "src.analyze": ("analyze", AnalyzeConfig),
}


def help_blocks(text: str) -> dict[str, list[str]]:
    """The help's blocks by their heading (`Settings (...):` -> `Settings`), each its indented lines."""
    blocks: dict[str, list[str]] = {}
    heading = None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            heading = line.split(" (")[0].rstrip(":") if line.rstrip().endswith(":") else None
            blocks.setdefault(heading or "", [])
        elif line.startswith("  ") and heading is not None:
            blocks[heading].append(line)
    return blocks


def listed_settings(text: str) -> list[str]:
    """The settings the help lists, as keys: `model.<key>=...` -> model.<key>, `+meta.<name>=...` -> meta.<name>."""
    lines = [line for line in help_blocks(text)["Settings"] if not line.startswith("    ")]  # not continuations
    return [line.split()[0].split("=")[0].lstrip("'+") for line in lines]  # ('text=...': quoted for the shell)


@pytest.mark.parametrize("module", COMMANDS)
def test_help_describes_the_commands_own_settings_one_line_each(module, capsys, monkeypatch):
    from src import provenance

    # as an activated environment's interpreter is named, whatever runs the tests (a fresh clone's longer name:
    # test_help_named_with_a_fresh_clones_interpreter_still_fits_a_terminal)
    monkeypatch.setattr(provenance, "python_command", lambda: "python")
    result = run_command(module, ["--help"], capsys)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith(f"python -m {module}: "), lines[0]  # names its command, then what it does
    assert f"Usage: python -m {module} " in result.out
    # short enough for a terminal: its width, and a screenful or two
    assert max(len(line) for line in lines) <= 100 and len(lines) <= 60, max(lines, key=len)
    # the groups it chooses from, and no schema/ group (those are the structured configs the yaml files build on)
    assert "schema/" not in result.out and "ablate: cross, decoder_ffn, none" in result.out
    assert ("\nmodel: " in result.out) == (module == "src.run")  # eval, predict, analyze take the checkpoint's
    config_name, schema = COMMANDS[module]
    listed = listed_settings(result.out)
    assert len(listed) == len(set(listed)), listed
    # every setting of the command's schema is listed, by itself or with its block (model.<key>=...)
    assert {field.name for field in dataclasses.fields(schema)} <= {key.split(".")[0] for key in listed}
    # and each one listed is a setting of the command (or Hydra's: hydra.run.dir)
    with fresh_hydra():
        cfg = compose_or_none(config_name, [])
    assert cfg is not None
    for key in listed:
        known = key.replace(".<key>", "").replace(".<name>", "").replace(".<Name>.<arg>", "")
        assert known in setting_paths(cfg), f"{module} --help lists {key}, which is not one of its settings"
    if module != "src.run":  # what every command that reads a trained model takes
        (ckpt,) = [line for line in help_blocks(result.out)["Settings"] if line.strip().startswith("ckpt=")]
        described = ckpt + " " + help_blocks(result.out)["Settings"][1]
        assert "a run directory (its best checkpoint)" in described and ".ckpt file" in described
        assert "hf:<model>" in described
    assert "layers and heads counted from 0" in result.out or "counted from 0" in result.out


def test_the_first_paragraph_of_analyze_help_names_every_analysis(capsys):
    """`src.analyze --help` opens with what each analysis= asks (induction was left out)."""
    from src.analyze import ANALYSES

    result = run_command("src.analyze", ["--help"], capsys)
    assert result.code == 0, result.err
    first = " ".join(result.out.split("\n\n", 1)[0].split())
    assert [name for name in ANALYSES if f"analysis={name}:" not in first] == [], first


def help_examples(text: str, module: str, python: str = PYTHON) -> list[list[str]]:
    """The examples' arguments, without the command and the comment."""
    examples = []
    for line in help_blocks(text)["Examples"]:
        words = shlex.split(line, comments=True)
        if not words:  # the comment of an example too long to have it beside
            continue
        assert words[:3] == [*shlex.split(python), "-m", module], line
        examples.append(words[3:])
    return examples


@pytest.mark.parametrize("module", COMMANDS)
def test_help_named_with_a_fresh_clones_interpreter_still_fits_a_terminal(module, capsys, monkeypatch):
    """`.venv/bin/python -m src.run --help` from a fresh clone: the help names the command so (python_command), ten
    columns wider than `python -m src.run`, and still fits its width: a paragraph is filled again and an example too
    long to have its comment beside it has it below. Its settings and examples are those of `python -m src.run`."""
    from src import provenance
    from src.cli.command_line import HELP_WIDTH

    helps = {}
    for python in ("python", ".venv/bin/python"):
        monkeypatch.setattr(provenance, "python_command", lambda python=python: python)
        result = run_command(module, ["--help"], capsys)
        assert result.code == 0, result.err
        helps[python] = result.out
    fresh, activated = helps[".venv/bin/python"], helps["python"]
    lines = fresh.splitlines()
    assert lines[0].startswith(f".venv/bin/python -m {module}: ") and f"Usage: .venv/bin/python -m {module} " in fresh
    assert max(len(line) for line in lines) <= HELP_WIDTH, max(lines, key=len)
    assert help_blocks(fresh)["Settings"] == help_blocks(activated)["Settings"]
    assert help_examples(fresh, module, ".venv/bin/python") == help_examples(activated, module, "python")

    def comments(text: str) -> list[str]:
        return [line.split("#", 1)[1].strip() for line in help_blocks(text)["Examples"] if "#" in line]

    assert comments(fresh) == comments(activated)


@pytest.mark.parametrize("module", COMMANDS)
def test_the_examples_of_help_compose_and_validate(module, capsys, monkeypatch):
    from src.cli.validation import validate_config

    result = run_command(module, ["--help"], capsys)
    examples = help_examples(result.out, module)
    assert 2 <= len(examples) <= 4
    config_name, _ = COMMANDS[module]
    for args in examples:
        if module == "src.run":
            # a sweep composes as its first job does (each job is validated before the sweep starts)
            overrides = [re.sub(r"=([^,\[\]]+),.*$", r"=\1", a) if "," in a else a for a in args if a != "-m"]
        else:
            overrides = args
        with fresh_hydra():
            cfg = compose_or_none(config_name, overrides)
        assert cfg is not None, f"{module} {' '.join(args)} does not compose"
        if module == "src.run":
            validate_config(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), overrides=overrides)


def test_help_through_a_console_script_names_the_console_command(capsys, monkeypatch):
    """`transformer-analyze --help`: argv[0] is the script, and the help names it (tests/e2e/test_packaging.py runs
    the installed scripts themselves)."""
    import src.analyze

    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/transformer-analyze", "--help"])
    with pytest.raises(SystemExit) as exit_:  # Hydra ends its --help so
        src.analyze.cli()
    assert exit_.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("transformer-analyze: ") and "Usage: transformer-analyze ckpt=" in out
    assert "python -m" not in out
    assert help_examples(out.replace("transformer-analyze", f"{PYTHON} -m src.analyze"), "src.analyze")


def test_help_shows_the_values_this_command_line_gives(capsys):
    result = run_command("src.run", ["task=sort", "seed=7", "model=small", "--help"], capsys)
    assert result.code == 0, result.err
    assert "task=sort;" in result.out and "\n  seed=7 " in result.out and "model.d_model=256," in result.out
    # a sweep's --help shows its first job's values
    result = run_command("src.run", ["-m", "model.heads=2,1", "seed=3,4", "--help"], capsys)
    assert result.code == 0, result.err
    assert "model.heads=2," in result.out and "\n  seed=3 " in result.out


def error_line(module: str, args: list[str], capsys, tmp_path) -> str:
    """The one `error:` line a command answers `args` with (exit status 2, no traceback)."""
    places = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = run_command(module, [*args, *places] if module == "src.run" else args, capsys)
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert result.code == 2 and len(errors) == 1 and "Traceback" not in result.err, result.err
    assert not (tmp_path / "sweep").exists(), "a refused sweep started"
    # a command the line offers to paste is the user's whole command line: here with the places added above (a
    # sweep offered keeps the sweep's, dropping the run's)
    return errors[0].replace(" " + " ".join(places), "").replace(" " + places[1], "")


@pytest.mark.parametrize(
    "args, line",
    [
        (  # one number: neither a list nor a text would be taken (Hydra refuses model.heads=[2,4])
            ["model.heads=2,4"],
            "model.heads=2,4 is several values, which is a sweep: add -m to run one job per value "
            f"({PYTHON} -m src.run -m model.heads=2,4), or give one value, e.g. model.heads=2",
        ),
        (
            ["optimizer.betas=0.9,0.99"],
            "optimizer.betas=0.9,0.99 is several values, which is a sweep: add -m to run one job per value "
            f"({PYTHON} -m src.run -m optimizer.betas=0.9,0.99); for one value that is a list write "
            "optimizer.betas=[0.9,0.99]",
        ),
        (
            ["logger.project=ablations,v2"],
            "logger.project=ablations,v2 is several values, which is a sweep: add -m to run one job per value "
            f"({PYTHON} -m src.run -m logger.project=ablations,v2); for a text with a comma quote it: "
            """'logger.project="ablations,v2"'""",
        ),
        (
            ["optimizer=adamw_cosine,adam_noam"],
            "optimizer=adamw_cosine,adam_noam names several options of optimizer, which is a sweep: add -m to run "
            f"one job per option ({PYTHON} -m src.run -m optimizer=adamw_cosine,adam_noam), or choose one",
        ),
        (
            ["seed=range(3)"],
            f"seed=range(3) is a sweep: add -m to run one job per value ({PYTHON} -m src.run -m 'seed=range(3)')",
        ),
        (  # the sweep offered keeps the rest of the command line
            ["hydra/launcher=stacked", "seed=0,1", "trainer.max_steps=3"],
            "seed=0,1 is several values, which is a sweep: add -m to run one job per value "
            f"({PYTHON} -m src.run -m hydra/launcher=stacked seed=0,1 trainer.max_steps=3), or give one value, e.g. "
            "seed=0",
        ),
        (
            ["trainer.max_steps=3", "seed=range(3)", "model.heads=2"],
            "seed=range(3) is a sweep: add -m to run one job per value "
            f"({PYTHON} -m src.run -m trainer.max_steps=3 'seed=range(3)' model.heads=2)",
        ),
        (
            ["+model.heads=2"],
            "+model.heads=2 adds model.heads, which is a setting already: drop the +, model.heads=2",
        ),
        (
            ["+model=small"],
            "+model=small adds a second model to the defaults: drop the +, model=small chooses the model",
        ),
        # what a hurried user types, which Hydra can only call unparsable
        (["model.heads", "8"], "could not parse model.heads 8: a setting takes its value after =, write model.heads=8"),
        (["model.heads 8"], "could not parse model.heads 8: a setting takes its value after =, write model.heads=8"),
        (
            ["task.train_size"],
            "could not parse task.train_size: a setting takes its value after =, write task.train_size=<value>",
        ),
        (
            ["+meta.note=hello", "world"],
            "could not parse world, which has no =: give it as key=value, or, if it is the rest of +meta.note=hello "
            """(a value with a space), quote it whole for the shell and for Hydra: '+meta.note="hello world"'""",
        ),
        (
            ["ablate.heads=[cross:0:1"],
            "could not parse ablate.heads=[cross:0:1: it opens a list with [ and does not close it: write "
            "'ablate.heads=[cross:0:1]'",
        ),
        (
            ["model.heads=[1,"],
            "could not parse model.heads=[1,: it opens a list with [ and does not close it: write 'model.heads=[1]'",
        ),
    ],
)
def test_hydras_refusals_name_the_override_and_hydras_own_fixes(args, line, capsys, tmp_path):
    assert error_line("src.run", args, capsys, tmp_path) == f"error: {line}"


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["mask=causal", "mask.window=3"],
            "mask.window belongs to mask=window, not to mask=causal: choose mask=window, or drop mask.window=3",
        ),
        (
            ["task=reverse", "task.tokenizer=bpe"],
            "task.tokenizer belongs to task=classification, not to task=reverse: choose task=classification, or "
            "drop task.tokenizer=bpe",
        ),
        (
            ["hydra.launcher.n_jobs=2"],
            "hydra.launcher.n_jobs belongs to hydra/launcher=joblib, not to hydra/launcher=basic: choose "
            "hydra/launcher=joblib, or drop hydra.launcher.n_jobs=2",
        ),
        (
            ["+task.tokenizer=bpe"],
            "task.tokenizer belongs to task=classification, not to task=reverse: choose task=classification, or "
            "drop +task.tokenizer",
        ),
        # Other settings of the group on the line, fitting (task.train_src) or as stray: the owner is still found.
        (
            ["task=translation", "task.tokenizer=word", "task.train_src=x"],
            "task.tokenizer belongs to task=classification, not to task=translation: choose task=classification, "
            "or drop task.tokenizer=word",
        ),
        (  # not "did you mean task.train_src=64", a setting of another meaning
            ["task=translation", "task.train_size=64", "task.train_src=x"],
            "task.train_size belongs to task=addition, task=copy, task=induction, task=reverse, task=sort, not to "
            "task=translation: choose one of task=addition, task=copy, task=induction, task=reverse, task=sort, or "
            "drop task.train_size=64",
        ),
        (
            ["task=translation", "task.train_size=64", "task.val_size=3"],
            "task.train_size belongs to task=addition, task=copy, task=induction, task=reverse, task=sort, not to "
            "task=translation: choose one of task=addition, task=copy, task=induction, task=reverse, task=sort, or "
            "drop task.train_size=64",
        ),
        (
            ["task=char_lm", "task.tokenizer=bpe", "task.vocab_size=5"],
            "task.tokenizer belongs to task=classification, not to task=char_lm: choose task=classification, or "
            "drop task.tokenizer=bpe",
        ),
        (
            ["mask=causal", "mask.window=3", "mask.prefix_len=2"],
            "mask.window belongs to mask=window, not to mask=causal: choose mask=window, or drop mask.window=3",
        ),
        (  # several values for a setting of another option: whose setting it is comes first
            ["task.path=a,b"],
            "task.path belongs to task=char_lm, not to task=reverse: choose task=char_lm, or drop task.path=a,b",
        ),
    ],
)
def test_a_setting_of_another_option_names_that_option(args, line, capsys, tmp_path):
    assert error_line("src.run", args, capsys, tmp_path) == f"error: {line}"


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["-m", "mask=causal,window", "mask.window=3"],
            "mask.window belongs to mask=window, not to mask=causal, so it cannot be combined with sweeping mask "
            "over options that lack it (-m mask=causal,window): drop mask.window=3, or sweep mask=window on its own",
        ),
        (  # the default option has the setting, a later job's does not: refused before the first job runs
            ["-m", "task=reverse,char_lm", "task.vocab_size=5"],
            "task.vocab_size belongs to task=reverse, not to task=char_lm, so it cannot be combined with sweeping "
            "task over options that lack it (-m task=reverse,char_lm): drop task.vocab_size=5, or sweep "
            "task=reverse on its own",
        ),
        (
            ["-m", "experiment=mask_leak", "mask.window=3"],
            "mask.window belongs to mask=window, not to mask=standard, mask=none, so it cannot be combined with "
            "sweeping mask over options that lack it (experiment=mask_leak sweeps mask=standard,none,window): drop "
            "mask.window=3, or sweep mask=window on its own",
        ),
        (  # every swept option has it, the default (which Hydra composes the sweep with first) does not
            ["-m", "task=classification,translation", "task.lowercase=true"],
            "task.lowercase belongs to every task this sweep runs (task=classification, task=translation), but "
            "Hydra composes a sweep first with task=reverse, which lacks it: write ++task.lowercase=true",
        ),
    ],
)
def test_an_override_must_fit_every_option_a_sweep_runs(args, line, capsys, tmp_path):
    assert error_line("src.run", args, capsys, tmp_path) == f"error: {line}"


@pytest.mark.parametrize(
    "module, args, line",
    [
        (
            "src.run",
            ["model.haeds=2"],
            f"model.haeds is not a setting: did you mean model.heads=2? ({PYTHON} -m src.run --cfg job prints every "
            "setting)",
        ),
        (
            "src.run",
            ["mask=causal", "mask.windw=3"],
            f"mask.windw is not a setting: did you mean mask.window=3 (with mask=window)? ({PYTHON} -m src.run --cfg "
            "job prints every setting)",
        ),
        (
            "src.run",
            ["modle=small"],
            f"modle is not a setting: did you mean model=small? ({PYTHON} -m src.run --cfg job prints every setting)",
        ),
        (
            "src.run",
            ["+model.haeds=2"],
            "model.haeds is not a setting, so nothing would read it: did you mean model.heads, without the +? "
            f"({PYTHON} -m src.run --cfg job prints every setting)",
        ),
        (
            "src.eval",
            ["ckpt=x.ckpt", "batch_sise=3"],
            f"batch_sise is not a setting: did you mean batch_size=3? ({PYTHON} -m src.eval --cfg job prints every "
            "setting)",
        ),
        (
            "src.predict",
            ["ckpt=x.ckpt", "colour=red"],
            f"colour is not a setting: check its spelling ({PYTHON} -m src.predict --cfg job prints every setting)",
        ),
        # an argument of Lightning's Trainer the schema does not list is added with +, not a typo of gradient_clip_val
        (
            "src.run",
            ["trainer.gradient_clip_algorithm=value"],
            "trainer.gradient_clip_algorithm is an argument of Lightning's Trainer that the schema does not list: add "
            "it with +, +trainer.gradient_clip_algorithm=value",
        ),
        # under a node of a few settings: they are named, never the node itself (model.rope_scaling=3 is refused)
        (
            "src.run",
            ["model.pos_encoding=rope", "model.rope_scaling.foo=3"],
            "model.rope_scaling.foo is not a setting: model.rope_scaling has type, factor, low_freq_factor, "
            "high_freq_factor, original_max_len",
        ),
        (
            "src.run",
            ["model.pos_encoding=rope", "model.rope_scaling={type:linear,factor:2,foo:3}"],
            "model.rope_scaling={type:linear,factor:2,foo:3} sets model.rope_scaling.foo, which is not a setting: "
            "model.rope_scaling has type, factor, low_freq_factor, high_freq_factor, original_max_len",
        ),
    ],
)
def test_a_mistyped_key_gets_the_closest_setting(module, args, line, capsys, tmp_path):
    assert error_line(module, args, capsys, tmp_path) == f"error: {line}"


def test_the_closest_setting_is_a_typo_of_the_name_not_another_setting_of_the_same_group():
    paths = ["task.train_src", "task.val_src", "optimizer.lr", "model", "model.heads"]
    assert closest_setting("task.train_size", paths) is None  # train_src is spelt alike, but means another thing
    assert closest_setting("task.train_scr", paths) == "task.train_src"
    assert closest_setting("optimizer.lt", paths) == "optimizer.lr"  # one letter off a short name
    assert closest_setting("modle", paths) == "model"
    assert closest_setting("modl.heads", paths) == "model.heads"


@pytest.mark.parametrize(
    "module, args, line",
    [
        (  # bash refuses the parentheses unquoted: the suggested command quotes them
            "src.run",
            ["seed=choice(0,1)"],
            f"seed=choice(0,1) is a sweep: add -m to run one job per value ({PYTHON} -m src.run -m 'seed=choice(0,1)')",
        ),
        (  # a setting with fixed choices: not the quoted text, which is then refused as not known
            "src.run",
            ["model.arch=auto,decoder_only"],
            "model.arch=auto,decoder_only is several values, which is a sweep: add -m to run one job per value "
            f"({PYTHON} -m src.run -m model.arch=auto,decoder_only), or give one value, one of auto, encoder_decoder, "
            "decoder_only, encoder_only",
        ),
        (  # eval and predict run no sweeps: no -m
            "src.eval",
            ["ckpt=x.ckpt", "decode.strategy=beam,greedy"],
            f"decode.strategy=beam,greedy is several values, but {PYTHON} -m src.eval runs no sweeps: give "
            "decode.strategy one value, one of greedy, beam, sample",
        ),
        (
            "src.predict",
            ["ckpt=x.ckpt", "seed=1,2"],
            f"seed=1,2 is several values, but {PYTHON} -m src.predict runs no sweeps: give seed one value, e.g. seed=1",
        ),
        (
            "src.eval",
            ["ckpt=x.ckpt", "batch_size=range(2)"],
            f"batch_size=range(2) is a sweep, but {PYTHON} -m src.eval runs no sweeps: give batch_size one value",
        ),
        (  # a list where a sweep was meant
            "src.run",
            ["-m", "model.heads=[2,4]"],
            "model.heads=[2,4]: model.heads takes a whole number: a sweep over values is written model.heads=2,4 (a "
            "list [2,4] is one value)",
        ),
        (  # the sweep offered: the whole command line, the list turned into the values
            "src.run",
            ["model.heads=[2,4]", "trainer.max_steps=3"],
            "model.heads=[2,4]: model.heads takes a whole number: give one, e.g. model.heads=4, or sweep over the "
            f"values with -m: {PYTHON} -m src.run -m model.heads=2,4 trainer.max_steps=3",
        ),
        ("src.run", ["meta=foo"], "meta=foo: meta holds your own notes, not one value: write +meta.<name>=foo"),
        (  # eval and predict take the model (task, ...) from the checkpoint
            "src.eval",
            ["ckpt=x.ckpt", "model.heads=4"],
            f"model.heads is not a setting of {PYTHON} -m src.eval, which takes the model from the checkpoint (its "
            f"model settings cannot be changed here): drop model.heads=4, or train a run with it: {PYTHON} -m src.run "
            "model.heads=4",
        ),
        (  # a group's option too: the mask is the checkpoint's (mask.window=2 was told so; mask=causal too now)
            "src.predict",
            ["ckpt=x.ckpt", "mask=causal"],
            f"mask is not a setting of {PYTHON} -m src.predict, which takes the mask from the checkpoint (it cannot be "
            f"changed here): drop mask=causal, or train a run with it: {PYTHON} -m src.run mask=causal",
        ),
        (  # the suggested run composes: mask.window needs mask=window, which src.run would otherwise refuse
            "src.predict",
            ["ckpt=x.ckpt", "mask.window=2"],
            f"mask.window is not a setting of {PYTHON} -m src.predict, which takes the mask from the checkpoint "
            "(its mask settings cannot be changed here): drop mask.window=2, or train a run with it: "
            f"{PYTHON} -m src.run mask=window mask.window=2",
        ),
        (  # a value src.run would refuse too: no command that fails is suggested
            "src.eval",
            ["ckpt=x.ckpt", "seed=x"],
            f"seed is not a setting of {PYTHON} -m src.eval, which takes the seed from the checkpoint (it cannot be "
            f"changed here), and {PYTHON} -m src.run would refuse seed=x too: drop it",
        ),
        (  # composes, and validate_config refuses it
            "src.eval",
            ["ckpt=x.ckpt", "seed=-1"],
            f"seed is not a setting of {PYTHON} -m src.eval, which takes the seed from the checkpoint (it cannot be "
            f"changed here), and {PYTHON} -m src.run would refuse seed=-1 too: drop it",
        ),
        (
            "src.eval",
            ["ckpt=x.ckpt", "seed=3"],
            f"seed is not a setting of {PYTHON} -m src.eval, which takes the seed from the checkpoint (it cannot be "
            f"changed here): drop seed=3, or train a run with it: {PYTHON} -m src.run seed=3",
        ),
        (  # src.eval and src.analyze take accelerator=; src.predict runs on the CPU
            "src.predict",
            ["ckpt=x.ckpt", "text=1", "accelerator=gpu"],
            f"accelerator is not a setting of {PYTHON} -m src.predict, which runs on the CPU (src.eval and "
            "src.analyze take accelerator=): drop accelerator=gpu",
        ),
        (  # their own settings are still typos of theirs
            "src.predict",
            ["ckpt=x.ckpt", "decode.beam_sise=3"],
            f"decode.beam_sise is not a setting: did you mean decode.beam_size=3? ({PYTHON} -m src.predict --cfg job "
            "prints every setting)",
        ),
    ],
)
def test_a_suggested_fix_works_when_followed(module, args, line, capsys, tmp_path):
    assert error_line(module, args, capsys, tmp_path) == f"error: {line}"


def test_a_suggested_command_is_quoted_for_the_shell():
    suggested = as_command("src.run", "-m", "seed=choice(0,1)", "model.heads=2,4")
    assert shlex.split(suggested)[3:] == ["-m", "seed=choice(0,1)", "model.heads=2,4"]
    assert "(" not in suggested.replace("'seed=choice(0,1)'", "")


@pytest.mark.parametrize(
    "module, args, line",
    [
        (
            "src.run",
            ["~seed"],
            f"~seed removes seed, which {PYTHON} -m src.run needs: drop ~seed; set seed=<value> to change it",
        ),
        (
            "src.run",
            ["~task"],
            f"~task removes task, which {PYTHON} -m src.run needs: drop ~task; choose another option with "
            f"task=<option> ({PYTHON} -m src.run --help lists them)",
        ),
        (
            "src.run",
            ["~model.heads"],
            f"~model.heads removes model.heads, which {PYTHON} -m src.run needs: drop ~model.heads; set "
            "model.heads=<value> to change it",
        ),
        (
            "src.eval",
            ["ckpt=x.ckpt", "~ckpt"],
            f"~ckpt removes ckpt, which {PYTHON} -m src.eval needs: drop ~ckpt; set ckpt=<value> to change it",
        ),
    ],
)
def test_removing_a_needed_setting_is_refused(module, args, line, capsys, tmp_path):
    assert error_line(module, args, capsys, tmp_path) == f"error: {line}"


@pytest.mark.parametrize(
    "module, args, line",
    [
        (
            "src.run",
            ["model.heads=four"],
            "model.heads=four: model.heads takes a whole number: give one, e.g. model.heads=4",
        ),
        (
            "src.run",
            ["model.heads=null"],
            "model.heads=null: model.heads takes a value (it cannot be null): give one, e.g. model.heads=4",
        ),
        (
            "src.run",
            ["optimizer.betas=abc"],
            "optimizer.betas=abc: optimizer.betas takes a list: give one, e.g. optimizer.betas=[0.9,0.98]",
        ),
        (
            "src.run",
            ["model.heads.x=3"],
            "model.heads.x=3: model.heads is one value, not a group of settings: set it itself, e.g. model.heads=4",
        ),
        (
            "src.eval",
            ["ckpt=x.ckpt", "decode=beam"],
            "decode=beam: decode holds several settings (decode.strategy, decode.beam_size, decode.length_penalty, "
            "decode.temperature, ...), not one value: set one of them",
        ),
        ("src.run", ["model="], "model= names no option of model: choose one of base, small, tiny"),
    ],
)
def test_a_value_hydra_cannot_take_names_what_the_setting_takes(module, args, line, capsys, tmp_path):
    assert error_line(module, args, capsys, tmp_path) == f"error: {line}"


@pytest.mark.parametrize(
    "args, warnings",
    [
        (["trainer.max_steps=4", "trainer.max_steps=5"], ["trainer.max_steps is given twice (4, then 5): 5 is used"]),
        (
            ["model=tiny", "seed=1", "model=small", "seed=2", "seed=3"],
            [
                "model is given twice (tiny, then small): small is used",
                "seed is given 3 times (1, 2, then 3): 3 is used",
            ],
        ),
        (["model=tiny", "model.heads=2", "seed=1"], []),  # a group and a setting in it are two keys
    ],
)
def test_a_key_given_twice_is_warned_about_before_the_run(args, warnings, capsys):
    """Hydra uses the last value of a key given more than once and drops the others without a word: one warning
    per such key, with the value used. --cfg job prints the config the run would get: the last value is in it."""
    result = run_command("src.run", [*args, "--cfg", "job"], capsys)
    assert result.code == 0, result.err
    assert [line for line in result.err.splitlines() if line.startswith("warning:")] == [
        f"warning: {warning}" for warning in warnings
    ]
    if args[0].startswith("trainer.max_steps"):
        assert "max_steps: 5" in result.out


def test_a_removal_or_a_sweep_given_twice_is_one_of_the_values(capsys):
    line = CommandLine.read("src.run", ["-m", "seed=1", "seed=2,3", "+meta.x=1", "~meta.x"])
    warn_about_keys_given_twice(line)
    assert capsys.readouterr().err.splitlines() == [
        "warning: seed is given twice (1, then 2,3): 2,3 is used",
        "warning: meta.x is given twice (+meta.x=1, then ~meta.x): ~meta.x is used",
    ]


@pytest.mark.parametrize(
    ("module", "args", "line"),
    [
        (
            "src.run",
            ["ckpt=outputs/x"],
            "ckpt is how src.eval, src.predict and src.analyze name a checkpoint; src.run resumes a run with "
            f"ckpt_path=outputs/x (its newest checkpoint), and {PYTHON} -m src.eval ckpt=outputs/x evaluates it",
        ),
        (
            "src.eval",
            ["ckpt_path=outputs/x"],
            "ckpt_path is src.run's (resuming a run); src.eval reads a checkpoint as ckpt=outputs/x",
        ),
    ],
)
def test_a_checkpoint_under_the_other_commands_name_is_answered_with_this_ones(module, args, line, capsys, tmp_path):
    """One language: `ckpt=` in src.eval, src.predict and src.analyze, `ckpt_path=` (resuming) in src.run; the
    name of the other commands is answered with this command's, not with "check its spelling"."""
    assert error_line(module, args, capsys, tmp_path) == f"error: {line}"


@pytest.mark.parametrize("module", ["src.eval", "src.predict", "src.analyze"])
def test_a_path_given_without_ckpt_is_answered_with_ckpt(module, capsys, tmp_path):
    """`python -m src.eval outputs/<date>/<time>`: ckpt= forgotten. Hydra cannot parse the bare word; the line says
    to give it as ckpt=, not to "write overrides as key=value"."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    line = error_line(module, [str(run)], capsys, tmp_path)
    assert line == f"error: {run} is a path given without a setting's name: give it as the checkpoint to read, " + (
        f"{PYTHON} -m {module} ckpt={run}"
    )


def test_a_run_directory_given_bare_to_src_run_is_answered_with_how_to_resume_or_evaluate_it(capsys, tmp_path):
    run = tmp_path / "earlier"
    (run / "checkpoints").mkdir(parents=True)
    line = error_line("src.run", [str(run)], capsys, tmp_path)
    assert f"{PYTHON} -m src.run hydra.run.dir={run} ckpt_path=last" in line
    assert f"{PYTHON} -m src.eval ckpt={run}" in line
    assert not (tmp_path / "run").exists()
    words = error_line("src.eval", ["ckpt=x", "not_a_path"], capsys, tmp_path)
    assert "could not parse not_a_path, which has no =: give it as key=value" in words  # no path, no setting


def test_free_text_split_by_the_shell_is_answered_with_the_text_as_typed(capsys, tmp_path):
    """src.predict text=12 34: free text reaches Hydra quoted (free_text.py); the fix shows the text as typed."""
    assert error_line("src.predict", ["ckpt=x", "text=12", "34"], capsys, tmp_path) == (
        "error: could not parse 34, which has no =: give it as key=value, or, if it is the rest of text=12 (a value "
        """with a space), quote it whole for the shell and for Hydra: 'text="12 34"'"""
    )


@pytest.mark.parametrize("module", COMMANDS)
def test_help_lists_the_groups_and_options_hydra_itself_lists(module, capsys, monkeypatch):
    """--help asks the config loader's repository for each group's options (group_options_without_copies), not
    Hydra's loader method, which copies the config store for each answer: the page is the same, word for word."""
    import contextlib

    from src.cli import command_line

    fast = run_command(module, ["--help"], capsys)
    monkeypatch.setattr(command_line, "group_options_without_copies", contextlib.nullcontext)
    hydras = run_command(module, ["--help"], capsys)
    assert fast.code == hydras.code == 0, fast.err + hydras.err
    assert "task: " in fast.out and fast.out == hydras.out


def test_help_lists_a_studys_configurations_as_options_of_experiment_and_not_its_shared_settings(capsys):
    """experiments/kv_heads/ holds one study's configurations: Hydra's own help lists the folder as a group
    (`experiment/kv_heads: base, gqa2, ...`), which cannot be chosen that way, and base.yaml, which each of them
    builds on, as if it were one. The help lists them as experiment's options, as they are chosen."""
    result = run_command("src.run", ["--help"], capsys)
    groups = result.out.split("Groups", 1)[1].split("Settings", 1)[0]
    experiment = re.search(r"\nexperiment: (.*?)\n(?=\S)", groups, re.S)
    assert experiment is not None, groups
    options = [option.strip() for option in experiment.group(1).split(",")]
    assert {"heads", "kv_heads/mha", "kv_heads/gqa4", "kv_heads/gqa2", "kv_heads/mqa"} <= set(options), options
    assert "kv_heads/base" not in options and "experiment/kv_heads" not in groups, groups


@pytest.mark.parametrize(
    "args, line",
    [
        (  # Hydra's own help seemed to offer this; Hydra then refuses it without saying how to choose one
            ["experiment/kv_heads=mha"],
            "experiment/kv_heads=mha: kv_heads is a folder of experiment's options, each chosen as "
            "experiment=kv_heads/<option>: write experiment=kv_heads/mha (one of kv_heads/gqa2, kv_heads/gqa4, "
            "kv_heads/mha, kv_heads/mqa)",
        ),
        (
            ["+experiment/kv_heads=gqa2"],
            "+experiment/kv_heads=gqa2: kv_heads is a folder of experiment's options, each chosen as "
            "experiment=kv_heads/<option>: write experiment=kv_heads/gqa2 (one of kv_heads/gqa2, kv_heads/gqa4, "
            "kv_heads/mha, kv_heads/mqa)",
        ),
        (  # the folder named as if it were one configuration
            ["experiment=kv_heads"],
            "experiment=kv_heads is a folder of experiment's options, not one: choose one of kv_heads/gqa2, "
            "kv_heads/gqa4, kv_heads/mha, kv_heads/mqa",
        ),
        (  # the folder chosen with no option: no `kv_heads/None` to write
            ["experiment/kv_heads=null"],
            "experiment/kv_heads=null: kv_heads is a folder of experiment's options, each chosen as "
            "experiment=kv_heads/<option>: write experiment=kv_heads/<option> (one of kv_heads/gqa2, kv_heads/gqa4, "
            "kv_heads/mha, kv_heads/mqa)",
        ),
        (  # a mistyped folder: every option of experiment, its folders' included
            ["experiment=kv_head/mha"],
            "experiment=kv_head/mha is not an option of experiment: choose one of depth, head_pruning, heads, "
            "induction_heads, mask_leak, multi30k_de_en, multi30k_small, norm, pos_encoding, shakespeare, "
            "shakespeare_char, kv_heads/gqa2, kv_heads/gqa4, kv_heads/mha, kv_heads/mqa",
        ),
        (  # a mistyped option: every option of experiment, its folders' included
            ["experiment=kv_heads/mhq"],
            "experiment=kv_heads/mhq is not an option of experiment: choose one of depth, head_pruning, heads, "
            "induction_heads, mask_leak, multi30k_de_en, multi30k_small, norm, pos_encoding, shakespeare, "
            "shakespeare_char, kv_heads/gqa2, kv_heads/gqa4, kv_heads/mha, kv_heads/mqa",
        ),
    ],
)
def test_a_studys_folder_of_configurations_is_chosen_as_its_options_are(args, line, capsys, tmp_path):
    assert error_line("src.run", args, capsys, tmp_path) == f"error: {line}"


@pytest.mark.parametrize("spelling", ["kv_heads/base", "kv_heads/base.yaml", "./kv_heads/base", "kv_heads//base"])
def test_a_studys_shared_settings_chosen_alone_are_warned_about_however_spelled(spelling, capsys):
    """experiments/kv_heads/base.yaml is what the study's configurations build on (their defaults list it): run alone,
    it trains a model the study never trains. Legal, and Hydra finds the file under each spelling: one warning."""
    line = CommandLine.read("src.run", [f"experiment={spelling}"])
    refuse_choosing_a_folder_of_options_wrongly(line)
    warnings = [w for w in capsys.readouterr().err.splitlines() if w.startswith("warning:")]
    assert warnings == [
        f"warning: experiment={spelling} holds the settings that kv_heads/gqa2, kv_heads/gqa4, kv_heads/mha, "
        "kv_heads/mqa build on (their defaults list it): it runs alone as it is, which is seldom a configuration of "
        "the study; choose one of them for one"
    ]


def test_the_other_commands_are_not_told_to_choose_an_experiment_and_a_broken_file_breaks_nothing_else(
    capsys, tmp_path, monkeypatch
):
    """src.eval reads its model from a checkpoint and has no experiment to choose: the folder's advice is src.run's.
    A config file Hydra cannot read in a study's folder breaks neither --help nor the choice of another file."""
    assert "write experiment=" not in error_line("src.eval", ["ckpt=x", "experiment/kv_heads=mha"], capsys, tmp_path)
    mine = tmp_path / "mine"
    (mine / "experiment" / "study").mkdir(parents=True)
    (mine / "experiment" / "study" / "broken.yaml").write_text("model: [unclosed\n")
    (mine / "experiment" / "study" / "fine.yaml").write_text("# @package _global_\nmodel:\n  heads: 2\n")
    result = run_command("src.run", ["--config-dir", str(mine), "--help"], capsys)
    assert result.code == 0 and "study/fine" in result.out, result.err
    monkeypatch.setattr(sys, "argv", ["src/run.py", "--config-dir", str(mine), "experiment=study/fine"])
    refuse_choosing_a_folder_of_options_wrongly(CommandLine.read("src.run", sys.argv[1:]))  # no traceback


def test_the_checks_of_a_command_line_see_the_users_own_configs_from_config_dir(capsys, tmp_path, monkeypatch):
    """`--config-dir DIR` adds the user's configs to Hydra's search path: the compositions that check a sweep before
    it starts (every swept option composed) and those that explain a refusal must see them as the command does. A
    sweep over an experiment of the user's own was refused as "not an option of experiment"."""
    mine = tmp_path / "mine"
    (mine / "experiment" / "study").mkdir(parents=True)
    (mine / "experiment" / "own.yaml").write_text("# @package _global_\nmodel:\n  heads: 2\n")
    (mine / "experiment" / "study" / "shared.yaml").write_text("# @package _global_\nmodel:\n  d_model: 32\n")
    (mine / "experiment" / "study" / "wide.yaml").write_text(
        "# @package _global_\ndefaults:\n  - study/shared\n  - _self_\nmodel:\n  heads: 8\n"
    )
    config_dir = ["--config-dir", str(mine)]
    sweep = ["-m", *config_dir, "experiment=own,heads", "trainer.max_steps=1"]
    monkeypatch.setattr(sys, "argv", ["src/run.py", *sweep])
    compose_every_swept_option(CommandLine.read("src.run", sweep))  # raised MissingConfigException for own
    line = error_line("src.run", [*config_dir, "experiment=owm"], capsys, tmp_path)
    assert line.startswith("error: experiment=owm is not an option of experiment: choose one of depth, head_pruning")
    assert ", own," in line and "study/wide" in line and "study/shared" not in line, line
    monkeypatch.setattr(sys, "argv", ["src/run.py", *config_dir, "experiment=study/shared"])
    refuse_choosing_a_folder_of_options_wrongly(CommandLine.read("src.run", sys.argv[1:]))
    assert "warning: experiment=study/shared holds the settings that study/wide build on" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["-m", "--cfg", "job"], ["--cfg", "job", "--run"], ["-m", "--info", "defaults"]])
def test_two_of_hydras_modes_at_once_are_one_line_not_a_traceback(flags, capsys, tmp_path):
    line = error_line("src.run", [*flags, "seed=1"], capsys, tmp_path)
    assert line.startswith("error: ") and "cannot be given together: Hydra does one of them at a time" in line, line


def test_the_sweep_offered_writes_into_the_directory_given_for_the_run():
    """A sweep ignores hydra.run.dir without a word: the directory the user gave the run is the sweep's."""
    line = CommandLine.read("src.run", ["seed=0,1", "hydra.run.dir=my_run", "trainer.max_steps=3"])
    assert line.as_sweep("seed=0,1") == f"{PYTHON} -m src.run -m seed=0,1 hydra.sweep.dir=my_run trainer.max_steps=3"
    both = CommandLine.read("src.run", ["seed=0,1", "hydra.run.dir=a", "hydra.sweep.dir=b"])
    assert both.as_sweep("seed=0,1") == f"{PYTHON} -m src.run -m seed=0,1 hydra.sweep.dir=b"


@pytest.mark.parametrize("args", [["experiment=null"], ["model=null"], ["task=null", "seed=1"]])
def test_null_for_a_config_group_is_one_line_not_a_traceback(args, capsys, tmp_path):
    key = args[0].split("=")[0]
    assert error_line("src.run", args, capsys, tmp_path) == (
        f"error: {key}=null: a config group takes an option's name, not null: leave {key} out to keep its default, "
        f"or choose one ({PYTHON} -m src.run --help lists them)"
    )


def test_a_glob_matching_no_option_is_refused_before_a_sweep_of_no_job(capsys, tmp_path):
    """A glob matches a group's own option names: `glob(kv_heads/*)` matches none (a folder's configurations are
    not among them), and the sweep ran no job, reporting "0 of 0 runs completed" and success."""
    line = error_line("src.run", ["-m", "experiment=glob(kv_heads/*)"], capsys, tmp_path)
    assert line.startswith(
        "error: experiment=glob(kv_heads/*): the glob matches no option of experiment, so the sweep would run no job: "
        "its options are depth, head_pruning, heads,"
    ), line
    assert line.endswith("(a folder's are given by name: experiment=kv_heads/gqa2,kv_heads/gqa4)"), line
    assert error_line("src.run", ["-m", "model=glob(zz*)"], capsys, tmp_path) == (
        "error: model=glob(zz*): the glob matches no option of model, so the sweep would run no job: its options "
        "are base, small, tiny"
    )
