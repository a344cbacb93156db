"""Data layer: every task becomes a LightningDataModule with one interface.

    from src.data import build_datamodule
    dm = build_datamodule(task_cfg, batch_size=64, seed=0, run_dir=Path("outputs/run"))

    registry.py     TaskKind: what a task kind means for the code that runs its batches (KINDS, asked through
                    task_kind(name)); TaskSpec: what a task declares (kind, settings schema, builder, checks,
                    paths, metrics)
    tasks/          one file per task family, each registering its tasks; their settings dataclasses are the
                    source of truth for field names, types and defaults ("???" = required)
    datamodule.py   the LightningDataModule every task shares; build_datamodule
    collate.py      examples -> padded batches, per kind
    resumable.py    the training loader whose position is saved in checkpoints (exact resume)
    files.py, tokenizer.py, vocab.py, prepared.py, errors.py: reading files, vocabularies, one-line errors

Relative paths resolve against the directory the run was started from.
"""

from .datamodule import TaskDataModule, build_datamodule
from .errors import DataError
from .registry import TaskSpec, absolute_task_paths, all_tasks, register_task, task_spec

__all__ = [
    "build_datamodule",
    "TaskDataModule",
    "DataError",
    "TaskSpec",
    "absolute_task_paths",
    "all_tasks",
    "register_task",
    "task_spec",
]
