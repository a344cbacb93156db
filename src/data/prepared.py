"""What every task builder returns: the examples of each split and how to read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from .tokenizer import SubwordTokenizer
from .vocab import SymbolVocab

Vocab = Union[SymbolVocab, SubwordTokenizer]


@dataclass
class PreparedTask:
    kind: str  # "seq2seq" | "lm" | "classification"
    # Examples are small dicts of 1-D long tensors (see collate.py for the keys per kind).
    train: list[dict]
    val: list[dict]
    test: list[dict]
    src_vocab: Optional[Vocab]  # None for "lm"
    tgt_vocab: Optional[Vocab]  # None for "classification"
    max_src_len: int  # longest src any split (or encode_src + truncation) can produce; 0 for "lm"
    max_tgt_len: int  # longest tgt_in / tgt_out (BOS/EOS included); 0 for "classification"
    test_long: Optional[list[dict]] = None  # synthetic tasks: held-out longer lengths
    label_names: list[str] = field(default_factory=list)
