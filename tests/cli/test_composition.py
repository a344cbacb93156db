"""src/cli/composition.py: Hydra's composition made cheaper, never different. Each saving against what Hydra and
OmegaConf do without it."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_composition_shares_hydras_config_store_instead_of_copying_it(tmp_path, monkeypatch):
    """Hydra copies its config repository for every composition, the ConfigStore with it (every schema): the store is
    a singleton a composition only reads, so its copy is itself (share_the_config_store). Still so
    after a whole command, whose plugin scan imports Hydra's plugin modules again; and a config stored after a
    composition is found by the next one."""
    import copy

    from hydra.core.config_store import ConfigStore

    from tests.conftest import compose_config, run_in_process

    monkeypatch.chdir(tmp_path)
    code, _, err = run_in_process("src.run", "--cfg", "job")
    assert code == 0, err
    store = ConfigStore.instance()
    assert copy.deepcopy(store) is store and copy.deepcopy({"store": store})["store"] is store
    compose_config()
    store.store(group="experiment", name="stored_later", node={"seed": 1234}, package="_global_")
    try:
        assert compose_config("experiment=stored_later").seed == 1234
    finally:
        del store.repo["experiment"]["stored_later.yaml"]  # not an option of the other tests' commands


def composed_from(folder, *overrides: str, module: str | None = None):
    """config.yaml of `folder` (or of the package `module`, pkg://), composed as a command composes its config."""
    from hydra import compose, initialize_config_dir, initialize_config_module

    from src.cli.schema import register_configs

    register_configs()
    where = initialize_config_module(module, version_base="1.3") if module else None
    with where or initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def counting_parses(monkeypatch) -> list[str]:
    """The files OmegaConf parses from now on (Hydra's file sources parse through OmegaConf.load)."""
    from omegaconf import OmegaConf

    parsed: list[str] = []
    load = OmegaConf.load
    monkeypatch.setattr(OmegaConf, "load", lambda file: parsed.append(str(getattr(file, "name", file))) or load(file))
    return parsed


def config_folder(folder):
    (folder / "group").mkdir(parents=True)
    (folder / "config.yaml").write_text("defaults:\n  - group: a\n  - _self_\nname: first\nsize: ${group.size}\n")
    (folder / "group" / "a.yaml").write_text("size: 3\n")
    return folder


def test_a_config_file_is_parsed_once_and_read_again_when_edited(tmp_path, monkeypatch):
    """Hydra parses every config file at every composition; a process keeps each file's parsed config, keyed by the
    file's bytes (remember_the_config_files): an edited file is parsed again, and what a composition does with its
    copy never reaches the next one."""
    folder = config_folder(tmp_path / "conf")
    parsed = counting_parses(monkeypatch)
    first = composed_from(folder)
    assert (first.name, first.size) == ("first", 3)
    first.name = "changed by its command"
    parsed.clear()
    again = composed_from(folder)
    assert (again.name, again.size) == ("first", 3) and list(again.keys()) == ["group", "name", "size"]
    assert not [name for name in parsed if name.startswith(str(folder))]
    (folder / "group" / "a.yaml").write_text("size: 4\n")
    parsed.clear()
    assert composed_from(folder).size == 4
    assert [name for name in parsed if name.startswith(str(folder))] == [str(folder / "group" / "a.yaml")]


def test_a_file_written_while_hydra_reads_it_is_not_kept(tmp_path, monkeypatch):
    """The file is read for its key, then again by Hydra to parse it: a write in between would keep the new
    content's config under the old content's bytes, for as long as the file holds them. Such a parse is used once
    (it is what Hydra read) and not kept."""
    import io

    from omegaconf import OmegaConf

    folder = config_folder(tmp_path / "conf")
    target = folder / "group" / "a.yaml"
    load = OmegaConf.load

    def written_meanwhile(file):
        if str(getattr(file, "name", "")) == str(target):
            target.write_text("size: 5\n")  # another process saves the file: after the key was read, before the parse
            file = io.StringIO(target.read_text())  # what Hydra's read gets now
        return load(file)

    monkeypatch.setattr(OmegaConf, "load", written_meanwhile)
    assert composed_from(folder).size == 5  # what Hydra read
    monkeypatch.undo()
    target.write_text("size: 3\n")  # the bytes the key was read from: their own config, not the one parsed then
    assert composed_from(folder).size == 3


def test_a_packaged_config_is_read_again_when_edited(tmp_path, monkeypatch):
    """pkg:// configs (initialize_config_module, a package on hydra.searchpath) are kept by their bytes too."""
    import sys

    package = tmp_path / "edited_config_package"
    config_folder(package)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert composed_from(None, module="edited_config_package").size == 3
        (package / "group" / "a.yaml").write_text("size: 4\n")
        assert composed_from(None, module="edited_config_package").size == 4
    finally:
        sys.modules.pop("edited_config_package", None)


def test_a_new_process_keeps_the_config_files_it_parsed_for_its_next_command(tmp_path):
    """In a new process, Hydra's first initialisation scans its plugins, executing its file-source modules again: the
    classes it registers then are the ones that keep what they parse. Two commands in one new process: the second
    parses no file of conf/."""
    import os
    import subprocess
    import sys

    from src.cli.command_line import CONF_DIR
    from tests.conftest import ROOT

    script = f"""
import io, contextlib
from omegaconf import OmegaConf
from tests.conftest import run_in_process
parsed = []
load = OmegaConf.load
OmegaConf.load = lambda file: parsed.append(str(getattr(file, "name", file))) or load(file)
for command in (1, 2):
    parsed.clear()
    code, out, err = run_in_process("src.run", "--cfg", "job")
    assert code == 0, err
    print(command, len([name for name in parsed if name.startswith({str(Path(CONF_DIR).resolve())!r})]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, second = (line.split() for line in done.stdout.split("\n")[-3:-1])
    assert int(first[1]) > 10 and second == ["2", "0"], done.stdout


def test_an_interpolation_is_parsed_once_and_resolves_in_each_config_to_its_own_value():
    """OmegaConf parses an interpolation string at every resolution; its parse tree is kept per string
    (remember_the_parse_trees), and each config resolves the same tree against its own values. A string that does
    not parse is refused every time, as before."""
    import omegaconf.grammar_parser
    from omegaconf import OmegaConf
    from omegaconf.errors import GrammarParseError

    from src.cli.composition import remember_the_parse_trees

    remember_the_parse_trees()
    parse = omegaconf.grammar_parser.parse.remembered
    text = "${model.d_model}x${oc.decode:'[1, 2]'}-${oc.env:NOT_SET_ANYWHERE,fallback}"
    before = parse.cache_info()
    first = OmegaConf.create({"model": {"d_model": 64}, "name": text})
    second = OmegaConf.create({"model": {"d_model": 128}, "name": text})
    assert first.name == "64x[1, 2]-fallback" and second.name == "128x[1, 2]-fallback"
    assert first.name == "64x[1, 2]-fallback"  # the tree second used is first's, and still gives first's value
    after = parse.cache_info()
    assert after.hits > before.hits and after.misses - before.misses <= 3  # the string, and the resolvers' arguments
    for _ in range(2):
        with pytest.raises(GrammarParseError):
            OmegaConf.create({"broken": "${model.d_model"}).broken  # noqa: B018


# Command lines whose compositions cover the groups, experiments, a search, launchers and each command's config.
COMMAND_LINES = [
    ("config", []),
    ("config", ["model.heads=2", "seed=3"]),
    ("config", ["task=sort", "mask=window", "mask.window=3", "model=small"]),
    ("config", ["experiment=depth"]),
    ("config", ["experiment=pos_encoding", "ablate=cross"]),
    ("config", ["hparams_search=lr_warmup_dropout_size"]),
    ("config", ["hydra/launcher=stacked", "task=translation", "task.vocab_size=500"]),
    ("config", ["hydra/launcher=slurm", "hydra.launcher.partition=cpu"]),
    ("eval", ["ckpt=outputs/run"]),
    ("predict", ["ckpt=outputs/run", "text=1234"]),
    ("analyze", ["ckpt=outputs/run", "prune_step=0.5"]),
]


def every_node(cfg, path: str = "") -> list[tuple]:
    """Each node of `cfg`, unresolved, with what OmegaConf keeps beside its value: its class, types and flags."""
    from omegaconf import DictConfig, ListConfig

    nodes = [] if path else [("", type(cfg).__name__, cfg._metadata.object_type, sorted(cfg._metadata.flags.items()))]
    keys = cfg.keys() if isinstance(cfg, DictConfig) else range(len(cfg))
    for key in keys:
        node = cfg._get_node(key)
        meta = node._metadata
        here = f"{path}.{key}"
        flags = sorted(meta.flags.items())
        described = (here, type(node).__name__, meta.ref_type, meta.object_type, meta.optional, flags)
        if isinstance(node, DictConfig | ListConfig) and not node._is_none() and not node._is_missing():
            nodes += [(*described, None), *every_node(node, here)]
        else:
            nodes.append((*described, node._value()))
    return nodes


def test_every_command_line_composes_from_what_was_kept_exactly_as_hydra_composes_it(monkeypatch):
    """The defaults list is built once per group choices (remember_the_defaults_lists) and its configs merged once
    (remember_the_merged_defaults): each command line composes to what Hydra's own steps give, node for node (values
    unresolved, types, flags), the first time and from what was kept; and what a command does with its config never
    reaches the next."""
    import hydra._internal.config_loader_impl as loader
    from hydra import compose, initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from omegaconf import open_dict

    from src.cli.command_line import CONF_DIR
    from src.cli.schema import register_configs

    register_configs()
    merge_once, create_once = ConfigLoaderImpl._compose_config_from_defaults_list, loader.create_defaults_list

    def composed(config_name: str, overrides: list[str]):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=True)

    for config_name, overrides in COMMAND_LINES:
        merge_once.merged.clear()
        create_once.lists.clear()
        first = composed(config_name, overrides)
        with open_dict(first):  # a command changes its own config
            first.changed_by_its_command = True
            first.hydra.job.name = "changed by its command"
        again = composed(config_name, overrides)
        assert len(merge_once.merged) == len(create_once.lists) == 1, (config_name, overrides)
        with monkeypatch.context() as hydras_own:
            hydras_own.setattr(ConfigLoaderImpl, "_compose_config_from_defaults_list", merge_once.uncached)
            hydras_own.setattr(loader, "create_defaults_list", create_once.uncached)
            expected = composed(config_name, overrides)
        again.hydra.runtime.cwd = expected.hydra.runtime.cwd
        assert every_node(again) == every_node(expected), (config_name, overrides)


def test_a_defaults_list_is_built_again_when_a_config_or_group_it_asked_about_changes(tmp_path):
    """A kept defaults list is used only while every question Hydra asked building it gets the same answer: an
    edited defaults list, a new option of a group, an option that shadows another one later on the
    search path. The command line's values never change the list, and reach each composition."""
    import hydra._internal.config_loader_impl as loader
    from hydra.errors import MissingConfigException

    folder = config_folder(tmp_path / "conf")
    assert composed_from(folder, "name=one").name == "one"
    lists = loader.create_defaults_list.lists
    kept = dict(lists)
    assert composed_from(folder, "name=two").name == "two" and lists == kept  # a value: the same list
    with pytest.raises(MissingConfigException):
        composed_from(folder, "group=b")
    (folder / "group" / "b.yaml").write_text("size: 7\n")  # a new option
    assert composed_from(folder, "group=b").size == 7
    (folder / "more").mkdir()
    (folder / "more" / "c.yaml").write_text("extra: 1\n")
    (folder / "group" / "a.yaml").write_text("defaults:\n  - /more: c\n  - _self_\nsize: 3\n")  # its own defaults
    cfg = composed_from(folder)
    assert cfg.size == 3 and cfg.group.more.extra == 1
    (folder / "group" / "a.yaml").write_text("size: 4\n")
    cfg = composed_from(folder)
    assert "more" not in cfg.group and cfg.size == 4
    later = config_folder(tmp_path / "later_on_the_search_path")
    (later / "group" / "c.yaml").write_text("size: 5\n")
    searched = f"hydra.searchpath=[file://{later}]"
    assert composed_from(folder, searched, "group=c").size == 5
    (folder / "group" / "c.yaml").write_text("size: 6\n")  # the primary config's folder comes first
    assert composed_from(folder, searched, "group=c").size == 6


def test_a_config_stored_again_or_removed_is_merged_anew(tmp_path):
    """A structured config of the defaults list, stored again under its name or removed from the ConfigStore: the next
    composition merges what the store holds now (the key names the store's node by identity)."""
    from hydra.core.config_store import ConfigStore
    from hydra.errors import MissingConfigException

    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "config.yaml").write_text("defaults:\n  - stored_for_a_test\n  - _self_\nname: mine\n")
    store = ConfigStore.instance()
    try:
        store.store(name="stored_for_a_test", node={"size": 1})
        assert composed_from(folder).size == 1
        assert composed_from(folder).size == 1
        store.store(name="stored_for_a_test", node={"size": 2})
        assert composed_from(folder).size == 2
        (folder / "config.yaml").write_text("defaults:\n  - stored_for_a_test.yaml\n  - _self_\nname: mine\n")
        assert composed_from(folder).size == 2  # named with its file name's suffix, as Hydra allows
        store.store(name="stored_for_a_test", node={"size": 3})
        assert composed_from(folder).size == 3
        del store.repo["stored_for_a_test.yaml"]
        with pytest.raises(MissingConfigException):
            composed_from(folder)
    finally:
        store.repo.pop("stored_for_a_test.yaml", None)


def folder_of(root, files: dict[str, str]):
    """A config folder holding `files` (relative path: text)."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_default_that_a_resolver_chooses_is_chosen_again_at_every_composition(tmp_path, monkeypatch):
    """An interpolated default (`- db: ${oc.env:...}`), or a choice so written on the command line, may resolve
    otherwise at the next composition: such a defaults list is not kept."""
    folder = folder_of(tmp_path, {
        "config.yaml": "defaults:\n  - db: ${oc.env:CHOSEN_FOR_A_TEST,mysql}\n  - _self_\n",
        "db/mysql.yaml": "name: mysql\n",
        "db/pg.yaml": "name: pg\n",
    })  # fmt: skip
    monkeypatch.delenv("CHOSEN_FOR_A_TEST", raising=False)
    assert composed_from(folder).db.name == "mysql"
    monkeypatch.setenv("CHOSEN_FOR_A_TEST", "pg")
    assert composed_from(folder).db.name == "pg"
    (folder / "config.yaml").write_text("defaults:\n  - db: mysql\n  - _self_\n")
    chosen_on_the_command_line = "db=${oc.env:CHOSEN_ON_THE_COMMAND_LINE,mysql}"  # the same text both times
    assert composed_from(folder, chosen_on_the_command_line).db.name == "mysql"
    monkeypatch.setenv("CHOSEN_ON_THE_COMMAND_LINE", "pg")
    assert composed_from(folder, chosen_on_the_command_line).db.name == "pg"


def test_hydras_warnings_while_it_composes_come_at_every_composition_or_raise_where_asked(tmp_path, monkeypatch):
    """A primary config without `_self_` (the defaults list) and a file matched to a ConfigStore schema by its name
    (the merge): Hydra warns at every composition, or raises where its settings ask (SELF_WARNING_AS_ERROR,
    HYDRA_DEPRECATION_WARNINGS_AS_ERRORS). Neither is kept, so both still do."""
    from hydra.core.config_store import ConfigStore
    from hydra.errors import ConfigCompositionException, HydraDeprecationError

    without_self = folder_of(tmp_path / "without_self", {"config.yaml": "defaults:\n  - group: a\nname: x\n",
                                                         "group/a.yaml": "size: 3\n"})  # fmt: skip
    for _ in range(2):
        with pytest.warns(UserWarning, match="Defaults list is missing `_self_`"):
            composed_from(without_self)
    monkeypatch.setenv("SELF_WARNING_AS_ERROR", "1")
    with pytest.raises(ConfigCompositionException, match="missing `_self_`"):
        composed_from(without_self)

    matched = folder_of(tmp_path / "matched", {
        "config.yaml": "defaults:\n  - schema_matched_in_a_test: a\n  - _self_\n",
        "schema_matched_in_a_test/a.yaml": "size: 3\n",
    })  # fmt: skip
    store = ConfigStore.instance()
    store.store(group="schema_matched_in_a_test", name="a", node={"size": 0})
    try:
        for _ in range(2):
            with pytest.warns(UserWarning, match="validated against ConfigStore schema with the same name"):
                assert composed_from(matched).schema_matched_in_a_test.size == 3
        monkeypatch.setenv("HYDRA_DEPRECATION_WARNINGS_AS_ERRORS", "1")
        with pytest.raises(HydraDeprecationError):
            composed_from(matched)
    finally:
        store.repo.pop("schema_matched_in_a_test", None)


def test_a_file_written_while_a_composition_reads_it_is_read_again_by_the_next_one(tmp_path, monkeypatch):
    """Within a composition Hydra reads each config once, and uses what it read: a file written between the defaults
    list and the merge, or after Hydra read the primary config for its search path, is composed as it was by that
    composition and as it is by the next (what is kept is keyed by the bytes Hydra read, not by the file's bytes
    after)."""
    import hydra._internal.config_loader_impl as loader

    folder = config_folder(tmp_path / "conf")
    create = loader.create_defaults_list

    def written_after_the_list(*arguments, **settings):
        made = create(*arguments, **settings)
        (folder / "group" / "a.yaml").write_text("size: 4\n")
        return made

    monkeypatch.setattr(loader, "create_defaults_list", written_after_the_list)
    assert composed_from(folder).size == 3  # what this composition read
    monkeypatch.undo()
    assert composed_from(folder).size == 4 and composed_from(folder).size == 4

    searched = f"hydra.searchpath=[file://{tmp_path / 'elsewhere'}]"  # Hydra reads config.yaml for it first
    assert composed_from(folder, searched).name == "first"

    def written_after_the_search_path(*arguments, **settings):
        (folder / "config.yaml").write_text("defaults:\n  - group: a\n  - _self_\nname: second\nsize: ${group.size}\n")
        return create(*arguments, **settings)

    monkeypatch.setattr(loader, "create_defaults_list", written_after_the_search_path)
    assert composed_from(folder, searched).name == "first"
    monkeypatch.undo()
    assert composed_from(folder, searched).name == "second"


def test_a_defaults_list_from_a_source_of_another_kind_is_not_kept(tmp_path):
    """A config source that is neither a folder, a package nor the ConfigStore (a plugin's): what it holds cannot be
    told, so nothing it provides is kept."""
    from hydra._internal.sources_registry import SourcesRegistry
    from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
    from omegaconf import OmegaConf

    held = {"db/a.yaml": {"defaults": ["_self_"], "name": "a"}}

    class InMemory(ConfigSource):
        @staticmethod
        def scheme() -> str:
            return "in-memory-for-a-test"

        def load_config(self, config_path: str) -> ConfigResult:
            name = self._normalize_file_name(config_path)
            if name not in held:
                raise ConfigLoadError(name)
            config = OmegaConf.create(held[name])
            return ConfigResult(config=config, path=name, provider=self.provider, header={"package": None})

        def available(self) -> bool:
            return True

        def is_group(self, config_path: str) -> bool:
            return config_path == "db"

        def is_config(self, config_path: str) -> bool:
            return self._normalize_file_name(config_path) in held

        def list(self, config_path: str, results_filter) -> list[str]:
            return sorted(name[3:-5] for name in held) if config_path == "db" else []

    SourcesRegistry.instance().register(InMemory)
    folder = folder_of(tmp_path, {"config.yaml": "defaults:\n  - db: a\n  - _self_\n"})
    searched = "hydra.searchpath=[in-memory-for-a-test://here]"
    assert composed_from(folder, searched).db.name == "a"
    held.update({"db/b.yaml": {"name": "b"}, "db/a.yaml": {"defaults": ["_self_", {"/db@copy": "b"}], "name": "a2"}})
    assert composed_from(folder, searched).db == {"name": "a2", "copy": {"name": "b"}}


def test_a_composition_with_hydra_1_1s_rules_is_not_taken_for_one_with_1_3s(tmp_path):
    """version_base changes how Hydra reads a defaults list (1.1 lets a config choose a Hydra group without
    `override`, with a warning): a list read by 1.1's rules is never taken for 1.3's (one that warned is not kept,
    and the version is part of every key besides)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    folder = folder_of(tmp_path, {"config.yaml": "defaults:\n  - hydra/launcher: basic\n  - _self_\nname: x\n"})
    with initialize_config_dir(config_dir=str(folder), version_base="1.1"):
        assert compose("config").name == "x"
    with pytest.raises(ConfigCompositionException, match="appears more than once"):
        with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
            compose("config")


def test_a_config_created_or_removed_while_a_composition_looks_it_up_is_looked_up_again_by_the_next_one(
    tmp_path, monkeypatch
):
    """An optional default whose file is written just after Hydra found none, or removed just after Hydra read it:
    that composition uses what Hydra found, and the next one what the folder holds then (a kept list notes what
    Hydra found, not what the folder holds after)."""
    from hydra._internal.config_repository import ConfigRepository

    folder = folder_of(tmp_path, {"config.yaml": "defaults:\n  - optional opt: x\n  - _self_\nname: n\n",
                                  "opt/y.yaml": "v: 0\n"})  # fmt: skip
    load = ConfigRepository.load_config

    def changed_after_the_lookup(self, config_path):
        found = load(self, config_path)
        if config_path == "opt/x":
            if found is None:
                (folder / "opt" / "x.yaml").write_text("v: 1\n")
            else:
                (folder / "opt" / "x.yaml").unlink()
        return found

    monkeypatch.setattr(ConfigRepository, "load_config", changed_after_the_lookup)
    assert "opt" not in composed_from(folder)  # none found; written after
    monkeypatch.undo()
    assert composed_from(folder).opt.v == 1 and composed_from(folder).opt.v == 1
    (folder / "opt" / "x.yaml").write_text("v: 2\n")  # edited, so that Hydra reads it again
    monkeypatch.setattr(ConfigRepository, "load_config", changed_after_the_lookup)
    assert composed_from(folder).opt.v == 2  # read; removed after
    monkeypatch.undo()
    assert "opt" not in composed_from(folder) and "opt" not in composed_from(folder)


def test_hydras_warnings_are_said_from_where_hydra_says_them_and_as_often(tmp_path):
    """Hydra names the line a warning is about by counting frames (stacklevel 11 for a file matched to a ConfigStore
    schema by its name): the frames of this project's wrappers are not counted, so each warning comes from the same
    file and line as from Hydra's own code, and as many times (a `.yml` file under version_base 1.1 included)."""
    import warnings

    import hydra._internal.config_loader_impl as loader
    from hydra import compose, initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.config_store import ConfigStore

    matched = folder_of(tmp_path / "matched", {"config.yaml": "defaults:\n  - matched_in_a_test: a\n  - _self_\n",
                                               "matched_in_a_test/a.yaml": "size: 3\n"})  # fmt: skip
    without_self = folder_of(tmp_path / "without_self", {"config.yaml": "defaults:\n  - group: a\nname: x\n",
                                                         "group/a.yaml": "size: 3\n"})  # fmt: skip
    yml = folder_of(tmp_path / "yml", {"config.yaml": "defaults:\n  - db: mysql.yml\n  - _self_\n",
                                       "db/mysql.yml": "port: 1\n"})  # fmt: skip

    def composed(folder, version_base="1.3"):
        with initialize_config_dir(config_dir=str(folder), version_base=version_base):
            return compose("config")

    def nested(depth, folder, version_base):  # the caller's frames, as deep as Hydra's stacklevel reaches
        return composed(folder, version_base) if depth == 0 else nested(depth - 1, folder, version_base)

    def said(folder, version_base="1.3"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                nested(8, folder, version_base)
        return [(str(w.message).splitlines()[0], w.filename, w.lineno) for w in caught]

    store = ConfigStore.instance()
    store.store(group="matched_in_a_test", name="a", node={"size": 0})
    merge_once, create_once = ConfigLoaderImpl._compose_config_from_defaults_list, loader.create_defaults_list
    try:
        ours = [said(matched), said(without_self), said(yml, "1.1")]
        ConfigLoaderImpl._compose_config_from_defaults_list = merge_once.uncached
        loader.create_defaults_list = create_once.uncached
        hydras = [said(matched), said(without_self), said(yml, "1.1")]
    finally:
        ConfigLoaderImpl._compose_config_from_defaults_list, loader.create_defaults_list = merge_once, create_once
        store.repo.pop("matched_in_a_test", None)
    assert all(hydras) and ours == hydras
    assert ours[0][0][1] == __file__  # Hydra's stacklevel 11 names this test's line


def test_a_kept_list_and_its_merge_read_the_same_content_however_a_file_changes_between_them(tmp_path, monkeypatch):
    """A kept defaults list is checked against the files, and the merge then reads them: a file edited or removed
    between the two is merged as the list was checked (Hydra reads each config once a composition, and never mixes
    a list built from one content with a merge of another); the next composition reads it anew."""
    import hydra._internal.config_loader_impl as loader

    folder = folder_of(tmp_path, {
        "config.yaml": "defaults:\n  - group: a\n  - optional opt: x\n  - _self_\n",
        "more/c.yaml": "extra: 1\n",
        "group/a.yaml": "defaults:\n  - /more: c\n  - _self_\nsize: 3\n",
        "opt/x.yaml": "v: 2\n",
    })  # fmt: skip
    first = composed_from(folder)  # the list is kept
    assert (first.group.size, first.group.more.extra, first.opt.v) == (3, 1, 2)
    create = loader.create_defaults_list

    def changed_after_the_list(*arguments, **settings):
        made = create(*arguments, **settings)
        (folder / "group" / "a.yaml").write_text("size: 4\n")
        (folder / "opt" / "x.yaml").unlink()
        return made

    monkeypatch.setattr(loader, "create_defaults_list", changed_after_the_list)
    during = composed_from(folder)
    assert (during.group.size, during.group.more.extra, during.opt.v) == (3, 1, 2)
    monkeypatch.undo()
    after = composed_from(folder)
    assert after.group == {"size": 4} and "opt" not in after


def test_a_structured_config_stored_again_while_a_composition_reads_it_is_read_anew_by_the_next(tmp_path, monkeypatch):
    """A ConfigStore config stored again just after Hydra loaded it: that composition merges what Hydra loaded, and
    what is kept is keyed by that node (the stored node each loaded config was copied from), so the next composition
    merges the new one. A file group whose folder's name is a stored config's is looked up without error."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra.core.config_store import ConfigStore

    folder = folder_of(
        tmp_path / "conf", {"config.yaml": "defaults:\n  - stored_for_a_test: st\n  - _self_\nname: n\n"}
    )
    store = ConfigStore.instance()
    load = ConfigRepository.load_config

    def stored_again_after_the_lookup(self, config_path):
        found = load(self, config_path)
        if config_path == "stored_for_a_test/st":
            store.store(group="stored_for_a_test", name="st", node={"size": 2})
        return found

    try:
        store.store(group="stored_for_a_test", name="st", node={"size": 1})
        monkeypatch.setattr(ConfigRepository, "load_config", stored_again_after_the_lookup)
        assert composed_from(folder).stored_for_a_test.size == 1
        monkeypatch.undo()
        assert composed_from(folder).stored_for_a_test.size == 2 and composed_from(folder).stored_for_a_test.size == 2
        named_as_stored = folder_of(tmp_path / "named", {"config.yaml": "defaults:\n  - v1.yaml: a\n  - _self_\nx: 1\n",
                                                         "v1.yaml/a.yaml": "size: 3\n"})  # fmt: skip
        store.store(name="v1", node={"size": 0})
        assert composed_from(named_as_stored).x == 1
    finally:
        store.repo.pop("stored_for_a_test", None)
        store.repo.pop("v1.yaml", None)
