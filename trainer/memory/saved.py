"""What a forward pass keeps for backward, and when: the activation memory of a training step.

`SavedLog` records every tensor autograd saves (through saved_tensors_hooks), once per storage
(the same activation saved by three projections costs memory once), leaving out the weights
(counted apart). Each record carries a time (a counter that runs through the forward) and the
gradient-checkpointed block it was saved in, if any. The same log replays the backward pass:
activations are freed as backward walks back past them, gradients of trained weights appear as
it reaches their layers, and a checkpointed block's activations exist again only while backward
is inside that block (they are recomputed there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage()._cdata


def storage_bytes(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().nbytes()


@dataclass
class Saved:
    time: int
    nbytes: int
    block: int | None  # the checkpointed block it was saved in (None: kept until backward)


@dataclass
class SavedLog:
    skip: set = field(default_factory=set)  # storages of weights: counted as weights, not here
    saved: dict = field(default_factory=dict)  # storage key -> Saved
    refs: list = field(default_factory=list)  # keeps saved storages alive so keys stay unique
    blocks: dict = field(default_factory=dict)  # block id -> (first time, last time)
    grads: dict = field(default_factory=dict)  # module id -> (time of last use, gradient bytes)
    time: int = 0
    block: int | None = None

    def tick(self) -> int:
        self.time += 1
        return self.time

    def record(self, tensor: torch.Tensor, block: int | None = None) -> None:
        key = storage_key(tensor)
        if key in self.skip:
            return
        entry = self.saved.get(key)
        if entry is None:
            self.saved[key] = Saved(self.tick(), storage_bytes(tensor), block)
            self.refs.append(tensor)
        elif entry.block is not None and entry.block != block:
            entry.block = None  # also held outside its block: not freed by checkpointing

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.record(tensor, self.block)
        return tensor

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)

    # -- gradient checkpointing: the models call this instead of torch.utils.checkpoint
    def checkpoint(self, function, *args, **kwargs):
        """Run a checkpointed block as checkpointing would keep it: its tensor inputs stay,
        everything saved inside is recomputed during backward."""
        outer, block = self.block, len(self.blocks)
        for value in args:
            if isinstance(value, torch.Tensor):
                self.record(value, outer)
        self.block = block
        start = self.tick()
        self.blocks[block] = (start, start)
        try:
            return function(*args, **kwargs)
        finally:
            self.blocks[block] = (start, self.tick())
            self.block = outer

    def watch_gradients(self, module: torch.nn.Module, trained: set[int]) -> None:
        """Note when each module that owns trained weights runs: backward builds their
        gradients when it gets back there."""
        for sub in module.modules():
            own = [p for p in sub.parameters(recurse=False) if id(p) in trained]
            if own:
                size = sum(p.numel() * p.element_size() for p in own)
                sub.register_forward_pre_hook(
                    lambda *_, key=id(sub), size=size: self.grads.__setitem__(
                        key, (self.tick(), size)))

    # -- results
    def total(self, with_blocks: bool = True) -> int:
        return sum(s.nbytes for s in self.saved.values() if with_blocks or s.block is None)

    def largest(self) -> int:
        return max((s.nbytes for s in self.saved.values()), default=0)

    def backward_peak(self, grads_held: bool) -> tuple[int, int]:
        """(peak bytes of activations + gradients during backward, activations at that moment).
        Backward walks the times from the last to the first. grads_held: every gradient exists
        from the start (the later batches of gradient accumulation)."""
        end = self.time + 1
        change = [0] * (end + 1)  # activations alive at time t: prefix sums of this
        for s in self.saved.values():
            last = end - 1 if s.block is None else self.blocks[s.block][1]
            change[s.time] += s.nbytes
            change[last + 1] -= s.nbytes
        built_at = [0] * (end + 1)
        for time, size in self.grads.values():
            built_at[time] += size
        all_grads = later = sum(built_at)  # later: gradients of times >= t, built before t
        best = at_best = acts = 0
        for t in range(end):
            acts += change[t]
            live = acts + (all_grads if grads_held else later)
            if live > best:
                best, at_best = live, acts
            later -= built_at[t]
        return best, at_best
