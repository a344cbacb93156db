"""Finding a pretrained model's files: a local directory, or a hub name downloaded (or read from the cache)
through huggingface_hub, and reading its config and weights safely."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from src.model import ConfigError

# What a model directory needs besides the weights: its config and its tokenizer's files.
FILES = ["*.json", "*.txt", "*.model", "*.spm", "*.vocab", "merges.txt"]
INSTALL = "pip install -e '.[pretrained]'"


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError(f"pretrained models need the optional dependencies: {INSTALL}") from None
    return huggingface_hub


def looks_like_path(name: str) -> bool:
    """A hub name is `name` or `org/name`; anything else (./x, /x, a/b/c, ~/x) is meant as a directory."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


@functools.lru_cache(maxsize=None)
def resolve(name_or_dir: str) -> Path:
    """The local directory holding the model's files: the directory given, or the hub's cached snapshot. Once per
    process and name: the config, the weights and the tokenizer are all read from it, in several places."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    if path.exists() or looks_like_path(name_or_dir):
        raise ConfigError(
            f"{name_or_dir} is not a directory: give a model directory (config.json and weights) or a hub name"
        )
    hub = _hub()
    from huggingface_hub import errors
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name_or_dir)
    except HFValidationError:
        raise ConfigError(
            f"{name_or_dir!r} is neither a directory nor a hub name (name or org/name, letters, digits, - _ .): "
            "check the spelling"
        ) from None

    try:
        directory = Path(hub.snapshot_download(name_or_dir, allow_patterns=[*FILES, "*.safetensors"]))
        if not list(directory.glob("*.safetensors")):  # an older model: only PyTorch's .bin
            hub.hf_hub_download(name_or_dir, "pytorch_model.bin")
    except errors.RepositoryNotFoundError:
        raise ConfigError(
            f"the model hub has no model {name_or_dir!r} (or it is private): check the name on huggingface.co, "
            "or give a local directory"
        ) from None
    except (errors.LocalEntryNotFoundError, OSError) as error:
        if isinstance(error, errors.RepositoryNotFoundError):
            raise
        raise ConfigError(
            f"cannot reach the model hub and {name_or_dir!r} is not in its cache: give a local directory saved with "
            "save_pretrained, or point HF_HOME at a cache that has it (HF_HUB_OFFLINE=1 reads only the cache)"
        ) from None
    return directory


def read_hf_config(directory: Path, name: str) -> Any:
    """The transformers config of the model in `directory` (transformers fills the class defaults)."""
    if not (directory / "config.json").is_file():
        raise ConfigError(f"{name} has no config.json: give the directory save_pretrained wrote")
    try:
        json.loads((directory / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{directory / 'config.json'} is not valid JSON ({error})") from None
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"pretrained models need the optional dependencies: {INSTALL}") from None
    # transformers' own advice while it reads the file (a YaRN factor that disagrees with the context lengths) would
    # come before our one line on the same config (refused, or read as we document): errors only, while reading
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        return transformers.AutoConfig.from_pretrained(directory)
    except (ValueError, KeyError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{name}: transformers cannot read its config.json ({first_line})") from None
    finally:
        transformers.logging.set_verbosity(verbosity)


def read_weights(directory: Path, name: str, shapes_only: bool = False) -> dict[str, Tensor]:
    """Every tensor of the checkpoint: from its safetensors files (one, or the shards of an index), else from
    pytorch_model.bin with weights_only=True (tensors and plain containers only: nothing in the file runs).
    shapes_only: the tensors as empty ones on the meta device, of the right names, shapes and dtypes, without reading
    their data (a run's check before anything is written: check_weights)."""
    safetensors = sorted(directory.glob("*.safetensors"))
    if safetensors:
        from safetensors import safe_open
        from safetensors.torch import load_file

        state: dict[str, Tensor] = {}
        for file in safetensors:
            try:
                if shapes_only:  # the file's header: names, dtypes and shapes
                    with safe_open(file, "pt") as opened:
                        for key in opened.keys():
                            part = opened.get_slice(key)
                            dtype = SAFETENSORS_DTYPES.get(part.get_dtype(), torch.float32)
                            state[key] = torch.empty(part.get_shape(), dtype=dtype, device="meta")
                else:
                    state.update(load_file(file))
            except Exception as error:  # safetensors raises its own error types (a damaged or truncated file)
                first_line = (str(error).splitlines() or [type(error).__name__])[0]
                raise ConfigError(f"{file} cannot be read ({first_line}): download it again") from None
        return state
    bin_file = directory / "pytorch_model.bin"
    if bin_file.is_file():
        state = load_pickled_weights(bin_file)
        return {key: torch.empty_like(t, device="meta") for key, t in state.items()} if shapes_only else state
    raise ConfigError(f"{name} has no weights (model.safetensors or pytorch_model.bin) in {directory}")


# safetensors' dtype names -> torch's (what a shapes-only read needs to say; the rest read as float32)
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}  # fmt: skip


def load_pickled_weights(path: Path) -> dict[str, Tensor]:
    """A pytorch_model.bin, read with torch's safe unpickler (weights_only=True): tensors and plain containers only,
    so nothing in the file runs. A file that holds anything else is refused naming it, as our checkpoints are."""
    import pickle
    import warnings

    from src.training.checkpoint import refused_global

    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol: the error below says what matters
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = refused_global(str(error))
        if found is not None:
            raise ConfigError(
                f"{path} was refused: it holds {found}, and loading it could run code; use the model's safetensors "
                "weights (model.safetensors)"
            ) from None
        raise ConfigError(f"{path} cannot be read (not a PyTorch weights file): download it again") from None
    except Exception as error:  # a truncated or damaged file
        raise ConfigError(f"{path} cannot be read ({type(error).__name__}): download it again") from None
    if not isinstance(state, dict) or not all(isinstance(t, Tensor) for t in state.values()):
        raise ConfigError(f"{path} holds no state dict of tensors: give the model's weights file")
    return state
