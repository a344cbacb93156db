"""A training DataLoader whose order is a pure function of (seed, epoch) and which resumes mid-epoch.

How Lightning 2.6 uses it (read in lightning/pytorch/loops/fit_loop.py, training_epoch_loop.py,
utilities/combined_loader.py, fabric/utilities/data.py):
- Saving: `FitLoop.on_save_checkpoint` stores `[loader.state_dict()]` for every train loader that has
  `state_dict` and `load_state_dict` (the `_Stateful` protocol) under loops.fit_loop.state_dict.combined_loader.
- Loading: `FitLoop.setup_data` calls `loader.load_state_dict(state)` and THEN `iter(loader)`; on a
  resume, that iterator is used for the rest of the interrupted epoch (iter() is not called again).
- `sampler.set_epoch(epoch)` is called in `FitLoop.on_advance_start`, i.e. AFTER that first iter().
  So nothing may depend on the epoch before the first batch is requested: `__iter__` below is a
  generator, whose body only runs at the first next().
- A sized loader is not prefetched by Lightning, so "batches handed out" == "batches trained on" when
  a checkpoint is written (ModelCheckpoint saves in on_train_batch_end / on_validation_end).

The state is tiny: {"seed", "epoch", "batches_yielded"}; resuming skips the already-seen part of that
epoch's permutation by index (no batch is loaded or collated twice). If the checkpoint was written
after the last batch of an epoch, Lightning moves on to the next epoch and calls set_epoch(epoch + 1);
the pending skip belongs to the old epoch, so it is dropped.

Multi-GPU (DDP): the sampler shards the permutation by rank itself; give the Trainer
`use_distributed_sampler=False` so Lightning does not try to replace it.

Length bucketing (`bucket_by_length=true`): the epoch's permutation is cut into pools of `POOL_BATCHES` batches,
each pool is sorted by example length and cut into batches, and the batches are shuffled. Each batch then holds
examples of similar length, so little of a step is spent on padding; the order is still a pure function of
(seed, epoch), and batch k is still positions [k*B, (k+1)*B) of it, so resuming works unchanged.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for (seed, epoch) that does not depend on Python's salted hash()."""
    # splitmix64-style mixing: neighbouring (seed, epoch) pairs give unrelated streams.
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 27
    return x & 0x7FFFFFFFFFFFFFFF


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


POOL_BATCHES = 50  # batches per pool sorted by length: similar lengths within a batch, batches still random


def bucketed(order: list[int], lengths: list[int], batch_size: int, generator: torch.Generator) -> list[int]:
    """`order` regrouped so each consecutive `batch_size` items have similar lengths, the batches in random order."""
    pool = batch_size * POOL_BATCHES
    batches = []
    for start in range(0, len(order), pool):
        by_length = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [by_length[k : k + batch_size] for k in range(0, len(by_length), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) < batch_size]  # at most one per pool: kept at the end, as drop_last=False
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    return [i for batch in shuffled + short for i in batch]


class EpochPermutationSampler(Sampler[int]):
    """Yields a permutation of range(num_items) drawn from (seed, epoch) only; with `lengths` and `batch_size`,
    regrouped into batches of similar length (see the module doc)."""

    def __init__(self, num_items: int, seed: int, lengths: list[int] | None = None, batch_size: int = 1):
        self.num_items = num_items
        self.seed = seed
        self.lengths = lengths
        self.batch_size = batch_size
        self.epoch = 0
        self.start_index = 0  # first position of the permutation to yield (set when resuming)
        self.start_epoch = 0  # the epoch start_index belongs to

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(self.num_items, generator=generator).tolist()
        rank, world = _rank_and_world()
        if self.lengths is not None:  # per rank's batch: world consecutive batches' worth go to the world ranks
            order = bucketed(order, self.lengths, self.batch_size * world, generator)
        if world > 1:  # pad by wrapping so every rank gets the same number of items, then shard
            order += order[: (-len(order)) % world]
            order = order[rank::world]
        return order

    def pending_start(self) -> int:
        """The resume offset if it belongs to the current epoch, else 0."""
        return self.start_index if self.start_epoch == self.epoch else 0

    def __iter__(self) -> Iterator[int]:
        start = self.pending_start()
        self.start_index = 0  # a resume offset is used once
        yield from self.permutation(self.epoch)[start:]

    def __len__(self) -> int:
        _, world = _rank_and_world()
        return -(-self.num_items // world)


class ResumableDataLoader(DataLoader):
    """DataLoader over an EpochPermutationSampler that counts the batches it hands out."""

    def __init__(
        self, dataset, batch_size: int, seed: int, collate_fn, num_workers: int = 0, lengths: list[int] | None = None
    ):
        super().__init__(
            dataset,
            batch_size=batch_size,
            sampler=EpochPermutationSampler(len(dataset), seed, lengths, batch_size),
            collate_fn=collate_fn,
            num_workers=num_workers,
            drop_last=False,  # batch k is always positions [k*B, (k+1)*B) of the permutation
            persistent_workers=False,
            # its own generator for the workers' base seed: starting an iterator (as a resumed run does
            # mid-epoch) must not draw from the global generator that dropout uses
            generator=torch.Generator().manual_seed(seed),
        )
        self.seed = seed
        self.batches_yielded = 0

    def __iter__(self) -> Iterator[Any]:
        # A generator: this body runs at the first next(), after Lightning's set_epoch() (see module doc).
        sampler: EpochPermutationSampler = self.sampler
        start = sampler.pending_start()
        self.batches_yielded = start // self.batch_size
        for batch in super().__iter__():
            self.batches_yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        # batches_per_epoch: whether the epoch was finished, for a resume to tell before it builds anything (its
        # loader cannot tell Lightning it is at the last batch, so the checkpoint's loop state does not say).
        return {
            "seed": self.seed,
            "epoch": self.sampler.epoch,
            "batches_yielded": self.batches_yielded,
            "batches_per_epoch": len(self),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler: EpochPermutationSampler = self.sampler
        # The checkpoint's seed wins: a resumed run continues the run that wrote it.
        self.seed = sampler.seed = int(state["seed"])
        sampler.epoch = sampler.start_epoch = int(state["epoch"])
        sampler.start_index = int(state["batches_yielded"]) * self.batch_size
        self.batches_yielded = int(state["batches_yielded"])
