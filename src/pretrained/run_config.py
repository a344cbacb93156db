"""What a fine-tuned run's config says of its pretrained model (src.run with model.pretrained=...).

The model's config.json fixes its architecture, so the run config as Hydra composed it (the default model, the
standard mask) is not what trains. `record_pretrained_settings` writes the model's own settings into the run config,
and into the .hydra/config.yaml Hydra saved before the job began, so that the printed config, the checkpoints', the
TensorBoard HPARAMS tab and src.report's tables all say what the model is: its model axes, and the mask it attends
with (Mistral's sliding window as `mask: {type: window, window: N}`, as `mask=window mask.window=N` composes it).

A mask given on the command line beside model.pretrained applies (an ablation like any other), with one warning
when it is not the one the model was trained with (`replaced_mask_line`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from src.model import ModelAxes, TransformerConfig
from src.model.config import ARCHITECTURES
from src.model.masks import MASK_SCHEMES
from src.model.names import DECODER, ENCODER


def record_pretrained_settings(cfg: DictConfig, model_cfg: TransformerConfig, saved: Path | None = None) -> None:
    """Put the pretrained model's settings, as `model_cfg` (src.cli.schema.model_config_for) has them, into the run
    config `cfg`: every model axis (config.json's; the dropouts as given), `model.layers` (the stacks' one count, or
    null where they differ), and its mask (the model's own, or the one given on the command line). `saved`: Hydra's
    copy of the config (.hydra/config.yaml), rewritten with them; None where there is none."""
    from src.cli.schema import schema_value

    with open_dict(cfg.model):
        for axis in fields(ModelAxes):
            cfg.model[axis.name] = schema_value(axis.name, getattr(model_cfg, axis.name))
        # `layers` sets both stacks when they are composed; the model's own counts replace them above, so a
        # `layers: 2` left beside a 22-layer decoder would say what the model is not. Stacks of two depths (a
        # Flan-T5 with a deeper decoder) have no one number that is both: null.
        counts = {count for count in (model_cfg.enc_layers, model_cfg.dec_layers) if count}
        cfg.model.layers = counts.pop() if len(counts) == 1 else None
    cfg.mask = mask_node(model_cfg.mask)
    if saved is not None:
        rewrite_saved_config(saved, cfg)


def mask_node(mask: dict[str, Any]) -> DictConfig:
    """A mask's settings ({"type": "window", "window": 5}) as the node `mask=window mask.window=5` composes: the
    mask group's schema of that type (src/cli/schema.py mask_schema), so the config reads and checks as a composed
    one."""
    from src.cli.schema import mask_schema

    settings = dict(mask)
    schema = mask_schema(settings["type"], MASK_SCHEMES[settings["type"]])
    return OmegaConf.structured(schema(**settings))


def rewrite_saved_config(saved: Path, cfg: DictConfig) -> None:
    """`saved` (.hydra/config.yaml) with the run config's `model` and `mask` in place of the composed ones; every other
    setting as Hydra saved it (task paths as typed, interpolations kept). Beside it, hydra.yaml's choice of the mask
    group names the mask's type, as `mask=window` would have chosen it: src.report reads a group's option there."""
    config = OmegaConf.load(saved)
    config.model = OmegaConf.to_container(cfg.model, resolve=True)
    config.mask = OmegaConf.to_container(cfg.mask, resolve=True)
    replace_yaml(saved, config)
    hydra_file = saved.with_name("hydra.yaml")
    if hydra_file.is_file():
        hydra = OmegaConf.load(hydra_file)
        if OmegaConf.select(hydra, "hydra.runtime.choices.mask") is not None:
            hydra.hydra.runtime.choices.mask = cfg.mask.type
            replace_yaml(hydra_file, hydra)


def replace_yaml(path: Path, config: DictConfig) -> None:
    """Written beside `path`, then moved over it: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.part")
    OmegaConf.save(config, partial)
    partial.replace(path)


def hydra_saved_config() -> Path | None:
    """This Hydra job's saved config (<run>/.hydra/config.yaml); None outside a Hydra job, and where Hydra saved none
    (hydra.output_subdir=null: the extra ranks of a run, which write no run files)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.output_subdir is None:
        return None
    path = Path(hydra.runtime.output_dir) / str(hydra.output_subdir) / "config.yaml"
    return path if path.is_file() else None


# The mask a config composes when nothing chooses one (conf/config.yaml's default: mask: standard)
DEFAULT_MASK = {"type": "standard"}


def mask_given(overrides: Sequence[str], composed: dict[str, Any] | None = None, hydra: Any = None) -> bool:
    """Whether the mask was chosen: on the command line (its overrides: mask=... or mask.<key>=...), or elsewhere
    (an experiment file's `override /mask: ...`), which shows as a `composed` mask other than the default, or, for
    a file that chose the default (`override /mask: standard`), in the defaults list Hydra composed (`hydra`: the
    job's hydra node; this Hydra job's when None)."""
    from src.cli.schema import override_keys

    typed = any(key == "mask" or key.startswith("mask.") for key in override_keys(list(overrides)))
    if typed or composed is None:
        return typed
    return composed != DEFAULT_MASK or default_mask_chosen_by_a_file(hydra)


def default_mask_chosen_by_a_file(hydra: Any = None) -> bool:
    """Whether a config file (an experiment's `override /mask: standard`) chose the mask group's default option,
    which composes the very config no choice does. Hydra's defaults list records where each override of a group
    came from: recomputed here for the job's config name and overrides (`hydra`: its hydra node; this Hydra job's
    when None). False outside a Hydra job."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    if hydra is None and HydraConfig.initialized():
        hydra = HydraConfig.get()
    if hydra is None or not GlobalHydra.instance().is_initialized():
        return False
    return _file_chose_mask(str(hydra.job.config_name), tuple(hydra.overrides.hydra), tuple(hydra.overrides.task))


def _file_chose_mask(config_name: str, hydra_overrides: tuple[str, ...], task_overrides: tuple[str, ...]) -> bool:
    """Asked of the files as they are now (a defaults list is cheap once built: src/cli/composition.py keeps it while
    its files hold the same), not remembered by name: a file edited since, or another config folder, answers anew."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    loader = GlobalHydra.instance().config_loader()
    defaults = loader.compute_defaults_list(config_name, [*hydra_overrides, *task_overrides], RunMode.RUN)
    chosen = defaults.overrides.override_metadata.get("mask")
    return chosen is not None and not chosen.external_override


@functools.cache
def default_model_option() -> dict[str, Any]:
    """model.* as the config composes it when nothing chooses a model: conf/config.yaml's default option of the
    model group (tiny) over the schema. Read once per process."""
    from src.cli.command_line import CONF_DIR
    from src.cli.schema import ModelConfig

    defaults = OmegaConf.load(Path(CONF_DIR) / "config.yaml").defaults
    name = next(entry["model"] for entry in defaults if isinstance(entry, DictConfig) and "model" in entry)
    option = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(Path(CONF_DIR, "model", f"{name}.yaml")))
    default = OmegaConf.to_container(option, resolve=True)
    assert isinstance(default, dict)
    return default


def composed_model_settings(model: DictConfig, overrides: Sequence[str]) -> list[str]:
    """The model.* settings a config file chose beside model.pretrained (an experiment's `model.dropout: 0.1`, or its
    `override /model: small`), which the command line's overrides do not show: those whose composed value is not
    the default model option's (default_model_option) and that were not typed."""
    from src.cli.schema import override_keys

    default = default_model_option()
    composed = OmegaConf.to_container(model, resolve=True)
    assert isinstance(composed, dict)
    typed = set(override_keys(list(overrides)))
    return [
        f"model.{key}"
        for key, value in composed.items()
        if key != "pretrained" and f"model.{key}" not in typed and key in default and value != default[key]
    ]


def run_mask(name: str, composed: dict[str, Any], overrides: Sequence[str], hydra: Any = None) -> dict[str, Any]:
    """The mask a run of model.pretrained=`name` attends with, as record_pretrained_settings records it: the composed
    one where the command line (`overrides`) or a config file sets the mask, else the model's own. For the checks
    made before the job has a config of its own (a resume's, src/cli/preflight.py; `hydra`: the config's hydra node)."""
    from . import pretrained_config

    return composed if mask_given(overrides, composed, hydra) else pretrained_config(name)[0].mask


# Schemes that differ from `standard` only in one stack's self-attention (the table in src/model/masks.py): `causal`
# makes the encoder causal, `none` takes the decoder's look-ahead mask away. In a model without that stack (a
# decoder-only model has no encoder, an encoder-only one no decoder) each is `standard`.
STACK_OF_SCHEME = {"causal": ENCODER, "none": DECODER}


def as_overrides(mask: dict[str, Any]) -> str:
    """A mask as the command line gives it: `mask=window mask.window=5`, `mask=standard`."""
    settings = " ".join(f"mask.{key}={value}" for key, value in mask.items() if key != "type")
    return f"mask={mask['type']}" + (f" {settings}" if settings else "")


def replaced_mask_line(name: str, own: TransformerConfig, mask: dict[str, Any]) -> str | None:
    """The warning for a mask given beside model.pretrained=`name` that is not the one the model was trained with
    (`own`: the pretrained model's config): legal (an ablation), but the weights learned another attention, and
    `mask=window` alone brings conf/mask/window.yaml's window, not Mistral's. None when the two see the same keys."""

    def attends(settings: dict[str, Any]) -> dict[str, Any]:
        stack = STACK_OF_SCHEME.get(settings["type"])
        lacks_stack = stack is not None and stack not in ARCHITECTURES[own.arch].stacks
        kind = "standard" if lacks_stack else settings["type"]
        return {**settings, "type": kind}

    if attends(mask) == attends(own.mask):
        return None
    return (
        f"{as_overrides(mask)} is not the mask model.pretrained={name} was trained with ({as_overrides(own.mask)}): "
        "it is fine-tuned with yours; leave mask out to keep its own"
    )


def warn_if_mask_replaced(cfg: DictConfig, model_cfg: TransformerConfig) -> None:
    """One warning when the run's mask (`model_cfg`'s, src.cli.schema.model_config_for) is not the pretrained
    model's."""
    name = cfg.model.get("pretrained")
    if not name:
        return
    from src.training.report import print_warning

    from . import pretrained_config

    line = replaced_mask_line(str(name), pretrained_config(str(name))[0], model_cfg.mask)
    if line is not None:
        print_warning(line)
