"""classification: sentence classification from TSV files `sentence<TAB>label` (encoder-only).

Lines are split with rsplit("\t", 1): the label is after the LAST tab, so a sentence may itself
contain tabs, and quotes are never interpreted (a CSV reader with default quoting merges lines of
files with unbalanced quotes, e.g. imdb_labelled.txt). Labels are mapped to 0..C-1 in sorted order
(numerically when all labels are integers). Without val/test files, train is split by the seed.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import DataError, where
from ..files import as_sentence, read_head, read_lines, resolve_path
from ..prepared import PreparedTask
from ..registry import TaskSpec, register_task
from ..tokenizer import check_vocab_size, load_or_train_tokenizer
from .synthetic import split_seed

Rows = list[tuple[str, str, int]]  # (sentence, label, line number in its file)
TOKENIZERS = ("word", "bpe")


@dataclass
class ClassificationTaskConfig:
    """classification: TSV files `sentence<TAB>label` (encoder-only)."""

    name: str = "classification"
    train_path: str = "???"
    val_path: Optional[str] = None  # None: split off train (val_fraction) deterministically from the seed
    test_path: Optional[str] = None  # None: split off train (test_fraction)
    has_header: bool = False  # skip the first line of every file
    tokenizer: str = "word"  # word | bpe
    vocab_size: int = 8000  # including the 4 special tokens (word: most frequent words kept)
    max_len: int = 128  # tokens per sentence; longer ones are truncated
    lowercase: bool = True
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    train_limit: int = 0
    min_label_count: int = 2  # a label seen fewer times in the training file is taken for a typo and refused


def read_tsv(path, field: str, has_header: bool, is_train: bool = False, min_label_count: int = 1) -> Rows:
    """Every labelled line of a `sentence<TAB>label` file, checked (see parse_rows and check_rows)."""
    rows = parse_rows(read_lines(path, field), resolve_path(path), has_header)
    check_rows(rows, resolve_path(path), field, has_header, is_train, min_label_count)
    return rows


def parse_rows(lines: list[str], path: Path, has_header: bool) -> Rows:
    """The labelled lines, each on its own: a TAB and a label after it (blank lines carry nothing)."""
    rows = []
    for line_number, line in enumerate(lines, start=1):
        if has_header and line_number == 1:
            continue
        if not line.strip():
            continue  # blank lines carry nothing
        if "\t" not in line:
            raise DataError(f"{where(path, line_number)}: no TAB in this line: each line must be `sentence<TAB>label`")
        sentence, label = line.rsplit("\t", 1)
        label = label.strip()
        if not label:
            raise DataError(f"{where(path, line_number)}: empty label after the TAB: give every line a label")
        rows.append((as_sentence(sentence), label, line_number))
    return rows


def check_rows(rows: Rows, path: Path, field: str, has_header: bool, is_train: bool, min_label_count: int) -> None:
    """What only a whole file tells: that it has labelled lines at all, and for the training file that line 1 is
    no header read as a label and that no label is so rare that it is taken for a typo."""
    if not rows:
        raise DataError(f"{path}: no labelled lines: set task.{field} to a file of `sentence<TAB>label` lines")
    if is_train and not has_header and len(rows) > 2:
        # A header line ("sentence<TAB>label") shows up as a label used exactly once, on line 1.
        # (Other files are checked against the training labels instead.)
        first_label = rows[0][1]
        if sum(label == first_label for _, label, _ in rows) == 1:
            raise DataError(
                f"{where(path, 1)}: label {first_label!r} appears nowhere else: if line 1 is a header, "
                "set task.has_header=true"
            )
    if is_train:
        counts = Counter(label for _, label, _ in rows)
        rare = [label for label, count in counts.items() if count < min_label_count]
        if rare:  # a typo ("1 ", "l", "pos.") would otherwise become a class of its own
            line = next(number for _, label, number in rows if label == rare[0])
            raise DataError(
                f"{where(path, line)}: label {rare[0]!r} appears {counts[rare[0]]} time(s), fewer than "
                f"task.min_label_count={min_label_count}: fix the line, or lower task.min_label_count to keep it"
            )


def sorted_labels(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=int)  # "2" before "10"
    except ValueError:
        return sorted(labels)


def check_labels(rows: Rows, known: dict[str, int], path, field: str) -> None:
    for _, label, line_number in rows:
        if label not in known:
            raise DataError(
                f"{where(resolve_path(path), line_number)}: label {label!r} does not occur in the training file "
                f"(labels: {sorted(known)}): fix the label column of task.{field}"
                + (", or set task.has_header=true if line 1 is a header" if line_number == 1 else "")
            )


def check_settings(cfg: ClassificationTaskConfig) -> None:
    if cfg.max_len < 1:
        raise DataError(f"task.max_len={cfg.max_len} must be >= 1 (tokens per sentence)")
    if cfg.min_label_count < 1:
        raise DataError(f"task.min_label_count={cfg.min_label_count} must be >= 1")
    if cfg.tokenizer not in TOKENIZERS:
        raise DataError(f"task.tokenizer={cfg.tokenizer!r} is not known: choose one of {', '.join(TOKENIZERS)}")


def held_out_sizes(cfg: ClassificationTaskConfig, rows: int) -> tuple[int, int]:
    """How many training rows become validation and test rows (0 for a split that has its own file)."""
    need_val, need_test = not cfg.val_path, not cfg.test_path
    n_val = int(rows * cfg.val_fraction) if need_val else 0
    n_test = int(rows * cfg.test_fraction) if need_test else 0
    if n_val + n_test >= rows or (need_val and n_val == 0) or (need_test and n_test == 0):
        raise DataError(
            f"{resolve_path(cfg.train_path)}: {rows} rows cannot be split into train/val/test with "
            f"val_fraction={cfg.val_fraction}, test_fraction={cfg.test_fraction}: "
            "adjust them or give val_path/test_path"
        )
    return n_val, n_test


def check_two_labels(cfg: ClassificationTaskConfig, label_names: list[str]) -> None:
    if len(label_names) < 2:
        raise DataError(
            f"{resolve_path(cfg.train_path)}: only one label ({label_names[0]!r}) in the training data: "
            "need at least 2 classes"
        )


def check_data(cfg: ClassificationTaskConfig, pretrained: bool) -> None:
    """What build_classification would refuse, from the files' first part: every line there must be
    `sentence<TAB>label`; a file read whole is also checked as the build checks it (labelled lines, a header, rare
    labels, two classes, room for the held-out splits, labels of the validation and test files that the training
    file has)."""
    check_settings(cfg)
    if not pretrained:  # else the model's tokenizer reads the text, and vocab_size is not read
        check_vocab_size(cfg.vocab_size)
    head = read_head(cfg.train_path, "train_path")
    train = parse_rows(head.lines, head.path, cfg.has_header)
    known: dict[str, int] | None = None
    if head.whole:
        check_rows(train, head.path, "train_path", cfg.has_header, True, cfg.min_label_count)
        labels = sorted_labels({label for _, label, _ in train})
        check_two_labels(cfg, labels)
        if not cfg.val_path or not cfg.test_path:
            held_out_sizes(cfg, len(train))
        known = {label: k for k, label in enumerate(labels)}
    for field in ("val_path", "test_path"):
        path = getattr(cfg, field)
        if not path:
            continue
        split = read_head(path, field)
        rows = parse_rows(split.lines, split.path, cfg.has_header)
        if split.whole:
            check_rows(rows, split.path, field, cfg.has_header, False, 1)
        if known is not None:  # every training label is known: the split's must be among them
            check_labels(rows, known, path, field)


def build_classification(
    cfg: ClassificationTaskConfig, seed: int, run_dir: Optional[Path], tokenizer=None
) -> PreparedTask:
    check_settings(cfg)
    train = read_tsv(cfg.train_path, "train_path", cfg.has_header, is_train=True, min_label_count=cfg.min_label_count)

    # Missing val/test files: carve them out of train with a seeded shuffle (same seed, same split).
    need_val, need_test = not cfg.val_path, not cfg.test_path
    if need_val or need_test:
        order = list(range(len(train)))
        random.Random(split_seed(seed, cfg.name, "holdout")).shuffle(order)  # seeds are labelled by the task's name
        n_val, n_test = held_out_sizes(cfg, len(train))
        held_val = [train[i] for i in order[:n_val]]
        held_test = [train[i] for i in order[n_val : n_val + n_test]]
        train = [train[i] for i in order[n_val + n_test :]]
    label_names = sorted_labels({label for _, label, _ in train})
    label_id = {label: k for k, label in enumerate(label_names)}
    check_two_labels(cfg, label_names)

    def load_split(path_field: str, held_out: Rows) -> Rows:
        path = getattr(cfg, path_field)
        if not path:
            return held_out
        rows = read_tsv(path, path_field, cfg.has_header)
        check_labels(rows, label_id, path, path_field)
        return rows

    val = load_split("val_path", held_val if need_val else [])
    test = load_split("test_path", held_test if need_test else [])
    if cfg.train_limit and cfg.train_limit > 0:
        train = train[: cfg.train_limit]

    if tokenizer is None:  # else a pretrained model's (BERT: [CLS] sentence [SEP])
        tokenizer = load_or_train_tokenizer(
            run_dir, [sentence for sentence, _, _ in train], cfg.tokenizer, cfg.vocab_size, cfg.lowercase
        )

    def encode(rows: Rows) -> list[dict]:
        ids = tokenizer.encode_batch([sentence for sentence, _, _ in rows])
        # A sentence with no tokens would be all padding (nothing to pool): give it one <unk>.
        return [
            {
                "src": torch.tensor(
                    tokenizer.wrap_source(i[: cfg.max_len] or [tokenizer.specials.unk]), dtype=torch.long
                ),
                "label": label_id[label],
            }
            for i, (_, label, _) in zip(ids, rows)
        ]

    return PreparedTask(
        kind="classification",
        train=encode(train),
        val=encode(val),
        test=encode(test),
        src_vocab=tokenizer,
        tgt_vocab=None,
        max_src_len=cfg.max_len + tokenizer.marks,
        max_tgt_len=0,
        label_names=label_names,
    )


register_task(
    TaskSpec(
        name="classification",
        kind="classification",
        schema=ClassificationTaskConfig,
        build=build_classification,
        validate=check_settings,
        check_data=check_data,
        longest_sequence=lambda cfg: cfg.max_len + 1,
        file_fields=("train_path", "val_path", "test_path"),
        reads_text=True,
        read_without=(("val_fraction", "val_path"), ("test_fraction", "test_path")),  # a split's file or a cut
    )
)
