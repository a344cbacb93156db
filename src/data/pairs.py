"""Counterfactual pairs: a clean input, a corrupted one, and the two answers the change should move between.

Causal analysis (src/analysis/patching.py) runs the model on two inputs that differ where it matters and puts one
run's activations into the other. A pair is one example of a task in both versions, tokenised to the same length (a
patch puts an activation at the same position of the other run), with the position whose prediction is scored and
the answer each version should give there:

    reverse:    clean src 3 1 4 -> tgt 4 1 3;  corrupted src 3 1 7 -> 7 1 3;  scored: tgt position 0, 4 against 7
    induction:  ... A B ... A -> B;  the earlier B changed to C: the repeat's prediction should move from B to C
    text:       a line of a pairs file: clean text, corrupted text, clean answer, corrupted answer

As Zhang & Nanda (2023) and Heimersheim & Nanda (2024) advise, a corruption replaces one symbol by another of the
same kind (symmetric token replacement), not by noise.

Both versions of a pair read the clean target as the decoder's input (teacher forcing): the prefix the scored
prediction sees is the same, so only the source (seq2seq, classification) or the earlier tokens (lm) differ. Every
task that can make pairs itself says how in its TaskSpec (`pairs`); text tasks and pretrained models read a pairs
file (src/analysis/pairs_file.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from src.model.tokens import OUR_SPECIAL_IDS, SpecialIds

from .errors import DataError
from .registry import task_kind


@dataclass
class Pair:
    """One counterfactual pair: two examples as a split holds them (the keys collate.py reads for the task's kind),
    the same length key by key."""

    clean: dict[str, Tensor]
    corrupted: dict[str, Tensor]
    # The output position scored: the index into the batch's tgt_out (the logits' T axis) whose clean token is the
    # answer. seq2seq: j scores the target's token j (the decoder read BOS + tgt[:j]); lm: p scores token p + 1 of the
    # window. Classification: 0 (the one prediction).
    position: int
    answer: int  # the token (or class) the clean input should give there
    wrong: int  # the token (or class) the corrupted input should give there


@dataclass
class PairBatch:
    """Pairs collated: two model batches of the same shape and, per row, the position scored and both answers."""

    clean: dict[str, Tensor]
    corrupted: dict[str, Tensor]
    position: Tensor  # (B,) long
    answer: Tensor  # (B,) long
    wrong: Tensor  # (B,) long

    def __len__(self) -> int:
        return int(self.answer.numel())

    def to(self, device: torch.device | str) -> PairBatch:
        moved = {
            key: {name: value.to(device) for name, value in batch.items()}
            for key, batch in (("clean", self.clean), ("corrupted", self.corrupted))
        }
        return PairBatch(
            moved["clean"],
            moved["corrupted"],
            self.position.to(device),
            self.answer.to(device),
            self.wrong.to(device),
        )


def check_pair_lengths(pair: Pair) -> None:
    """The two versions have the same keys and lengths (ValueError otherwise: a task's pairs are made that way)."""
    if pair.clean.keys() != pair.corrupted.keys():
        raise ValueError(f"a pair's versions have different keys: {sorted(pair.clean)} and {sorted(pair.corrupted)}")
    for key, value in pair.clean.items():
        other = pair.corrupted[key]
        if isinstance(value, Tensor) and value.shape != other.shape:
            raise ValueError(
                f"a pair's versions differ in length at {key}: {tuple(value.shape)} and {tuple(other.shape)}"
            )


def collate_pairs(pairs: list[Pair], kind: str, specials: SpecialIds = OUR_SPECIAL_IDS) -> PairBatch:
    """The pairs as two batches collated as training collates the task's examples (so padding, BOS and EOS are
    where the model saw them), with the per-row position and answers."""
    for pair in pairs:
        check_pair_lengths(pair)
    collate = task_kind(kind).collate
    return PairBatch(
        clean=collate([p.clean for p in pairs], specials),
        corrupted=collate([p.corrupted for p in pairs], specials),
        position=torch.tensor([p.position for p in pairs], dtype=torch.long),
        answer=torch.tensor([p.answer for p in pairs], dtype=torch.long),
        wrong=torch.tensor([p.wrong for p in pairs], dtype=torch.long),
    )


# --- a file of pairs: text tasks and pretrained models -------------------------------------------------------------
PAIRS_FILE_FORMAT = (
    "one pair per line, tab-separated: clean text, corrupted text, clean answer, corrupted answer "
    "(seq2seq: a fifth column, the target text before the answer, may follow)"
)


def pairs_file_lines(path: Path, kind: str, name: str = "pairs") -> list[tuple[str, list[str]]]:
    """The lines of a pairs file as (where, fields), checked for what needs no tokenizer: UTF-8 text, 4 fields (5 for
    seq2seq), texts and answers that differ, at least one pair. DataError naming the line and the fix. Blank lines
    are skipped, a UTF-8 byte-order mark too. src.analyze runs it for every job before any work; read_pairs_file
    again once the model's tokenizer is read."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark (some editors write one) is no text
    except UnicodeDecodeError:
        raise DataError(f"{name}={path} is not UTF-8 text: give a text file, {PAIRS_FILE_FORMAT}") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}={path} line {number}"
        fields = line.split("\t")
        if len(fields) not in (4, 5) or (len(fields) == 5 and not task_kind(kind).translates):
            raise DataError(f"{where} has {len(fields)} tab-separated fields: give {PAIRS_FILE_FORMAT}")
        if fields[0] == fields[1]:
            raise DataError(f"{where}: the clean and corrupted texts are the same: change what the pair tests")
        if fields[2] == fields[3]:
            raise DataError(f"{where}: the two answers are the same: give the answer each text should lead to")
        lines.append((where, fields))
    if not lines:
        raise DataError(f"{name}={path} holds no pairs: give {PAIRS_FILE_FORMAT}")
    return lines


def read_pairs_file(path: Path, datamodule, name: str = "pairs") -> list[Pair]:
    """The pairs of a file (PAIRS_FILE_FORMAT, pairs_file_lines), tokenised as the model's own data are (the
    datamodule's encode functions). Each answer must be one token (a class name or number for a classifier), and
    both texts of a pair the same number of tokens: DataError naming the line and the fix.

    lm: the prompt is read and the answer is the token after it (scored at the prompt's last position).
    seq2seq: the source is read, the decoder reads BOS and the target text before the answer (the fifth column, or
    nothing), and the answer is the next target token. classification: the answers are labels."""
    kind = datamodule.kind
    pairs = []
    for where, fields in pairs_file_lines(path, kind, name):
        clean_text, corrupted_text, answer_text, wrong_text = fields[:4]
        prefix_text = fields[4] if len(fields) == 5 else ""
        clean_ids, clean_length = datamodule.encode_input(clean_text)
        corrupted_ids, corrupted_length = datamodule.encode_input(corrupted_text)
        if not clean_ids:
            raise DataError(f"{where}: the clean text reads as no tokens: give the model something to read")
        for length, ids, what in ((clean_length, clean_ids, "clean"), (corrupted_length, corrupted_ids, "corrupted")):
            if length > len(ids):  # cut to what the model reads: a patch's positions would not be the text's
                raise DataError(
                    f"{where}: the {what} text is {length:,} tokens and the model reads at most {len(ids)}: shorten "
                    "both texts to the part the pair is about"
                )
        for text_read, ids, what in ((clean_text, clean_ids, "clean text"), (corrupted_text, corrupted_ids,
                                                                             "corrupted text")):  # fmt: skip
            _known(datamodule, ids, text_read, where, what)
        if len(clean_ids) != len(corrupted_ids):
            raise DataError(
                f"{where}: the clean text is {len(clean_ids)} tokens and the corrupted one {len(corrupted_ids)}: a "
                "patch puts an activation at the same position of the other run, so change tokens for tokens of "
                "the same count"
            )
        if not task_kind(kind).predicts_tokens:  # a classifier: the answers are labels
            answer, wrong = (_label(datamodule, t, where) for t in (answer_text, wrong_text))
            if answer == wrong:
                _same_answers(where, f"the label {list(datamodule.label_names)[answer]!r}")
            pairs.append(Pair({"src": _ids(clean_ids), "label": answer}, {"src": _ids(corrupted_ids), "label": answer},
                              0, answer, wrong))  # fmt: skip
            continue
        answer = _one_token(datamodule, answer_text, where, "clean answer")
        wrong = _one_token(datamodule, wrong_text, where, "corrupted answer")
        if answer == wrong:
            _same_answers(where, f"the token {datamodule.vocab('tgt').token_strings([answer])[0]!r}")
        if not task_kind(kind).reads_source:  # an lm: the answer is the token after the prompt
            # collate_lm: the model reads tokens[:-1] and is scored on tokens[1:]; the answer follows the prompt
            clean = {"tokens": _ids(clean_ids + [answer])}
            corrupted = {"tokens": _ids(corrupted_ids + [answer])}
            pairs.append(Pair(clean, corrupted, len(clean_ids) - 1, answer, wrong))
        else:
            prefix = datamodule.encode_tgt(prefix_text) if prefix_text.strip() else []
            _known(datamodule, prefix, prefix_text, where, "target prefix")
            target = _ids(prefix + [answer])  # the decoder reads BOS + prefix: position len(prefix) scores the answer
            pairs.append(Pair({"src": _ids(clean_ids), "tgt": target}, {"src": _ids(corrupted_ids), "tgt": target},
                              len(prefix), answer, wrong))  # fmt: skip
    return pairs


def _same_answers(where: str, read_as: str) -> None:
    """The two answers, different as texts, read as one label or token (`pos` and `pos `, `1` and the label named 1):
    the logit difference would be 0 whatever the model does."""
    raise DataError(f"{where}: both answers read as {read_as}: give the answer each text should lead to")


def _ids(ids: list[int]) -> Tensor:
    return torch.tensor(ids, dtype=torch.long)


def _known(datamodule, ids: list[int], text: str, where: str, what: str) -> None:
    """DataError when the model's vocabulary reads part of `text` as its unknown token: a pair about a token the
    model has never seen tests nothing (and two different unknown words would read alike)."""
    unknown = datamodule.task.specials.unk
    if unknown in ids and not (unknown == datamodule.task.specials.pad):
        raise DataError(
            f"{where}: the {what} {text!r} has {ids.count(unknown)} part(s) the model's vocabulary does not know "
            "(read as its unknown token): use words, characters or symbols of the model's own data"
        )


def _one_token(datamodule, text: str, where: str, what: str) -> int:
    """The one token an answer is (read as the model's output side reads text, whitespace kept: GPT-2's " Paris")."""
    vocab = datamodule.vocab("tgt")
    ids = vocab.encode(text)
    _known(datamodule, ids, text, where, what)
    if len(ids) != 1:
        pieces = ", ".join(repr(t) for t in vocab.token_strings(ids)) or "none"
        raise DataError(
            f"{where}: the {what} {text!r} is {len(ids)} tokens ({pieces}): the logit difference compares two "
            "tokens: give an answer the tokenizer reads as one token (GPT-2 reads ' Paris', with its space, as one)"
        )
    return int(ids[0])


def _label(datamodule, text: str, where: str) -> int:
    names = list(datamodule.label_names)
    text = text.strip()
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < datamodule.num_classes:
        return int(text)
    raise DataError(
        f"{where}: {text!r} is not a label of the model: give one of {', '.join(names) or 'the class numbers'}"
    )
