"""The architecture registry (src/model/config.py ARCHITECTURES) is complete and the only place that names them;
the site registry (src/model/names.py SITES) is true of the layers built, and the only place that spells, compares or
keeps a table of site names."""

import ast
import re
from pathlib import Path

import pytest

from src.data import all_tasks
from src.model import build_model, names
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


# The constants names.py spells the sites with (ENCODER_SELF, ..., CROSS): the code that builds a site names it by
# them; comparing them, or keying a table of what a site is by them, is asking the name instead of SITES.
SITE_CONSTANTS = {
    name for name, value in vars(names).items() if name.isupper() and isinstance(value, str) and value in SITES
}


def name_parts() -> set[str]:
    """A site name's leading and trailing words ("encoder", "encoder_", "self", "_self", ...): startswith or endswith
    with one of them reads what a site is from how its name is spelled."""
    parts = set()
    for name in SITES:
        words = name.split("_")
        for i in range(1, len(words)):
            head, tail = "_".join(words[:i]), "_".join(words[i:])
            parts |= {head, head + "_", tail, "_" + tail}
    return parts


NAME_PARTS = name_parts()


def _is_site_constant(node: ast.AST) -> bool:
    """ENCODER_SELF, names.CROSS, or a tuple, list or set that holds one."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_is_site_constant(element) for element in node.elts)
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    return name in SITE_CONSTANTS


def site_name_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each place in a module's source that spells a site's name, compares one, reads one's words or
    keys a module-level table by them. Docstrings (and comments, which the parser drops) may name sites."""
    tree = ast.parse(source)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in SITES and id(node) not in docstrings:
            found.append((node.lineno, f"spells the site name {node.value!r}"))
        elif isinstance(node, ast.Compare) and any(_is_site_constant(n) for n in (node.left, *node.comparators)):
            found.append((node.lineno, "compares a site's name"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith")
            and any(isinstance(arg, ast.Constant) and arg.value in NAME_PARTS for arg in node.args)
        ):
            found.append((node.lineno, f"reads a site's name by its words ({node.func.attr})"))
    for statement in tree.body:  # a table: a module-level dict keyed by sites
        if isinstance(statement, (ast.Assign, ast.AnnAssign)) and isinstance(statement.value, ast.Dict):
            if any(key is not None and _is_site_constant(key) for key in statement.value.keys):
                found.append((statement.lineno, "keeps a table keyed by site names"))
    return sorted(found)


def test_nothing_outside_the_site_registry_spells_compares_or_tabulates_site_names():
    """What a site is (its stack, the stack of its keys, its order in a layer, its title) is asked of names.SITES,
    and which sites a model has of its layers (sublayers()), never read from the spelling of a name."""
    registry = ROOT / "src" / "model" / "names.py"
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for folder in ("src", "hydra_plugins")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != registry
        for line, what in site_name_uses(path.read_text())
    ]
    assert found == [], "ask names.SITES instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        'ORDER = {"encoder_self": 0, "cross": 1}',
        "SIDES = {ENCODER_SELF: 'src', names.CROSS: 'tgt'}",
        'if site == "cross": pass',
        "if site in (CROSS, DECODER_SELF): pass",
        'stack = "encoder" if site.startswith("encoder") else "decoder"',
        'feed_forward = site.endswith("_ffn")',
    ],
)
def test_the_site_name_check_finds_each_way_of_reading_a_name(line):
    assert site_name_uses(line) != []


def test_the_site_name_check_lets_the_model_name_the_sites_it_builds_and_docstrings_name_them():
    built = '''
def attention_masks(self):
    """The mask of each site: mask["cross"][0] is the first cross-attention layer's."""
    return {ENCODER_SELF: 1, CROSS: 2}  # "cross": the cross-attention
'''
    assert site_name_uses(built) == []
