"""Vocabularies: map text to token ids and back, with the special tokens every task shares.

Two kinds live here; both have the same small interface (`encode`, `decode`, `token_strings`, `size`):
- `SymbolVocab`: a fixed list of symbols (synthetic tasks, characters for char_lm). Id = 4 + index.
- `tokenizer.SubwordTokenizer`: learned BPE / word vocabularies for natural-language tasks.
"""

from __future__ import annotations

import functools
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


# Whitespace as a label shows it (a space label would be invisible).
VISIBLE_WHITESPACE = {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def readable(symbol: str) -> str:
    """Make whitespace visible on attention-map axes: every space, newline, tab and carriage return of `symbol`."""
    return "".join(VISIBLE_WHITESPACE.get(char, char) for char in symbol)


# How a tokenizer marks where a piece sits in a word; token_text converts each, so that no page or map shows them:
#   "byte_level"  GPT-2's byte-level BPE writes every byte as a printable character: "Ġ" is a space (the start of a
#                 word), "Ċ" a newline, and "ü" split over two pieces is "Ã" and "¼";
#   "metaspace"   SentencePiece (Marian's) and our own bpe write a space as "▁", so a word's first piece starts with it;
#   "wordpiece"   BERT's WordPiece starts a piece that continues a word with "##";
#   None          a token is its own text (our symbols, characters and words).
TOKEN_MARKS = ("byte_level", "metaspace", "wordpiece")


@functools.cache
def _byte_of_character() -> dict[str, int]:
    """GPT-2's table, inverted: the printable character byte-level BPE writes for each of the 256 bytes -> the byte.
    Printable bytes stand for themselves; the others (space, control characters) are moved to 256 and up, in order
    (Radford et al. 2019, `bytes_to_unicode` in openai/gpt-2 and in Hugging Face's tokenizers)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [byte for byte in range(256) if byte not in printable]
    table = {chr(byte): byte for byte in printable}
    table.update({chr(256 + k): byte for k, byte in enumerate(moved)})
    return table


def token_text(token: str, marks: str | None) -> str:
    """The text a piece stands for, its tokenizer's marks (TOKEN_MARKS) read: "Ġworld" -> " world", "Ċ" -> a newline,
    "▁Welt" -> " Welt", "##ing" -> "ing". A byte-level piece holding part of a character (one byte of "ü") is shown
    as the escape of that byte ("\\xc3"), so the two halves stay two pieces that can be told apart."""
    if marks == "byte_level":
        table = _byte_of_character()
        if not all(char in table for char in token):
            return token  # not a byte-level piece (an added special token such as <|endoftext|> stays as it is)
        return bytes(table[char] for char in token).decode("utf-8", errors="backslashreplace")
    if marks == "metaspace":
        return token.replace("▁", " ")
    if marks == "wordpiece":
        return token[2:] if token.startswith("##") and len(token) > 2 else token
    return token


def display_token(token: str, marks: str | None = None) -> str:
    """A token as attention maps and the attention page label it: the text it stands for (token_text), without the
    one leading space that only says "a word starts here", and with any other whitespace made visible ("␣", "\\n");
    a piece that is only whitespace shows all of it. Every token keeps its own label, so the boundaries between
    pieces stay where the tokenizer put them ("play", "ing"), only the tokenizer's private marks are gone."""
    text = token_text(token, marks)
    if text.strip() and text.startswith(" "):
        text = text[1:]
    return readable(text) if text else token


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
        return [display_token(self.symbol(i)) for i in as_id_list(ids)]

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
