"""Task settings: one dataclass per task, the single source of field names, types and defaults.

The Hydra schema (src/config.py) mirrors these; `build_datamodule` accepts any attribute-accessible
object (a DictConfig, a SimpleNamespace in tests) and fills fields it lacks from these defaults, so a
test can give only what it cares about.
Paths may be relative: they are resolved against the directory the run was started from
(Hydra's original working directory when Hydra is running, else the current directory).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional


@dataclass
class SyntheticTaskConfig:
    """copy / reverse / sort: src is a random sequence of symbols; tgt is it copied, reversed or sorted."""

    name: str = "copy"  # copy | reverse | sort
    vocab_size: int = 10  # number of content symbols (shown as 0-9, then a-z, then s36, s37, ...)
    min_len: int = 1  # sequence length range of train / val / test
    max_len: int = 10
    test_long_min_len: int = 11  # held-out longer lengths (the "test_long" split): length generalisation
    test_long_max_len: int = 20
    train_size: int = 10000
    val_size: int = 500
    test_size: int = 500  # size of test and of test_long each


@dataclass
class AdditionTaskConfig:
    """addition: src "123+45", tgt "168". Lengths count digits per operand."""

    name: str = "addition"
    min_len: int = 1  # digits per operand (each operand drawn independently)
    max_len: int = 5
    test_long_min_len: int = 6
    test_long_max_len: int = 8
    reverse_digits: bool = False  # write operands and sum least-significant digit first (easier to learn)
    train_size: int = 10000
    val_size: int = 500
    test_size: int = 500


@dataclass
class CharLMTaskConfig:
    """char_lm: next-character prediction on any text file (decoder-only)."""

    name: str = "char_lm"
    path: str = "???"  # a UTF-8 text file, e.g. tinyshakespeare's input.txt
    block_size: int = 128  # characters of context per example
    val_fraction: float = 0.05  # the text is split by position: train | val | test
    test_fraction: float = 0.05


@dataclass
class TranslationTaskConfig:
    """translation: parallel text files, one sentence per line, line i of src pairs with line i of tgt."""

    name: str = "translation"
    train_src: str = "???"
    train_tgt: str = "???"
    val_src: str = "???"
    val_tgt: str = "???"
    test_src: str = "???"
    test_tgt: str = "???"
    vocab_size: int = 8000  # joint BPE vocabulary (both languages), including the 4 special tokens
    max_len: int = 64  # tokens per side (before BOS/EOS); longer sentences are truncated
    lowercase: bool = False
    train_limit: int = 0  # use only the first N training pairs (0 = all); quick CPU runs


@dataclass
class Multi30kTaskConfig:
    """multi30k: Multi30k task 1 German-English (either direction), downloaded once into data_dir."""

    name: str = "multi30k"
    src_lang: str = "de"  # de | en
    tgt_lang: str = "en"  # the other one
    data_dir: Optional[str] = None  # None: $XDG_CACHE_HOME (or ~/.cache)/transformer-ablations/multi30k
    vocab_size: int = 8000
    max_len: int = 64
    lowercase: bool = False
    train_limit: int = 0


@dataclass
class ClassificationTaskConfig:
    """classification: TSV files `sentence<TAB>label` (encoder-only)."""

    name: str = "classification"
    train_path: str = "???"
    val_path: Optional[str] = None  # None: split off train (val_fraction) deterministically from the seed
    test_path: Optional[str] = None  # None: split off train (test_fraction)
    has_header: bool = False  # skip the first line of every file
    tokenizer: str = "word"  # word | bpe
    vocab_size: int = 8000  # including the 4 special tokens (word: most frequent words kept)
    max_len: int = 128  # tokens per sentence; longer ones are truncated
    lowercase: bool = True
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    train_limit: int = 0


TASK_CONFIGS: dict[str, type] = {
    "copy": SyntheticTaskConfig,
    "reverse": SyntheticTaskConfig,
    "sort": SyntheticTaskConfig,
    "addition": AdditionTaskConfig,
    "char_lm": CharLMTaskConfig,
    "translation": TranslationTaskConfig,
    "multi30k": Multi30kTaskConfig,
    "classification": ClassificationTaskConfig,
}


def resolve_task_config(task_cfg) -> object:
    """Return the task's dataclass filled from `task_cfg` (attribute access); missing fields keep defaults.

    Raises DataError for an unknown task name or for a required field ("???") that is not set."""
    from .errors import DataError

    name = getattr(task_cfg, "name", None)
    if name not in TASK_CONFIGS:
        raise DataError(f"task.name={name!r} is not a known task: choose one of {sorted(TASK_CONFIGS)}")
    cls = TASK_CONFIGS[name]
    values = {}
    for field in fields(cls):
        try:
            value = getattr(task_cfg, field.name)
        except Exception:  # missing attribute, or a DictConfig "???" that was never set
            value = field.default
        if value == "???":
            raise DataError(f"task.{field.name} is required for task {name!r}: set task.{field.name}=...")
        values[field.name] = value
    return cls(**values)
