"""What the commands (src.run, src.eval, src.predict) share at their boundary with the user: every mistake a user
can make is answered with one line, `error: <what is wrong>: <the fix>`, and exit status 2, never a traceback.

That covers our own checks (ConfigError, DataError) and Hydra's: an unknown key, a value of the wrong type, an
unknown group option or an override Hydra cannot parse. Hydra's own messages for those are several lines and
sometimes lead astray (for `model.head=8` it suggests `+model.head=8`, which adds a key nothing reads), so Hydra is
asked to raise them (HYDRA_FULL_ERROR) and they are rewritten here: the key, what is wrong with it (a setting of
another option of its group, a close typo, a sweep without -m, ...) and what to write instead.

Before Hydra starts, the command line is also checked for what Hydra lets through but the command cannot use
(`~seed` removes a setting the run reads) and for what Hydra would refuse only mid-sweep (an override that one of
the swept options of a group lacks). A key given more than once, which Hydra settles silently by taking the last
value, gets one `warning:` line.

`--help` prints the command's own help (Hydra's help template, conf/hydra/help/<command>.yaml): what it does, its
settings one line each with this command line's values, its groups, and examples, under the name the user typed
(`python -m src.run`, or the console script `transformer-run`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import os
import posixpath
import re
import shlex
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from hydra.core.config_search_path import SearchPathQuery
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf import (
    AnyNode,
    BooleanNode,
    DictConfig,
    EnumNode,
    FloatNode,
    IntegerNode,
    ListConfig,
    OmegaConf,
    StringNode,
)

from src.data import DataError
from src.model import ConfigError
from src.provenance import module_command

# The Hydra configs, by absolute path: the commands then find them however they are started (`python -m`, the
# console scripts, or their entry functions called from Python, as the tests do). In the repository src/conf is a
# link to the top-level conf/; an installed package carries the files themselves (package data, pyproject.toml).
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_run_config(*overrides: str):
    """The config `python -m src.run <overrides>` would get, composed in this process (no subprocess start, no
    run directory): for the tests and the benchmarks."""
    from hydra import compose, initialize_config_dir

    from src.cli.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


# Errors that are the user's to fix: printed as one line, never as a traceback.
USER_ERRORS = (ConfigError, DataError)
EXIT_USER_ERROR = 2


def _print_error(message: str) -> None:
    from src.training.report import print_error  # the run's log gets it too, when there is one

    print_error(message)


@contextmanager
def user_errors_as_one_line(command: str = "src.run"):
    """Turn a ConfigError/DataError, or Hydra's refusal of an override, into `error: ...` on stderr and exit
    status 2. `command` (src.run, src.eval, src.predict) is the one whose command line Hydra refused: its fixes
    name it."""
    try:
        yield
    except USER_ERRORS as error:
        _print_error(str(error))
        sys.exit(EXIT_USER_ERROR)
    except (ConfigCompositionException, OverrideParseException) as error:
        _print_error(hydra_error_line(error, command))
        sys.exit(EXIT_USER_ERROR)


# The commands that share this boundary, and the Hydra config each composes (conf/<name>.yaml).
CONFIG_NAMES = {"src.run": "config", "src.eval": "eval", "src.predict": "predict", "src.analyze": "analyze"}


@dataclass
class CommandLine:
    """A command line as Hydra reads it: the command, its overrides (parsed) and whether it asks for a sweep."""

    command: str
    overrides: list[Override]
    multirun: bool

    @classmethod
    def read(cls, command: str, argv: list[str]) -> CommandLine:
        """Parsed with the argument parser @hydra.main itself uses; no overrides if it cannot be (argparse's own
        complaint is kept off stderr: the user gets one line)."""
        from hydra._internal.utils import get_args_parser

        try:
            with contextlib.redirect_stderr(io.StringIO()):
                args, _ = get_args_parser().parse_known_args(argv)
            return cls(command, OverridesParser.create().parse_overrides(args.overrides), bool(args.multirun))
        except (Exception, SystemExit):
            return cls(command, [], "-m" in argv or "--multirun" in argv)

    @property
    def config_name(self) -> str:
        return CONFIG_NAMES.get(self.command, "config")

    def given(self, key: str) -> Override | None:
        """The last override of `key` (Hydra applies them in order), whatever its prefix (+, ++, ~)."""
        return next((o for o in reversed(self.overrides) if o.key_or_group == key), None)

    def written(self, key: str) -> str:
        """`key` as the user wrote it: `mask.window=3`, `+model.heads=2`, `~seed`."""
        override = self.given(key)
        return override.input_line if override is not None and override.input_line else key

    def value_of(self, key: str) -> str:
        """The value of `key`'s override as written (`3` of `mask.window=3`), or `...`."""
        _, equals, value = self.written(key).partition("=")
        return value if equals else "..."

    def as_sweep(self, swept: str, written: str | None = None) -> str:
        """This command line again with -m, `swept` in place of the override written `written` (of `swept` itself
        when not given): the sweep a refusal offers to paste, with every other setting the user gave kept, and a
        hydra.run.dir given as the sweep's directory (a command line that could not be read: the sweep alone)."""
        words = [o.input_line or "" for o in self.overrides]
        replaced = [swept if word == (written or swept) else word for word in words]
        # a sweep writes into hydra.sweep.dir and ignores hydra.run.dir without a word: the directory given moves
        has_sweep_dir = any(word.startswith("hydra.sweep.dir=") for word in replaced)
        replaced = [
            "hydra.sweep.dir=" + word.partition("=")[2] if word.startswith("hydra.run.dir=") else word
            for word in replaced
            if not (has_sweep_dir and word.startswith("hydra.run.dir="))
        ]
        return as_command(self.command, "-m", *(replaced if swept in replaced else [swept]))

    def without(self, *keys: str) -> list[str]:
        """Every override but those of `keys` and the sweeps, as text: what a sweep's first composition gets
        (Hydra composes a sweep once with the sweeps left out, before any job)."""
        return [o.input_line or "" for o in self.overrides if o.key_or_group not in keys and not o.is_sweep_override()]


@contextmanager
def fresh_hydra():
    """Hydra set up anew on our configs, to compose what the user's command line would have given with this or
    that change; yields its config loader (for a group's options). The failed command's Hydra is dropped first."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        if (extra := config_dir_given()) is not None:  # as Hydra's main adds it (hydra/_internal/utils.py)
            search_path = loader.get_search_path()
            search_path.prepend("command-line", f"file://{extra}", anchor=SearchPathQuery(provider="schema"))
            loader.repository.initialize_sources(search_path)
        yield loader


def a_config_folder(*parts: str) -> bool:
    """Whether `parts` (a group, a folder of it) name a folder of configs: ours, or the user's --config-dir's."""
    return any(Path(root, *parts).is_dir() for root in (CONF_DIR, config_dir_given()) if root)


def config_dir_given() -> str | None:
    """The folder of the user's own configs that this command line adds to Hydra's search path (`--config-dir DIR`,
    `-cd DIR`), absolute, where it is a folder (Hydra refuses it otherwise): the compositions made to check or
    explain the command line must see the configs the command will see."""
    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args, _ = get_args_parser().parse_known_args(sys.argv[1:])
    except SystemExit:
        return None
    folder = os.path.abspath(args.config_dir) if args.config_dir else None
    return folder if folder and os.path.isdir(folder) else None


def compose_or_none(config_name: str, overrides: list[str]) -> DictConfig | None:
    """The composed config, Hydra's own settings included (`hydra.runtime.choices`: group -> option), or None
    where these overrides do not compose either. Call inside `fresh_hydra()`."""
    from hydra import compose

    try:
        return compose(config_name, overrides=overrides, return_hydra_config=True)
    except Exception:
        return None


def setting_paths(cfg: DictConfig | None, prefix: str = "") -> list[str]:
    """Every key of a config, nodes and leaves, as dotted paths: model, model.heads, ..."""
    if cfg is None:
        return []
    paths = []
    for key in cfg:
        path = f"{prefix}{key}"
        paths.append(path)
        node = cfg._get_node(key)
        if isinstance(node, DictConfig):
            paths += setting_paths(node, f"{path}.")
    return paths


def hydra_error_line(error: HydraException, command: str = "src.run", argv: list[str] | None = None) -> str:
    """One line with the fix for Hydra's composition and parsing errors of `command`'s command line (`argv`,
    by default the one this process was started with): the key, what is wrong with it, and what to write."""
    line = CommandLine.read(command, sys.argv[1:] if argv is None else argv)
    text, cause = str(error), str(error.__cause__ or "")
    if isinstance(error, MissingConfigException):
        return missing_option_line(text, command)
    if isinstance(error, OverrideParseException):
        if bare := bare_path_line(sys.argv[1:] if argv is None else argv, command):
            return bare
        if unparsed := unparsed_word_line(sys.argv[1:] if argv is None else argv):
            return unparsed
        return (
            f"could not parse the command line ({text.splitlines()[0]}): write overrides as key=value, and quote a "
            """value with spaces or non-ASCII letters for Hydra inside the shell's quotes: 'text="ein Hund läuft"'"""
        )
    if match := re.match(r"Ambiguous value for argument '(.+)'", text):
        return several_values_line(match.group(1), line)
    if match := re.match(r"Sweep parameters '(.+)' requires --multirun", text):
        written = match.group(1)
        if command != "src.run":
            key = written.split("=")[0].lstrip("+~")
            return f"{written} is a sweep, but {typed_command(command)} runs no sweeps: give {key} one value"
        return f"{written} is a sweep: add -m to run one job per value ({line.as_sweep(written)})"
    if match := re.match(r"Sweeping over Hydra's configuration is not supported : '(.+)'", text):
        return f"{match.group(1)} sweeps a setting of Hydra's own, which Hydra cannot do: give it one value"
    if match := re.match(r"Could not append to config\. An item is already at '(.+)'", text):
        key = match.group(1)
        return f"{line.written(key)} adds {key}, which is a setting already: drop the +, {key}={line.value_of(key)}"
    if match := re.match(r"Could not delete from config\. '(.+)' does not exist", text):
        return unknown_key_line(match.group(1), line)
    if match := re.match(r"(\S+) appears more than once in the final defaults list|Multiple values for (\S+)\.", text):
        group = match.group(1) or match.group(2)  # +model=tiny (the default's option) or +model=small
        return (
            f"{line.written(group)} adds a second {group} to the defaults: drop the +, "
            f"{group}={line.value_of(group)} chooses the {group}"
        )
    override = re.search(r"(?:Could not override|Error merging override) '?([^'\s]+)'?", text)
    if override is None:
        return f"{text.splitlines()[0]}: check the command line against {typed_command(command)} --help"
    key = override.group(1).split("=")[0].lstrip("+~")
    inner = re.search(r"full_key: (\S+)", cause)
    if ("not in" in cause or "not in struct" in cause) and inner and inner.group(1).startswith(f"{key}."):
        return unknown_inner_key_line(key, inner.group(1), line)  # model.rope_scaling={type:linear,foo:3}
    if "not in" in cause or "not in struct" in cause:
        return unknown_key_line(key, line)
    if "does not support deletion" in cause:
        return removes_a_needed_setting_line(line.written(key), key, command)
    return wrong_value_line(key, cause, line)


def bare_path_line(argv: list[str], command: str) -> str | None:
    """`python -m src.eval outputs/<date>/<time>`: an existing file or folder typed without the setting it is for,
    which Hydra cannot parse as an override. src.eval, src.predict and src.analyze read it as ckpt=<it>; src.run
    resumes a run directory in place. None where no word of the command line is such a path."""
    from src.provenance import shell_override
    from src.training.checkpoint import is_run_dir

    for word in argv:
        if "=" in word or word.startswith(("-", "+", "~")) or not Path(word).expanduser().exists():
            continue
        if command in ("src.eval", "src.predict", "src.analyze"):
            return (
                f"{word} is a path given without a setting's name: give it as the checkpoint to read, "
                f"{typed_command(command)} {shell_override('ckpt', word)}"
            )
        if command == "src.run" and Path(word).expanduser().is_dir() and is_run_dir(Path(word).expanduser()):
            return (
                f"{word} is a run directory given without a setting's name: resume it with "
                f"{typed_command(command)} {shell_override('hydra.run.dir', word)} ckpt_path=last (and a larger "
                "trainer.max_steps if it has finished), or evaluate it with "
                f"{module_command('src.eval', shell_override('ckpt', word))}"
            )
        return (
            f"{word} is a path given without a setting's name: give it as the setting that reads it, "
            f"<setting>={word} ({typed_command(command)} --help lists them)"
        )
    return None


BRACKETS = {"[": "]", "{": "}", "(": ")"}


def unparsed_word_line(argv: list[str]) -> str | None:
    """The words of a command line Hydra cannot parse, as a hurried user types them, with the override meant:
    `model.heads 8` or `task.train_size` (a setting without its =), `text=12 34` (a value with a space, split by
    the shell into two words), `ablate.heads=[cross:0:1` (a list not closed). None when no word is one of these
    (Hydra's own message, with the general fix, is then the line)."""
    for index, word in enumerate(argv):
        if word.startswith("-"):
            continue
        key, equals, value = word.partition("=")
        if not equals:
            name, _, rest = word.partition(" ")
            before = argv[index - 1] if index else ""
            dotted = re.fullmatch(r"[+~]?[A-Za-z_]\w*(\.\w+)+", name)  # model.heads: a setting's path
            # a bare word (ckpt) is a setting too, unless it follows a value the shell may have split (ckpt=a b)
            if dotted or (re.fullmatch(r"[+~]?[A-Za-z_]\w*", name) and "=" not in before):
                following = argv[index + 1] if index + 1 < len(argv) and "=" not in argv[index + 1] else ""
                given = rest or following
                typed = f"{name} {given}" if given else name
                return f"could not parse {typed}: a setting takes its value after =, write {name}={given or '<value>'}"
            if "=" in before and not before.startswith("-"):  # the shell split a value at its space
                set_key, _, set_value = before.partition("=")
                set_value = set_value.strip("'\"")  # as typed (free text arrives quoted for Hydra: free_text.py)
                return (
                    f"could not parse {word}, which has no =: give it as key=value, or, if it is the rest of "
                    f"{set_key}={set_value} (a value with a space), quote it whole for the shell and for Hydra: "
                    f"'{set_key}=\"{set_value} {word}\"'"
                )
            continue
        opened = value[:1]
        if opened in BRACKETS and not value.rstrip().endswith(BRACKETS[opened]):
            closed = value.rstrip().rstrip(",") + BRACKETS[opened]
            return (
                f"could not parse {word}: it opens a {'list' if opened == '[' else 'value'} with {opened} and does "
                f"not close it: write '{key}={closed}'"
            )
    return None


def missing_option_line(text: str, command: str) -> str:
    """`model=huge`, `model=`: not an option of the group; the options are in Hydra's message."""
    option = re.search(r"Could not find '([^']+)/([^']*)'", text)
    if option is None:
        return f"{text.splitlines()[0]}: check the command line against {typed_command(command)} --help"
    group, name = option.groups()
    top, _, folder = group.partition("/")
    if folder and a_config_folder(top):  # experiment=kv_heads/mhq (or kv_head/mha): an option of experiment
        group, name = top, f"{folder}/{name}"
    choices = re.search(r"Available options in '[^']+':\n((?:\t.*\n?)+)", text)
    options = [c.strip() for c in choices.group(1).splitlines() if c.strip()] if choices else []
    if options and a_config_folder(group):  # a group of ours: its folders' options too
        with fresh_hydra() as loader:
            folders = folder_options(group, loader)
        if name in folders:
            return f"{group}={name} is a folder of {group}'s options, not one: choose one of {', '.join(folders[name])}"
        options += [option for chosen in folders.values() for option in chosen]
    listed = ", ".join(options)
    fix = f"choose one of {listed}" if listed else f"see {typed_command(command)} --help for the {group} options"
    if not name:
        return f"{group}= names no option of {group}: {fix}"
    return f"{group}={name} is not an option of {group}: {fix}"


def folder_options(group: str, loader) -> dict[str, list[str]]:
    """The options a group keeps in folders of its own, by folder: a study of several configurations
    (experiments/kv_heads/mha.yaml, ...) is chosen as `experiment=kv_heads/mha`. Hydra's --help lists such a folder
    as a group of its own (`experiment/kv_heads: ...`), which cannot be chosen that way, and its refusal of an
    unknown option lists the group's own options only. Left out: a folder's shared settings (shared_settings)."""
    found = {}
    for folder in loader.get_group_options(group, ObjectType.GROUP):
        options = loader.get_group_options(f"{group}/{folder}")
        shared = shared_settings(group, folder, options, loader)
        if chosen := [f"{folder}/{option}" for option in options if option not in shared]:
            found[folder] = chosen
    return found


def shared_settings(group: str, folder: str, options: list[str], loader) -> set[str]:
    """The options of a group's folder that others of it build on, listing them in their defaults (`- kv_heads/base`
    in experiments/kv_heads/mha.yaml): the settings a study's configurations share, seldom a configuration to run
    alone (choosing one alone is warned about: refuse_choosing_a_folder_of_options_wrongly)."""
    shared = set()
    for option in options:
        try:
            loaded = loader.repository.load_config(f"{group}/{folder}/{option}")
        except Exception:  # a file Hydra cannot read: its refusal comes where it is chosen, not here
            continue
        for default in (loaded.defaults_list if loaded is not None else None) or []:
            path = str(getattr(default, "path", "") or "")  # `- kv_heads/base` (a config, not a group's choice)
            name = path.rpartition("/")[2]
            if name in options and name != option and path.lstrip("/").endswith(f"{folder}/{name}"):
                shared.add(name)
    return shared


def command_groups(command: str) -> tuple[str, ...] | None:
    """The config groups a command's user chooses from: every one for src.run (None), the task and the ablation for
    the commands that read a checkpoint (its model and experiment are the checkpoint's)."""
    return None if command == "src.run" else ("ablate", "task")


def refuse_choosing_a_folder_of_options_wrongly(line: CommandLine) -> None:
    """A study's configurations kept in a folder of a group (experiments/kv_heads/), chosen as Hydra's --help seems
    to say (`experiment/kv_heads=mha`, which Hydra then refuses without saying how): one line with the choices. Its
    shared settings chosen alone (`experiment=kv_heads/base`, which runs a model the study never trains) are legal
    but surprising: one warning line naming the configurations built on them. Only a group of the command's own,
    in a config folder, is asked about (a look at the file system: most command lines pay nothing)."""
    own = command_groups(line.command)
    for override in line.overrides:
        group, _, folder = override.key_or_group.partition("/")
        if group.startswith("hydra") or (own is not None and group not in own):
            continue  # another command's group: its own refusal says so
        values = sweep_values(override) if override.is_sweep_override() else [str(override.value())]
        if folder and a_config_folder(group, folder):
            with fresh_hydra() as loader:
                chosen = folder_options(group, loader).get(folder, [])
            if not chosen:  # a folder of no configs (experiments/assets: pictures): Hydra's own answer
                continue
            typed = values[0] if values and values[0] not in ("", "None", "null") else "<option>"
            written = override.input_line or override.key_or_group
            raise ConfigError(
                f"{written}: {folder} is a folder of {group}'s options, each chosen as {group}={folder}/<option>: "
                f"write {group}={folder}/{typed} (one of {', '.join(chosen)})"
            )
        if folder or not any("/" in value for value in values) or not a_config_folder(group):
            continue
        for value in values:
            # as Hydra finds the file: kv_heads/base.yaml, ./kv_heads/base and kv_heads//base are kv_heads/base
            part, _, option = posixpath.normpath(value.strip("/")).removesuffix(".yaml").partition("/")
            if not option or not a_config_folder(group, part):
                continue
            with fresh_hydra() as loader:
                options = loader.get_group_options(f"{group}/{part}")
                shared = shared_settings(group, part, options, loader)
            if option in shared:
                others = ", ".join(f"{part}/{name}" for name in options if name not in shared)
                from src.training.report import print_warning

                print_warning(
                    f"{group}={value} holds the settings that {others} build on (their defaults list it): it runs "
                    "alone as it is, which is seldom a configuration of the study; choose one of them for one"
                )


def refuse_a_null_group_choice(line: CommandLine) -> None:
    """`experiment=null`, `model=null`: Hydra takes no null for a config group and raises a ValueError (a
    traceback) for it. One line instead: leaving the group out keeps its default (none, for experiment)."""
    for override in line.overrides:
        key = override.key_or_group
        if override.is_delete() or override.is_sweep_override() or "." in key or not a_config_folder(key):
            continue
        if override.value() is None:
            raise ConfigError(
                f"{override.input_line or key}: a config group takes an option's name, not null: leave {key} out to "
                f"keep its default, or choose one ({typed_command(line.command)} --help lists them)"
            )


def several_values_line(written: str, line: CommandLine) -> str:
    """`model.heads=2,4` without -m: Hydra cannot tell a sweep from a list or a text with a comma. Besides the
    sweep (src.run only: eval and predict run no sweeps), the one-value spelling is offered only where the setting
    takes it (Hydra refuses `model.heads=[2,4]`): the list form for a list, the quoted text for a text, one value
    for a number or a choice (its choices where they are known); both forms where what the setting holds is not
    known. A setting of another option of its group (`task.path=a,b` with task=reverse) is told so first."""
    key, _, values = written.partition("=")
    key = key.lstrip("+~")
    with fresh_hydra() as loader:
        is_group = bool(loader.get_group_options(key))
        cfg = None if is_group else compose_or_none(line.config_name, line.without(key))
        holds = setting_holds(cfg, key)
    if cfg is not None and holds is None and not written.startswith("+") and key not in setting_paths(cfg):
        elsewhere = unknown_key_line(key, line)
        if elsewhere.startswith((f"{key} belongs to ", f"{key} is not a setting of {typed_command(line.command)}")):
            return elsewhere  # another option's setting, or training's (eval, predict): say so first
    choices = known_choices(key)
    first = f"{key}={values.split(',')[0]}"
    if line.command != "src.run":  # no sweeps: one value
        several = f"{written} is several values, but {typed_command(line.command)} runs no sweeps"
        if is_group:
            return (
                f"{written} names several options of {key}, but {typed_command(line.command)} runs no sweeps: "
                "choose one"
            )
        if choices:
            return f"{several}: give {key} one value, one of {', '.join(choices)}"
        if holds == "value":
            return f"{several}: give {key} one value, e.g. {first}"
    else:
        sweep = f"add -m to run one job per {'option' if is_group else 'value'} ({line.as_sweep(written)})"
        if is_group:
            return f"{written} names several options of {key}, which is a sweep: {sweep}, or choose one"
        several = f"{written} is several values, which is a sweep: {sweep}"
        if choices:
            return f"{several}, or give one value, one of {', '.join(choices)}"
        if holds == "value":
            return f"{several}, or give one value, e.g. {first}"
    as_list, as_text = f"{key}=[{values}]", f"""'{key}="{values}"'"""
    if holds == "list":
        return f"{several}; for one value that is a list write {as_list}"
    if holds == "text":
        return f"{several}; for a text with a comma quote it: {as_text}"
    return f"{several}; for one value that is a list write {as_list}, for a text with a comma quote it: {as_text}"


def known_choices(key: str) -> tuple[str, ...]:
    """The values a text setting takes, where they are a fixed set (decode.strategy: greedy, beam, sample)."""
    from src.cli.validation import ARCH_CHOICES, DECODE_STRATEGIES

    return {"decode.strategy": DECODE_STRATEGIES, "model.arch": ARCH_CHOICES}.get(key, ())


def as_command(command: str, *args: str) -> str:
    """`command` as the user started it (typed_command) with `args`, to paste into a shell: each argument quoted
    where the shell would read it otherwise (`'seed=choice(0,1)'`; bash refuses the parentheses unquoted)."""
    return " ".join([typed_command(command), *(shlex.quote(arg) for arg in args)])


def setting_holds(cfg: DictConfig | None, key: str) -> str | None:
    """What the setting `key` of a composed config holds: "list", "text", or "value" (a number, true or false, a
    choice); None where that is not known (the config did not compose, no such setting, a setting of any type
    that is unset)."""
    if cfg is None:
        return None
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if not isinstance(parent, DictConfig) or name not in parent:
        return None
    node = parent._get_node(name)
    if isinstance(node, ListConfig):
        return "list"
    if isinstance(node, StringNode):
        return "text"
    if isinstance(node, IntegerNode | FloatNode | BooleanNode | EnumNode):
        return "value"
    if isinstance(node, AnyNode):  # no declared type: what it holds now
        try:
            value = parent[name]
        except Exception:  # an interpolation that does not resolve here
            return None
        if isinstance(value, ListConfig | str):
            return "list" if isinstance(value, ListConfig) else "text"
        return None if value is None else "value"
    return None


def settings_of_group(key: str, loader) -> str | None:
    """The dotted prefix of the config group `key` lies in, as the config loader knows the groups (`task.` for
    task.tokenizer, `hydra.launcher.` for hydra.launcher.n_jobs), or None."""
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        if loader.get_group_options("/".join(parts[:end])):
            return ".".join(parts[:end]) + "."
    return None


def where_settings_are(key: str, line: CommandLine, loader) -> tuple[DictConfig | None, str | None, dict]:
    """What the command line composes to without `key` (None where that cannot be known), the group `key` lies
    in, and the keys of each option of that group (mask=window: mask.type, mask.window, ...), by option.

    The other settings of that group are left out of both: another of them may be as stray as `key` (`task=
    translation task.tokenizer=word task.train_size=64`), and whose setting `key` is does not depend on them. If
    the rest of the command line does not compose either, the group choices it makes alone are used."""
    prefix = settings_of_group(key, loader)
    kept = [
        o
        for o in line.overrides
        if o.key_or_group != key and not o.is_sweep_override() and not (prefix and o.key_or_group.startswith(prefix))
    ]
    cfg = compose_or_none(line.config_name, [o.input_line or "" for o in kept])
    if cfg is None:  # another mistake on the line: the group choices alone
        kept = [o for o in kept if not o.is_delete() and loader.get_group_options(o.key_or_group)]
        cfg = compose_or_none(line.config_name, [o.input_line or "" for o in kept])
    if cfg is None:
        return None, None, {}
    group = group_of(key, cfg.hydra.runtime.choices)
    keys_by_option = {}
    if group is not None:
        rest = [o.input_line or "" for o in kept if o.key_or_group != group]
        for option in loader.get_group_options(group):
            keys_by_option[option] = setting_paths(compose_or_none(line.config_name, [*rest, f"{group}={option}"]))
    return cfg, group, keys_by_option


def checkpoint_named_as_elsewhere_line(key: str, line: CommandLine) -> str | None:
    """`src.run ckpt=<run>` or `src.eval ckpt_path=<run>`: a checkpoint given under the other commands' name.
    src.run resumes from a checkpoint (ckpt_path, its newest); src.eval, src.predict and src.analyze read a trained
    model (ckpt, its best)."""
    value = line.value_of(key)
    if line.command == "src.run" and key == "ckpt":
        return (
            f"ckpt is how src.eval, src.predict and src.analyze name a checkpoint; src.run resumes a run with "
            f"ckpt_path={value} (its newest checkpoint), and {module_command('src.eval', f'ckpt={value}')} "
            "evaluates it"
        )
    if line.command in ("src.eval", "src.predict", "src.analyze") and key == "ckpt_path":
        return f"ckpt_path is src.run's (resuming a run); {line.command} reads a checkpoint as ckpt={value}"
    return None


def pretrained_mask_words(group: str | None, cfg: DictConfig) -> str | None:
    """Beside model.pretrained, a mask setting typed alone (`mask.window=3` for Mistral, whose own mask is a window)
    meets the mask the command line composes (the default, standard), not the model's own: say the model's own mask
    and that it only stands where no mask is given. None for other groups, and without a readable pretrained model."""
    name = cfg.model.get("pretrained") if "model" in cfg else None
    if group != "mask" or not name:
        return None
    from src.pretrained import pretrained_config
    from src.pretrained.run_config import as_overrides

    try:
        own = pretrained_config(str(name))[0].mask
    except USER_ERRORS:  # said on its own once the line composes
        return None
    return f"model.pretrained={name} attends with {as_overrides(own)} where no mask is given"


# Settings a command does not take that others do, and why, for the line that refuses them.
NOT_TAKEN_BY = {
    ("src.predict", "accelerator"): "which runs on the CPU (src.eval and src.analyze take accelerator=)",
}


def unknown_key_line(key: str, line: CommandLine) -> str:
    """`mask.window=3` with mask=causal, `model.haeds=2`, `hydra.launcher.n_jobs=2` with the basic launcher: the
    key is not in the config the command line composes. Say whose setting it is (another option of its group:
    choose that option; in a sweep, every swept option must have it), or the setting it is closest to."""
    if elsewhere := checkpoint_named_as_elsewhere_line(key, line):
        return elsewhere
    written = line.written(key)
    with fresh_hydra() as loader:
        cfg, group, keys_by_option = where_settings_are(key, line, loader)
        if cfg is None:  # not even the group choices compose: say what is known
            return not_a_setting_line(key, line.command)
        choices = cfg.hydra.runtime.choices
        having = [option for option, keys in keys_by_option.items() if key in keys]
        swept, sweep_source = swept_options(group, line, cfg) if group is not None else ([], "")
    if group is not None and having:
        owners = ", ".join(f"{group}={option}" for option in having)
        if swept:
            lacking = [option for option in swept if option not in having]
            fitting = [option for option in swept if option in having]
            if not lacking:  # every job could take it; the first composition, with the default, cannot
                return (
                    f"{key} belongs to every {group} this sweep runs ({', '.join(f'{group}={o}' for o in fitting)}),"
                    f" but Hydra composes a sweep first with {group}={choices[group]}, which lacks it: write "
                    f"++{key}={line.value_of(key)}"
                )
            also = f", or sweep {group}={','.join(fitting)} on its own" if fitting else ""
            named = ", ".join(f"{group}={option}" for option in fitting) if fitting else owners  # the swept ones
            return (
                f"{key} belongs to {named}, not to {', '.join(f'{group}={o}' for o in lacking)}, so it cannot be "
                f"combined with sweeping {group} over options that lack it ({sweep_source}): drop {written}{also}"
            )
        choose = f"choose {owners}" if len(having) == 1 else f"choose one of {owners}"
        if own := pretrained_mask_words(group, cfg):
            return (
                f"{key} belongs to {owners}, not to {group}={choices[group]}, the mask the command line composes "
                f"({own}): write {group}={having[0]} {written}, or drop {written}"
            )
        return f"{key} belongs to {owners}, not to {group}={choices[group]}: {choose}, or drop {written}"
    if training_line := a_training_setting_line(key, line, cfg):
        return training_line
    if why := NOT_TAKEN_BY.get((line.command, key)):
        return f"{key} is not a setting of {typed_command(line.command)}, {why}: drop {line.written(key)}"
    if trainer_line := a_trainer_argument_line(key, line):
        return trainer_line
    # No option has it: the setting it is closest to, in this config or in another option of its group. Not the
    # node it was typed under (model.rope_scaling for model.rope_scaling.foo): that holds settings, not a value.
    ancestors = {key.rsplit(".", n)[0] for n in range(1, key.count(".") + 1)}
    ours = [path for path in setting_paths(cfg) if key.startswith("hydra.") or not path.startswith("hydra")]
    theirs = {path: option for option, keys in keys_by_option.items() for path in keys if path not in ours}
    close = closest_setting(key, [path for path in [*ours, *theirs] if path not in ancestors])
    if close is not None:
        suggestion = f"{close}={line.value_of(key)}" if "=" in written else close
        owner = f" (with {group}={theirs[close]})" if close in theirs else ""
        see = f"{typed_command(line.command)} --cfg job prints every setting"
        return f"{key} is not a setting: did you mean {suggestion}{owner}? ({see})"
    parent = key.rpartition(".")[0]
    settings = settings_of_node(cfg, parent)
    if 0 < len(settings) <= 8:  # a small node's settings fit the line (model.rope_scaling's); model's 37 do not
        return f"{key} is not a setting: {parent} has {', '.join(settings)}"
    return not_a_setting_line(key, line.command)


def a_trainer_argument_line(key: str, line: CommandLine) -> str | None:
    """`trainer.gradient_clip_algorithm=value`: an argument of Lightning's Trainer that the schema does not list,
    which the command line adds with + (and src.cli.validation checks); None for any other key."""
    from src.cli.trainer_checks import trainer_arguments

    parent, _, name = key.rpartition(".")
    if parent != "trainer" or line.command != "src.run" or name not in trainer_arguments():
        return None
    value = line.value_of(key)
    return f"{key} is an argument of Lightning's Trainer that the schema does not list: add it with +, +{key}={value}"


def settings_of_node(cfg: DictConfig | None, path: str) -> list[str]:
    """The names of the settings a node of the config holds (model.rope_scaling: type, factor, ...); none when `path`
    is not a node of it."""
    node = OmegaConf.select(cfg, path, default=None) if cfg is not None and path else None
    return [str(name) for name in node] if isinstance(node, DictConfig) else []


def unknown_inner_key_line(key: str, inner: str, line: CommandLine) -> str:
    """`model.rope_scaling={type:linear,foo:3}`: a node's settings given as one value, one of which the node lacks."""
    with fresh_hydra() as loader:
        cfg, _, _ = where_settings_are(key, line, loader)
    settings = settings_of_node(cfg, key)
    has = f": {key} has {', '.join(settings)}" if settings else ""
    return f"{line.written(key)} sets {inner}, which is not a setting{has}"


def closest_setting(key: str, paths: list[str]) -> str | None:
    """The setting `key` is a likely typo of: a setting beside it whose name is spelt alike (a close match, or one
    letter off: optimizer.lt for optimizer.lr), else a close match anywhere (modl.heads for model.heads). Names
    are compared without their shared parent, which would make task.train_size look like task.train_src, a setting
    of another meaning."""
    parent, _, name = key.rpartition(".")
    beside = {path.rpartition(".")[2]: path for path in paths if path.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(name, list(beside), n=1, cutoff=0.75)
    if not close:
        close = [other for other in beside if one_letter_off(name, other)][:1]
    if close:
        return beside[close[0]]
    elsewhere = [path for path in paths if path.rpartition(".")[0] != parent]
    close = difflib.get_close_matches(key, elsewhere, n=1, cutoff=0.75)
    return close[0] if close else None


def one_letter_off(a: str, b: str) -> bool:
    """One letter changed, added, dropped, or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        differ = [i for i in range(len(a)) if a[i] != b[i]]
        return len(differ) == 1 or (
            len(differ) == 2
            and differ[1] == differ[0] + 1
            and a[differ[0]] == b[differ[1]]
            and a[differ[1]] == b[differ[0]]
        )
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def a_training_setting_line(key: str, line: CommandLine, cfg: DictConfig) -> str | None:
    """`python -m src.eval ckpt=... model.heads=4`: a setting of training (model, task, ...) that eval and predict
    (their config: `cfg`) do not have, but take from the checkpoint; None for any other key or command."""
    from src.cli.schema import Config

    top = key.split(".")[0]
    if line.command == "src.run" or top in cfg or top not in {field.name for field in dataclasses.fields(Config)}:
        return None
    what = f"its {top} settings" if "." in key else "it"
    given = f"{key}={line.value_of(key)}" if "=" in line.written(key) else None
    option = run_option_with(key)  # mask.window=2: src.run takes it with mask=window
    chosen = [f"{top}={option}"] if option is not None else []
    if given is not None and not run_would_take([*chosen, given]):
        # src.run would refuse it too (seed=x): the line names no command that fails
        return (
            f"{key} is not a setting of {typed_command(line.command)}, which takes the {top} from the checkpoint "
            f"({what} cannot be changed here), and {module_command('src.run')} would refuse {line.written(key)} too: "
            "drop it"
        )
    retrain = " ".join([*chosen, shlex.quote(given) if given is not None else f"{key}=..."])
    return (
        f"{key} is not a setting of {typed_command(line.command)}, which takes the {top} from the checkpoint "
        f"({what} cannot be changed here): drop {line.written(key)}, or train a run with it: "
        f"{module_command('src.run', retrain)}"
    )


def run_would_take(overrides: list[str]) -> bool:
    """Whether `python -m src.run <overrides>` composes and passes validate_config (with the default run's other
    settings): what a line may suggest typing."""
    from src.cli.validation import validate_config

    with fresh_hydra():
        cfg = compose_or_none(CONFIG_NAMES["src.run"], overrides)
    if cfg is None:
        return False
    try:
        run_settings = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        validate_config(run_settings, overrides=overrides, runs_here=False)
    except USER_ERRORS:
        return False
    return True


def run_option_with(key: str) -> str | None:
    """The option of src.run's config group that has the setting `key` where the default option lacks it (window
    for mask.window); None for a key of no group, or one the default option has."""
    group = key.split(".")[0]
    if "." not in key or not a_config_folder(group):
        return None
    with fresh_hydra() as loader:
        default = compose_or_none(CONFIG_NAMES["src.run"], [])
        if default is None or key in setting_paths(default):
            return None
        for option in loader.get_group_options(group):
            if key in setting_paths(compose_or_none(CONFIG_NAMES["src.run"], [f"{group}={option}"])):
                return option
    return None


def removes_a_needed_setting_line(written: str, key: str, command: str) -> str:
    """`~seed`, `~model.heads`: the command reads every setting of its schema."""
    if (Path(CONF_DIR) / key).is_dir():  # a config group: model, task, mask, ...
        fix = f"drop {written}; choose another option with {key}=<option> ({typed_command(command)} --help lists them)"
    else:
        fix = f"drop {written}; set {key}=<value> to change it"
    return f"{written} removes {key}, which {typed_command(command)} needs: {fix}"


def not_a_setting_line(key: str, command: str) -> str:
    notes = "; keep your own notes under +meta.<name>" if command == "src.run" else ""
    every = f"{typed_command(command)} --cfg job prints every setting{notes}"
    return f"{key} is not a setting: check its spelling ({every})"


def group_of(key: str, choices: DictConfig) -> str | None:
    """The config group a key lies in: mask for mask.window, hydra/launcher for hydra.launcher.n_jobs."""
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        if "/".join(parts[:end]) in choices:
            return "/".join(parts[:end])
    return None


def swept_options(group: str, line: CommandLine, cfg: DictConfig) -> tuple[list[str], str]:
    """The options of `group` a sweep runs, and who asked: the command line (`-m mask=causal,window`) or an
    experiment's `hydra.sweeper.params`. Nothing when this is no sweep or the group is not swept."""
    if not line.multirun:
        return [], ""
    override = line.given(group)
    source = f"-m {override.input_line}" if override is not None else ""
    if override is None or not override.is_sweep_override():
        params = cfg.hydra.sweeper.get("params") or {}
        if group not in params:
            return [], ""
        override = OverridesParser.create().parse_override(f"{group}={params[group]}")
        source = f"experiment={cfg.hydra.runtime.choices.get('experiment')} sweeps {group}={params[group]}"
    return sweep_values(override), source


def sweep_values(override: Override) -> list[str]:
    """The values a sweep override lists (`causal,window`, `range(3)`); none for a glob(...) or an interval(...),
    which do not list them."""
    try:
        return list(override.sweep_string_iterator())
    except Exception:
        return []


def as_written(value: object) -> str:
    """A value as it is written on the command line: [0.9,0.98] (no space, which the shell would split at),
    true, null."""
    if isinstance(value, ListConfig | list | tuple):
        return "[" + ",".join(as_written(item) for item in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def wrong_value_line(key: str, cause: str, line: CommandLine) -> str:
    """A value Hydra cannot put into the setting: the wrong type, null for a required value, a value for a group
    of settings, or a key below a plain value (`model.heads.x=3`)."""
    written, reason = line.written(key), cause.splitlines()[0] if cause else "not a value this setting takes"
    full_key = re.search(r"full_key: (\S+)", cause)
    with fresh_hydra():
        cfg = compose_or_none(line.config_name, line.without(key))
    if cfg is not None and (training := a_training_setting_line(key, line, cfg)):
        return training  # `src.predict ... mask=causal`: the checkpoint's, as mask.window=2 is told
    target = full_key.group(1) if full_key else key
    current = OmegaConf.select(cfg, target, default=None) if cfg is not None else None
    kinds = {
        "to Integer": "a whole number",
        "to Float": "a number",
        "to Boolean": "true or false",
        "is not a ListConfig": "a list",
        "is not Optional": "a value (it cannot be null)",
    }
    if "of type 'dict'" in reason and target != key:  # model.heads.x=3: model.heads holds one value
        return (
            f"{written}: {target} is one value, not a group of settings: set it itself, e.g. "
            f"{target}={as_written(current)}"
        )
    value = line.value_of(key)
    if isinstance(current, DictConfig) and key == "meta" and line.command == "src.run":  # meta=foo
        return f"{written}: meta holds your own notes, not one value: write +meta.<name>={value}"
    if isinstance(current, DictConfig) and not current:  # a group of settings with none yet
        return f"{written}: {key} holds settings, not one value: set one, {key}.<name>={value}"
    if isinstance(current, DictConfig):  # decode=beam: decode holds several settings
        fields = ", ".join(f"{key}.{name}" for name in list(current)[:4])
        return f"{written}: {key} holds several settings ({fields}, ...), not one value: set one of them"
    kind = next((kind for marker, kind in kinds.items() if marker in reason), None)
    example = f", e.g. {key}={as_written(current)}" if current is not None else ""
    if kind is not None and kind != "a list" and re.fullmatch(r"\[[^\[\]]+\]", value):  # model.heads=[2,4]
        sweep = f"{key}={value[1:-1]}"
        if line.multirun:
            return (
                f"{written}: {key} takes {kind}: a sweep over values is written {sweep} (a list {value} is one value)"
            )
        if line.command == "src.run":
            return (
                f"{written}: {key} takes {kind}: give one{example}, or sweep over the values with -m: "
                f"{line.as_sweep(sweep, written)}"
            )
    if kind == "a list" and value and not value.startswith("[") and isinstance(current, ListConfig) and not current:
        # receivers=cross:1:* where the default is []: the one-element list it meant (an example of [] says nothing)
        return f"{written}: {key} takes a list: write {shlex.quote(f'{key}=[{value}]')}"
    if kind is not None:
        return f"{written}: {key} takes {kind}: give one{example}"
    return f"{written}: {reason}: give a value of the setting's type{example}"


def print_command_help(main: Callable[[], object]) -> None:
    """The command's --help: Hydra's help template of the command (conf/hydra/help/<command>.yaml: its own
    settings, one line each, and examples), named as the user typed the command (`python -m src.run`, or the
    console script `transformer-run`), laid out for a terminal. Hydra lists every config group it knows: the
    `schema/*` groups hold the structured configs the yaml files build on (src/cli/schema.py), not choices a user
    makes, and a command that reads a checkpoint chooses only from the groups its own defaults list names."""
    command = command_of(main)
    own_groups = command_groups(command)  # task=...: with ckpt=hf:<model>
    buffer = io.StringIO()
    argv = list(sys.argv)
    sys.argv[1:] = as_one_run(CommandLine.read(command, argv[1:]), argv[1:])
    try:
        with contextlib.redirect_stdout(buffer), group_options_without_copies():
            main()
    finally:
        sys.argv[:] = argv
        lines = []
        for line in buffer.getvalue().splitlines():
            if not_a_choice_here(line, own_groups):
                continue
            if not (line == "" and lines and lines[-1] == ""):  # Hydra's group list ends in a blank line of its own
                lines.append(line)
        if lines:  # (nothing when Hydra refused the command line: its error is the news)
            print("\n".join(laid_out(folders_as_options(lines))))


@contextmanager
def group_options_without_copies():
    """Hydra's --help lists every config group with its options, asking its config loader once per group (128 times
    here), and the loader copies the whole config store (every structured config, Hydra's and ours) for each answer:
    1.4 s of a 1.6 s --help. Asked as the help asks (no primary config, no overrides, so no search path of theirs),
    the loader's own repository gives the same answer without a copy; other questions go to Hydra as they are."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    hydras = ConfigLoaderImpl.get_group_options

    def get_group_options(self, group_name, results_filter=ObjectType.CONFIG, config_name=None, overrides=None):
        if config_name is None and not overrides:
            return self.repository.get_group_options(group_name, results_filter)
        return hydras(self, group_name, results_filter, config_name, overrides)

    ConfigLoaderImpl.get_group_options = get_group_options  # type: ignore[method-assign]
    try:
        yield
    finally:
        ConfigLoaderImpl.get_group_options = hydras  # type: ignore[method-assign]


def as_one_run(line: CommandLine, args: list[str]) -> list[str]:
    """The command line with a sweep's values cut to the first of each (and without -m): Hydra composes a --help
    as one run, so `-m model.heads=1,2 --help` shows the settings of the sweep's first job."""
    first = {o.input_line: f"{o.get_key_element()}={values[0]}" for o in line.overrides if (values := sweep_values(o))}
    return [first.get(arg, arg) for arg in args if arg not in ("-m", "--multirun")]


def folders_as_options(lines: list[str]) -> list[str]:
    """The help's group list with a group's folders of options (Hydra lists `experiment/kv_heads: base, gqa2, ...`
    as a group of its own) folded into the group's line as the options a user chooses: `experiment: ...,
    kv_heads/gqa2, ...` (folder_options; the folder's shared settings left out)."""
    groups = {match.group(1): index for index, line in enumerate(lines) if (match := re.match(r"([\w/]+): \S", line))}
    folders = [name for name in groups if "/" in name and name.partition("/")[0] in groups and a_config_folder(name)]
    if not folders:
        return lines
    lines = list(lines)
    with fresh_hydra() as loader:
        for group in dict.fromkeys(name.partition("/")[0] for name in folders):
            chosen = [option for options in folder_options(group, loader).values() for option in options]
            lines[groups[group]] += "".join(f", {option}" for option in chosen)
    return [line for index, line in enumerate(lines) if index not in {groups[name] for name in folders}]


def not_a_choice_here(line: str, own_groups: tuple[str, ...] | None) -> bool:
    """Whether a line of the help lists a group the user does not choose from in this command: `schema/model:
    ...`, or (own_groups: the only ones this command has) another command's group. Other lines are kept."""
    group = re.match(r"([\w/]+): \S", line)  # `model: base, small, tiny` (or `Usage: ...`, which is no group)
    if group is None:
        return False
    name = group.group(1)
    if name.startswith("schema/"):
        return True
    return own_groups is not None and name not in own_groups and a_config_folder(name)


def typed_command(command: str) -> str:
    """The command as the user started it: a console script by its name (transformer-run), else
    `<interpreter> -m src.run` (module_command: `python`, or .venv/bin/python where that is not what the PATH finds).
    (Started with -m, argv[0] is the module's file.) The help templates name their command with it:
    `app_name: ${command_as_typed:src.run}`; so do the refusals of its command line."""
    name = Path(sys.argv[0]).name
    return name if name.startswith("transformer-") else module_command(command)


OmegaConf.register_new_resolver("command_as_typed", typed_command, replace=True)


HELP_WIDTH = 100  # wide enough for a setting and its line, narrow enough for a terminal beside an editor


def laid_out(lines: list[str]) -> list[str]:
    """The help's columns aligned: in each block of indented `key=value  what it does` lines (a value is this
    command line's, of any width) the descriptions start in one column, and so do the lines that continue one
    (indented further); examples' `# comments` likewise; true and false as the command line writes them; a group
    list's long line wrapped. The help names its command as typed (typed_command), as long as the interpreter's path
    may be: a block whose descriptions would pass the help's width starts them further left, below a row that
    reaches them, and a paragraph wider than the help is filled to its width again."""
    blocks: list[list[str]] = []  # runs of indented lines, and of the lines between them
    for line in lines:
        if not blocks or line.startswith("  ") != blocks[-1][0].startswith("  "):
            blocks.append([])
        blocks[-1].append(line)
    out = []
    for block in blocks:
        if not block[0].startswith("  "):
            out += wrapped_paragraphs(block)
            continue
        # `  <setting or example>  <what it does>`: two spaces or more between them
        rows = [None if line.startswith("    ") else re.match(r"  (\S.*?)  +(\S.*)$", line) for line in block]
        if not any(rows):
            out += block
            continue
        column = max(len(row.group(1)) for row in rows if row) + 4
        # further left where the widest description would pass the help's width (a long interpreter path)
        column = min(column, max(HELP_WIDTH - max(len(row.group(2)) for row in rows if row), 4))
        for line, row in zip(block, rows):
            if row is not None:
                setting = "  " + re.sub(r"=(True|False)$", lambda m: "=" + m.group(1).lower(), row.group(1))
                if len(setting) + 2 > column:  # its description below it, in the column
                    out += [setting, " " * column + row.group(2)]
                else:
                    out.append(setting.ljust(column) + row.group(2))
            elif line.startswith("    "):  # continues the line above
                out.append(" " * column + line.strip())
            else:  # an example without a comment
                out.append(line)
    return out


def wrapped_paragraphs(lines: list[str]) -> list[str]:
    """The help's unindented lines: a group list's long line wrapped (wrapped_group); a paragraph of text with a
    line wider than the help (the template wraps its lines for `python -m <command>`) filled to its width."""
    import textwrap

    out: list[str] = []
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line:
            paragraphs[-1].append(line)
        else:
            paragraphs += [[""], []]
    for paragraph in paragraphs:
        groups = any(re.match(r"([\w/]+): ", line) for line in paragraph)
        if groups or all(len(line) <= HELP_WIDTH for line in paragraph):
            out += [wrapped_group(line) for line in paragraph]
        else:
            out += textwrap.wrap(" ".join(paragraph), HELP_WIDTH, break_long_words=False, break_on_hyphens=False)
    return out


def wrapped_group(line: str) -> str:
    """`experiment: depth, heads, ...` over several lines when it is wider than the help."""
    import textwrap

    group = re.match(r"([\w/]+): ", line)
    if group is None or len(line) <= HELP_WIDTH:
        return line
    return textwrap.fill(line, HELP_WIDTH, subsequent_indent=" " * len(group.group(0)), break_on_hyphens=False)


def command_of(main: Callable[[], object]) -> str:
    """The command a @hydra.main function belongs to (src.run, src.eval, src.predict): the module defining it.
    Started as `python -m src.run`, that module is `__main__`, whose import spec still has the name."""
    spec = getattr(sys.modules.get(main.__module__), "__spec__", None)
    return spec.name if spec is not None else main.__module__


def refuse_what_hydras_parser_cannot_read(argv: list[str], command: str) -> None:
    """Hydra's argument parser (argparse) prints its usage and a complaint of its own for what it cannot read: a
    flag it does not know, or overrides on both sides of a flag (`model.d_model=16 -m model.heads=1,2`: it reads
    the overrides as one run of words). One line instead, with where the flags go."""
    from hydra._internal.utils import get_args_parser

    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint), contextlib.redirect_stdout(io.StringIO()):
            args = get_args_parser().parse_args(argv)
    except SystemExit as exit_:
        if exit_.code == 0:  # --version: Hydra prints it itself
            return
        message = complaint.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1]
        unread = message.removeprefix("unrecognized arguments: ").split()
        if message.startswith("unrecognized arguments") and all("=" in word or word[0] in "~+" for word in unread):
            raise ConfigError(
                f"{' '.join(unread)} come after a flag that stands among the overrides, where Hydra does not read "
                f"them: write the flags before every override, e.g. {typed_command(command)} -m <overrides>"
            ) from None
        raise ConfigError(f"{message}: check the flags in {typed_command(command)} --help") from None
    # Hydra takes one of these modes and raises a ValueError (a traceback) for two: `-m --cfg job` shows no sweep
    modes = {
        "-m": args.multirun,
        "--run": args.run,
        f"--cfg {args.cfg}": args.cfg,
        "--info": args.info is not None,
        "--shell-completion": args.shell_completion,
    }
    if len(given := [flag for flag, on in modes.items() if on]) > 1:
        raise ConfigError(
            f"{' and '.join(given)} cannot be given together: Hydra does one of them at a time (--cfg job prints one "
            "run's config: drop -m and give each setting one value)"
        )


def refuse_removing_a_needed_setting(line: CommandLine) -> None:
    """`~seed`, `~task`: Hydra removes a top-level setting or group without a word, and the command then fails
    where it reads it, with a traceback. The command reads every field of its schema: refuse before Hydra starts.
    (Hydra itself refuses removing a setting inside a group, `~model.heads`; `~callbacks.EarlyStopping` removes
    one entry of an open group and is fine.)"""
    from src.cli.schema import Config, EvalConfig, PredictConfig

    schema = {"config": Config, "eval": EvalConfig, "predict": PredictConfig}.get(line.config_name, Config)
    needed = {field.name for field in dataclasses.fields(schema)}
    for override in line.overrides:
        key = override.key_or_group
        if override.is_delete() and key in needed:
            raise ConfigError(removes_a_needed_setting_line(override.input_line or f"~{key}", key, line.command))


def compose_every_swept_option(line: CommandLine) -> None:
    """A sweep over a group's options (`-m task=reverse,char_lm task.vocab_size=5`): Hydra composes each job only
    as it starts, so an override one option lacks would stop the sweep after the jobs before it had run. Compose
    each swept option with the rest of the command line (the other sweeps at their first value) before anything
    runs; Hydra's refusal of one is raised here, and explained like any other (`hydra_error_line`)."""
    from hydra import compose

    if not line.multirun:
        return
    refuse_a_glob_matching_no_option(line)
    sweeps = {o.key_or_group: sweep_values(o) for o in line.overrides if o.is_sweep_override()}
    sweeps = {key: values for key, values in sweeps.items() if values and not key.startswith("hydra")}
    if not sweeps:
        return
    with fresh_hydra() as loader:
        for group, options in sweeps.items():
            if not loader.get_group_options(group):  # a setting's values, not a group's options
                continue
            others = [f"{key}={values[0]}" for key, values in sweeps.items() if key != group]
            for option in options:
                compose(line.config_name, overrides=[*line.without(), *others, f"{group}={option}"])


def refuse_a_glob_matching_no_option(line: CommandLine) -> None:
    """`-m 'experiment=glob(kv_heads/*)'`: a glob matches a group's own option names (a folder's configurations are
    not among them), and one that matches none made a sweep of no job that reported success. One line instead, with
    the group's options."""
    from hydra.core.override_parser.types import Glob

    globs = [o for o in line.overrides if o.is_sweep_override() and isinstance(o.value(), Glob)]
    if not globs:
        return
    with fresh_hydra() as loader:
        for override in globs:
            options = loader.get_group_options(override.key_or_group)
            if options and not override.value().filter(options):
                folders = [
                    option for chosen in folder_options(override.key_or_group, loader).values() for option in chosen
                ]
                by_name = f" (a folder's are given by name: {override.key_or_group}={','.join(folders[:2])})"
                raise ConfigError(
                    f"{override.input_line}: the glob matches no option of {override.key_or_group}, so the sweep would "
                    f"run no job: its options are {', '.join([*options, *folders])}{by_name if folders else ''}"
                )


def warn_about_keys_given_twice(line: CommandLine) -> None:
    """`trainer.max_steps=4 ... trainer.max_steps=5`: Hydra applies the overrides in order, so the last one wins
    and the earlier ones are dropped without a word, which is seldom what was meant (an edited command line, a
    setting repeated after an experiment's own). One warning per key, with every value given and the one used; a
    group (`model=tiny model=small`) alike, and a removal (`~key`) or a sweep counts like any other override."""
    from src.training.report import print_warning

    by_key: dict[tuple[str, str | None], list[Override]] = {}
    for override in line.overrides:
        by_key.setdefault((override.key_or_group, override.package), []).append(override)
    for (key, package), given in by_key.items():
        if len(given) < 2:
            continue
        values = [as_given(override) for override in given]
        times = "twice" if len(given) == 2 else f"{len(given)} times"
        listed = ", ".join(values[:-1]) + f", then {values[-1]}"
        named = f"{key}@{package}" if package else key
        print_warning(f"{named} is given {times} ({listed}): {values[-1]} is used")


def as_given(override: Override) -> str:
    """What an override sets, as written: the value of a plain `key=value`, else the whole override (`~seed`,
    `+meta.note=x`), whose prefix changes what it does."""
    written = override.input_line or override.get_key_element()
    if override.is_delete() or override.is_add() or override.is_force_add() or "=" not in written:
        return written
    return written.partition("=")[2]


def run_hydra_command(main: Callable[[], object]) -> None:
    """Run a @hydra.main function with every user mistake, Hydra's included, as one line and exit status 2.

    What must be checked before Hydra writes into the run directory is checked by src.run's Hydra callback
    (src/cli/preflight.py), with the composed config."""
    from src.cli.startup import started

    started()  # Ctrl-C from here on is the command's to handle (src/cli/startup.py)
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra raises instead of printing its own several lines
    command = command_of(main)
    from src.cli.free_text import free_text_as_typed

    sys.argv[1:] = free_text_as_typed(command, sys.argv[1:])  # text=..., +meta.<name>=...: as typed (see there)
    with user_errors_as_one_line(command):
        refuse_what_hydras_parser_cannot_read(sys.argv[1:], command)
        line = CommandLine.read(command, sys.argv[1:])
        refuse_removing_a_needed_setting(line)
        refuse_choosing_a_folder_of_options_wrongly(line)
        refuse_a_null_group_choice(line)
        compose_every_swept_option(line)
        if {"--help", "-h"} & set(sys.argv[1:]):
            print_command_help(main)
            return
        warn_about_keys_given_twice(line)  # only for a command line nothing above refused: the error is the news
        try:
            with run_mode_without_a_composition(line):
                main()
        finally:
            forget_the_job()


@contextmanager
def run_mode_without_a_composition(line: CommandLine):
    """Hydra's main composes the whole config once only to read `hydra.mode` (Hydra.get_mode), then composes it again
    to run. Where the answer is known without it, that first composition (about 0.15 s of every command) is left out,
    and Hydra does what it does for a config that sets no mode (our configs set none):
    - with -m, whatever a config sets the mode to, Hydra sweeps: it adds `hydra.mode=MULTIRUN` to the overrides (for a
      config of the user's that sets `hydra.mode: RUN`, without its warning that -m overrides it);
    - without -m, where no config Hydra can read sets the mode (a_config_may_set_the_mode): a run, and Hydra adds
      `hydra.mode=RUN`, as it does when it is asked.
    Anywhere else (a config of the user's that may make a run a sweep) Hydra is asked, as before."""
    from hydra._internal.hydra import Hydra

    hydras = Hydra.get_mode

    def get_mode(self: Hydra, config_name: str | None, overrides: list[str]):
        if line.multirun or not a_config_may_set_the_mode(self, line):
            return None
        return hydras(self, config_name, overrides)

    Hydra.get_mode = get_mode  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.get_mode = hydras  # type: ignore[method-assign]


# a YAML key that sets hydra.mode, or that adds config folders that might (hydra.searchpath): `mode:`, `{mode: ...}`,
# `"mode":`
SETS_THE_MODE = re.compile(r"(?:^|[\s{,])[\"']?(?:mode|searchpath)[\"']?\s*:", re.MULTILINE)


def a_config_may_set_the_mode(hydra: object, line: CommandLine) -> bool:
    """Whether a config the command's composition may read could set `hydra.mode`: an override of hydra.mode or
    hydra.searchpath, or a config file in Hydra's search path (this project's conf/, a --config-dir, a package's
    configs) with a `mode:` or `searchpath:` key anywhere (a false alarm only costs Hydra's composition). Not Hydra's
    own configs (its `mode: w` is a log file's), nor structured configs (ours and the plugins' set no mode)."""
    from importlib import resources

    if any(o.key_or_group.startswith(("hydra.mode", "hydra.searchpath")) for o in line.overrides):
        return True
    for element in hydra.config_loader.get_search_path().get_path():  # type: ignore[attr-defined]
        # no scheme: a folder (our conf/, as @hydra.main names it)
        scheme, _, where = str(element.path).rpartition("://")
        if scheme == "structured" or (scheme == "pkg" and where == "hydra.conf"):
            continue
        if scheme not in ("", "file", "pkg"):
            return True  # a config source of a plugin's: ask Hydra
        try:
            folder = Path(str(resources.files(where))) if scheme == "pkg" else Path(where)
        except (ImportError, TypeError, ValueError):
            return True  # a package that cannot be read as a folder: ask Hydra
        if scheme == "pkg" and not folder.is_dir():
            return True  # a zipped package, say: Hydra reads it, this does not
        try:
            if any(SETS_THE_MODE.search(path.read_text(errors="replace")) for path in config_files(folder)):
                return True
        except OSError:  # a file that cannot be read here: Hydra says what it makes of it
            return True
    return False


def config_files(folder: Path) -> Iterator[Path]:
    """The .yaml and .yml files under `folder`, as Hydra finds them: through linked folders too (conf/experiment is
    a link to experiments/), each folder once."""
    seen: set[str] = set()
    for top, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            folders.clear()
            continue
        seen.add(real)
        for name in files:
            path = Path(top, name)
            if name.endswith((".yaml", ".yml")) and path.is_file():  # not a dangling link (an editor's lock file)
                yield path


def forget_the_job() -> None:
    """The command is over: its Hydra job's settings (its working directory, its overrides) are dropped, so that
    what runs next in this process (the next command a test runs in it) does not read them as its own: relative data
    paths resolve against the job's directory while a job is set (src/data/files.py resolve_path)."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None
    if (preflight := sys.modules.get("src.cli.preflight")) is not None:  # a sweep's jobs as its preflight composed
        preflight.COMPOSED_JOBS.clear()  # them (hydra_plugins/transformer_ablations/grid_sweeper.py)
