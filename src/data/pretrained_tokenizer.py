"""A pretrained model's own tokenizer (GPT-2's, Qwen2's, SmolLM's and Llama 3's byte-level BPE, BERT's WordPiece,
Marian's and T5's SentencePiece, Llama 2's and Mistral's BPE with byte fallback), behind the interface of our
vocabularies (vocab.SymbolVocab, tokenizer.SubwordTokenizer), so every task, the collate functions and src.predict
read text with it as they read it with ours.

Three differences from ours, all the tokenizer's: its special ids (GPT-2 pads with <|endoftext|>, Marian's and T5's
decoders start from their pad token; see src/model/config.py); the marks it puts around a model input (BERT: [CLS]
x [SEP]; Marian and T5: x </s>; Llama 2 and Mistral: <s> x; Llama 3: <|begin_of_text|> x; GPT-2, Qwen2 and SmolLM:
none), which `wrap_source` adds where the tokenizer's own pipeline would; and ids without a token, where the model's
embedding is padded past the tokenizer (T5, Qwen2: PADDING_ROWS below). The tokenizer is saved with the run
(run_dir/pretrained_tokenizer/), so eval and predict never need the hub.
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

# A model's embedding may have more rows than its tokenizer has tokens: rounded up to a multiple the hardware likes
# (T5: 32,128 rows for 32,100 tokens, a multiple of 128), or with rows kept for tokens added later (Qwen2: 151,936
# for 151,646; Qwen2.5's tokenizer uses 19 more of them). The ids past the tokenizer's last token have no text: the
# model may still give them a score (predict and eval decode them as nothing, as transformers does), and no text is
# read as them. A tokenizer smaller than its model by up to PADDING_ROWS rows, or by up to 1/PADDING_SHARE of the rows
# in a larger embedding, but never by more than a tenth of the rows (a small model's, or an empty tokenizer: a model
# directory without tokenizer files reads as one), is taken as the model's own. One smaller still is another model's
# (Llama 2's 32,000 tokens beside Mistral v0.3's 32,768 rows: 768 short, over 32,768 / 64 = 512) and is refused, as
# is any tokenizer larger than its model, whose last ids would have no row at all.
PADDING_ROWS = 128
PADDING_SHARE = 64


def padding_allowed(rows: int) -> int:
    """How many rows of a `rows`-row embedding may lie past its tokenizer's last token (see PADDING_ROWS)."""
    return min(max(PADDING_ROWS, rows // PADDING_SHARE), rows // 10)


class PretrainedTokenizer:
    """A transformers tokenizer with our vocabularies' interface: encode / decode / token_strings / size."""

    reads_unknown_as_unk = True  # as the pretrained model was trained: unknown text is its <unk> (if it has one)
    piece_name = "piece"

    def __init__(self, tokenizer: Any, specials: SpecialIds):
        self.tokenizer = tokenizer
        self.specials = specials
        self.prefix, self.suffix = _source_marks(tokenizer)
        self.piece_marks = _piece_marks(tokenizer)  # how a piece says where it sits in a word (vocab.TOKEN_MARKS)
        # A text ends at the model's eos, at its further stop ids (config.json's further eos ids) and at its
        # tokenizer's eos where that is another: Llama 3.1's and 3.2's instruct models list <|end_of_text|> first
        # and end a reply with <|eot_id|>, their tokenizer's eos, where transformers' generate stops.
        self.ends = specials.ends
        # transformers' clean_up_tokenization_spaces tidies WordPiece's spaced-out text ("a , b" -> "a, b"). A BPE's
        # decoder gives its text back exactly, and the tidying would only drop real spaces ("x != y" -> "x!= y"): off
        # for a BPE even where its tokenizer_config.json sets it (Llama 3's does), as recent transformers turn it off
        # there. None: the tokenizer's own setting.
        self.clean_up_spaces = False if _model_type(tokenizer) == "BPE" else None

    @classmethod
    def load(cls, directory: Path, specials: SpecialIds, vocab_size: int, name: str) -> PretrainedTokenizer:
        """The tokenizer saved in `directory` (what save_pretrained writes), checked against the model's vocabulary
        size (its embedding's rows: the tokenizer may have fewer, padding_allowed). `specials`: the model's
        pad/bos/eos and stop ids (from its config); unk is the tokenizer's, and so is a further end of text: its own
        eos where that is not the config's first."""
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
        if len(tokenizer) > vocab_size:
            raise DataError(
                f"{name}: its tokenizer has {len(tokenizer)} tokens and its model {vocab_size} embedding rows, so the "
                f"ids from {vocab_size} on would have no row: the tokenizer files in {directory} belong to another "
                "model: copy the model's own there"
            )
        if vocab_size - len(tokenizer) > padding_allowed(vocab_size):  # more than a padded embedding's spare rows
            raise DataError(
                f"{name}: its tokenizer has {len(tokenizer)} tokens and its model {vocab_size}: the tokenizer files "
                f"in {directory} are missing or belong to another model: copy the model's own there"
            )
        unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else specials.pad
        own_eos = tokenizer.eos_token_id
        stops = (*specials.stops, own_eos) if own_eos is not None and own_eos not in specials.ends else specials.stops
        return cls(tokenizer, SpecialIds(specials.pad, specials.bos, specials.eos, unk, stops))

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
        """The ids a decoder should turn into text: skip PAD and the start token, stop at the first EOS (self.ends)."""
        out = []
        for i in as_id_list(ids):
            if i in self.ends:
                break
            if i in (self.specials.pad, self.specials.bos):
                continue
            out.append(i)
        return out

    def decode(self, ids) -> str:
        """The text of the content ids; an id past the tokenizer's last token (a padded row of the model's
        embedding: PADDING_ROWS) has none and is left out, as transformers' decode leaves it out."""
        size = self.size
        return self.tokenizer.decode(
            [i for i in self.content_ids(ids) if i < size],
            skip_special_tokens=False,
            clean_up_tokenization_spaces=self.clean_up_spaces,
        )

    def token_strings(self, ids) -> list[str]:
        """Each token as a label (vocab.display_token): without GPT-2's "Ġ", SentencePiece's "▁" or BERT's "##";
        the tokenizer's special tokens ([CLS], </s>, <|endoftext|>) as they are; an id without a token (a padded
        row of the embedding) as <id N>."""
        special, size, ids = set(self.tokenizer.all_special_tokens), self.size, as_id_list(ids)
        tokens = self.tokenizer.convert_ids_to_tokens([i if i < size else 0 for i in ids])
        return [
            f"<id {i}>" if i >= size else token if token in special else display_token(token, self.piece_marks)
            for i, token in zip(ids, tokens)
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
    specials = SpecialIds(pad=cfg.pad_id, bos=cfg.bos_id, eos=cfg.eos_id, stops=tuple(cfg.stop_ids))
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


def _model_type(tokenizer: Any) -> str | None:
    """The kind of a fast tokenizer's model (BPE, WordPiece, Unigram); None for a slow one (Marian's)."""
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    return None if model is None else type(model).__name__


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
