"""Each process's share of the coming batches, loaded ahead on threads when asked.

With max_data_loader_n_workers > 0, images are decoded and augmented while the model computes.
Randomness is keyed by sample position (see seeding.py), so the order of loading never matters.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator


@dataclass
class LocalBatch:
    refs: list  # this process's samples of one global batch
    dummy: bool  # no sample left for this process: it computes one with weight zero
    data: dict  # what Dataset.load_batch returned


def local_share(refs: list, rank: int, size: int) -> tuple[list, bool]:
    local = refs[rank * size:(rank + 1) * size]
    if local:
        return local, False
    # A short final batch can leave a process without samples; it still takes part in the
    # gradient exchange, with one sample weighted zero.
    return refs[:1], True


@dataclass
class Group:
    """The global batches of one optimizer step (several with gradient accumulation)."""

    batches: list[LocalBatch]
    global_count: int  # samples in the whole group, over all processes
    size: int  # global batches consumed


class BatchFeed:
    def __init__(self, dataset, *, rank: int, batch_size: int, accumulation: int, workers: int):
        self.dataset, self.rank, self.batch_size = dataset, rank, batch_size
        self.accumulation, self.workers = accumulation, workers

    def load(self, refs: list, epoch: int) -> LocalBatch:
        local, dummy = local_share(refs, self.rank, self.batch_size)
        return LocalBatch(local, dummy, self.dataset.load_batch(local, epoch))

    def groups(self, plan: list[list], epoch: int, start: int) -> Iterator[Group]:
        """Groups of the epoch plan from batch index `start` on."""
        bounds = [(i, plan[i:i + self.accumulation])
                  for i in range(start, len(plan), self.accumulation)]
        if self.workers <= 0:
            for _, refs_group in bounds:
                yield self._group([self.load(refs, epoch) for refs in refs_group], refs_group)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="load") as pool:
            pending: deque = deque()
            ahead = iter(bounds)
            for _ in range(self.workers + 1):
                self._submit(pool, pending, ahead, epoch)
            while pending:
                refs_group, futures = pending.popleft()
                self._submit(pool, pending, ahead, epoch)
                yield self._group([f.result() for f in futures], refs_group)

    def _submit(self, pool, pending: deque, ahead, epoch: int) -> None:
        item = next(ahead, None)
        if item is not None:
            _, refs_group = item
            pending.append((refs_group, [pool.submit(self.load, refs, epoch)
                                         for refs in refs_group]))

    @staticmethod
    def _group(batches: list[LocalBatch], refs_group: list[list]) -> Group:
        return Group(batches, sum(len(refs) for refs in refs_group), len(refs_group))
