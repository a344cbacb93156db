"""Whether a pretrained model fits the task it is given: its kind of task, the length of the task's sequences, its
classifier's labels, and the prefix its sources were trained with (T5). One `ConfigError` line each, before any
work; shared by src.run (fine-tuning) and the commands that read `ckpt=hf:<model>`."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from src.data import task_spec
from src.data.registry import task_kind
from src.model import ConfigError, TransformerConfig
from src.model.config import ARCHITECTURES
from src.provenance import module_command

GENERIC_LABEL = re.compile(r"LABEL_\d+")  # transformers' names for labels nobody named


def check_task_kind(name: str, cfg: TransformerConfig, task_name: str) -> None:
    """GPT-2 continues text, Marian translates, BERT classifies: a task of another kind is refused."""
    kind, needed = task_spec(task_name).kind, ARCHITECTURES[cfg.arch].task_kind
    if kind != needed:
        raise ConfigError(
            f"{name} is {ARCHITECTURES[cfg.arch].title} and does {needed} tasks; task={task_name} is a {kind} task: "
            f"choose a {needed} task, e.g. {task_kind(needed).example_task}"
        )


def check_length(name: str, cfg: TransformerConfig, longest: int) -> None:
    """The task's longest sequence (tokens, the tokenizer's marks included) must fit the model's positions."""
    if longest > cfg.max_len:
        raise ConfigError(
            f"the task's longest sequence is {longest} tokens and {name} has {cfg.max_len} positions: lower "
            f"task.max_len (or task.block_size) by {longest - cfg.max_len} or more"
        )


def align_head(model: nn.Module, head_labels: list[str], task_labels: list[str], name: str) -> str:
    """Match a pretrained classifier's classes to the task's by name (config.json's id2label): the same names in
    another order reorder the head's rows; transformers' unnamed LABEL_<i> keep their positions; other names are
    refused. Returns "same", "reordered" or "unnamed"."""
    if head_labels == task_labels:
        return "same"
    if all(GENERIC_LABEL.fullmatch(label) for label in head_labels):
        return "unnamed"
    if sorted(head_labels) != sorted(task_labels):
        raise ConfigError(
            f"{name} classifies into {head_labels} and the task's labels are {task_labels}: fine-tune it on the "
            f"task ({module_command('src.run', f'model.pretrained={name}', '...')}), which gives it a head of the "
            "task's labels"
        )
    order = torch.tensor([head_labels.index(label) for label in task_labels])
    linear = model.head[1]
    with torch.no_grad():
        linear.weight.copy_(linear.weight[order])
        linear.bias.copy_(linear.bias[order])
    return "reordered"


def known_prefixes(hf_config: Any) -> dict[str, str]:
    """task -> the text every source of that task began with in the model's training, as its config.json names them
    (t5-small's task_specific_params: "translation_en_to_de" -> "translate English to German: "); {} for a model
    without them (Flan-T5, which reads instructions)."""
    params = getattr(hf_config, "task_specific_params", None) or {}
    return {task: str(p["prefix"]) for task, p in params.items() if isinstance(p, dict) and p.get("prefix")}


def check_src_prefix(name: str, hf_config: Any, prefix: str) -> None:
    """task.src_prefix beside a model that names its prefixes: the name of one of its tasks, or one of its prefixes
    without the space that ends it, is refused (the model never saw either in front of a source)."""
    known = known_prefixes(hf_config)
    if prefix in known:
        raise ConfigError(
            f"task.src_prefix={prefix!r} is the name of one of {name}'s tasks, not the text in front of its sources: "
            f"give '{QUOTED.format(known[prefix])}'"
        )
    for task, text in known.items():
        if prefix != text and prefix == text.rstrip():
            raise ConfigError(
                f"task.src_prefix={prefix!r} is {name}'s prefix for {task} without the space it ends in, so every "
                f"source would run into it: give '{QUOTED.format(text)}' (quoted for Hydra inside the shell's quotes, "
                "which keeps the space)"
            )


def missing_prefix_line(name: str, hf_config: Any, task: Any = None) -> str | None:
    """The warning for a translation task without task.src_prefix on a model trained with a prefix in front of every
    source (T5): the prefix of the task's own direction where the model names one (translation_en_to_de for
    task.src_lang=en, task.tgt_lang=de), else that it names none for this direction; and every prefix it knows.
    None for a model that names none."""
    known = known_prefixes(hf_config)
    if not known:
        return None
    listed = ", ".join(f'"{text}" ({task_name})' for task_name, text in known.items())
    start = (
        f"{name} was trained with a prefix in front of every source and task.src_prefix is not set, so the sources "
        "are read without one"
    )
    src, tgt = (task or {}).get("src_lang"), (task or {}).get("tgt_lang")
    if src and tgt:
        direction = f"translation_{src}_to_{tgt}"
        if direction not in known:
            return (
                f"{start}; it names no prefix for {src} -> {tgt} (task.src_lang={src}, task.tgt_lang={tgt}), so it "
                f"was likely never trained in this direction: choose a direction it knows ({listed})"
            )
        return f"{start}: give '{QUOTED.format(known[direction])}' ({direction}; its prefixes: {listed})"
    translation = [text for task_name, text in known.items() if task_name.startswith("translation")]
    example = (translation or list(known.values()))[0]
    return f"{start}: give the prefix of this task, e.g. '{QUOTED.format(example)}' (its prefixes: {listed})"


# How a prefix is written on the command line: Hydra strips the spaces around an unquoted value, so the value is
# quoted for Hydra inside the shell's quotes, keeping the space a prefix ends in.
QUOTED = 'task.src_prefix="{}"'
