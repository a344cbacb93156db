"""The train order is a pure function of (seed, epoch), and a mid-epoch resume sees the same batches."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace as task

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from src.data import build_datamodule
from src.data.resumable import EpochPermutationSampler, ResumableDataLoader, epoch_seed


def batch_key(batch: dict) -> str:
    """A short fingerprint of a batch's content."""
    digest = hashlib.sha1()
    for name in sorted(batch):
        digest.update(name.encode())
        digest.update(batch[name].numpy().tobytes())
    return digest.hexdigest()[:12]


def loader_keys(loader, epochs=(0,)) -> list[list[str]]:
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        out.append([batch_key(b) for b in loader])
    return out


def small_dm(seed=0, train_size=40):
    return build_datamodule(task(name="copy", train_size=train_size, val_size=8, test_size=8), batch_size=4, seed=seed)


def test_epoch_seed_is_stable_and_spreads():
    assert epoch_seed(0, 0) == epoch_seed(0, 0)
    values = {epoch_seed(s, e) for s in range(20) for e in range(20)}
    assert len(values) == 400 and all(0 <= v < 2**63 for v in values)


def test_sampler_is_a_permutation_that_depends_on_seed_and_epoch():
    sampler = EpochPermutationSampler(50, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(50))
    assert list(sampler) == first  # same (seed, epoch): same order
    sampler.set_epoch(1)
    assert list(sampler) != first  # new epoch: new order
    assert list(EpochPermutationSampler(50, seed=2)) != first


def test_same_seed_same_batches_different_seed_different():
    a = loader_keys(small_dm(seed=0).train_dataloader(), epochs=(0, 1))
    b = loader_keys(small_dm(seed=0).train_dataloader(), epochs=(0, 1))
    c = loader_keys(small_dm(seed=1).train_dataloader(), epochs=(0, 1))
    assert a == b
    assert a != c
    assert a[0] != a[1]  # epochs are shuffled differently


def test_state_dict_round_trip_resumes_mid_epoch():
    dm = small_dm()
    full = loader_keys(dm.train_dataloader(), epochs=(2,))[0]  # 10 batches
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    iterator = iter(loader)
    seen = [batch_key(next(iterator)) for _ in range(3)]
    state = loader.state_dict()
    assert state == {"seed": 0, "epoch": 2, "batches_yielded": 3, "batches_per_epoch": 10}

    fresh = dm.train_dataloader()
    fresh.load_state_dict(state)
    rest = [batch_key(b) for b in fresh]  # no set_epoch needed: the epoch comes from the state
    assert seen + rest == full
    assert fresh.state_dict()["batches_yielded"] == len(full)
    # The resume offset is used once: the next epoch starts from its beginning.
    fresh.sampler.set_epoch(3)
    assert len(list(fresh)) == len(full)


def test_resume_offset_is_dropped_when_lightning_moves_to_the_next_epoch():
    dm = small_dm()
    loader = dm.train_dataloader()
    loader.load_state_dict({"seed": 0, "epoch": 0, "batches_yielded": 10})  # saved after the last batch
    iterator = iter(loader)  # Lightning calls iter() before set_epoch(); the body must run lazily
    loader.sampler.set_epoch(1)
    assert [batch_key(b) for b in iterator] == loader_keys(dm.train_dataloader(), epochs=(1,))[0]


def test_loader_with_workers_gives_the_same_batches():
    dm = small_dm()
    plain = loader_keys(dm.train_dataloader(), epochs=(0, 1))
    workers = ResumableDataLoader(dm.task.train, 4, 0, dm.collate, num_workers=1)
    assert loader_keys(workers, epochs=(0, 1)) == plain


class RecordingModule(L.LightningModule):
    """A trivial model that records a fingerprint of every training batch it is given."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[tuple[int, str]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, batch_key(batch)))
        x = batch["src"].float().mean(dim=1, keepdim=True)  # (B, 1)
        return self.layer(x).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(max_steps, callbacks=(), ckpt_path=None, root=None, validate=False) -> RecordingModule:
    module = RecordingModule()
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        default_root_dir=root,
        num_sanity_val_steps=0,
        # with validation: every 3 training batches, so checkpoints are also written around validation runs
        limit_val_batches=2 if validate else 0,
        val_check_interval=3 if validate else None,
        enable_checkpointing=bool(callbacks),
    )
    trainer.fit(module, datamodule=small_dm(), ckpt_path=ckpt_path)
    return module


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("validate", [False, True])
def test_lightning_resume_from_mid_epoch_checkpoint_sees_the_same_batches(tmp_path, validate):
    # 40 examples / batch 4 = 10 batches per epoch; 25 steps span three epochs.
    every7 = ModelCheckpoint(dirpath=tmp_path / "every7", every_n_train_steps=7, save_top_k=-1, filename="{step}")
    every10 = ModelCheckpoint(dirpath=tmp_path / "every10", every_n_train_steps=10, save_top_k=-1, filename="{step}")
    uninterrupted = fit(25, callbacks=[every7, every10], root=tmp_path, validate=validate).seen
    assert len(uninterrupted) == 25
    assert [e for e, _ in uninterrupted] == [0] * 10 + [1] * 10 + [2] * 5
    assert [k for _, k in uninterrupted[:10]] != [k for _, k in uninterrupted[10:20]]  # set_epoch reshuffles

    # step 7 / 14 / 21: mid-epoch in epochs 0, 1, 2; step 10 / 20: right after an epoch's last batch.
    for step, folder in [(7, "every7"), (14, "every7"), (21, "every7"), (10, "every10"), (20, "every10")]:
        resumed = fit(25, ckpt_path=tmp_path / folder / f"step={step}.ckpt", root=tmp_path, validate=validate).seen
        assert resumed == uninterrupted[step:], f"resume from step {step} diverged"


def test_length_buckets_cut_padding_and_keep_the_order_a_function_of_seed_and_epoch():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (1000,), generator=generator).tolist()
    bucketed = EpochPermutationSampler(1000, seed=1, lengths=lengths, batch_size=8)
    plain = EpochPermutationSampler(1000, seed=1)

    def padded_positions(order: list[int]) -> int:  # what a step computes beyond the real tokens
        batches = [order[k : k + 8] for k in range(0, len(order), 8)]
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)

    first = list(bucketed)
    assert sorted(first) == list(range(1000)) and list(bucketed) == first
    assert padded_positions(first) < padded_positions(list(plain)) / 5
    bucketed.set_epoch(1)
    assert list(bucketed) != first  # a new epoch: new pools, new batch order
    batches = {tuple(sorted(first[k : k + 8])) for k in range(0, 1000, 8)}
    assert {tuple(sorted(list(bucketed)[k : k + 8])) for k in range(0, 1000, 8)} != batches


def test_a_bucketed_loader_resumes_mid_epoch():
    dm = build_datamodule(
        task(name="copy", train_size=40, val_size=8, test_size=8, min_len=1, max_len=10),
        batch_size=4,
        seed=0,
        bucket_by_length=True,
    )
    full = loader_keys(dm.train_dataloader(), epochs=(1,))[0]
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    iterator = iter(loader)
    seen = [batch_key(next(iterator)) for _ in range(4)]
    fresh = dm.train_dataloader()
    fresh.load_state_dict(loader.state_dict())
    assert seen + [batch_key(b) for b in fresh] == full
