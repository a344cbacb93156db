"""A pretrained model's own tokenizer (GPT-2's byte-level BPE, BERT's WordPiece, Marian's SentencePiece), behind
the interface of our vocabularies (vocab.SymbolVocab, tokenizer.SubwordTokenizer), so every task, the collate
functions and src.predict read text with it as they read it with ours.

Two differences from ours, both the tokenizer's: its special ids (GPT-2 pads with <|endoftext|>, Marian's decoder
starts from its pad token; see src/model/config.py), and the marks it puts around a model input (BERT: [CLS] x
[SEP]; Marian: x </s>; GPT-2: none), which `wrap_source` adds where the tokenizer's own pipeline would.
The tokenizer is saved with the run (run_dir/pretrained_tokenizer/), so eval and predict never need the hub.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

from src.model.tokens import SpecialIds

from .errors import DataError
from .vocab import as_id_list, display_token

SAVED_DIR = "pretrained_tokenizer"  # in a run directory


class PretrainedTokenizer:
    """A transformers tokenizer with our vocabularies' interface: encode / decode / token_strings / size."""

    reads_unknown_as_unk = True  # as the pretrained model was trained: unknown text is its <unk> (if it has one)
    piece_name = "piece"

    def __init__(self, tokenizer: Any, specials: SpecialIds):
        self.tokenizer = tokenizer
        self.specials = specials
        self.prefix, self.suffix = _source_marks(tokenizer)
        self.piece_marks = _piece_marks(tokenizer)  # how a piece says where it sits in a word (vocab.TOKEN_MARKS)

    @classmethod
    def load(cls, directory: Path, specials: SpecialIds, vocab_size: int, name: str) -> PretrainedTokenizer:
        """The tokenizer saved in `directory` (what save_pretrained writes), checked against the model's vocabulary
        size. `specials`: the model's pad/bos/eos (from its config); unk is the tokenizer's."""
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise DataError(
                "pretrained models need the optional dependencies: pip install -e '.[pretrained]'"
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory)
        except (OSError, ValueError, TypeError, AttributeError) as error:
            first_line = (str(error).splitlines() or [type(error).__name__])[0]
            raise DataError(f"{name}: no tokenizer can be loaded from {directory} ({first_line})") from None
        if len(tokenizer) != vocab_size:
            raise DataError(
                f"{name}: its tokenizer has {len(tokenizer)} tokens and its model {vocab_size}: the tokenizer files "
                f"in {directory} are missing or belong to another model: copy the model's own there"
            )
        unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else specials.pad
        return cls(tokenizer, SpecialIds(specials.pad, specials.bos, specials.eos, unk))

    @property
    def size(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        """The content ids of `text`, without the tokenizer's marks (see wrap_source)."""
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # quiet: we cut it

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []

    def wrap_source(self, ids: list[int]) -> list[int]:
        """A model input as the tokenizer's pipeline makes it: BERT [CLS] ids [SEP], Marian ids </s>, GPT-2 ids."""
        return self.prefix + list(ids) + self.suffix

    @property
    def marks(self) -> int:
        """How many tokens wrap_source adds."""
        return len(self.prefix) + len(self.suffix)

    def content_ids(self, ids) -> list[int]:
        """The ids a decoder should turn into text: skip PAD and the start token, stop at the first EOS."""
        out = []
        for i in as_id_list(ids):
            if i == self.specials.eos:
                break
            if i in (self.specials.pad, self.specials.bos):
                continue
            out.append(i)
        return out

    def decode(self, ids) -> str:
        return self.tokenizer.decode(self.content_ids(ids), skip_special_tokens=False)

    def token_strings(self, ids) -> list[str]:
        """Each token as a label (vocab.display_token): without GPT-2's "Ġ", SentencePiece's "▁" or BERT's "##";
        the tokenizer's special tokens ([CLS], </s>, <|endoftext|>) as they are."""
        special = set(self.tokenizer.all_special_tokens)
        return [
            token if token in special else display_token(token, self.piece_marks)
            for token in self.tokenizer.convert_ids_to_tokens(as_id_list(ids))
        ]

    def unknown_pieces(self, text: str) -> list[str]:
        """The pieces of `text` read as the tokenizer's <unk>, each once (a byte-level BPE such as GPT-2's has none)."""
        unk = self.tokenizer.unk_token_id
        if unk is None or unk in (self.specials.eos, self.specials.bos, self.specials.pad):
            return []  # no <unk> of its own (GPT-2: a byte-level BPE reads everything; its unk is <|endoftext|>)
        if self.tokenizer.is_fast:
            encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            pairs = zip(encoding["input_ids"], encoding["offset_mapping"])
            return list(dict.fromkeys(text[start:end] for token, (start, end) in pairs if token == unk))
        return list(dict.fromkeys(word for word in text.split() if unk in self.encode(word)))

    def save(self, directory: Path) -> None:
        """Written whole or not at all: into a hidden folder beside it, then renamed."""
        partial = directory.with_name(f".{directory.name}.part")
        shutil.rmtree(partial, ignore_errors=True)
        self.tokenizer.save_pretrained(partial)
        partial.rename(directory)


@functools.lru_cache(maxsize=4)
def model_tokenizer(pretrained: str) -> PretrainedTokenizer:
    """The tokenizer of `model.pretrained` (a hub name or a model directory), checked against the model's config.
    Once per process and model: src.run loads it before Hydra writes the run directory (a model directory without
    its tokenizer files is refused there) and reads its text with the same object."""
    from src.pretrained import pretrained_config

    cfg, directory, _ = pretrained_config(pretrained)
    specials = SpecialIds(pad=cfg.pad_id, bos=cfg.bos_id, eos=cfg.eos_id)
    return PretrainedTokenizer.load(directory, specials, max(cfg.src_vocab_size, cfg.tgt_vocab_size), pretrained)


def _source_marks(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's content ids, found by encoding a probe both ways."""
    probe = "a"
    content = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for start in range(len(full) - len(content) + 1):
        if full[start : start + len(content)] == content:
            return list(full[:start]), list(full[start + len(content) :])
    return [], []


def _piece_marks(tokenizer: Any) -> str | None:
    """How the tokenizer marks a piece's place in a word (vocab.TOKEN_MARKS): read from its decoder (a fast
    tokenizer's: GPT-2's ByteLevel, BERT's WordPiece, a Metaspace), else from its vocabulary, whose pieces carry the
    marks (Marian's SentencePiece: "▁"); None when no mark is found."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    by_decoder = {"ByteLevel": "byte_level", "WordPiece": "wordpiece", "Metaspace": "metaspace"}
    if type(decoder).__name__ in by_decoder:
        return by_decoder[type(decoder).__name__]
    pieces = list(tokenizer.get_vocab())
    counts = {
        "byte_level": sum(piece.startswith("Ġ") for piece in pieces),
        "metaspace": sum(piece.startswith("▁") for piece in pieces),
        "wordpiece": sum(piece.startswith("##") for piece in pieces),
    }
    marks, count = max(counts.items(), key=lambda item: item[1])
    return marks if count else None
