"""Hydra's composition, made cheaper: what it repeats at every composition, done once per process.

Every command composes its config at least once, a sweep once per job, and the tests thousands of times. A
composition of the run's config took 185-230 ms on a 2-core EPYC, most of it repeated work, removed here:

- the ConfigStore deep-copied with Hydra's config repository (share_the_config_store);
- every config file of the defaults tree read and parsed again (remember_the_config_files);
- every interpolation string (`${...}`) lexed and parsed again by OmegaConf's ANTLR grammar, a dozen times a
  composition for the same seven strings (remember_the_parse_trees);
- the defaults list built again, config by config, where only the command line's values differ
  (remember_the_defaults_lists);
- the configs of the defaults list merged again, in the same order from the same files
  (remember_the_merged_defaults).

Together with the schemas registered once (src/cli/schema.py register_configs), the first three brought a
composition to 106-120 ms there (20 compositions a round, the old and the new code in alternating processes), 88-97 ms
on a later day, and the last two to 33-52 ms (22-28 ms measured beside it before a kept list's check loaded its
configs; a process's first composition, which reads every file, excepted: about 0.3 s). Each is a change of how Hydra
and OmegaConf (hydra-core 1.3, omegaconf 2.3: pyproject.toml pins both below their next minor release) compute a
result, never of the result: tests/cli/test_composition.py checks each, against Hydra's own code where it can be
called.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import sys
import warnings
from typing import Any

from hydra.core.config_store import ConfigStore


def compose_cheaply() -> None:
    """All of the below; each is done once however often it is called."""
    share_the_config_store()
    remember_the_config_files()
    remember_the_parse_trees()
    count_hydras_warnings()
    remember_the_defaults_lists()
    remember_the_merged_defaults()


def share_the_config_store() -> None:
    """Hydra deep-copies its config repository at the start of every composition (CachingConfigRepository: so that
    the composition can re-point the copy's sources), and with the repository the ConfigStore its structured-config
    source holds: every schema src/cli/schema.py registers and every plugin's (12-16 ms a copy here; 168 against
    140 ms a composition, measured side by side). A composition only reads the store (which hands out copies of its
    nodes), and it is a singleton: its copy is itself. Hydra's own fix (facebookresearch/hydra#2928: the source asks
    for the singleton instead of holding it) is in no 1.3 release."""
    ConfigStore.__deepcopy__ = lambda self, memo: self  # type: ignore[attr-defined]


def remember_the_config_files() -> None:
    """Hydra reads and parses every config file of the defaults tree at every composition (about 24 files for the
    run's config): YAML through OmegaConf's pure-Python loader, then every value wrapped in its node. A file's parsed
    config is kept for the process, keyed by the file's bytes (a file edited since is parsed again; one written
    while it was read is not kept), and every composition gets a copy of its own, as Hydra edits what it loads (it
    takes the defaults list out); a copy costs a fifth of a parse. Each copy is tagged with the bytes it was parsed
    from, and each config the ConfigStore's source loads with the stored node it is a copy of (_telling_the_node):
    what the kept defaults lists and merges are keyed by (_held).

    Both of Hydra's file sources are changed: `file://` (the configs' folder, --config-dir, a search path) and
    `pkg://` (configs in a package, Hydra's own among them). Hydra's first initialisation in a process scans its
    plugins, which executes its source modules again and registers the new classes: the classes are changed as the
    registry takes them."""
    from hydra._internal.core_plugins.file_config_source import FileConfigSource
    from hydra._internal.core_plugins.importlib_resources_config_source import ImportlibResourcesConfigSource
    from hydra._internal.sources_registry import SourcesRegistry

    for source in (FileConfigSource, ImportlibResourcesConfigSource, *SourcesRegistry.instance().types.values()):
        _remember_its_files(source)
    if not hasattr(SourcesRegistry.register, "remembers"):
        register = SourcesRegistry.register

        def registering(self: Any, type_: Any) -> None:
            register(self, type_)
            _remember_its_files(self.types[type_.scheme()])

        registering.remembers = True  # type: ignore[attr-defined]
        SourcesRegistry.register = registering  # type: ignore[method-assign]


def _remember_its_files(source: Any) -> None:
    """A file:// or pkg:// config source's class, its load_config parsing each file once (remember_the_config_files);
    the ConfigStore's (structured://), its load_config telling which stored node each config was copied from
    (_telling_the_node); any other source as it is."""
    if source.scheme() in ("file", "pkg") and not hasattr(source.load_config, "parsed"):
        source.load_config = _remembering(source.load_config)
    elif source.scheme() == "structured" and not hasattr(source.load_config, "tells"):
        source.load_config = _telling_the_node(source.load_config)


def _telling_the_node(load_config: Any) -> Any:
    """The ConfigStore source's load_config, each config it returns tagged with the stored node it is a copy of
    (`stored_node`, read by _held): the node stored under that name when Hydra loaded it, not one stored since."""

    def load(self: Any, config_path: str) -> Any:
        node = _stored_node(config_path)
        result = load_config(self, config_path)  # raises as Hydra does
        if _stored_node(config_path) is node:  # else stored again meanwhile (another thread): untagged, never kept
            result.stored_node = node
        return result

    load.tells = True  # type: ignore[attr-defined]
    return load


def _file_name(config_path: str) -> str:
    """The file name Hydra reads for the config `config_path` (ConfigSource._normalize_file_name, without its warning
    for a `.yml` file, which Hydra says itself when it reads one)."""
    from hydra import version

    extensions = (".yaml",) if version.base_at_least("1.2") else (".yaml", ".yml")
    return config_path if config_path.endswith(extensions) else f"{config_path}.yaml"


def _bytes_of(source: Any, config_path: str) -> bytes | None:
    """The bytes of the config file `config_path` of `source` (file:// or pkg://), None if it cannot be read."""
    name = _file_name(config_path)
    try:
        if source.scheme() == "file":
            with open(os.path.realpath(os.path.join(source.path, name)), "rb") as f:
                return f.read()
        from importlib import resources

        return resources.files(source.path).joinpath(name).read_bytes()
    except Exception:  # not there, not readable, not a package: Hydra's own load_config says what is wrong
        return None


def _remembering(load_config: Any) -> Any:
    """A config source's load_config that parses each file once (remember_the_config_files)."""
    from hydra.plugins.config_source import ConfigResult

    parsed: dict[tuple, ConfigResult] = {}

    def load(self: Any, config_path: str) -> ConfigResult:
        before = _bytes_of(self, config_path)
        kept = parsed.get((type(self).__name__, self.path, config_path, before)) if before is not None else None
        if kept is None:
            result = load_config(self, config_path)  # raises as Hydra does: a failure is never kept
            if before is None or _bytes_of(self, config_path) != before:
                return result  # written while Hydra read it: this parse may be of neither content (and has no tag)
            if len(parsed) >= 1024:  # a process that composes from many files (the test suite): kept bounded
                parsed.clear()
            parsed[(type(self).__name__, self.path, config_path, before)] = kept = result
        else:
            self._normalize_file_name(config_path)  # what Hydra's load_config says first (a `.yml` file's warning)
        copied = dataclasses.replace(kept, config=copy.deepcopy(kept.config), header=dict(kept.header))
        copied.parsed_from = before  # type: ignore[attr-defined]  # the bytes this config was parsed from (_held)
        return copied

    load.parsed = parsed  # type: ignore[attr-defined]
    return load


SHORT_INTERPOLATION = 200  # characters: the longest interpolation string whose parse tree is kept


def remember_the_parse_trees() -> None:
    """OmegaConf parses an interpolation string with its ANTLR grammar every time it resolves or checks one: the
    same seven strings a dozen times a composition, 3 ms each (a third of a composition's time, with the above in
    place). The parse tree of a string is a function of the string alone (the node it belongs to is given to the
    visitor that walks the tree, which only reads it): each string is parsed once per process. A string that does
    not parse raises as before, every time (a failure is never kept). Only short strings are kept, a thousand at
    most: a tree takes about 10 kB for a 60-character string, and a long one (an `oc.decode` of a long list) grows
    with it."""
    import omegaconf._utils
    import omegaconf.base
    import omegaconf.grammar_parser
    import omegaconf.resolvers.oc

    parse = omegaconf.grammar_parser.parse
    if hasattr(parse, "remembered"):
        return
    remembered = functools.lru_cache(maxsize=1024)(parse)

    def parse_once(value: str, parser_rule: str = "configValue", lexer_mode: str = "DEFAULT_MODE") -> Any:
        if len(value) > SHORT_INTERPOLATION:
            return parse(value, parser_rule, lexer_mode)
        return remembered(value, parser_rule, lexer_mode)

    parse_once.remembered = remembered  # type: ignore[attr-defined]
    for module in (omegaconf.grammar_parser, omegaconf.base, omegaconf._utils, omegaconf.resolvers.oc):
        module.parse = parse_once  # type: ignore[attr-defined]


HYDRAS_WARNINGS = [0]  # warnings Hydra has said while it built a defaults list or merged one (count_hydras_warnings)


def count_hydras_warnings() -> None:
    """Hydra warns while it builds a defaults list (a primary config without `_self_`; Hydra 1.1's forms: a Hydra
    group chosen without `override`, `_group_` and `_name_` in packages, `optional: true`) or merges one (a file
    matched to a ConfigStore schema by its name), and raises instead where asked to (SELF_WARNING_AS_ERROR,
    HYDRA_DEPRECATION_WARNINGS_AS_ERRORS). A list or merge kept would say neither again: one during which Hydra warned
    is not kept (remember_the_defaults_lists, remember_the_merged_defaults), and its warnings come at every
    composition, as before. Each warning is counted here and said as Hydra says it, from the same place."""
    import hydra._internal.config_loader_impl as loader
    import hydra._internal.config_repository as repository
    import hydra._internal.defaults_list as defaults_list
    import hydra.core.default_element as default_element
    import hydra.plugins.config_source as config_source

    if isinstance(defaults_list.warnings, _CountedWarnings):
        return
    defaults_list.warnings = _CountedWarnings()  # type: ignore[assignment]
    for module in (loader, repository, defaults_list, default_element, config_source):  # each place that warns
        module.deprecation_warning = _counted(module.deprecation_warning)  # type: ignore[attr-defined]


class _CountedWarnings:
    """The `warnings` module as Hydra's defaults list code sees it: the same, each warning counted."""

    def __getattr__(self, name: str) -> Any:
        return getattr(warnings, name)

    def warn(self, message: Any, category: Any = None, stacklevel: int = 1, source: Any = None) -> None:
        HYDRAS_WARNINGS[0] += 1
        further = 1 + _frames_of_ours(sys._getframe(1), stacklevel)
        warnings.warn(message, category, stacklevel + further, source)  # said from where Hydra says it


def _counted(deprecation_warning: Any) -> Any:
    def counted(message: str, stacklevel: int = 1) -> None:
        HYDRAS_WARNINGS[0] += 1
        deprecation_warning(message, stacklevel + 1 + _frames_of_ours(sys._getframe(1), stacklevel))

    return counted


def _frames_of_ours(caller: Any, stacklevel: int) -> int:
    """How many frames of this module's functions (remember_the_defaults_lists' and remember_the_merged_defaults'
    wrappers, the noting repository) lie between the frame of Hydra's that warns (`caller`) and the frame its
    `stacklevel` names: Hydra counts them not, so the warning is said that many frames further out, from the same
    line as without them (a warning filter by module or line, and Python's once per place, depend on it)."""
    ours, left, frame = 0, stacklevel - 1, caller
    while left > 0 and frame is not None:
        frame = frame.f_back
        if frame is not None and frame.f_globals.get("__name__") == __name__:
            ours += 1
        else:
            left -= 1
    return ours


UNKNOWN = ("a source whose content cannot be told",)  # what _held answers for a config no key can describe


def _held(repo: Any, config_path: str, nodes: list | None = None) -> tuple:
    """What a composition's config repository holds for the config `config_path`: where it comes from (the source's
    address) and its content. A config this composition has looked up already (Hydra's CachingConfigRepository keeps
    what it found for the composition, None where nothing) is answered from what Hydra found: the source it came from
    and the bytes it was parsed from (remember_the_config_files), so that a file written, created or removed since
    answers what Hydra used. Any other from the search path now: the first source that has it, and the file's bytes
    or the ConfigStore's node by identity (kept alive in `nodes`, so that no other object takes its id). UNKNOWN for
    a source that is none of these (a plugin's), and for a file read while it was written."""
    from hydra.core.object_type import ObjectType

    found = getattr(repo, "cache", {})
    looked_up = f"config_path={config_path}"
    if looked_up in found:
        loaded = found[looked_up]
        if loaded is None:
            return (None,)
        if loaded.path.startswith("structured://"):
            if not hasattr(loaded, "stored_node"):
                return UNKNOWN
            if nodes is not None:
                nodes.append(loaded.stored_node)
            return (loaded.path, id(loaded.stored_node))
        content = getattr(loaded, "parsed_from", None)
        return UNKNOWN if content is None else (loaded.path, content)
    source = getattr(repo, "delegate", repo)._find_object_source(config_path, ObjectType.CONFIG)
    if source is None:
        return (None,)
    where = f"{source.scheme()}://{source.path}"  # as Hydra's sources name themselves in what they load
    if source.scheme() in ("file", "pkg"):
        content = _bytes_of(source, config_path)
        return UNKNOWN if content is None else (where, content)
    if source.scheme() == "structured":
        return (where, _stored(config_path, nodes))
    return UNKNOWN


def _stored(config_path: str, nodes: list | None) -> int:
    """The identity of the ConfigStore's node of `config_path` (a structured config, or the schema Hydra matches a
    file with by name; None's if neither), the node kept alive in `nodes`."""
    node = _stored_node(config_path)
    if nodes is not None:
        nodes.append(node)
    return id(node)


def _stored_node(config_path: str) -> Any:
    """The ConfigStore's node of the config `config_path`, None if it holds none (ConfigStore._open's walk, which
    stops where a part of the path is a stored config rather than a group, as ConfigStore.load does)."""
    node: Any = ConfigStore.instance().repo
    for part in _file_name(config_path).split("/"):
        if part == "":
            continue
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _composing_with() -> tuple:
    """What every kept list and merge also depends on: the search path's sources are in each key, and so is the
    version_base of Hydra's initialisation (Hydra 1.1's rules differ from 1.3's)."""
    from hydra import version

    return (str(version.getbase()),)


MERGED_KEPT = 256  # defaults lists whose merged config is kept: a command has a few, the test suite some dozens


def remember_the_merged_defaults() -> None:
    """Hydra composes in two steps: it merges the configs of the defaults list in order (every file the group
    choices select, each checked against its schema), then applies the command line's values to the result. The
    first step was half of a composition, and its result depends only on the defaults list and on what the sources
    hold for it, not on the values: commands that choose the same groups (every sweep job of `model.heads=1,2,4`,
    and most commands a user types) merge the same configs to the same result. It is kept per defaults list and
    content, and every composition gets a copy of its own, as the second step edits it (a copy costs a seventh of a
    merge).

    The key (_merge_key) holds, for each config of the list, where the list puts it (path, package, parent) and what
    the repository holds for it (_held: its source, the bytes Hydra parsed, the ConfigStore node by identity), and
    the ConfigStore node of its name (the schema Hydra matches a file with), so that a file edited, or a config
    stored again or removed, is merged anew. It is taken after the merge, from what the merge read. A merge that
    failed, warned (count_hydras_warnings), or read a config no key can describe is not kept."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    merge = ConfigLoaderImpl._compose_config_from_defaults_list
    if hasattr(merge, "merged"):
        return
    merged: dict[tuple, tuple[Any, list]] = {}

    def merge_once(self: Any, defaults: list, repo: Any) -> Any:
        key, _ = _merge_key(defaults, repo)  # the list's configs are in the composition's cache: what it read
        kept = merged.get(key) if key is not None else None
        if kept is not None:
            return copy.deepcopy(kept[0])
        warned = HYDRAS_WARNINGS[0]
        cfg = merge(self, defaults, repo)  # raises as Hydra does: a failure is never kept
        after, nodes = _merge_key(defaults, repo)  # what the merge read: the same, unless a config changed meanwhile
        if key is not None and after == key and HYDRAS_WARNINGS[0] == warned:
            if len(merged) >= MERGED_KEPT:
                merged.clear()
            merged[key] = (cfg, nodes)  # the nodes kept alive with it: no other object takes their ids
            return copy.deepcopy(cfg)
        return cfg

    merge_once.merged = merged  # type: ignore[attr-defined]
    merge_once.uncached = merge  # type: ignore[attr-defined]
    ConfigLoaderImpl._compose_config_from_defaults_list = merge_once  # type: ignore[method-assign]


def _merge_key(defaults: list, repo: Any) -> tuple[tuple | None, list]:
    """What the merge of `defaults` depends on (remember_the_merged_defaults), and the ConfigStore nodes it names by
    identity; (None, []) where a config cannot be described (_held)."""
    key: list = [_composing_with(), tuple((type(source).__name__, source.path) for source in repo.get_sources())]
    nodes: list = []
    for default in defaults:
        path = default.config_path
        held = _held(repo, path, nodes) if path is not None else UNKNOWN
        if held == UNKNOWN or held == (None,):
            return None, []
        where = (path, default.package, default.parent, default.is_self, default.primary)
        key.append((*where, *held, _stored(path, nodes)))
    return tuple(key), nodes


DEFAULTS_LISTS_KEPT = 256  # command lines' group choices whose defaults list is kept


def remember_the_defaults_lists() -> None:
    """Before it merges anything, Hydra builds the defaults list: it loads the primary config and, recursively, every
    config its defaults name, applying the command line's group choices (`task=sort`, `hydra/launcher=stacked`,
    `+experiment=depth`, `~ablate`). The list depends on those choices and on what the sources hold, never on the
    command line's values (`model.heads=2`), which Hydra only passes on to apply after the merge. With the merge
    kept (remember_the_merged_defaults) the list was most of a composition's time.

    A list is kept per config name and group choices. While Hydra builds it, every question it asks of the config
    repository is noted with its answer (what the repository holds for a config (_held), whether a group or config
    exists, a group's options): the kept list is used only while each question still gets the same answer, and a
    copy of it with this command line's values. A list is not kept where its building failed or warned
    (count_hydras_warnings), read a config no key can describe (_held), or met an interpolated choice (a default
    `- db: ${oc.env:DB}`, or `db=${oc.env:DB}` on the command line), which a resolver may answer otherwise next
    time."""
    import hydra._internal.config_loader_impl as loader

    create = loader.create_defaults_list
    if hasattr(create, "lists"):
        return
    lists: dict[tuple, tuple[Any, list, list]] = {}

    def create_once(repo: Any, config_name: Any, overrides_list: list, prepend_hydra: bool, skip_missing: bool) -> Any:
        choices, values = _choices_and_values(repo, overrides_list)
        if any("${" in choice for choice in choices):  # `db=${oc.env:DB}`: a resolver may choose otherwise next time
            return create(repo, config_name, overrides_list, prepend_hydra, skip_missing)
        sources = tuple((type(source).__name__, source.path) for source in repo.get_sources())
        key = (_composing_with(), config_name, prepend_hydra, skip_missing, sources, choices)
        kept = lists.get(key)
        if kept is not None and all(_asked(repo, question) == answer for question, answer in kept[1]):
            made = copy.deepcopy(kept[0])
            made.config_overrides = made.overrides.config_overrides = values
            return made
        asking = _NotingRepository(repo)
        warned = HYDRAS_WARNINGS[0]
        made = create(asking, config_name, overrides_list, prepend_hydra, skip_missing)  # raises as Hydra does
        if asking.describable and HYDRAS_WARNINGS[0] == warned:
            if len(lists) >= DEFAULTS_LISTS_KEPT:
                lists.clear()
            lists[key] = (copy.deepcopy(made), asking.questions, asking.nodes)
        return made

    create_once.lists = lists  # type: ignore[attr-defined]
    create_once.uncached = create  # type: ignore[attr-defined]
    loader.create_defaults_list = create_once  # type: ignore[attr-defined]


def _choices_and_values(repo: Any, overrides: list) -> tuple[tuple[str, ...], list]:
    """The command line's group choices (as written) and its values (the overrides), told apart by Hydra's own
    defaults_list.Overrides, as create_defaults_list tells them apart (a sweep is neither). It raises where that
    would (a group added with ++), before anything is kept."""
    from hydra._internal.defaults_list import Overrides

    values = Overrides(repo=repo, overrides_list=overrides).config_overrides
    choices = tuple(o.input_line or "" for o in overrides if not o.is_sweep_override() and o not in values)
    return choices, values


def _asked(repo: Any, question: tuple) -> Any:
    """The answer `repo` gives now to a question the defaults list asked (_NotingRepository). A config is loaded as
    Hydra's own building of the list loads it (into the composition's cache), so that the merge reads the very
    content the kept list was checked against, as Hydra's merge reads what its list was built from."""
    method, *arguments = question
    if method == "load_config":
        try:
            repo.load_config(*arguments)
        except Exception:  # building the list again says what is wrong, as Hydra does
            return UNKNOWN
        return _held(repo, *arguments)
    return getattr(repo, method)(*arguments)


def _interpolated(default: Any) -> bool:
    """A default of a config's defaults list (as read: unresolved) names its group, option or package with `${`."""
    return any("${" in str(getattr(default, name, None) or "") for name in ("path", "group", "value", "package"))


_CONFIGS = object()  # get_group_options' default, told apart from a filter of None (both configs and groups)


class _NotingRepository:
    """A config repository that notes each question the defaults list asks of it, with its answer, and whether the
    list can be kept (describable: every config's content has a key, and no default is interpolated)."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo
        self.questions: list[tuple[tuple, Any]] = []
        self.nodes: list = []
        self.describable = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)

    def load_config(self, config_path: str) -> Any:
        loaded = self.repo.load_config(config_path)
        held = _held(self.repo, config_path, self.nodes)  # after the load: what this composition read
        self.questions.append((("load_config", config_path), held))
        interpolated = any(_interpolated(default) for default in getattr(loaded, "defaults_list", None) or [])
        self.describable = self.describable and held != UNKNOWN and not interpolated
        return loaded

    def _noted(self, method: str, *arguments: Any) -> Any:
        answer = getattr(self.repo, method)(*arguments)
        self.questions.append(((method, *arguments), copy.copy(answer)))
        return answer

    def group_exists(self, config_path: str) -> bool:
        return self._noted("group_exists", config_path)

    def config_exists(self, config_path: str) -> bool:
        return self._noted("config_exists", config_path)

    def get_group_options(self, group_name: str, results_filter: Any = _CONFIGS) -> list[str]:
        if results_filter is _CONFIGS:  # Hydra's default: configs, not groups
            from hydra.core.object_type import ObjectType

            results_filter = ObjectType.CONFIG
        return self._noted("get_group_options", group_name, results_filter)
