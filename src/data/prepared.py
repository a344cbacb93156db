"""What every task builder returns: the examples of each split and how to read them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch

from src.model.tokens import SpecialIds

from .tokenizer import SubwordTokenizer
from .vocab import SymbolVocab

Vocab = Union[SymbolVocab, SubwordTokenizer]


class PackedExamples(Sequence):
    """A split's examples held as one flat tensor per key plus offsets, read back as small dicts of tensors.

    Why: DDP's spawned ranks get the data module pickled, and torch shares every tensor with one file descriptor;
    the default task's 10,000 examples of two tensors each ran out of them ("Too many open files"). A few large
    tensors share cheaply. Values that are not tensors (a class label) are kept as one number per example.
    """

    def __init__(self, examples: Sequence[dict[str, Any]]):
        self.keys = list(examples[0]) if len(examples) else []
        self.values: dict[str, torch.Tensor] = {}  # key -> all examples' values, end to end
        self.offsets: dict[str, torch.Tensor] = {}  # key -> (N + 1,) start of each example's values
        self.scalars: set[str] = set()
        for key in self.keys:
            items = [example[key] for example in examples]
            if isinstance(items[0], torch.Tensor):
                lengths = torch.tensor([len(item) for item in items])
                self.offsets[key] = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
                self.values[key] = torch.cat(items) if items else torch.zeros(0, dtype=torch.long)
            else:
                self.scalars.add(key)
                self.values[key] = torch.tensor(items)
        self.size = len(examples)
        # The same offsets as Python ints: slicing with them is several times faster than with 0-d tensors, and
        # the collate of every training batch reads them (a list pickles without file descriptors, too).
        self._bounds = {key: offsets.tolist() for key, offsets in self.offsets.items()}
        self._scalar_values = {key: self.values[key].tolist() for key in self.scalars}

    def __len__(self) -> int:
        return self.size

    def lengths(self) -> list[int]:
        """Per example, its longest sequence (what its batch is padded to)."""
        if not self.offsets:
            return [1] * self.size
        per_key = torch.stack([offsets.diff() for offsets in self.offsets.values()])  # (keys, N)
        return per_key.max(dim=0).values.tolist()

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(index)
        example: dict[str, Any] = {}
        for key in self.keys:
            if key in self.scalars:
                example[key] = self._scalar_values[key][index]
            else:
                bounds = self._bounds[key]
                example[key] = self.values[key][bounds[index] : bounds[index + 1]]
        return example


@dataclass
class PreparedTask:
    kind: str  # a name of registry.KINDS: seq2seq, lm or classification
    # Examples are small dicts of 1-D long tensors (see collate.py for the keys per kind).
    train: list[dict]
    val: list[dict]
    test: list[dict]
    src_vocab: Optional[Vocab]  # None where the kind reads no source (lm)
    tgt_vocab: Optional[Vocab]  # None where the kind predicts no tokens (classification)
    max_src_len: int  # longest src any split (or encode_src + truncation) can produce; 0 without a source
    max_tgt_len: int  # longest tgt_in / tgt_out (BOS/EOS included); 0 without target tokens
    test_long: Optional[list[dict]] = None  # synthetic tasks: held-out longer lengths
    label_names: list[str] = field(default_factory=list)
    # Translation: split -> the raw target line of each example, what BLEU is scored against (sacrebleu wants the
    # detokenized reference as written, not the tokenizer's round trip of it).
    references: dict[str, list[str]] = field(default_factory=dict)

    @property
    def specials(self) -> SpecialIds:
        """The special ids of the task's vocabulary (both sides share one set of them)."""
        vocab = self.tgt_vocab or self.src_vocab
        assert vocab is not None
        return vocab.specials

    def __post_init__(self) -> None:
        """Every split packed (see PackedExamples): what the data loaders index, and what DDP ships to its ranks."""
        self.train, self.val, self.test = (PackedExamples(split) for split in (self.train, self.val, self.test))
        if self.test_long is not None:
            self.test_long = PackedExamples(self.test_long)
