"""src/cli/composition.py: Hydra's composition made cheaper, never different. Each saving against what Hydra and
OmegaConf do without it."""

from __future__ import annotations

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


def test_a_config_file_is_parsed_once_and_read_again_when_edited(tmp_path, monkeypatch):
    """Hydra parses every config file at every composition; a process keeps each file's parsed config, keyed by the
    file's bytes (remember_the_config_files): an edited file is parsed again, and what a composition
    does with its copy never reaches the next one."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from src.cli.schema import register_configs

    register_configs()
    (tmp_path / "group").mkdir()
    (tmp_path / "config.yaml").write_text("defaults:\n  - group: a\n  - _self_\nname: first\nsize: ${group.size}\n")
    (tmp_path / "group" / "a.yaml").write_text("size: 3\n")
    parsed = []
    load = OmegaConf.load
    monkeypatch.setattr(OmegaConf, "load", lambda file: parsed.append(getattr(file, "name", file)) or load(file))

    def composed():
        with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
            return compose("config")

    first = composed()
    assert (first.name, first.size) == ("first", 3)
    mine = [name for name in parsed if str(name).startswith(str(tmp_path))]
    assert sorted(mine) == [str(tmp_path / "config.yaml"), str(tmp_path / "group" / "a.yaml")]
    first.name = "changed by its command"
    parsed.clear()
    again = composed()
    assert (again.name, again.size) == ("first", 3) and list(again.keys()) == ["group", "name", "size"]
    assert not [name for name in parsed if str(name).startswith(str(tmp_path))]
    (tmp_path / "group" / "a.yaml").write_text("size: 4\n")
    parsed.clear()
    assert composed().size == 4
    assert [name for name in parsed if str(name).startswith(str(tmp_path))] == [str(tmp_path / "group" / "a.yaml")]


def test_an_interpolation_is_parsed_once_and_resolves_in_each_config_to_its_own_value():
    """OmegaConf parses an interpolation string at every resolution; its parse tree is kept per string
    (remember_the_parse_trees), and each config resolves the same tree against its own values. A string that does
    not parse is refused every time, as before."""
    import omegaconf.grammar_parser
    from omegaconf import OmegaConf
    from omegaconf.errors import GrammarParseError

    from src.cli.composition import remember_the_parse_trees

    remember_the_parse_trees()
    parse = omegaconf.grammar_parser.parse
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
