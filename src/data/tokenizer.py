"""Learned vocabularies for natural-language tasks, built with Hugging Face `tokenizers`.

- "bpe": byte-pair encoding over SentencePiece-style pieces (a word-initial piece starts with "▁"),
  so decoding restores the original spacing exactly; labels show the pieces without the "▁" (token_strings).
- "word": whitespace/punctuation-split words, the most frequent `vocab_size - 4` kept.
Special tokens <pad>, <bos>, <eos>, <unk> get ids 0..3 (the trainer assigns special tokens first).
Trained on the training split only (never on val/test) and saved to run_dir/tokenizer.json; a
saved tokenizer is loaded instead of retrained so eval/predict see the ids the model was trained with.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from .errors import DataError
from .vocab import OUR_SPECIAL_IDS, SPECIAL_TOKENS, UNK_ID, as_id_list, content_ids, display_token

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"


class SubwordTokenizer:
    """Same interface as vocab.SymbolVocab: encode / decode / token_strings / size."""

    specials = OUR_SPECIAL_IDS  # <pad>, <bos>, <eos>, <unk> at 0..3 (checked below)

    def __init__(self, tokenizer: Tokenizer):
        for expected_id, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != expected_id:
                raise DataError(
                    f"tokenizer: special token {token} has id {tokenizer.token_to_id(token)}, expected {expected_id}: "
                    f"delete the saved {TOKENIZER_FILE} to retrain it"
                )
        self.tokenizer = tokenizer

    @property
    def size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    marks = 0  # a model input is its content ids alone (a pretrained tokenizer may add its own marks)

    def wrap_source(self, ids: list[int]) -> list[int]:
        return list(ids)

    # Natural language always has more: val and test sentences hold words (word tokenizer: any word outside the
    # vocab_size most frequent of training, so training sentences too) or characters (bpe) outside the vocabulary,
    # and the data are read with <unk> for them. New text is read the same way, so that it means what it meant there.
    reads_unknown_as_unk = True

    @property
    def piece_name(self) -> str:
        """What an unknown piece is: a word (word tokenizer) or a character no training text held (bpe)."""
        return "word" if isinstance(self.tokenizer.model, models.WordLevel) else "character"

    def unknown_pieces(self, text: str) -> list[str]:
        """The pieces of `text` the tokenizer reads as <unk> (words outside the vocabulary, or characters it never saw
        in training), each once."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        pieces = (text[start:end] for token, (start, end) in zip(encoding.ids, encoding.offsets) if token == UNK_ID)
        return list(dict.fromkeys(pieces))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        # <unk> stays visible in the text: silently dropping it would flatter BLEU and hide OOV problems.
        return self.tokenizer.decode(content_ids(ids), skip_special_tokens=False)

    def token_strings(self, ids) -> list[str]:
        """Each token as a label (vocab.display_token): a bpe piece without its "▁" (the start of a word)."""
        marks = "metaspace" if isinstance(self.tokenizer.decoder, decoders.Metaspace) else None
        return [display_token(self.tokenizer.id_to_token(i) or SPECIAL_TOKENS[3], marks) for i in as_id_list(ids)]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        self.tokenizer.save(str(tmp))
        tmp.replace(path)  # atomic: a crash never leaves a half-written tokenizer behind

    @classmethod
    def load(cls, path: Path) -> "SubwordTokenizer":
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as error:  # tokenizers raises its own Exception types
            if isinstance(error, DataError):
                raise
            raise DataError(f"{path}: cannot load the saved tokenizer ({error}): delete it to retrain") from error


def check_vocab_size(vocab_size: int) -> None:
    """The vocabulary a tokenizer of the task's own is trained to: room for more than the special tokens."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise DataError(f"task.vocab_size={vocab_size} leaves no room besides the 4 special tokens: use e.g. 8000")


def train_tokenizer(texts: Iterable[str], kind: str, vocab_size: int, lowercase: bool) -> SubwordTokenizer:
    """Train a "bpe" or "word" tokenizer on `texts` (the training split only)."""
    check_vocab_size(vocab_size)
    normalizer = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS[3]))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    elif kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS[3]))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation separately
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    else:
        raise DataError(f"task.tokenizer={kind!r} is not supported: choose 'word' or 'bpe'")
    tokenizer.normalizer = normalizers.Sequence(normalizer)
    tokenizer.train_from_iterator(texts, trainer)
    trained = SubwordTokenizer(tokenizer)
    warn_if_larger_than_asked(trained, kind, vocab_size)
    return trained


def warn_if_larger_than_asked(tokenizer: SubwordTokenizer, kind: str, vocab_size: int) -> None:
    """BPE keeps every character of the training text (its alphabet) whatever vocab_size says, so a vocab_size
    below the alphabet and the 4 special tokens gets a larger vocabulary than asked: one warning naming the size
    there is. A warning, not a refusal: the least size is the training text's alphabet, known only once that text is
    read, in the run (the checks before it read the data files' first part only); and a vocabulary of characters
    alone is a setting one may want (a character-level model on the joint vocabulary), which this gives. (The word
    tokenizer keeps at most vocab_size tokens: it is always honoured.)"""
    if tokenizer.size <= vocab_size:
        return
    from src.training.report import print_warning

    print_warning(
        f"task.vocab_size={vocab_size} is smaller than a {kind.upper()} vocabulary of this text can be: it keeps every "
        f"character of the training text ({tokenizer.size - len(SPECIAL_TOKENS)} here) besides the "
        f"{len(SPECIAL_TOKENS)} special tokens, so it has {tokenizer.size} tokens and no merges: give "
        f"task.vocab_size={tokenizer.size} or more to have the setting honoured (above it, merges are learned)"
    )


def load_or_train_tokenizer(
    run_dir: Path | None, texts: Iterable[str], kind: str, vocab_size: int, lowercase: bool
) -> SubwordTokenizer:
    """Load run_dir/tokenizer.json when present, else train on `texts` and save it there."""
    path = Path(run_dir) / TOKENIZER_FILE if run_dir is not None else None
    if path is not None and path.exists():
        log.info("loading tokenizer from %s", path)
        return SubwordTokenizer.load(path)
    tokenizer = train_tokenizer(texts, kind, vocab_size, lowercase)
    if path is not None:
        tokenizer.save(path)
        log.info("trained a %s tokenizer (%d tokens), saved to %s", kind, tokenizer.size, path)
    return tokenizer
