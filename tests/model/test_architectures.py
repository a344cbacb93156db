"""The architecture registry (src/model/config.py ARCHITECTURES) is complete and the only place that names them;
the site registry (src/model/names.py SITES) is true of the layers built, and the only place that spells, compares or
keeps a table of site names."""

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from src.data import all_tasks
from src.model import build_model, names
from src.model.ablation import layout_of
from src.model.config import ARCHITECTURES
from src.model.head_mask import attention_sites
from src.model.names import ATTENTION_SITES, FFN_SITES, SITES, STACKS
from src.model.transformer import TransformerBase
from tests.model.tiny import config as tiny_config

ROOT = Path(__file__).resolve().parents[2]


def python_files() -> list[Path]:
    """Every module of the code the registries hold to: src/ and hydra_plugins/."""
    return [path for folder in ("src", "hydra_plugins") for path in sorted((ROOT / folder).rglob("*.py"))]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_entry_is_complete_and_true_of_the_model_it_builds(name):
    arch = ARCHITECTURES[name]
    assert arch.stacks and set(arch.stacks) <= set(STACKS)
    assert list(arch.stacks) == [stack for stack in STACKS if stack in arch.stacks]  # in the order the data flows
    assert arch.task_kind in {spec.kind for spec in all_tasks().values()}
    assert issubclass(arch.model_class(), TransformerBase)
    model = build_model(tiny_config(arch=name))
    assert isinstance(model, arch.model_class())
    assert hasattr(model, "encoder") == arch.has_encoder
    assert hasattr(model, "decoder") == arch.has_decoder
    assert ("cross" in layout_of(model.cfg)) == arch.has_cross_attention
    assert hasattr(model, "head") == arch.classifies


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_an_architecture_is_called_by_its_title_on_the_attention_page_and_in_messages(name):
    from src.dashboard.explorer import describe_model
    from src.model import ConfigError
    from src.pretrained.fit import check_task_kind

    arch = ARCHITECTURES[name]
    model = build_model(tiny_config(arch=name))
    assert describe_model(model).startswith(arch.title + (" classifier, " if arch.classifies else ", "))
    other = next(task for task, spec in sorted(all_tasks().items()) if spec.kind != arch.task_kind)
    with pytest.raises(ConfigError, match=f"^model is {arch.title} and does {arch.task_kind} tasks; task={other} "):
        check_task_kind("model", model.cfg, other)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_an_architecture_classifies_exactly_where_its_task_kind_predicts_no_tokens(name):
    """Architecture.classifies (a head over num_classes) and its kind's predicts_tokens (logits over a vocabulary at
    each position) are declared apart, in two registries: they must say the same thing."""
    from src.data.registry import task_kind

    arch = ARCHITECTURES[name]
    assert arch.classifies == (not task_kind(arch.task_kind).predicts_tokens)


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


def _is_site_constant(node: ast.AST, constants: set[str]) -> bool:
    """ENCODER_SELF, names.CROSS (or a name bound to one: `constants`), or a tuple, list or set that holds one."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_is_site_constant(element, constants) for element in node.elts)
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    return name in constants


def _only_site_constants(node: ast.AST | None) -> bool:
    """A site constant, or a tuple, list or set of nothing else."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_only_site_constants(element) for element in node.elts)
    return node is not None and _is_site_constant(node, SITE_CONSTANTS)


def site_aliases(source: str) -> set[str]:
    """The names a module binds at its top level to a site constant, or to a collection of them (`SITE =
    DECODER_SELF`): comparing one compares a site's name as much as comparing the constant does, in that module and
    in any that imports it."""
    return {
        target.id
        for node in ast.parse(source).body
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and _only_site_constants(node.value)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }


def spelled_in_fstrings(tree: ast.AST, spellings: Iterable[str]) -> list[tuple[int, str]]:
    """(line, name) for each name of `spellings` that an f-string writes beside a placeholder, as part of a name it
    builds: f"z@cross:{layer}", f"{kind}@cross". Prose around a placeholder ("write e.g. cross:1") is not beside it."""
    alternatives = "|".join(re.escape(name) for name in spellings)
    before = re.compile(rf"(?<![\w-])({alternatives})[:@]?$")  # the literal text ends with the name: a value follows
    after = re.compile(rf"^[:@]?({alternatives})(?![\w-])")  # or begins with it: a value precedes
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.JoinedStr):
            continue
        parts = node.values
        for index, part in enumerate(parts):
            if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
                continue
            followed = index + 1 < len(parts) and isinstance(parts[index + 1], ast.FormattedValue)
            preceded = index > 0 and isinstance(parts[index - 1], ast.FormattedValue)
            match = (followed and before.search(part.value)) or (preceded and after.search(part.value))
            if match:
                found.append((node.lineno, match.group(1)))
    return found


def _is_literal(node: ast.AST | None) -> bool:
    """A value written out in the source (a number, a string, or a tuple, list or set of them): what a table of facts
    holds, where the model's own dicts keyed by its sites hold what it computed."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_is_literal(element) for element in node.elts)
    return isinstance(node, ast.Constant)


def site_name_uses(source: str, aliases: Iterable[str] = ()) -> list[tuple[int, str]]:
    """(line, what) for each place in a module's source that spells a site's name (in a string, or beside a
    placeholder of an f-string), compares one (by a site constant of names.py, or by a name bound to one: the
    module's own and `aliases`, those other modules bind), reads one's words, or keeps a table keyed by sites: a dict
    keyed by site constants at module level, or anywhere whose values are all written out (a function's table of
    facts; the model's own dicts of what it computed at each site hold computed values). Docstrings (and comments,
    which the parser drops) may name sites."""
    tree = ast.parse(source)
    constants = SITE_CONSTANTS | site_aliases(source) | set(aliases)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    module_level = {
        id(statement.value) for statement in tree.body if isinstance(statement, (ast.Assign, ast.AnnAssign))
    }
    found = [(line, f"spells the site name {name!r} in an f-string") for line, name in spelled_in_fstrings(tree, SITES)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in SITES and id(node) not in docstrings:
            found.append((node.lineno, f"spells the site name {node.value!r}"))
        elif isinstance(node, ast.Compare) and any(
            _is_site_constant(n, constants) for n in (node.left, *node.comparators)
        ):
            found.append((node.lineno, "compares a site's name"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith")
            and any(isinstance(arg, ast.Constant) and arg.value in NAME_PARTS for arg in node.args)
        ):
            found.append((node.lineno, f"reads a site's name by its words ({node.func.attr})"))
        elif (
            isinstance(node, ast.Dict)
            and any(key is not None and _is_site_constant(key, constants) for key in node.keys)
            and (id(node) in module_level or all(_is_literal(value) for value in node.values))
        ):
            found.append((node.lineno, "keeps a table keyed by site names"))
    return sorted(found)


def test_nothing_outside_the_site_registry_spells_compares_or_tabulates_site_names():
    """What a site is (its stack, the stack of its keys, its order in a layer, its title) is asked of names.SITES,
    and which sites a model has of its layers (sublayers()), never read from the spelling of a name."""
    registry = ROOT / "src" / "model" / "names.py"
    sources = {path: path.read_text() for path in python_files() if path != registry}
    aliases = {alias for source in sources.values() for alias in site_aliases(source)}
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path, source in sources.items()
        for line, what in site_name_uses(source, aliases)
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
        'patches = [f"resid_pre@decoder_self:{layer}" for layer in range(2)]',
        'point = f"{kind}@cross:1"',
        "SITE = DECODER_SELF\nif set(sites) != {SITE}: pass",
        "def order(site):\n    ORDER = {ENCODER_SELF: 0, CROSS: 1}\n    return ORDER[site]",
    ],
)
def test_the_site_name_check_finds_each_way_of_reading_a_name(line):
    assert site_name_uses(line) != []


def test_the_site_name_check_follows_a_name_bound_to_a_site_constant_into_the_modules_that_import_it():
    checks = "from src.analysis.induction import SITE\nif set(sites) != {SITE}: pass"
    assert site_name_uses(checks) == [] and site_name_uses(checks, site_aliases("SITE = DECODER_SELF")) != []


def test_the_site_name_check_lets_the_model_name_the_sites_it_builds_and_docstrings_name_them():
    built = '''
def attention_masks(self):
    """The mask of each site: mask["cross"][0] is the first cross-attention layer's."""
    return {ENCODER_SELF: self.encoder_mask(src), CROSS: cross}  # "cross": the cross-attention
'''
    message = 'raise ValueError(f"{spec!r} is not site:layer: write e.g. cross:1 or decoder_ffn:* (every layer)")'
    assert site_name_uses(built) == [] and site_name_uses(message) == []


def stack_name_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each place in a module's source that spells a stack's name, in a string or beside an
    f-string's placeholder. Docstrings (and comments) may name stacks, and so may getattr and hasattr: their string
    is the name of a Python attribute (a model's stack module, `model.decoder`, as the stack's name says; a
    tokenizer's decoder), as much as when written after a dot."""
    tree = ast.parse(source)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    attribute_names = {
        id(node.args[1])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
        if len(node.args) > 1
    }
    found = [
        (line, f"spells the stack name {name!r} in an f-string") for line, name in spelled_in_fstrings(tree, STACKS)
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in STACKS and id(node) not in docstrings | attribute_names:
            found.append((node.lineno, f"spells the stack name {node.value!r}"))
    return sorted(found)


def test_nothing_outside_the_stack_registry_spells_a_stack_name():
    """What a stack is (its batch entry, its side of the text, what its tokens are called, its layer count) is asked
    of names.STACKS; the code that builds a stack names it by names.ENCODER and names.DECODER."""
    registry = ROOT / "src" / "model" / "names.py"
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in python_files()
        if path != registry
        for line, what in stack_name_uses(path.read_text())
    ]
    assert found == [], "ask names.STACKS instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        'STACK_SIDES = {"encoder": "src", "decoder": "tgt"}',
        'if SITES[site].stack == "encoder": pass',
        'layers = {"encoder": cfg.enc_layers, "decoder": cfg.dec_layers}',
        'point = f"embed@decoder{suffix}"',
        'if ARCHITECTURES[cfg.arch].stacks != ("decoder",): pass',
    ],
)
def test_the_stack_name_check_finds_a_spelled_stack_name(line):
    assert stack_name_uses(line) != []


def test_the_stack_name_check_lets_docstrings_and_attribute_names_name_stacks():
    allowed = '''
def output_stack(model):
    """The decoder of a sequence model, the encoder of a classifier."""
    return getattr(model, "decoder", None) or model.encoder  # "encoder": the classifier's stack
'''
    assert stack_name_uses(allowed) == []
