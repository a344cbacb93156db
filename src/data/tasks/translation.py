"""translation (any parallel text files) and the pipeline multi30k reuses.

One joint BPE tokenizer for both languages, trained on the training pairs only: a shared vocabulary
lets the model tie source and target embeddings (an ablation axis). Sentences longer than max_len
tokens are truncated (and counted in the log), not dropped, so every split keeps all its lines;
pairs with an empty side are dropped (also counted). `src_prefix` is text read in front of every source (T5's
"translate English to German: "), in training, evaluation and prediction alike (PrefixedSource).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import DataError
from ..files import as_sentence, read_head, read_lines, resolve_path
from ..prepared import PreparedTask
from ..registry import TaskSpec, register_task
from ..tokenizer import SubwordTokenizer, check_vocab_size, load_or_train_tokenizer

log = logging.getLogger(__name__)

Pairs = list[tuple[str, str]]


@dataclass
class TranslationTaskConfig:
    """translation: parallel text files, one sentence per line, line i of src pairs with line i of tgt."""

    name: str = "translation"
    train_src: str = "???"
    train_tgt: str = "???"
    val_src: str = "???"
    val_tgt: str = "???"
    test_src: str = "???"
    test_tgt: str = "???"
    vocab_size: int = 8000  # joint BPE vocabulary (both languages), including the 4 special tokens
    max_len: int = 64  # tokens per side (before BOS/EOS); longer sentences are truncated
    lowercase: bool = False
    train_limit: int = 0  # use only the first N training pairs (0 = all); quick CPU runs
    # Text read in front of every source sentence, e.g. "translate English to German: " (T5 was trained with one per
    # task: its config.json names them); part of the source, so task.max_len counts its tokens. "" = none.
    src_prefix: str = ""


def read_parallel(src_path, tgt_path, src_field: str, tgt_field: str) -> Pairs:
    """Line i of src pairs with line i of tgt; the counts must match."""
    src_lines = read_lines(src_path, src_field)
    tgt_lines = read_lines(tgt_path, tgt_field)
    check_line_counts(resolve_path(src_path), len(src_lines), resolve_path(tgt_path), len(tgt_lines))
    return list(zip(src_lines, tgt_lines))


def check_line_counts(src: Path, src_count: int, tgt: Path, tgt_count: int) -> None:
    if src_count != tgt_count:
        shorter = src if src_count < tgt_count else tgt
        raise DataError(
            f"{shorter}:{min(src_count, tgt_count) + 1}: the parallel files have different line counts "
            f"({src}: {src_count}, {tgt}: {tgt_count}): line i of each must be a translation pair; "
            "fix or re-export them"
        )


def check_parallel_heads(src_path, tgt_path, src_field: str, tgt_field: str) -> None:
    """What read_parallel would refuse, from the files' first part: each readable UTF-8 with text, and the same
    number of lines when both are read whole."""
    src, tgt = read_head(src_path, src_field), read_head(tgt_path, tgt_field)
    if src.whole and tgt.whole:
        check_line_counts(src.path, len(src.lines), tgt.path, len(tgt.lines))


def check_settings(cfg) -> None:
    """translation's and multi30k's shared settings."""
    if cfg.max_len < 1:
        raise DataError(f"task.max_len={cfg.max_len} must be >= 1 (tokens per sentence)")
    check_src_prefix(cfg.src_prefix)


def check_src_prefix(prefix: str) -> None:
    """task.src_prefix is text on one line with something to read (empty: no prefix)."""
    example = 'e.g. task.src_prefix="translate English to German: "'
    if prefix and not prefix.strip():
        raise DataError(
            f"task.src_prefix={prefix!r} is only whitespace: give the text every source starts with ({example}), "
            "or leave it out"
        )
    if "\n" in prefix or "\r" in prefix:
        raise DataError(
            f"task.src_prefix={prefix!r} holds a line break, and each source is one line: give the prefix on one "
            f"line ({example})"
        )


class PrefixedSource:
    """The source side's vocabulary of a task with task.src_prefix: it reads every source with the prefix in front,
    joined as text before tokenising (as transformers' examples join T5's prefix), and is the tokenizer otherwise.
    The datamodule reads new text through its source vocabulary (src.predict's inputs, the attention page, a pairs
    file), so a line is read with the prefix there as in training and evaluation. The target side reads with the
    tokenizer itself: the same ids, one vocabulary."""

    def __init__(self, tokenizer, prefix: str):
        self.tokenizer = tokenizer
        self.prefix = prefix

    def _with_prefix(self, text: str) -> str:
        return self.prefix + text if text else text  # an empty sentence stays empty (predict's empty lines)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(self._with_prefix(text))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer.encode_batch([self._with_prefix(text) for text in texts])

    def unknown_pieces(self, text: str) -> list[str]:
        return self.tokenizer.unknown_pieces(self._with_prefix(text))

    # The rest is the tokenizer's.
    @property
    def size(self) -> int:
        return self.tokenizer.size

    @property
    def specials(self):
        return self.tokenizer.specials

    @property
    def marks(self) -> int:
        return self.tokenizer.marks

    @property
    def reads_unknown_as_unk(self) -> bool:
        return self.tokenizer.reads_unknown_as_unk

    @property
    def piece_name(self) -> str:
        return self.tokenizer.piece_name

    def wrap_source(self, ids: list[int]) -> list[int]:
        return self.tokenizer.wrap_source(ids)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def token_strings(self, ids) -> list[str]:
        return self.tokenizer.token_strings(ids)


def check_data(cfg: TranslationTaskConfig, pretrained: bool) -> None:
    """What build_translation would refuse, from the six files' first part (see check_parallel_heads)."""
    if not pretrained:  # else the model's tokenizer reads the text, and vocab_size is not read
        check_vocab_size(cfg.vocab_size)
    for split in ("train", "val", "test"):
        src, tgt = f"{split}_src", f"{split}_tgt"
        check_parallel_heads(getattr(cfg, src), getattr(cfg, tgt), src, tgt)


def nonempty_pairs(pairs: Pairs, split: str) -> Pairs:
    sentences = [(as_sentence(s), as_sentence(t)) for s, t in pairs]
    kept = [(s, t) for s, t in sentences if s and t]
    if len(kept) < len(pairs):
        log.warning("%s: dropped %d of %d pairs with an empty side", split, len(pairs) - len(kept), len(pairs))
    return kept


def encode_pairs(kept: Pairs, source, tokenizer: SubwordTokenizer, max_len: int, split: str) -> list[dict]:
    """Each pair's ids, cut to max_len tokens a side: the source read by `source` (the tokenizer, or PrefixedSource
    around it), with a pretrained tokenizer's own marks (Marian, T5: </s>), the target without (collate.py adds BOS
    and EOS)."""
    src_ids = source.encode_batch([s for s, _ in kept])
    tgt_ids = tokenizer.encode_batch([t for _, t in kept])
    truncated = sum(len(s) > max_len or len(t) > max_len for s, t in zip(src_ids, tgt_ids))
    if truncated:
        log.warning("%s: truncated %d of %d pairs to max_len=%d tokens", split, truncated, len(kept), max_len)
    return [
        {
            "src": torch.tensor(source.wrap_source(s[:max_len]), dtype=torch.long),
            "tgt": torch.tensor(t[:max_len], dtype=torch.long),
        }
        for s, t in zip(src_ids, tgt_ids)
    ]


def build_from_pairs(cfg, train: Pairs, val: Pairs, test: Pairs, run_dir: Path | None, tokenizer=None) -> PreparedTask:
    """The task from its sentence pairs: one joint BPE vocabulary trained on the training pairs, or a pretrained
    model's tokenizer (`tokenizer`); the sources read with task.src_prefix in front, where one is given."""
    check_settings(cfg)
    if cfg.train_limit and cfg.train_limit > 0:
        train = train[: cfg.train_limit]
    train, val, test = nonempty_pairs(train, "train"), nonempty_pairs(val, "val"), nonempty_pairs(test, "test")
    texts = [side for pair in train for side in pair]  # both languages: one joint vocabulary
    if tokenizer is None:
        tokenizer = load_or_train_tokenizer(run_dir, texts, "bpe", cfg.vocab_size, cfg.lowercase)
    source = PrefixedSource(tokenizer, cfg.src_prefix) if cfg.src_prefix else tokenizer
    return PreparedTask(
        kind="seq2seq",
        train=encode_pairs(train, source, tokenizer, cfg.max_len, "train"),
        val=encode_pairs(val, source, tokenizer, cfg.max_len, "val"),
        test=encode_pairs(test, source, tokenizer, cfg.max_len, "test"),
        references={"val": [t for _, t in val], "test": [t for _, t in test]},
        src_vocab=source,
        tgt_vocab=tokenizer,
        max_src_len=cfg.max_len + tokenizer.marks,  # the bound, not the observed maximum: encode_src cuts to it too
        max_tgt_len=cfg.max_len + 1,  # + BOS / EOS
    )


def build_translation(cfg: TranslationTaskConfig, seed: int, run_dir: Optional[Path], tokenizer=None) -> PreparedTask:
    train = read_parallel(cfg.train_src, cfg.train_tgt, "train_src", "train_tgt")
    val = read_parallel(cfg.val_src, cfg.val_tgt, "val_src", "val_tgt")
    test = read_parallel(cfg.test_src, cfg.test_tgt, "test_src", "test_tgt")
    return build_from_pairs(cfg, train, val, test, run_dir, tokenizer)


register_task(
    TaskSpec(
        name="translation",
        kind="seq2seq",
        schema=TranslationTaskConfig,
        build=build_translation,
        validate=check_settings,
        check_data=check_data,
        longest_sequence=lambda cfg: cfg.max_len + 1,
        file_fields=("train_src", "train_tgt", "val_src", "val_tgt", "test_src", "test_tgt"),
        bleu=True,
        generation_slack=16,
        reads_text=True,
    )
)
