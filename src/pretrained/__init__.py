"""Pretrained transformers from Hugging Face, loaded into our own modules (src/model).

    from src.pretrained import load_pretrained
    pretrained = load_pretrained("gpt2")            # a hub name (downloaded or from the cache) or a local directory
    pretrained.model                                # our DecoderOnly, with GPT-2's weights

Each supported family is one file that builds our TransformerConfig from the Hugging Face config and converts the
weights with an explicit name map, checking every shape (gpt2.py, bert.py, marian.py, t5.py, llama.py; qwen2.py and
mistral.py build their configs and convert with llama.py's map, the weights' names being Llama's); convert.py holds
what they share and hub.py finds and reads the files. `transformers` (for the configs and tokenizers) and
`huggingface_hub` are an optional dependency group (`pip install -e '.[pretrained]'`): this package is imported only
when a pretrained model is asked for. Weights are read from safetensors; a model that ships only a PyTorch `.bin` is
read with `torch.load(weights_only=True)`, which never runs code from the file.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from src.model import ConfigError, TransformerConfig, build_model

from .convert import Weights
from .hub import read_hf_config, read_weights, resolve

# transformers' `model_type` -> our module converting that family. A new family is one module and one entry here.
FAMILIES = {
    "gpt2": "gpt2",
    "bert": "bert",
    "marian": "marian",
    "llama": "llama",
    "qwen2": "qwen2",
    "mistral": "mistral",
    "t5": "t5",
}
# The Hugging Face state dict's wrappers around the base model (a task head's class adds them).
PREFIXES = {
    "gpt2": ("transformer.",),
    "bert": ("bert.",),
    "marian": ("model.",),
    "llama": ("model.",),
    "qwen2": ("model.",),
    "mistral": ("model.",),
    "t5": (),  # T5ForConditionalGeneration holds shared, encoder, decoder and lm_head at the top
}


@dataclass
class Pretrained:
    model: nn.Module  # ours, in eval mode
    config: TransformerConfig
    directory: Path  # where its config.json, weights and tokenizer files are
    name: str  # as the user gave it
    hf_config: Any  # the transformers config it was built from
    new_head: bool = False  # a classifier head (or its pooler) the checkpoint did not have: random (NEW_PARTS)

    @property
    def label_names(self) -> list[str]:
        return label_names_of(self.hf_config, self.config.num_classes)


def label_names_of(hf_config: Any, num_classes: int) -> list[str]:
    """A classifier's class names, by id (config.json's id2label; LABEL_0, ... where it names none)."""
    id2label = getattr(hf_config, "id2label", None) or {}
    return [str(id2label.get(i, f"LABEL_{i}")) for i in range(num_classes)]


def family_of(hf_config: Any, name: str) -> Any:
    """The converting module of this config's model type; an unsupported one is refused in one line."""
    model_type = getattr(hf_config, "model_type", None)
    if model_type not in FAMILIES:
        raise ConfigError(
            f"{name} is a {model_type!r} model, which cannot be loaded: supported are {', '.join(FAMILIES)}"
        )
    return importlib.import_module(f"{__name__}.{FAMILIES[model_type]}")


def pretrained_config(name_or_dir: str, num_classes: int = 0) -> tuple[TransformerConfig, Path, Any]:
    """Our TransformerConfig of a pretrained model (config only: no weights read)."""
    directory = resolve(name_or_dir)
    hf_config = read_hf_config(directory, name_or_dir)
    family = family_of(hf_config, name_or_dir)
    cfg = family.model_config(hf_config, num_classes)
    cfg.stop_ids = [*cfg.stop_ids, *generation_stop_ids(directory, cfg)]
    try:
        return cfg.validate(), directory, hf_config
    except ConfigError as error:
        raise ConfigError(unloadable_line(name_or_dir, str(error), getattr(family, "CONFIG_FIELDS", {}))) from None


def unloadable_line(name: str, problem: str, fields: dict[str, str]) -> str:
    """A pretrained config our model cannot be built from, said in the config.json's own names: validate() speaks of
    model.* settings, which a user cannot set for a pretrained model, and ends with a fix that sets one. `fields`:
    the family's map of our settings to its config.json fields (CONFIG_FIELDS); a setting it lacks keeps our name."""
    what = problem.split(": ", 1)[0]  # the problem, without the fix addressed to model.* settings
    what = re.sub(r"\bmodel\.(\w+)", lambda m: fields.get(m.group(1), m.group(0)), what)
    return f"{name} cannot be loaded: its config.json gives a model this framework does not build ({what})"


def generation_stop_ids(directory: Path, cfg: TransformerConfig) -> list[int]:
    """The eos ids of the model's generation_config.json (transformers' generate() reads them there) that its
    config.json did not name: Qwen2.5-Instruct ends a reply with <|im_end|>, which only generation_config.json lists
    beside <|endoftext|>. Read as JSON: nothing in it runs."""
    path = directory / "generation_config.json"
    if not path.is_file():
        return []
    try:
        eos = json.loads(path.read_text()).get("eos_token_id")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ConfigError(f"{path} is not a valid generation config ({error}): fix or delete it") from None
    ids = eos if isinstance(eos, list) else [] if eos is None else [eos]
    known = {cfg.eos_id, *cfg.stop_ids}
    return [i for i in dict.fromkeys(ids) if isinstance(i, int) and i not in known]


def load_pretrained(name_or_dir: str, num_classes: int = 0, dtype: torch.dtype = torch.float32) -> Pretrained:
    """Build our model of a Hugging Face checkpoint and load its converted weights.

    name_or_dir: a hub name ("gpt2", "bert-base-uncased", "Helsinki-NLP/opus-mt-de-en") or a local directory
    with config.json and the weights (what `save_pretrained` writes). num_classes: a classifier's class count
    when it differs from the checkpoint's (fine-tuning BERT: its pre-training weights have no classifier).
    Raises ConfigError (one line) for a missing or unreachable model, an unsupported architecture, or weights that
    do not fit the config.
    """
    cfg, directory, hf_config = pretrained_config(name_or_dir, num_classes)
    model = build_model(cfg)
    new = _load_converted(model, _converted_weights(name_or_dir, cfg, directory, hf_config), name_or_dir)
    return Pretrained(model.to(dtype).eval(), cfg, directory, name_or_dir, hf_config, bool(new))


def load_weights_into(model: nn.Module, name_or_dir: str) -> tuple[str, ...]:
    """Load a pretrained model's weights into `model`, one of ours built from its config (src.run fine-tuning:
    model.dropout and the mask may differ, the shapes may not). Returns the parts that start new (NEW_PARTS)."""
    cfg, directory, hf_config = pretrained_config(name_or_dir, model.cfg.num_classes)
    return _load_converted(model, _converted_weights(name_or_dir, cfg, directory, hf_config), name_or_dir)


def check_weights(name_or_dir: str, num_classes: int = 0) -> None:
    """The checkpoint's weights fit its config: every tensor the conversion needs is there, in its shape, and none
    is left over. Read from the files' headers (safetensors; a .bin is unpickled safely), converted as empty tensors
    on the meta device, without their data: a run checks this before it writes anything."""
    cfg, directory, hf_config = pretrained_config(name_or_dir, num_classes)
    with torch.device("meta"):
        model = build_model(cfg)
    _check_converted(model, _converted_weights(name_or_dir, cfg, directory, hf_config, shapes_only=True), name_or_dir)


def _converted_weights(
    name: str, cfg: TransformerConfig, directory: Path, hf_config: Any, shapes_only: bool = False
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under our names (the family's conversion)."""
    state = read_weights(directory, name, shapes_only=shapes_only)
    weights = Weights(state, source=name, prefixes=PREFIXES[hf_config.model_type])
    return family_of(hf_config, name).convert(weights, cfg)


# What a checkpoint may lack, to start from random weights: a classifier's head (BERT's pre-training weights) and
# the pooler in front of it (BertForMaskedLM has none), as transformers' BertForSequenceClassification starts them.
NEW_PARTS = ("pooling", "head")


def _check_converted(model: nn.Module, converted: dict[str, torch.Tensor], name: str) -> tuple[str, ...]:
    """Check that the converted weights cover the model: every parameter must come from the checkpoint, except a
    tied alias of one that does, and the NEW_PARTS the checkpoint lacks (returned)."""
    expected = model.state_dict()
    unexpected = sorted(set(converted) - set(expected))
    if unexpected:  # a bug in a conversion, not a user's error
        raise AssertionError(f"conversion of {name} produced names our model lacks: {unexpected}")
    tied = _aliases(model)
    missing = [n for n in expected if n not in converted and not any(a in converted for a in tied.get(n, ()))]
    new = tuple(part for part in NEW_PARTS if any(n.startswith(f"{part}.") for n in missing))
    if any(n.split(".")[0] not in new for n in missing):
        raise AssertionError(f"conversion of {name} left parameters unset: {missing}")
    for n, tensor in converted.items():
        if tuple(tensor.shape) != tuple(expected[n].shape):
            raise AssertionError(f"conversion of {name}: {n} is {tuple(tensor.shape)}, ours {tuple(expected[n].shape)}")
    return new


def _load_converted(model: nn.Module, converted: dict[str, torch.Tensor], name: str) -> tuple[str, ...]:
    """Copy the converted weights in, checked first (_check_converted); returns the parts that start new."""
    new = _check_converted(model, converted, name)
    with torch.no_grad():
        model.load_state_dict(converted, strict=False)  # tied aliases share the tensor that was loaded
    return new


def _aliases(model: nn.Module) -> dict[str, set[str]]:
    """name -> the other names of the same parameter (tied embeddings, a shared source/target embedding)."""
    by_tensor: dict[int, set[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        by_tensor.setdefault(id(p), set()).add(n)
    return {n: names - {n} for names in by_tensor.values() for n in names}
