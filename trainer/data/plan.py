"""The epoch plan: which samples an epoch holds, how they are batched, and in what order.

An epoch is sum(repeats x images) of the training folders plus as many regularization samples
(the seed's rule). Every batch holds samples of one bucket. Everything is derived from
(seed, epoch), so a resumed run or a run on another number of GPUs sees the same batches.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


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
    while reg and total < train_samples:
        for item, _ in reg:
            if total >= train_samples:
                break
            uses[item] = uses.get(item, 0) + 1
            total += 1
    return uses


class EpochPlanner:
    def __init__(self, buckets: list[tuple[int, int]], is_reg: list[bool],
                 uses: dict[int, int], seed: int):
        """`uses`: samples per epoch of each item (repeats for training images, the balanced
        count for regularization images)."""
        self.buckets, self.is_reg, self.seed = buckets, is_reg, seed
        self.by_bucket: dict[tuple[int, int], list[int]] = {}
        for item in sorted(uses):
            self.by_bucket.setdefault(buckets[item], []).extend([item] * uses[item])

    @property
    def samples_per_epoch(self) -> int:
        return sum(len(v) for v in self.by_bucket.values())

    def steps(self, global_batch_size: int) -> int:
        return sum(math.ceil(len(v) / global_batch_size) for v in self.by_bucket.values())

    def batches(self, epoch: int, global_batch_size: int, world_size: int = 1) -> list[list[SampleRef]]:
        if global_batch_size < 1:
            raise ValueError("global_batch_size must be at least 1")
        rng = random.Random(f"plan/{self.seed}/{epoch}")
        groups: list[list[int]] = []
        for bucket in sorted(self.by_bucket):
            samples = list(self.by_bucket[bucket])
            rng.shuffle(samples)
            groups += [samples[i:i + global_batch_size]
                       for i in range(0, len(samples), global_batch_size)]
        rng.shuffle(groups)
        plan, pos = [], 0
        for group in groups:
            plan.append([SampleRef(item, pos + k, self.is_reg[item], self.buckets[item])
                         for k, item in enumerate(group)])
            pos += len(group)
        if world_size > 1:
            _pad_for_ranks(plan, world_size, pos)
        return plan


def _pad_for_ranks(plan: list[list[SampleRef]], world_size: int, next_pos: int) -> None:
    """Let every rank get an equal share of each batch: an incomplete batch is topped up with
    repeats of its own samples. The extra samples get positions after the epoch's real ones,
    so the real samples keep the randomness they have on one GPU."""
    for batch in plan:
        target = math.ceil(len(batch) / world_size) * world_size
        originals = list(batch)
        for k in range(target - len(batch)):
            ref = originals[k % len(originals)]
            batch.append(SampleRef(ref.item, next_pos, ref.is_reg, ref.bucket))
            next_pos += 1


def rank_slice(batch: list[SampleRef], rank: int, world_size: int) -> list[SampleRef]:
    """This rank's contiguous share of a global batch (planned with the same world_size)."""
    if len(batch) % world_size:
        raise ValueError(f"a batch of {len(batch)} cannot be split over {world_size} processes; "
                         "plan it with epoch_batches(..., world_size=world_size)")
    share = len(batch) // world_size
    return batch[rank * share:(rank + 1) * share]
