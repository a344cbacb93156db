"""What every family's weight conversion shares: take each Hugging Face tensor by name, check its shape, and
fail on any tensor that was neither mapped nor explicitly set aside."""

from __future__ import annotations

import re

import torch
from torch import Tensor

from src.model import ConfigError


class Weights:
    """A Hugging Face state dict being converted: `take` removes a tensor and checks its shape, `finish`
    refuses whatever is left. Names are given without the family's optional prefix (`transformer.`, `bert.`)."""

    def __init__(self, state: dict[str, Tensor], source: str, prefixes: tuple[str, ...] = ()):
        self.source = source
        self.state: dict[str, Tensor] = {}
        for name, tensor in state.items():
            for prefix in prefixes:  # the base model's names, with or without its task head's wrapper
                if name.startswith(prefix):
                    name = name[len(prefix) :]
                    break
            self.state[name] = tensor

    def has(self, name: str) -> bool:
        return name in self.state

    def take(self, name: str, shape: tuple[int, ...]) -> Tensor:
        """The tensor `name`, which must have `shape`; it counts as used."""
        if name not in self.state:
            raise ConfigError(f"{self.source} has no weight {name!r}: its weights do not fit its config.json")
        tensor = self.state.pop(name)
        if tuple(tensor.shape) != tuple(shape):
            raise ConfigError(
                f"{self.source}: weight {name!r} has shape {tuple(tensor.shape)}, its config.json implies {shape}"
            )
        return tensor

    def take_copy_of(self, name: str, original: Tensor) -> None:
        """A tied copy some checkpoints store (lm_head.weight = the embedding): used only if it is the same."""
        if name in self.state:
            copy = self.take(name, tuple(original.shape))
            if not copy.is_meta and not torch.equal(copy, original):  # meta: a shapes-only check (check_weights)
                raise ConfigError(f"{self.source}: {name!r} differs from the weight it is tied to: untied weights")

    def set_aside(self, pattern: str) -> None:
        """Drop the tensors matching `pattern` (a regular expression): buffers a checkpoint happens to hold, or a
        pre-training head that a fine-tuned model does not use. Each family names its own."""
        for name in [n for n in self.state if re.fullmatch(pattern, n)]:
            del self.state[name]

    def finish(self) -> None:
        if self.state:
            names = sorted(self.state)
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise ConfigError(f"{self.source} has weights this conversion does not map: {shown}")


def fuse(*parts: Tensor) -> Tensor:
    """Stack the weights (or biases) of separate projections into one fused Linear: [W_q; W_k; W_v] (3D, D)."""
    return torch.cat(parts, dim=0)
