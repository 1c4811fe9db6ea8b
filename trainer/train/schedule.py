"""When things happen in a run: how many steps and epochs, where the run stands, and the
cadences of saves and samples."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError


@dataclass
class Position:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # 0-based epoch in progress
    batch: int = 0  # next global batch of that epoch

    @property
    def epoch_of_last_step(self) -> int:
        """1-based epoch the last step belonged to (0 before the first step)."""
        return self.epoch + (1 if self.batch else 0)

    def advance(self, batches: int) -> None:
        """One optimizer step over `batches` global batches is done."""
        self.batch += batches
        self.step += 1

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0


@dataclass(frozen=True)
class Schedule:
    global_batch: int  # samples per batch over all processes
    batches_per_epoch: int
    accumulation: int  # global batches per optimizer step
    steps_per_epoch: int
    total_steps: int
    total_epochs: int


def plan_schedule(dataset, *, batch_size: int, world: int, accumulation: int,
                  max_train_epochs: int | None, max_train_steps: int) -> Schedule:
    global_batch = batch_size * world
    batches_per_epoch = dataset.steps_per_epoch(global_batch)
    if batches_per_epoch == 0:
        raise UserError("the dataset gives no batches", "add images or lower train_batch_size")
    steps_per_epoch = math.ceil(batches_per_epoch / accumulation)
    total_steps = max_train_epochs * steps_per_epoch if max_train_epochs else max_train_steps
    return Schedule(global_batch, batches_per_epoch, accumulation, steps_per_epoch, total_steps,
                    math.ceil(total_steps / steps_per_epoch))


@dataclass(frozen=True)
class Cadence:
    """Every n optimizer steps and/or every n epochs; 0 or None: never by that count."""

    every_steps: int | None = None
    every_epochs: int | None = None

    @property
    def ever(self) -> bool:
        return bool(self.every_steps or self.every_epochs)

    def due_at_step(self, step: int) -> bool:
        every = self.every_steps
        return every is not None and every > 0 and step % every == 0

    def due_at_epoch(self, epoch: int) -> bool:
        """epoch: epochs completed."""
        every = self.every_epochs
        return every is not None and every > 0 and epoch % every == 0

    def met_at(self, position: Position) -> bool:
        """Whether the position is a step or an epoch end this cadence acts on."""
        return self.due_at_step(position.step) \
            or (position.batch == 0 and self.due_at_epoch(position.epoch))
