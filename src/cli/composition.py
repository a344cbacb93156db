"""Hydra's composition, made cheaper: what it repeats at every composition, done once per process.

Every command composes its config at least once, a sweep once per job, and the tests thousands of times. A
composition of the run's config took 185-230 ms on a 2-core EPYC, most of it repeated work, removed here:

- the ConfigStore deep-copied with Hydra's config repository (share_the_config_store);
- every config file of the defaults tree read and parsed again (remember_the_config_files);
- every interpolation string (`${...}`) lexed and parsed again by OmegaConf's ANTLR grammar, a dozen times a
  composition for the same seven strings (remember_the_parse_trees).

Together with the schemas registered once (src/cli/schema.py register_configs), a composition takes about 100 ms
there, measured side by side in one process. Each is a change of how Hydra and OmegaConf (hydra-core 1.3,
omegaconf 2.3: pyproject.toml pins both below their next minor release) compute a result, never of the result:
tests/cli/test_composition.py checks each.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
from typing import Any

from hydra.core.config_store import ConfigStore


def compose_cheaply() -> None:
    """All of the below; each is done once however often it is called."""
    share_the_config_store()
    remember_the_config_files()
    remember_the_parse_trees()


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
    config is kept for the process, keyed by the file's bytes (a file edited since is parsed again), and every
    composition gets a copy of its own, as Hydra edits what it loads (it takes the defaults list out); a copy costs a
    fifth of a parse. Hydra's own packaged configs (pkg://) do not change while a process runs and are kept by
    name."""
    from hydra._internal.core_plugins.file_config_source import FileConfigSource
    from hydra._internal.core_plugins.importlib_resources_config_source import ImportlibResourcesConfigSource

    for source in (FileConfigSource, ImportlibResourcesConfigSource):
        if not hasattr(source.load_config, "parsed"):
            source.load_config = _remembering(source.load_config)  # type: ignore[method-assign]


def _remembering(load_config: Any) -> Any:
    """A config source's load_config that parses each file once (remember_the_config_files)."""
    from hydra.plugins.config_source import ConfigResult

    parsed: dict[tuple, ConfigResult] = {}

    def load(self: Any, config_path: str) -> ConfigResult:
        key: tuple = (type(self), self.path, config_path)
        if self.scheme() == "file":
            full_path = os.path.realpath(os.path.join(self.path, self._normalize_file_name(config_path)))
            try:
                with open(full_path, "rb") as f:
                    key += (f.read(),)
            except OSError:  # not there (Hydra's own error follows) or not readable: as Hydra reads it
                return load_config(self, config_path)
        if key not in parsed:
            if len(parsed) >= 1024:  # a process that composes from many files (the test suite): kept bounded
                parsed.clear()
            parsed[key] = load_config(self, config_path)
        kept = parsed[key]
        return dataclasses.replace(kept, config=copy.deepcopy(kept.config), header=dict(kept.header))

    load.parsed = parsed  # type: ignore[attr-defined]
    return load


def remember_the_parse_trees() -> None:
    """OmegaConf parses an interpolation string with its ANTLR grammar every time it resolves or checks one: the
    same seven strings a dozen times a composition, 3 ms each (a third of a composition's time, with the above in
    place). The parse tree of a string is a function of the string alone (the node it belongs to is given to the
    visitor that walks the tree, which only reads it): each string is parsed once per process. A string that does
    not parse raises as before, every time."""
    import omegaconf._utils
    import omegaconf.base
    import omegaconf.grammar_parser
    import omegaconf.resolvers.oc

    parse = omegaconf.grammar_parser.parse
    if hasattr(parse, "cache_info"):
        return
    remembered = functools.lru_cache(maxsize=4096)(parse)
    for module in (omegaconf.grammar_parser, omegaconf.base, omegaconf._utils, omegaconf.resolvers.oc):
        module.parse = remembered  # type: ignore[attr-defined]
