"""The LightningDataModule every task shares, and `build_datamodule`, the data layer's entry point."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

import lightning as L
import torch
from torch.utils.data import DataLoader

from .errors import DataError
from .files import as_sentence
from .prepared import PreparedTask, Vocab
from .registry import all_tasks, resolve_task_config, task_kind, task_spec
from .resumable import ResumableDataLoader


class TaskDataModule(L.LightningDataModule):
    """All splits are built eagerly in the constructor (cheap for every task here, and bad data then
    fails before the model or the Trainer exist); `setup()` has nothing left to do."""

    def __init__(
        self,
        task: PreparedTask,
        task_cfg,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        bucket_by_length: bool = False,
        reading_only: bool = False,
    ):
        super().__init__()
        if batch_size < 1:
            raise DataError(f"batch_size={batch_size} must be >= 1")
        if not task.train and not reading_only:
            raise DataError(f"task {task_cfg.name!r}: the training split is empty: check the task's data settings")
        self.task = task
        self.task_cfg = task_cfg
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.bucket_by_length = bucket_by_length  # training batches of similar lengths (see resumable.py)
        self.collate = partial(task_kind(task.kind).collate, specials=task.specials)  # a partial: DDP pickles it

    # ---- what the model needs to know -------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.task.kind

    @property
    def src_vocab_size(self) -> int:
        return self.task.src_vocab.size if self.task.src_vocab is not None else 0

    @property
    def tgt_vocab_size(self) -> int:
        return self.task.tgt_vocab.size if self.task.tgt_vocab is not None else 0

    @property
    def num_classes(self) -> int:
        return len(self.task.label_names)

    @property
    def label_names(self) -> list[str]:
        return list(self.task.label_names)

    @property
    def max_src_len(self) -> int:
        return self.task.max_src_len

    @property
    def max_tgt_len(self) -> int:
        return self.task.max_tgt_len

    # ---- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        pass  # everything was built in the constructor

    def train_dataloader(self) -> DataLoader:
        # Order = f(seed, epoch); stateful, so mid-epoch checkpoints resume exactly (see resumable.py).
        lengths = self.task.train.lengths() if self.bucket_by_length else None
        return ResumableDataLoader(
            self.task.train, self.batch_size, self.seed, self.collate, num_workers=self.num_workers, lengths=lengths
        )

    def _eval_loader(self, examples: list[dict]) -> DataLoader:
        return DataLoader(
            examples,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),  # leave the global generator to the model
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.task.val)

    def test_dataloader(self):
        """Synthetic tasks: [test, test_long] (dataloader_idx 0 and 1); other tasks: one loader."""
        if self.task.test_long is not None:
            return [self._eval_loader(self.task.test), self._eval_loader(self.task.test_long)]
        return self._eval_loader(self.task.test)

    # ---- inspection: attention maps, text samples, predict ----------------------------------------
    def probe_batch(self, n: int = 4) -> dict[str, torch.Tensor]:
        """The first n validation examples (test, then train, when val is empty): the same batch every call."""
        examples = self.task.val or self.task.test or self.task.train
        return self.collate(examples[:n])

    def vocab(self, side: str) -> Vocab:
        """The vocabulary that reads text on one side: "src" (the input) or "tgt" (the output, and an lm's prompt)."""
        return self._src() if side == "src" else self._tgt()

    def _src(self) -> Vocab:
        return self.task.src_vocab or self.task.tgt_vocab  # lm has no source side: read it as target text

    def _tgt(self) -> Vocab:
        return self.task.tgt_vocab or self.task.src_vocab  # classification has no target side

    def decode_src(self, ids) -> str:
        return self._src().decode(ids)

    def decode_tgt(self, ids) -> str:
        return self._tgt().decode(ids)

    def src_token_strings(self, ids) -> list[str]:
        return self._src().token_strings(ids)

    def tgt_token_strings(self, ids) -> list[str]:
        return self._tgt().token_strings(ids)

    # ---- new text (src.predict): read exactly as the task's own data were ----------------------------------------
    @property
    def input_side(self) -> str:
        """The vocabulary a model input is read with: "src" where the kind reads a source, else "tgt" (an lm's prompt
        is text it continues)."""
        return "src" if task_kind(self.kind).reads_source else "tgt"

    def text_as_read(self, text: str) -> str:
        """What the task's readers keep of a text: a sentence without the whitespace around it (files.as_sentence:
        the sentence tasks read every line so); an lm's text every character, since whitespace is text it learned
        to continue."""
        return as_sentence(text) if task_kind(self.kind).reads_source else text

    def encode_src(self, text: str) -> list[int]:
        """Ids without BOS/EOS, read and truncated like the training data (to max_src_len), with a pretrained
        tokenizer's own marks around them (BERT's [CLS] and [SEP], Marian's </s>) as the data have them."""
        vocab = self._src()
        ids = vocab.encode(self.text_as_read(text))
        ids = ids[: self.max_src_len - vocab.marks] if self.max_src_len else ids
        return vocab.wrap_source(ids) if ids else ids

    def encode_tgt(self, text: str) -> list[int]:
        """Ids without BOS/EOS, read like the training data. seq2seq: at most max_tgt_len - 1 (room for BOS/EOS);
        lm (a prompt): the last max_tgt_len ids, since the most recent context matters most for the next token."""
        ids = self._tgt().encode(self.text_as_read(text))
        if not self.max_tgt_len:
            return ids
        return ids[: self.max_tgt_len - 1] if task_kind(self.kind).reads_source else ids[-self.max_tgt_len :]

    def encode_input(self, text: str) -> tuple[list[int], int]:
        """The ids the model reads for one input text (predict's `text=`, a line of its `input=`), made as the task's
        data made them from theirs, and how many there were before the cut to the length the model reads.

        No BOS or EOS of ours: the task's sources and lm windows hold none either. A pretrained tokenizer's own
        marks, as its pipeline puts them around a model input: BERT's [CLS] and [SEP], Marian's </s>, and in front
        of an lm prompt Llama's and Mistral's <s> (what transformers' tokenizer(text) gives generate; where the
        prompt fills the model's positions, the mark takes the place of its oldest id). A sentence of only
        whitespace has no ids (predict leaves its output empty)."""
        text = self.text_as_read(text)
        vocab = self.vocab(self.input_side)
        if not task_kind(self.kind).reads_source:  # an lm's prompt
            ids = self.encode_tgt(text)
            if ids and vocab.marks:
                room = self.max_tgt_len - vocab.marks if self.max_tgt_len else len(ids)
                ids = vocab.wrap_source(ids[len(ids) - room :] if room > 0 else [])
        else:
            ids = self.encode_src(text)
        if not task_kind(self.kind).predicts_tokens and text and not ids:
            ids = [self.task.specials.unk]  # no tokens (nothing to pool): one <unk>, as the classification data give it
        marks = vocab.marks if ids else 0
        return ids, max(len(ids), len(vocab.encode(text)) + marks)


def build_datamodule(
    task_cfg,
    batch_size: int,
    seed: int,
    run_dir: Path | None = None,
    num_workers: int = 0,
    bucket_by_length: bool = False,
    tokenizer=None,
):
    """Build the datamodule for `task_cfg.name`. Raises DataError (one line) for bad data or settings.

    run_dir: where learned vocabularies are saved (tokenizer.json, vocab.json) and loaded from if present.
    tokenizer: a pretrained model's (pretrained_tokenizer.PretrainedTokenizer), read instead of a vocabulary of the
    task's own; only tasks that read text take one.
    """
    cfg = resolve_task_config(task_cfg)
    spec = task_spec(cfg.name)
    run_path = Path(run_dir) if run_dir is not None else None
    if tokenizer is None:
        task = spec.build(cfg, seed, run_path)
    elif not spec.reads_text:
        readers = ", ".join(name for name, other in all_tasks().items() if other.reads_text)
        raise DataError(
            f"task={cfg.name} has its own symbols, and a pretrained model reads text with its own tokenizer: "
            f"choose a task that reads text ({readers})"
        )
    else:
        task = spec.build(cfg, seed, run_path, tokenizer)
    return TaskDataModule(task, cfg, batch_size, seed, num_workers, bucket_by_length)


def reading_datamodule(kind: str, tokenizer, max_len: int, label_names: list[str] | None = None) -> TaskDataModule:
    """A datamodule with no examples, only a pretrained model's tokenizer: what src.predict needs to read text and
    write outputs when no task was given (`ckpt=hf:gpt2 text=...`). Inputs are cut to the model's max_len."""
    reads_source, predicts_tokens = task_kind(kind).reads_source, task_kind(kind).predicts_tokens
    task = PreparedTask(
        kind=kind,
        train=[],
        val=[],
        test=[],
        src_vocab=tokenizer if reads_source else None,
        tgt_vocab=tokenizer if predicts_tokens else None,  # a classifier has no target side
        max_src_len=max_len if reads_source else 0,
        max_tgt_len=max_len if predicts_tokens else 0,
        label_names=list(label_names or []),
    )
    return TaskDataModule(task, None, batch_size=32, seed=0, reading_only=True)
