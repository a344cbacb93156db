"""The architecture registry (src/model/config.py ARCHITECTURES) is complete and the only place that names them;
the site registry (src/model/names.py SITES) is true of the layers built."""

import re
from pathlib import Path

import pytest

from src.data import all_tasks
from src.model import build_model
from src.model.ablation import layout_of
from src.model.config import ARCHITECTURES
from src.model.head_mask import attention_sites
from src.model.names import ATTENTION_SITES, FFN_SITES, SITES
from src.model.transformer import TransformerBase
from tests.model.tiny import config as tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_entry_is_complete_and_true_of_the_model_it_builds(name):
    arch = ARCHITECTURES[name]
    assert arch.stacks and set(arch.stacks) <= {"encoder", "decoder"}
    assert arch.task_kind in {spec.kind for spec in all_tasks().values()}
    assert issubclass(arch.model_class(), TransformerBase)
    model = build_model(tiny_config(arch=name))
    assert isinstance(model, arch.model_class())
    assert hasattr(model, "encoder") == arch.has_encoder
    assert hasattr(model, "decoder") == arch.has_decoder
    assert ("cross" in layout_of(model.cfg)) == arch.has_cross_attention
    assert hasattr(model, "head") == arch.classifies


def test_each_task_kind_has_one_architecture():
    kinds = [arch.task_kind for arch in ARCHITECTURES.values()]
    assert len(set(kinds)) == len(kinds)


# An architecture's name in quotes is a comparison or a table of its own; `arch="..."` (a config that sets it: the
# pretrained conversions, benchmarks) is not.
QUOTED_NAME = re.compile(r"""(?<!arch=)["'](%s)["']""" % "|".join(ARCHITECTURES))


def test_nothing_outside_the_registry_names_an_architecture():
    registry = ROOT / "src" / "model" / "config.py"
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("src", "hydra_plugins")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != registry
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if QUOTED_NAME.search(line)
    ]
    assert found == [], "ask config.ARCHITECTURES instead:\n" + "\n".join(found)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_the_site_registry_is_true_of_every_layer(name):
    """names.SITES: each site of a built model sits in its stack, reads keys of a stack the model has, and the
    layer holds its sites in their order."""
    arch = ARCHITECTURES[name]
    model = build_model(tiny_config(arch=name))
    for stack in arch.stacks:
        for layer in getattr(model, stack).layers:
            found = [site for site, _, _ in layer.sublayers()]
            orders = [SITES[site].order for site in found]  # a decoder-only layer has no cross-attention
            assert orders == sorted(set(orders))
            for site in found:
                assert SITES[site].stack == stack
                assert SITES[site].attention == (site in ATTENTION_SITES) != (site in FFN_SITES)
                assert SITES[site].key_stack in (arch.stacks if SITES[site].attention else (None,))
    assert list(attention_sites(model)) == [site for site in ATTENTION_SITES if site in layout_of(model.cfg)]
