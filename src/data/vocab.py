"""Vocabularies: map text to token ids and back, with the special tokens every task shares.

Two kinds live here; both have the same small interface (`encode`, `decode`, `token_strings`, `size`):
- `SymbolVocab`: a fixed list of symbols (synthetic tasks, characters for char_lm). Id = 4 + index.
- `tokenizer.SubwordTokenizer`: learned BPE / word vocabularies for natural-language tasks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import torch

# The one place the data layer learns the special ids; the model defines them (src/model/config.py).
from src.model.tokens import BOS_ID, EOS_ID, OUR_SPECIAL_IDS, PAD_ID, UNK_ID

from .errors import DataError

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")  # at ids PAD_ID, BOS_ID, EOS_ID, UNK_ID
NUM_SPECIAL = len(SPECIAL_TOKENS)
assert [PAD_ID, BOS_ID, EOS_ID, UNK_ID] == list(range(NUM_SPECIAL)), "special ids must be 0..3 in this order"


def as_id_list(ids) -> list[int]:
    """Accept a list of ints or a 1-D tensor."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"expected a 1-D tensor of token ids, got shape {tuple(ids.shape)}")
        return ids.tolist()
    return [int(i) for i in ids]


def content_ids(ids) -> list[int]:
    """The ids a decoder should turn into text: skip PAD and BOS, stop at the first EOS."""
    out = []
    for i in as_id_list(ids):
        if i == EOS_ID:
            break
        if i in (PAD_ID, BOS_ID):
            continue
        out.append(i)
    return out


def readable(symbol: str) -> str:
    """Make whitespace visible on attention-map axes (a space label would be invisible)."""
    return {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(symbol, symbol)


class SymbolVocab:
    """A fixed, ordered list of symbols; symbol k has id NUM_SPECIAL + k.

    Text is split into symbols per character when every symbol is one character (so "3141" is four
    tokens); otherwise on whitespace.
    """

    specials = OUR_SPECIAL_IDS
    marks = 0  # a model input is its content ids alone (a pretrained tokenizer may add its own marks)

    def wrap_source(self, ids: list[int]) -> list[int]:
        return list(ids)

    def __init__(self, symbols: Sequence[str]):
        if len(set(symbols)) != len(symbols):
            raise ValueError("symbols must be unique")
        self.symbols = list(symbols)
        self.id_of = {s: NUM_SPECIAL + k for k, s in enumerate(self.symbols)}
        self.single_chars = all(len(s) == 1 for s in self.symbols)

    @property
    def size(self) -> int:
        return NUM_SPECIAL + len(self.symbols)

    def symbol(self, token_id: int) -> str:
        if token_id < NUM_SPECIAL:
            return SPECIAL_TOKENS[token_id]
        k = token_id - NUM_SPECIAL
        return self.symbols[k] if k < len(self.symbols) else SPECIAL_TOKENS[UNK_ID]

    def split(self, text: str) -> list[str]:
        return list(text) if self.single_chars else text.split()

    def encode(self, text: str) -> list[int]:
        return [self.id_of.get(s, UNK_ID) for s in self.split(text)]

    # The symbols are all the task has (a synthetic task's alphabet, every character of a char_lm file): no split
    # holds a symbol outside them, so the model never read <unk>, and one in new text cannot be read at all.
    reads_unknown_as_unk = False
    piece_name = "symbol"  # what one token is, in messages

    def unknown_pieces(self, text: str) -> list[str]:
        """The symbols of `text` this vocabulary does not have (encode reads them as <unk>), each once."""
        return list(dict.fromkeys(s for s in self.split(text) if s not in self.id_of))

    def decode(self, ids) -> str:
        joiner = "" if self.single_chars else " "
        return joiner.join(self.symbol(i) for i in content_ids(ids))

    def token_strings(self, ids) -> list[str]:
        return [readable(self.symbol(i)) for i in as_id_list(ids)]

    # Learned vocabularies (the character set of a text file) are saved in the run directory so
    # eval/predict rebuild exactly the ids the model was trained with.
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"symbols": self.symbols}, ensure_ascii=False, indent=0), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "SymbolVocab":
        try:
            return cls(json.loads(path.read_text(encoding="utf-8"))["symbols"])
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"{path}: cannot read the saved vocabulary ({error}): delete it to rebuild") from error


def synthetic_symbols(count: int) -> list[str]:
    """Readable names for `count` content symbols: 0-9, then a-z, then s36, s37, ..."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    return [alphabet[k] if k < len(alphabet) else f"s{k}" for k in range(count)]


def sorted_characters(texts: Iterable[str]) -> list[str]:
    chars: set[str] = set()
    for text in texts:
        chars.update(text)
    return sorted(chars)
