"""translation (any parallel text files) and the pipeline multi30k reuses.

One joint BPE tokenizer for both languages, trained on the training pairs only: a shared vocabulary
lets the model tie source and target embeddings (an ablation axis). Sentences longer than max_len
tokens are truncated (and counted in the log), not dropped, so every split keeps all its lines;
pairs with an empty side are dropped (also counted).
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


def encode_pairs(kept: Pairs, tokenizer: SubwordTokenizer, max_len: int, split: str) -> list[dict]:
    """Each pair's ids, cut to max_len tokens a side; the source with a pretrained tokenizer's own marks (Marian:
    </s>), the target without (collate.py adds BOS and EOS)."""
    src_ids = tokenizer.encode_batch([s for s, _ in kept])
    tgt_ids = tokenizer.encode_batch([t for _, t in kept])
    truncated = sum(len(s) > max_len or len(t) > max_len for s, t in zip(src_ids, tgt_ids))
    if truncated:
        log.warning("%s: truncated %d of %d pairs to max_len=%d tokens", split, truncated, len(kept), max_len)
    return [
        {
            "src": torch.tensor(tokenizer.wrap_source(s[:max_len]), dtype=torch.long),
            "tgt": torch.tensor(t[:max_len], dtype=torch.long),
        }
        for s, t in zip(src_ids, tgt_ids)
    ]


def build_from_pairs(cfg, train: Pairs, val: Pairs, test: Pairs, run_dir: Path | None, tokenizer=None) -> PreparedTask:
    """The task from its sentence pairs: one joint BPE vocabulary trained on the training pairs, or a pretrained
    model's tokenizer (`tokenizer`)."""
    check_settings(cfg)
    if cfg.train_limit and cfg.train_limit > 0:
        train = train[: cfg.train_limit]
    train, val, test = nonempty_pairs(train, "train"), nonempty_pairs(val, "val"), nonempty_pairs(test, "test")
    texts = [side for pair in train for side in pair]  # both languages: one joint vocabulary
    if tokenizer is None:
        tokenizer = load_or_train_tokenizer(run_dir, texts, "bpe", cfg.vocab_size, cfg.lowercase)
    return PreparedTask(
        kind="seq2seq",
        train=encode_pairs(train, tokenizer, cfg.max_len, "train"),
        val=encode_pairs(val, tokenizer, cfg.max_len, "val"),
        test=encode_pairs(test, tokenizer, cfg.max_len, "test"),
        references={"val": [t for _, t in val], "test": [t for _, t in test]},
        src_vocab=tokenizer,
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
