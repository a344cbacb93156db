"""The command-line wrapper every entry point shares (src/cli.py)."""

from __future__ import annotations

import shlex

import pytest

from src.cli import CommandLine, as_command, closest_setting, warn_about_keys_given_twice
from tests.test_bad_inputs import run_command


@pytest.mark.parametrize("module", ["src.run", "src.eval", "src.predict", "src.analyze"])
def test_help_lists_the_users_groups_and_not_the_internal_schemas(module, capsys):
    result = run_command(module, ["--help"], capsys)
    assert result.code == 0, result.err
    assert "== Configuration groups ==" in result.out
    assert "schema/" not in result.out
    assert "ablate: cross, decoder_ffn, none" in result.out
    # a command that reads a checkpoint lists only its own groups (and task, for ckpt=hf:<model>)
    assert "\ntask: " in result.out
    assert ("\nmodel: " in result.out) == (module == "src.run")
    assert "ckpt: ???" in result.out if module != "src.run" else "seed: 0" in result.out


def error_line(module: str, args: list[str], capsys, tmp_path) -> str:
    """The one `error:` line a command answers `args` with (exit status 2, no traceback)."""
    places = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = run_command(module, [*args, *places] if module == "src.run" else args, capsys)
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert result.code == 2 and len(errors) == 1 and "Traceback" not in result.err, result.err
    assert not (tmp_path / "sweep").exists(), "a refused sweep started"
    return errors[0]


@pytest.mark.parametrize(
    "args, line",
    [
        (  # one number: neither a list nor a text would be taken (Hydra refuses model.heads=[2,4])
            ["model.heads=2,4"],
            "model.heads=2,4 is several values, which is a sweep: add -m to run one job per value (python -m src.run "
            "-m model.heads=2,4), or give one value, e.g. model.heads=2",
        ),
        (
            ["optimizer.betas=0.9,0.99"],
            "optimizer.betas=0.9,0.99 is several values, which is a sweep: add -m to run one job per value (python -m "
            "src.run -m optimizer.betas=0.9,0.99); for one value that is a list write optimizer.betas=[0.9,0.99]",
        ),
        (
            ["logger.project=ablations,v2"],
            "logger.project=ablations,v2 is several values, which is a sweep: add -m to run one job per value (python "
            "-m src.run -m logger.project=ablations,v2); for a text with a comma quote it: "
            """'logger.project="ablations,v2"'""",
        ),
        (
            ["optimizer=adamw_cosine,adam_noam"],
            "optimizer=adamw_cosine,adam_noam names several options of optimizer, which is a sweep: add -m to run "
            "one job per option (python -m src.run -m optimizer=adamw_cosine,adam_noam), or choose one",
        ),
        (
            ["seed=range(3)"],
            "seed=range(3) is a sweep: add -m to run one job per value (python -m src.run -m 'seed=range(3)')",
        ),
        (
            ["+model.heads=2"],
            "+model.heads=2 adds model.heads, which is a setting already: drop the +, model.heads=2",
        ),
        (
            ["+model=small"],
            "+model=small adds a second model to the defaults: drop the +, model=small chooses the model",
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
            "task.train_size belongs to task=addition, task=copy, task=reverse, task=sort, not to task=translation: "
            "choose one of task=addition, task=copy, task=reverse, task=sort, or drop task.train_size=64",
        ),
        (
            ["task=translation", "task.train_size=64", "task.val_size=3"],
            "task.train_size belongs to task=addition, task=copy, task=reverse, task=sort, not to task=translation: "
            "choose one of task=addition, task=copy, task=reverse, task=sort, or drop task.train_size=64",
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
            "model.haeds is not a setting: did you mean model.heads=2? (python -m src.run --cfg job prints every "
            "setting)",
        ),
        (
            "src.run",
            ["mask=causal", "mask.windw=3"],
            "mask.windw is not a setting: did you mean mask.window=3 (with mask=window)? (python -m src.run --cfg "
            "job prints every setting)",
        ),
        (
            "src.run",
            ["modle=small"],
            "modle is not a setting: did you mean model=small? (python -m src.run --cfg job prints every setting)",
        ),
        (
            "src.run",
            ["+model.haeds=2"],
            "model.haeds is not a setting, so nothing would read it: did you mean model.heads, without the +? "
            "(python -m src.run --cfg job prints every setting)",
        ),
        (
            "src.eval",
            ["ckpt=x.ckpt", "batch_sise=3"],
            "batch_sise is not a setting: did you mean batch_size=3? (python -m src.eval --cfg job prints every "
            "setting)",
        ),
        (
            "src.predict",
            ["ckpt=x.ckpt", "colour=red"],
            "colour is not a setting: check its spelling (python -m src.predict --cfg job prints every setting)",
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
            "seed=choice(0,1) is a sweep: add -m to run one job per value (python -m src.run -m 'seed=choice(0,1)')",
        ),
        (  # a setting with fixed choices: not the quoted text, which is then refused as not known
            "src.run",
            ["model.arch=auto,decoder_only"],
            "model.arch=auto,decoder_only is several values, which is a sweep: add -m to run one job per value "
            "(python -m src.run -m model.arch=auto,decoder_only), or give one value, one of auto, encoder_decoder, "
            "decoder_only, encoder_only",
        ),
        (  # eval and predict run no sweeps: no -m
            "src.eval",
            ["ckpt=x.ckpt", "decode.strategy=beam,greedy"],
            "decode.strategy=beam,greedy is several values, but python -m src.eval runs no sweeps: give "
            "decode.strategy one value, one of greedy, beam, sample",
        ),
        (
            "src.predict",
            ["ckpt=x.ckpt", "seed=1,2"],
            "seed=1,2 is several values, but python -m src.predict runs no sweeps: give seed one value, e.g. seed=1",
        ),
        (
            "src.eval",
            ["ckpt=x.ckpt", "batch_size=range(2)"],
            "batch_size=range(2) is a sweep, but python -m src.eval runs no sweeps: give batch_size one value",
        ),
        (  # a list where a sweep was meant
            "src.run",
            ["-m", "model.heads=[2,4]"],
            "model.heads=[2,4]: model.heads takes a whole number: a sweep over values is written model.heads=2,4 (a "
            "list [2,4] is one value)",
        ),
        (
            "src.run",
            ["model.heads=[2,4]"],
            "model.heads=[2,4]: model.heads takes a whole number: give one, e.g. model.heads=4, or sweep over the "
            "values with -m: python -m src.run -m model.heads=2,4",
        ),
        ("src.run", ["meta=foo"], "meta=foo: meta holds your own notes, not one value: write +meta.<name>=foo"),
        (  # eval and predict take the model (task, ...) from the checkpoint
            "src.eval",
            ["ckpt=x.ckpt", "model.heads=4"],
            "model.heads is not a setting of python -m src.eval, which takes the model from the checkpoint (its "
            "model settings cannot be changed here): drop model.heads=4, or train a run with it: python -m src.run "
            "model.heads=4",
        ),
        (  # their own settings are still typos of theirs
            "src.predict",
            ["ckpt=x.ckpt", "decode.beam_sise=3"],
            "decode.beam_sise is not a setting: did you mean decode.beam_size=3? (python -m src.predict --cfg job "
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
            "~seed removes seed, which python -m src.run needs: drop ~seed; set seed=<value> to change it",
        ),
        (
            "src.run",
            ["~task"],
            "~task removes task, which python -m src.run needs: drop ~task; choose another option with "
            "task=<option> (python -m src.run --help lists them)",
        ),
        (
            "src.run",
            ["~model.heads"],
            "~model.heads removes model.heads, which python -m src.run needs: drop ~model.heads; set "
            "model.heads=<value> to change it",
        ),
        (
            "src.eval",
            ["ckpt=x.ckpt", "~ckpt"],
            "~ckpt removes ckpt, which python -m src.eval needs: drop ~ckpt; set ckpt=<value> to change it",
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
