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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import DataError
from ..pairs import Pair
from ..prepared import PreparedTask
from ..registry import TaskSpec, register_task
from ..resumable import epoch_seed
from ..vocab import SymbolVocab, synthetic_symbols


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


# A sampler draws one example as (src text symbols, tgt text symbols) for a given length range.
ExampleSampler = Callable[[random.Random, int, int], tuple[list[str], list[str]]]


def split_seed(seed: int, task: str, split: str) -> int:
    """A stable seed per (seed, task, split); crc32 instead of hash() because hash() is salted per process."""
    return epoch_seed(seed, zlib.crc32(f"{task}/{split}".encode()))


# What each symbol task does to its source: (source symbols, the vocabulary's symbols in id order) -> target.
Transform = Callable[[list[str], list[str]], list[str]]


def symbol_task_sampler(transform: Transform, symbols: list[str]) -> ExampleSampler:
    def sample(rng: random.Random, min_len: int, max_len: int):
        length = rng.randint(min_len, max_len)
        src = [symbols[rng.randrange(len(symbols))] for _ in range(length)]
        return src, transform(src, symbols)

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
    sampler: ExampleSampler,
    rng: random.Random,
    size: int,
    min_len: int,
    max_len: int,
    vocab: SymbolVocab,
    exclude: set | None,
    split: str,
    drawn: set | None = None,
) -> list[dict]:
    """`size` examples; with `exclude`, skip (and then add) sources already used by an earlier split; `drawn`
    collects the sources drawn (as tuples of symbols), for a later split's `exclude`."""
    examples = []
    attempts = 0
    max_attempts = 50 * size + 1000
    while len(examples) < size:
        attempts += 1
        if attempts > max_attempts:
            raise DataError(
                f"task: only {len(examples)} distinct new {split} examples exist for lengths {min_len}..{max_len} "
                f"(requested {size}): lower task.{'val_size' if split == 'val' else 'test_size'} "
                "or widen the lengths/vocab_size"
            )
        src, tgt = sampler(rng, min_len, max_len)
        if exclude is not None:
            key = tuple(src)
            if key in exclude:
                continue
            exclude.add(key)
        if drawn is not None:
            drawn.add(tuple(src))
        examples.append(
            {
                "src": torch.tensor([vocab.id_of[s] for s in src], dtype=torch.long),
                "tgt": torch.tensor([vocab.id_of[s] for s in tgt], dtype=torch.long),
            }
        )
    return examples


def check_settings(cfg) -> None:
    """The length ranges and split sizes (one line each); run before any data is drawn."""
    if getattr(cfg, "vocab_size", 1) < 1:  # addition has a fixed vocabulary
        raise DataError(f"task.vocab_size={cfg.vocab_size} must be >= 1 (number of content symbols)")
    if not 1 <= cfg.min_len <= cfg.max_len:
        raise DataError(f"task.min_len={cfg.min_len}, task.max_len={cfg.max_len}: need 1 <= min_len <= max_len")
    if not cfg.max_len < cfg.test_long_min_len <= cfg.test_long_max_len:
        raise DataError(
            f"task.test_long_min_len={cfg.test_long_min_len}, test_long_max_len={cfg.test_long_max_len}: the long test "
            f"split must be longer than training (max_len={cfg.max_len}): "
            "need max_len < test_long_min_len <= test_long_max_len"
        )
    for split in ("train_size", "val_size", "test_size"):
        if getattr(cfg, split) < 1:
            raise DataError(f"task.{split}={getattr(cfg, split)} must be >= 1")
    # Held-out sources are new (none seen in an earlier split): splits asking for more sources than the lengths
    # and symbols can make cannot be drawn. (Fewer may still be too many once training has drawn most of them:
    # that is found while the data is drawn.)
    short, long = distinct_sources(cfg, cfg.min_len, cfg.max_len), distinct_sources(cfg, *long_lengths(cfg))
    if short < 1 + cfg.val_size + cfg.test_size:
        raise DataError(
            f"task: only {short} distinct sources exist for lengths {cfg.min_len}..{cfg.max_len}, and the val and "
            f"test splits need task.val_size + task.test_size = {cfg.val_size + cfg.test_size} new ones: lower "
            "task.val_size and task.test_size, or widen the lengths/vocab_size"
        )
    if long < cfg.test_size:
        raise DataError(
            f"task: only {long} distinct sources exist for the test_long lengths {cfg.test_long_min_len}.."
            f"{cfg.test_long_max_len}, and task.test_size={cfg.test_size} asks for that many: lower task.test_size, "
            "or widen the test_long lengths"
        )


def long_lengths(cfg) -> tuple[int, int]:
    return cfg.test_long_min_len, cfg.test_long_max_len


def distinct_sources(cfg, min_len: int, max_len: int) -> int:
    """How many different sources the task can draw with lengths min_len..max_len: symbol sequences (vocab_size
    symbols), or addition's pairs of operands (each of min_len..max_len digits, no leading zeros)."""
    if hasattr(cfg, "vocab_size"):
        return sum(cfg.vocab_size**length for length in range(min_len, max_len + 1))
    numbers = sum(10 if digits == 1 else 9 * 10 ** (digits - 1) for digits in range(min_len, max_len + 1))
    return numbers * numbers


def _build(cfg, seed: int, vocab: SymbolVocab, sampler: ExampleSampler, max_src: int, max_tgt: int) -> PreparedTask:
    check_settings(cfg)

    def split(name: str, size: int, min_len: int, max_len: int, exclude: set | None, drawn: set | None = None):
        rng = random.Random(split_seed(seed, cfg.name, name))
        return _generate(sampler, rng, size, min_len, max_len, vocab, exclude, name, drawn)

    seen: set = set()  # the training sources, which no held-out split repeats
    train = split("train", cfg.train_size, cfg.min_len, cfg.max_len, exclude=None, drawn=seen)
    val = split("val", cfg.val_size, cfg.min_len, cfg.max_len, seen)
    test = split("test", cfg.test_size, cfg.min_len, cfg.max_len, seen)
    test_long = split("test_long", cfg.test_size, cfg.test_long_min_len, cfg.test_long_max_len, seen)
    return PreparedTask(
        kind="seq2seq",
        train=train,
        val=val,
        test=test,
        test_long=test_long,
        src_vocab=vocab,
        tgt_vocab=vocab,
        max_src_len=max_src,
        max_tgt_len=max_tgt + 1,  # + BOS (tgt_in) / EOS (tgt_out)
    )


def symbol_task(transform: Transform):
    """The builder of a copy-like task: random symbol sequences, the target `transform`ed from the source."""

    def build(cfg: SyntheticTaskConfig, seed: int, run_dir: Optional[Path] = None) -> PreparedTask:
        vocab = SymbolVocab(synthetic_symbols(max(cfg.vocab_size, 0)))  # a bad size is reported by _build
        longest = max(cfg.max_len, cfg.test_long_max_len)
        return _build(cfg, seed, vocab, symbol_task_sampler(transform, vocab.symbols), longest, longest)

    return build


def build_addition(cfg: AdditionTaskConfig, seed: int, run_dir: Optional[Path] = None) -> PreparedTask:
    longest = max(cfg.max_len, cfg.test_long_max_len)
    # "a+b"; the sum has at most one more digit
    return _build(
        cfg, seed, SymbolVocab(list("0123456789+")), addition_sampler(cfg.reverse_digits), 2 * longest + 1, longest + 1
    )


def symbols_longest(cfg) -> int:
    return max(cfg.max_len, cfg.test_long_max_len) + 2  # + BOS/EOS


def addition_longest(cfg) -> int:
    return 2 * max(cfg.max_len, cfg.test_long_max_len) + 1 + 2  # "a+b" plus BOS/EOS; the sum is shorter


# --- counterfactual pairs (src/data/pairs.py) ---------------------------------------------------------------------
# A rule gives a source's target (symbols in, symbols out); a replacement rule the symbols that may stand at a
# source position instead of the one there (the same kind of symbol: a digit for a digit, no leading zero).
Rule = Callable[[list[str]], list[str]]
Replacements = Callable[[list[str], int], list[str]]
EOS_MARK = "<eos>"  # where one target ends before the other, the answer there is the end of the sequence


def pairs_of(rule: Rule, replacements: Replacements, corrupt_at: Callable[[list[str]], list[int]]):
    """The pair maker of a synthetic task: examples of the split's longest source length (so every pair has the
    same shape, one template, and a position means the same thing in every pair), each with one source symbol
    replaced by another (symmetric token replacement). The decoder reads the clean target in both versions; the
    scored position is the first target position whose token the change changes."""

    def make(cfg, task: PreparedTask, examples, count: int, rng: random.Random) -> list[Pair]:
        vocab = task.src_vocab
        assert isinstance(vocab, SymbolVocab)
        longest = max(len(e["src"]) for e in examples)
        pairs = []
        for example in examples:
            if len(pairs) == count:
                break
            if len(example["src"]) != longest:
                continue
            source = [vocab.symbol(int(i)) for i in example["src"]]
            where = corrupt_at(source)
            if not where:
                continue
            at = where[rng.randrange(len(where))] if len(where) > 1 else where[0]
            others = replacements(source, at)
            changed = list(source)
            changed[at] = others[rng.randrange(len(others))]
            clean_target, changed_target = rule(source) + [EOS_MARK], rule(changed) + [EOS_MARK]
            differ = [j for j, (a, b) in enumerate(zip(clean_target, changed_target)) if a != b]
            if not differ:  # (cannot happen for these rules: every change of the source changes the target)
                continue
            j = differ[0]

            def token(symbol: str) -> int:
                return task.specials.eos if symbol == EOS_MARK else vocab.id_of[symbol]

            corrupted_src = torch.tensor([vocab.id_of[s] for s in changed], dtype=torch.long)
            pairs.append(
                Pair(
                    clean={"src": example["src"], "tgt": example["tgt"]},
                    corrupted={"src": corrupted_src, "tgt": example["tgt"]},
                    position=j,
                    answer=token(clean_target[j]),
                    wrong=token(changed_target[j]),
                )
            )
        return pairs

    return make


def middle_symbol(source: list[str]) -> list[int]:
    """The position a symbol task's pairs change: the middle one, the same in every pair of a length."""
    return [len(source) // 2]


def symbol_pairs(transform: Transform):
    def make(cfg, task: PreparedTask, examples, count: int, rng: random.Random) -> list[Pair]:
        symbols = task.src_vocab.symbols  # type: ignore[union-attr]
        if len(symbols) < 2:
            return []  # one symbol: nothing to change it to

        def rule(source: list[str]) -> list[str]:
            return transform(source, symbols)

        def replacements(source: list[str], at: int) -> list[str]:
            return [s for s in symbols if s != source[at]]

        return pairs_of(rule, replacements, middle_symbol)(cfg, task, examples, count, rng)

    return make


def addition_pairs(cfg, task: PreparedTask, examples, count: int, rng: random.Random) -> list[Pair]:
    """One digit of an operand changed (any digit position, drawn per pair; never a leading zero)."""

    def operands(source: list[str]) -> tuple[str, str]:
        a, b = "".join(source).split("+")
        return (a[::-1], b[::-1]) if cfg.reverse_digits else (a, b)

    def rule(source: list[str]) -> list[str]:
        a, b = operands(source)
        total = list(str(int(a) + int(b)))
        return total[::-1] if cfg.reverse_digits else total

    def digits(source: list[str]) -> list[int]:
        return [k for k, s in enumerate(source) if s != "+"]

    def replacements(source: list[str], at: int) -> list[str]:
        plus = source.index("+")
        operand = range(0, plus) if at < plus else range(plus + 1, len(source))
        leading = operand[-1] if cfg.reverse_digits else operand[0]  # the most significant digit
        allowed = "123456789" if at == leading and len(operand) > 1 else "0123456789"
        return [d for d in allowed if d != source[at]]

    return pairs_of(rule, replacements, digits)(cfg, task, examples, count, rng)


def _symbol_spec(name: str, transform: Transform) -> TaskSpec:
    return TaskSpec(
        name=name,
        kind="seq2seq",
        schema=SyntheticTaskConfig,
        build=symbol_task(transform),
        validate=check_settings,
        longest_sequence=symbols_longest,
        pairs=symbol_pairs(transform),
    )


register_task(_symbol_spec("copy", lambda seq, symbols: list(seq)))
register_task(_symbol_spec("reverse", lambda seq, symbols: seq[::-1]))
register_task(_symbol_spec("sort", lambda seq, symbols: sorted(seq, key=symbols.index)))  # by id: "10" after "9"
register_task(
    TaskSpec(
        name="addition",
        kind="seq2seq",
        schema=AdditionTaskConfig,
        build=build_addition,
        validate=check_settings,
        longest_sequence=addition_longest,
        pairs=addition_pairs,
    )
)
