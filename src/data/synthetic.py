"""Algorithmic seq2seq tasks generated from the seed: copy, reverse, sort, addition.

Each split draws from its own random stream (derived from the seed and the split's name), so the
data are reproducible and a split does not change when another split's size changes. Held-out splits
(val, test, test_long) contain no source sequence that appears in an earlier split (train, then val,
then test), so they measure generalisation rather than memorisation; as a consequence very short
sequences, of which few distinct ones exist, are rarer in held-out splits than in train.
`test_long` uses longer lengths than training (length generalisation).
"""

from __future__ import annotations

import random
import zlib
from typing import Callable

import torch

from .errors import DataError
from .prepared import PreparedTask
from .resumable import epoch_seed
from .vocab import SymbolVocab, synthetic_symbols

# A sampler draws one example as (src text symbols, tgt text symbols) for a given length range.
ExampleSampler = Callable[[random.Random, int, int], tuple[list[str], list[str]]]


def split_seed(seed: int, task: str, split: str) -> int:
    """A stable seed per (seed, task, split); crc32 instead of hash() because hash() is salted per process."""
    return epoch_seed(seed, zlib.crc32(f"{task}/{split}".encode()))


def symbol_task_sampler(name: str, symbols: list[str]) -> ExampleSampler:
    transform = {
        "copy": lambda seq: list(seq),
        "reverse": lambda seq: seq[::-1],
        "sort": lambda seq: sorted(seq, key=symbols.index),  # by symbol id, so "10" sorts after "9"
    }[name]

    def sample(rng: random.Random, min_len: int, max_len: int):
        length = rng.randint(min_len, max_len)
        src = [symbols[rng.randrange(len(symbols))] for _ in range(length)]
        return src, transform(src)

    return sample


def addition_sampler(reverse_digits: bool) -> ExampleSampler:
    def number(rng: random.Random, digits: int) -> int:
        low = 0 if digits == 1 else 10 ** (digits - 1)  # no leading zeros: the length is the digit count
        return rng.randrange(low, 10**digits)

    def write(value: int) -> list[str]:
        text = list(str(value))
        return text[::-1] if reverse_digits else text

    def sample(rng: random.Random, min_len: int, max_len: int):
        a = number(rng, rng.randint(min_len, max_len))
        b = number(rng, rng.randint(min_len, max_len))
        return write(a) + ["+"] + write(b), write(a + b)

    return sample


def _generate(
    sampler: ExampleSampler, rng: random.Random, size: int, min_len: int, max_len: int,
    vocab: SymbolVocab, exclude: set | None, split: str,
) -> list[dict]:
    """`size` examples; with `exclude`, skip (and then add) sources already used by an earlier split."""
    examples = []
    attempts = 0
    max_attempts = 50 * size + 1000
    while len(examples) < size:
        attempts += 1
        if attempts > max_attempts:
            raise DataError(
                f"task: only {len(examples)} distinct new {split} examples exist for lengths {min_len}..{max_len} "
                f"(requested {size}): lower task.{'val_size' if split == 'val' else 'test_size'} or widen the lengths/vocab_size"
            )
        src, tgt = sampler(rng, min_len, max_len)
        if exclude is not None:
            key = tuple(src)
            if key in exclude:
                continue
            exclude.add(key)
        examples.append({
            "src": torch.tensor([vocab.id_of[s] for s in src], dtype=torch.long),
            "tgt": torch.tensor([vocab.id_of[s] for s in tgt], dtype=torch.long),
        })
    return examples


def _check_lengths(cfg) -> None:
    if not 1 <= cfg.min_len <= cfg.max_len:
        raise DataError(f"task.min_len={cfg.min_len}, task.max_len={cfg.max_len}: need 1 <= min_len <= max_len")
    if not cfg.max_len < cfg.test_long_min_len <= cfg.test_long_max_len:
        raise DataError(
            f"task.test_long_min_len={cfg.test_long_min_len}, test_long_max_len={cfg.test_long_max_len}: the long test "
            f"split must be longer than training (max_len={cfg.max_len}): need max_len < test_long_min_len <= test_long_max_len"
        )
    for split in ("train_size", "val_size", "test_size"):
        if getattr(cfg, split) < 1:
            raise DataError(f"task.{split}={getattr(cfg, split)} must be >= 1")


def build_synthetic(cfg, seed: int) -> PreparedTask:
    _check_lengths(cfg)
    if cfg.name == "addition":
        vocab = SymbolVocab(list("0123456789+"))
        sampler = addition_sampler(cfg.reverse_digits)
        longest = max(cfg.max_len, cfg.test_long_max_len)
        max_src, max_tgt = 2 * longest + 1, longest + 1  # "a+b"; the sum has at most one more digit
    else:
        if cfg.vocab_size < 1:
            raise DataError(f"task.vocab_size={cfg.vocab_size} must be >= 1 (number of content symbols)")
        vocab = SymbolVocab(synthetic_symbols(cfg.vocab_size))
        sampler = symbol_task_sampler(cfg.name, vocab.symbols)
        max_src = max_tgt = max(cfg.max_len, cfg.test_long_max_len)

    def split(name: str, size: int, min_len: int, max_len: int, exclude: set | None) -> list[dict]:
        rng = random.Random(split_seed(seed, cfg.name, name))
        return _generate(sampler, rng, size, min_len, max_len, vocab, exclude, name)

    train = split("train", cfg.train_size, cfg.min_len, cfg.max_len, exclude=None)
    seen = {tuple(vocab.symbol(int(i)) for i in e["src"]) for e in train}
    val = split("val", cfg.val_size, cfg.min_len, cfg.max_len, seen)
    test = split("test", cfg.test_size, cfg.min_len, cfg.max_len, seen)
    test_long = split("test_long", cfg.test_size, cfg.test_long_min_len, cfg.test_long_max_len, seen)
    return PreparedTask(
        kind="seq2seq", train=train, val=val, test=test, test_long=test_long,
        src_vocab=vocab, tgt_vocab=vocab,
        max_src_len=max_src, max_tgt_len=max_tgt + 1,  # + BOS (tgt_in) / EOS (tgt_out)
    )
