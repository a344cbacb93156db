"""The contract every task's datamodule meets (attributes, batch formats, errors)."""

from __future__ import annotations

from types import SimpleNamespace as task

import pytest
import torch

from src.data import DataError, TaskDataModule, build_datamodule


def test_contract_attributes_for_seq2seq():
    dm = build_datamodule(task(name="copy", train_size=50, val_size=10, test_size=10), batch_size=4, seed=0)
    assert isinstance(dm, TaskDataModule)
    dm.setup("fit")
    assert (dm.kind, dm.src_vocab_size, dm.tgt_vocab_size, dm.num_classes) == ("seq2seq", 14, 14, 0)
    assert dm.label_names == []
    loaders = dm.test_dataloader()
    assert isinstance(loaders, list) and len(loaders) == 2
    for loader in [dm.train_dataloader(), dm.val_dataloader(), *loaders]:
        for batch in loader:
            assert batch["src"].shape[1] <= dm.max_src_len
            assert batch["tgt_in"].shape[1] <= dm.max_tgt_len
            assert batch["src"].dtype == batch["tgt_in"].dtype == torch.long


def test_dictconfig_task_is_accepted():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"name": "sort", "train_size": 30, "val_size": 5, "test_size": 5})
    dm = build_datamodule(cfg, batch_size=4, seed=0)
    assert len(dm.task.train) == 30


def test_missing_required_field_in_dictconfig():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"name": "char_lm", "path": "???"})
    with pytest.raises(DataError, match="task.path is required"):
        build_datamodule(cfg, batch_size=4, seed=0)


def test_unknown_task_and_bad_batch_size():
    with pytest.raises(DataError, match="not a known task"):
        build_datamodule(task(name="cooking"), batch_size=4, seed=0)
    with pytest.raises(DataError, match="batch_size"):
        build_datamodule(task(name="copy", train_size=10, val_size=2, test_size=2), batch_size=0, seed=0)
