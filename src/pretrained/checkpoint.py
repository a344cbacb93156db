"""`ckpt=hf:<name or directory>`: a pretrained model offered to src.eval, src.predict and src.analyze as if it were
a checkpoint of ours, so every command that reads a checkpoint reads it the same way (src/training/checkpoint.py).

The checkpoint made here holds what ours hold: the model's TransformerConfig, its weights under `model.`, and a
run config whose task is the one given (`task=multi30k ...`) or, without one, the family's kind of task with no
data (src.predict only reads and writes text: GPT-2 continues it, Marian translates it, BERT classifies it).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from src.data.registry import task_kind
from src.model import ConfigError
from src.model.config import ARCHITECTURES
from src.provenance import module_command

from . import load_pretrained
from .fit import check_src_prefix, check_task_kind, missing_prefix_line

HF_PREFIX = "hf:"


def is_pretrained(ckpt: str) -> bool:
    return str(ckpt).startswith(HF_PREFIX)


def pretrained_checkpoint(ckpt: str, task: dict | None = None, field_name: str = "ckpt") -> dict[str, Any]:
    """The checkpoint-like dict of `ckpt=hf:<name or directory>` (see the module docstring). task: the run config's
    task (a plain dict) to evaluate on, or None to read text only."""
    name = ckpt[len(HF_PREFIX) :].strip()
    if not name:
        raise ConfigError(f"{field_name}=hf: names no model: give a hub name or a directory, e.g. {field_name}=hf:gpt2")
    if task is not None and "src_prefix" in task:  # a translation task: checked before any weights are read
        from . import pretrained_config

        hf_config = pretrained_config(name)[2]
        check_src_prefix(name, hf_config, str(task["src_prefix"]))
        line = missing_prefix_line(name, hf_config, task) if not task["src_prefix"] else None
        if line is not None:
            from src.training.report import print_warning

            print_warning(line)
    pretrained = load_pretrained(name)
    if pretrained.new_head:
        raise ConfigError(
            f"{name} has no classification head (its weights are BERT's pre-training ones): fine-tune it first, "
            f"{module_command('src.run', 'task=classification', f'model.pretrained={name}', '...')}"
        )
    cfg = pretrained.config
    kind = ARCHITECTURES[cfg.arch].task_kind
    if task is not None:
        check_task_kind(name, cfg, str(task.get("name")))
    return {
        "hyper_parameters": {
            "config": {
                "task": task if task is not None else {"name": task_kind(kind).text_task},
                "batch_size": 32,
                "seed": 0,
                "model": {"pretrained": name},
            },
            "model_config": asdict(cfg),
            "kind": kind,
            "run_dir": None,
            # Where its tokenizer is, and that there are no data unless a task was given.
            "pretrained": {
                "name": name,
                "directory": str(pretrained.directory),
                "label_names": pretrained.label_names,
                "reading_only": task is None,
            },
        },
        "state_dict": {f"model.{key}": value for key, value in pretrained.model.state_dict().items()},
    }
