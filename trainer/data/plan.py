"""The epoch plan: which samples an epoch holds, how they are batched, and in what order.

An epoch is sum(repeats x images) of the training folders plus as many regularization samples
(the seed's rule). Every batch holds samples of one bucket. Everything is derived from
(seed, epoch), so a resumed run or a run on another number of GPUs sees the same batches.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .shuffle import Shuffle


@dataclass(frozen=True, slots=True)
class SampleRef:
    """One sample of an epoch: `item` indexes Dataset.items; `pos` is its place in the epoch
    plan (per-sample randomness is drawn from (seed, epoch, pos))."""

    item: int
    pos: int
    is_reg: bool
    bucket: tuple[int, int]


def sample_rng(seed: int, epoch: int, pos: int, purpose: str) -> random.Random:
    """An independent generator per sample and purpose (flip, crop, color, caption)."""
    return random.Random(f"{seed}/{epoch}/{pos}/{purpose}")


def balance_reg(train_samples: int, reg: list[tuple[int, int]]) -> dict[int, int]:
    """How often each regularization image is used per epoch, {item: uses}.

    `reg` is [(item, repeats)] in folder order. Images contribute their repeats in order until
    the epoch's training sample count is reached (later images stay unused); when they run out
    first, each image is used once more, in turn, until the counts match.
    """
    uses: dict[int, int] = {}
    total = 0
    for item, repeats in reg:
        if total >= train_samples:
            break
        take = min(repeats, train_samples - total)
        uses[item] = take
        total += take
    if reg and total < train_samples:
        # one more use each, in turn; counted, not looped, as an epoch may hold millions
        rounds, rest = divmod(train_samples - total, len(reg))
        for k, (item, _) in enumerate(reg):
            uses[item] = uses.get(item, 0) + rounds + (k < rest)
    return uses


class EpochPlanner:
    def __init__(self, buckets: list[tuple[int, int]], is_reg: list[bool],
                 uses: dict[int, int], seed: int):
        """`uses`: samples per epoch of each item (repeats for training images, the balanced
        count for regularization images). Memory grows with the images, not the repeats."""
        self.buckets, self.is_reg, self.seed = buckets, is_reg, seed
        members: dict[tuple[int, int], list[int]] = {}
        for item in sorted(uses):
            if uses[item] > 0:
                members.setdefault(buckets[item], []).append(item)
        self.pools = [_BucketPool(bucket, members[bucket], uses) for bucket in sorted(members)]

    @property
    def samples_per_epoch(self) -> int:
        return sum(pool.samples for pool in self.pools)

    def bucket_counts(self) -> dict[tuple[int, int], int]:
        return {pool.bucket: pool.samples for pool in self.pools}

    def steps(self, global_batch_size: int) -> int:
        return sum(math.ceil(pool.samples / global_batch_size) for pool in self.pools)

    def batches(self, epoch: int, global_batch_size: int, world_size: int = 1) -> "EpochPlan":
        if global_batch_size < 1:
            raise ValueError("global_batch_size must be at least 1")
        return EpochPlan(self, epoch, global_batch_size, world_size)


class _BucketPool:
    """The samples of one bucket: item k of `items` fills uses[k] consecutive slots."""

    def __init__(self, bucket: tuple[int, int], items: list[int], uses: dict[int, int]):
        self.bucket, self.items = bucket, items
        self.ends = list(itertools.accumulate(uses[item] for item in items))
        self.samples = self.ends[-1] if self.ends else 0

    def item_at(self, slot: int) -> int:
        return self.items[bisect.bisect_right(self.ends, slot)]


class EpochPlan(Sequence):
    """The batches of one epoch in training order, each computed when it is asked for.

    Within a bucket the samples are shuffled, cut into batches, and the batches of all buckets
    are shuffled together; all from (seed, epoch). Every batch is full except the last of each
    bucket, so a batch's first position is its index times the batch size, less what the short
    batches placed before it lack.
    """

    def __init__(self, planner: EpochPlanner, epoch: int, batch_size: int, world_size: int):
        self.planner, self.batch_size, self.world_size = planner, batch_size, world_size
        key = f"plan/{planner.seed}/{epoch}"
        self.shuffles = [Shuffle(pool.samples, f"{key}/{pool.bucket}") for pool in planner.pools]
        counts = [math.ceil(pool.samples / batch_size) for pool in planner.pools]
        self.group_starts = [0, *itertools.accumulate(counts)]
        self.order = Shuffle(self.group_starts[-1], f"{key}/batches")
        self.samples = planner.samples_per_epoch
        full_padding = self._padding(batch_size)
        short = []  # (index in the plan, samples it lacks, extra padding it needs)
        for number, pool in enumerate(planner.pools):
            size = pool.samples - (counts[number] - 1) * batch_size
            if size < batch_size:
                group = self.group_starts[number + 1] - 1
                short.append((self.order.position(group), batch_size - size,
                              self._padding(size) - full_padding))
        short.sort()
        self.short_at = [index for index, _, _ in short]
        self.lacking = [0, *itertools.accumulate(lack for _, lack, _ in short)]
        self.extra_padding = [0, *itertools.accumulate(extra for _, _, extra in short)]
        self.full_padding = full_padding

    def _padding(self, size: int) -> int:
        """Samples added so that every rank gets an equal share of a batch of `size`."""
        return math.ceil(size / self.world_size) * self.world_size - size

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        group = self.order[index]  # raises IndexError past the end
        number = bisect.bisect_right(self.group_starts, group) - 1
        pool, shuffle = self.planner.pools[number], self.shuffles[number]
        first = (group - self.group_starts[number]) * self.batch_size
        slots = range(first, min(first + self.batch_size, pool.samples))
        before = bisect.bisect_left(self.short_at, index)
        pos = index * self.batch_size - self.lacking[before]
        is_reg = self.planner.is_reg
        batch = []
        for k, slot in enumerate(slots):
            item = pool.item_at(shuffle[slot])
            batch.append(SampleRef(item, pos + k, is_reg[item], pool.bucket))
        if self.world_size > 1:
            # Topped-up samples get positions after the epoch's real ones, so the real samples
            # keep the randomness they have on one GPU.
            extra = self.samples + index * self.full_padding + self.extra_padding[before]
            originals = list(batch)
            for k in range(self._padding(len(batch))):
                ref = originals[k % len(originals)]
                batch.append(SampleRef(ref.item, extra + k, ref.is_reg, ref.bucket))
        return batch


def rank_slice(batch: list[SampleRef], rank: int, world_size: int) -> list[SampleRef]:
    """This rank's contiguous share of a global batch (planned with the same world_size)."""
    if len(batch) % world_size:
        raise ValueError(f"a batch of {len(batch)} cannot be split over {world_size} processes; "
                         "plan it with epoch_batches(..., world_size=world_size)")
    share = len(batch) // world_size
    return batch[rank * share:(rank + 1) * share]
