"""char_lm: next-character prediction on a text file (decoder-only).

The text is split by position (train | val | test, so no held-out text is seen in training) and each
part is cut into contiguous windows of block_size + 1 characters that overlap by one character: every
character is a target exactly once, and training shuffles the windows per epoch. With `train_stride` below
block_size, training windows start every `train_stride` characters instead, so each character is seen in
several contexts per epoch (as nanoGPT's random offsets do); validation and test keep one window per block.
The vocabulary is the sorted character set of the file, saved to run_dir/vocab.json; a saved one is
reused (eval/predict), and characters outside it map to <unk>.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import DataError
from ..files import read_head, read_text, universal_newlines
from ..prepared import PreparedTask
from ..registry import TaskSpec, register_task
from ..vocab import UNK_ID, SymbolVocab, sorted_characters

VOCAB_FILE = "vocab.json"


@dataclass
class CharLMTaskConfig:
    """char_lm: next-character prediction on any text file (decoder-only)."""

    name: str = "char_lm"
    path: str = "???"  # a UTF-8 text file, e.g. tinyshakespeare's input.txt
    block_size: int = 128  # characters of context per example
    val_fraction: float = 0.05  # the text is split by position: train | val | test
    test_fraction: float = 0.05
    train_stride: Optional[int] = None  # characters between training windows' starts (None: block_size, no overlap)


def windows(ids: torch.Tensor, block_size: int, stride: Optional[int] = None) -> list[dict]:
    """(N,) ids -> windows ids[k*S : k*S + B + 1] (stride S, default B); the last may be shorter (padded)."""
    step = stride or block_size
    return [{"tokens": ids[start : start + block_size + 1]} for start in range(0, len(ids) - 1, step)]


def check_settings(cfg: CharLMTaskConfig) -> None:
    if cfg.block_size < 2:
        raise DataError(f"task.block_size={cfg.block_size} must be >= 2")
    if not (0 <= cfg.val_fraction < 1 and 0 <= cfg.test_fraction < 1 and cfg.val_fraction + cfg.test_fraction < 1):
        raise DataError(
            f"task.val_fraction={cfg.val_fraction}, task.test_fraction={cfg.test_fraction}: "
            "need fractions in [0, 1) that sum to less than 1"
        )
    if cfg.train_stride is not None and not 1 <= cfg.train_stride <= cfg.block_size:
        raise DataError(
            f"task.train_stride={cfg.train_stride} must be between 1 and task.block_size={cfg.block_size} "
            "(or null: windows side by side)"
        )
    if cfg.val_fraction <= 0:
        raise DataError("task.val_fraction=0 leaves no validation text, so no checkpoint would be saved: use > 0")


def build_char_lm(cfg: CharLMTaskConfig, seed: int, run_dir: Optional[Path], tokenizer=None) -> PreparedTask:
    """The task from its text file. With a pretrained model's tokenizer (`tokenizer`, GPT-2's) the windows are of
    block_size of its tokens instead of characters."""
    check_settings(cfg)
    text = read_text(cfg.path, "path")
    if tokenizer is not None:  # the text as its pipeline reads a document: with its marks (Llama's <s> in front)
        ids = tokenizer.wrap_source(tokenizer.encode(text))
        return split_into_windows(cfg, torch.tensor(ids, dtype=torch.long), tokenizer)

    vocab_path = Path(run_dir) / VOCAB_FILE if run_dir is not None else None
    if vocab_path is not None and vocab_path.exists():
        vocab = SymbolVocab.load(vocab_path)
    else:
        vocab = SymbolVocab(sorted_characters([text]))
        if vocab_path is not None:
            vocab.save(vocab_path)
    # One char per token: map via the dict directly (vocab.encode would also do, but splits first).
    ids = torch.tensor([vocab.id_of.get(c, UNK_ID) for c in text], dtype=torch.long)  # (N,)
    return split_into_windows(cfg, ids, vocab)


def split_sizes(cfg: CharLMTaskConfig, n: int) -> dict[str, int]:
    """The tokens of each split of a text of `n` tokens (train | val | test by position); each split the task has
    needs two tokens at least (one input and its next token)."""
    n_val, n_test = int(n * cfg.val_fraction), int(n * cfg.test_fraction)
    sizes = {"train": n - n_val - n_test, "val": n_val, "test": n_test}
    for name, size in sizes.items():
        if size < 2 and (name == "train" or getattr(cfg, f"{name}_fraction") > 0):
            raise DataError(
                f"{cfg.path}: only {n} tokens, too few for a {name} split: use a longer text or change the fractions"
            )
    return sizes


def check_data(cfg: CharLMTaskConfig, pretrained: bool) -> None:
    """What build_char_lm would refuse, from the text's first part: readable UTF-8 with text in it; a text read
    whole also long enough for its splits (counted in characters: with a pretrained model's tokenizer the tokens
    are known only once it has read the text)."""
    check_settings(cfg)
    head = read_head(cfg.path, "path", holds="text")
    if head.whole and not pretrained:
        split_sizes(cfg, len(universal_newlines(head.text)))


def split_into_windows(cfg: CharLMTaskConfig, ids: torch.Tensor, vocab) -> PreparedTask:
    """(N,) ids of the whole text -> train | val | test by position, each cut into windows."""
    sizes = split_sizes(cfg, len(ids))
    n_train, n_val = sizes["train"], sizes["val"]
    parts = {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]}
    return PreparedTask(
        kind="lm",
        train=windows(parts["train"], cfg.block_size, cfg.train_stride),
        val=windows(parts["val"], cfg.block_size),
        test=windows(parts["test"], cfg.block_size),
        src_vocab=None,
        tgt_vocab=vocab,
        max_src_len=0,
        max_tgt_len=cfg.block_size,
    )


register_task(
    TaskSpec(
        name="char_lm",
        kind="lm",
        schema=CharLMTaskConfig,
        build=build_char_lm,
        validate=check_settings,
        check_data=check_data,
        longest_sequence=lambda cfg: cfg.block_size,
        file_fields=("path",),
        reads_text=True,
    )
)
