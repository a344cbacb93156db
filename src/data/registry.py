"""The task registry: everything the rest of the code may ask about a task, declared once per task.

Each file in src/data/tasks/ registers its tasks with `register_task(TaskSpec(...))`; the files are found by
listing that package, so adding a task is one file there plus one yaml file in conf/task/. No other module lists
task names: they ask `task_spec(name)`.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from torch import Tensor

from .collate import collate_classification, collate_lm, collate_seq2seq
from .errors import DataError
from .files import resolve_path
from .prepared import PreparedTask

if TYPE_CHECKING:  # pairs.py asks this module for a kind's collate function: imported for the annotation only
    from .pairs import Pair


@dataclass(frozen=True)
class TaskKind:
    """What a task kind (TaskSpec.kind) means for the code that runs its batches, declared once: callers ask these
    instead of comparing kind names."""

    name: str
    # Its batches carry a source `src` that an encoder reads (a seq2seq decoder attends to the encoded source). A
    # kind without one reads its input on the target side: text it continues (an lm's prompt).
    reads_source: bool
    # Its model predicts the next token at every position of the target input `tgt_in`: logits (B, T, V) with a
    # position to score in each row. Without: one label per example, logits (B, C), no positions.
    predicts_tokens: bool
    # Its main metric scores greedily decoded outputs (exact match, BLEU), not the teacher-forced logits.
    decodes: bool
    # (examples, specials) -> the batch its model reads (collate.py): the keys the two flags above describe.
    collate: Callable[..., dict[str, Tensor]]
    # The validation metric that picks the best checkpoint of its tasks, and whether higher is better ("max") or
    # not; a task scored with BLEU replaces it (TaskSpec.main_metric).
    main_metric: tuple[str, str]
    # The tasks that stand for the kind, kept here since a task declares its kind but not that it stands for it:
    # what a pretrained model of this kind reads text as when it is given no task (src.predict ckpt=hf:<model>
    # text=...), and the task, with the settings it needs, that a message suggests where one of this kind must be
    # given (tests/data/test_task_kinds.py checks both are text tasks of the kind).
    text_task: str
    example_task: str

    @property
    def translates(self) -> bool:
        """Its model reads a source and writes a target apart from it (an encoder-decoder), as Marian translates:
        a target text can be given beside the input (src.predict's target=, a pairs file's fifth column). An lm's
        target is its own input one token on; a classifier's is a label."""
        return self.reads_source and self.predicts_tokens


# The task kinds, by name: TaskSpec.kind is one of these.
KINDS = {
    kind.name: kind
    for kind in (
        TaskKind(
            "seq2seq",
            reads_source=True,
            predicts_tokens=True,
            decodes=True,
            collate=collate_seq2seq,
            main_metric=("val/exact_match", "max"),
            text_task="translation",
            example_task="task=multi30k",
        ),
        TaskKind(
            "lm",
            reads_source=False,
            predicts_tokens=True,
            decodes=False,
            collate=collate_lm,
            main_metric=("val/loss", "min"),
            text_task="char_lm",
            example_task="task=char_lm task.path=<text file>",
        ),
        TaskKind(
            "classification",
            reads_source=True,
            predicts_tokens=False,
            decodes=False,
            collate=collate_classification,
            main_metric=("val/acc", "max"),
            text_task="classification",
            example_task="task=classification task.train_path=<tsv file>",
        ),
    )
}

# The metric names every task kind computes itself (src/training/metrics.py), which a task's own may not reuse.
KIND_METRICS = ("loss", "ppl", "token_acc", "acc", "exact_match", "bleu", "sacrebleu", "sacrebleu_lowercase")


def _no_checks(cfg: Any) -> None:
    return None


def _unknown_length(cfg: Any) -> Optional[int]:
    return None


def _no_data_checks(cfg: Any, pretrained: bool) -> None:
    return None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    # seq2seq (encoder-decoder), lm (decoder-only) or classification (encoder-only): the model's architecture,
    # the batches' keys (collate.py) and the metrics follow from it.
    kind: str
    schema: type  # the dataclass of the task.* settings: Hydra checks types and keys against it
    build: Callable[[Any, int, Optional[Path]], PreparedTask]  # (settings, seed, run_dir) -> the splits
    # Cheap checks of the settings, run before any data is read: raise DataError with one line.
    validate: Callable[[Any], None] = _no_checks
    # What building the data would refuse, found cheaply: the data files' first part (files.read_head: all of a
    # file up to files.CHECKED_BYTES) and the settings only the build reads. `pretrained`: a pretrained model's
    # tokenizer reads the text (the task's own vocabulary settings are then unread). src.run calls it before Hydra
    # writes the run directory (src/cli/preflight.py), so bad data is refused without leaving a run behind; the build
    # checks every line again as it reads them. Raise DataError with the line the build would raise.
    check_data: Callable[[Any, bool], None] = _no_data_checks
    # The longest sequence (tokens incl. BOS/EOS) the settings can produce, when they alone tell; else None
    # (text tasks: known once the data is read, checked again then).
    longest_sequence: Callable[[Any], Optional[int]] = _unknown_length
    file_fields: tuple[str, ...] = ()  # settings that name data files: they must exist, and are made absolute
    dir_fields: tuple[str, ...] = ()  # settings that name data directories (made absolute)
    bleu: bool = False  # generated text scored with sacrebleu; val/bleu is then the main metric
    generation_slack: int = 0  # tokens greedy decoding may run past the reference (free text may be longer)
    # Whether the task reads text that a pretrained model's tokenizer can read instead of the task's own
    # vocabulary; its build then takes the tokenizer as a fourth argument (pretrained_tokenizer.py).
    reads_text: bool = False
    # (setting, other): `setting` is read only while `other` is not given, which replaces it (classification's
    # val_fraction cuts the validation split from the training file, which task.val_path replaces with its own
    # file). src.run warns when both are given (src/cli/validation.py).
    read_without: tuple[tuple[str, str], ...] = ()
    # Counterfactual pairs (src/data/pairs.py) the task makes itself, for activation patching:
    # (settings, prepared task, examples of a split, how many, random generator) -> list of Pair. None: the task's
    # inputs have no rule that says what a changed input should answer (text): src.analyze then reads a pairs file.
    pairs: Optional[Callable[[Any, PreparedTask, Sequence[dict], int, random.Random], list[Pair]]] = None
    # Validation and test metrics of the task's own, beyond its kind's (src/training/metrics.py): (settings, batch,
    # logits) -> {name: (summed value, count)}, both 0-d tensors on the batch's device (no wait for the device), one
    # entry per name of `metric_names`. Each metric is the ratio of its sums over the split (summed over batches and
    # devices), logged as <split>/<name> and offered as objective= and to the HPARAMS tab. A name ending in "loss"
    # or "ppl" is lower-is-better (metrics.py higher_is_better), any other higher-is-better.
    metrics: Optional[Callable[[Any, dict[str, Tensor], Tensor], dict[str, tuple[Tensor, Tensor]]]] = None
    metric_names: tuple[str, ...] = ()

    @property
    def path_fields(self) -> tuple[str, ...]:
        """Settings that are places on disk: not hyperparameters (left out of sweep directory names and of the
        settings a resumed run must repeat)."""
        return self.file_fields + self.dir_fields

    @property
    def main_metric(self) -> tuple[str, str]:
        """The validation metric that picks the best checkpoint, and whether higher is better ("max") or not."""
        if self.bleu:
            return "val/bleu", "max"
        return task_kind(self.kind).main_metric


_TASKS: dict[str, TaskSpec] = {}


def task_kind(name: str) -> TaskKind:
    """The registered task kind `name` (TaskSpec.kind); ValueError naming the kinds for any other."""
    if name not in KINDS:
        raise ValueError(f"kind={name!r} is not a registered task kind: give one of {', '.join(KINDS)}")
    return KINDS[name]


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.kind not in KINDS:
        raise ValueError(f"task {spec.name!r}: kind={spec.kind!r} is not one of {', '.join(KINDS)}")
    if bool(spec.metrics) != bool(spec.metric_names):
        raise ValueError(f"task {spec.name!r}: metrics and metric_names go together (the function and its names)")
    for name in spec.metric_names:
        if not name.isidentifier() or name in KIND_METRICS:
            raise ValueError(
                f"task {spec.name!r}: metric name {name!r} must be a word (letters, digits, _) that is none of the "
                f"kinds' own ({', '.join(KIND_METRICS)})"
            )
    _TASKS[spec.name] = spec
    return spec


def all_tasks() -> dict[str, TaskSpec]:
    """Every registered task, by name (imports the modules of src/data/tasks/ on first use)."""
    if not _TASKS:
        from . import tasks

        for module in pkgutil.iter_modules(tasks.__path__):
            importlib.import_module(f"{tasks.__name__}.{module.name}")
    return _TASKS


def task_spec(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        raise DataError(f"task={name!r} is not a known task: choose one of {', '.join(sorted(tasks))}")
    return tasks[name]


def resolve_task_config(task_cfg: Any) -> Any:
    """The task's schema dataclass filled from `task_cfg` (anything with attribute access: a DictConfig, a
    SimpleNamespace in tests); fields it lacks keep their defaults. DataError for an unknown task or a required
    field ("???") that is not set."""
    spec = task_spec(getattr(task_cfg, "name", None))
    values = {}
    for field in fields(spec.schema):
        try:
            value = getattr(task_cfg, field.name)
        except Exception:  # missing attribute, or a DictConfig "???" that was never set
            value = field.default
        if value == "???":
            raise DataError(f"task.{field.name} is required for task={spec.name}: set task.{field.name}=...")
        values[field.name] = value
    return spec.schema(**values)


def absolute_task_paths(task_cfg: Any) -> None:
    """Make the task's data paths absolute in place, so a checkpoint's copy of the config works from anywhere."""
    for key in task_spec(task_cfg.name).path_fields:
        value = getattr(task_cfg, key, None)
        if isinstance(value, str):
            setattr(task_cfg, key, str(resolve_path(value)))
