"""The training order: a function of (seed, position), so a resumed run sees the same batches.

Epoch e visits a permutation drawn from (seed, e); with several processes each takes every
world_size-th index of it. An iterator started when the trainer is at step s begins at batch
s mod (batches per epoch) of epoch s div (batches per epoch). The augmentation of step s draws
from RNGs seeded with (seed, s, rank) (`ImageDataModule.on_before_batch_transfer`). Nothing
random depends on history, so a run resumed from a checkpoint computes what the uninterrupted
one would have, step for step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

# Tags that keep the random streams apart (derive_seed's first part).
ORDER_STREAM, AUGMENT_STREAM = 1, 2


def derive_seed(*parts: int) -> int:
    """A 64-bit seed from integers (stream tag, run seed, position): unrelated for any change."""
    entropy = [int(p) % 2**63 for p in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


class ResumableSampler(Sampler[int]):
    """Training indices in an order fixed by (seed, epoch), resumable in the middle of an epoch
    (see the module doc). `position()` is the trainer's global step when iteration starts.
    Incomplete last batches are dropped."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        position: Callable[[], int],
        rank: int = 0,
        world_size: int = 1,
    ):
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.position, self.rank, self.world_size = position, rank, world_size
        self.per_rank = num_samples // world_size
        self.batches_per_epoch = self.per_rank // batch_size

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derive_seed(ORDER_STREAM, self.seed, epoch))
        order = torch.randperm(self.num_samples, generator=generator)
        return order[self.rank : self.per_rank * self.world_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        if self.batches_per_epoch == 0:
            return iter(())
        epoch, first_batch = divmod(self.position(), self.batches_per_epoch)
        order = self.epoch_order(epoch)
        return iter(order[first_batch * self.batch_size : len(self)].tolist())
