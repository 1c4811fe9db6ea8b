"""The processes of one run (one, or one per GPU): who reports and saves, and how they agree."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Processes:
    accelerator: Any  # accelerate.Accelerator
    device: Any  # torch.device
    is_main: bool  # only the main process reports and writes models
    rank: int
    world: int  # number of processes


def start_processes() -> Processes:
    import torch
    from accelerate import Accelerator

    # Several processes without GPUs (torchrun or accelerate launch on a CPU machine) need
    # accelerate's CPU mode to join one gloo process group.
    many = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu = many and not torch.cuda.is_available()
    # Mixed precision is handled here (autocast + GradScaler), the same on CPU and GPU.
    accelerator = Accelerator(mixed_precision="no", cpu=cpu)
    return Processes(accelerator, accelerator.device, accelerator.is_main_process,
                     accelerator.process_index, accelerator.num_processes)


def shared_seed(seed: int | None, procs: Processes) -> int:
    """The run's seed: the one given, else one drawn by the main process for all."""
    if seed is not None:
        return seed
    chosen = [random.SystemRandom().randrange(2 ** 31)]
    if procs.world > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(chosen)
    return chosen[0]


def agree_to_stop(stop, procs: Processes) -> bool:
    """Any process asked to stop -> all stop together (each may have seen the signal alone)."""
    if procs.world == 1:
        return stop.check()
    import torch

    flag = torch.tensor(1.0 if stop.check() else 0.0, device=procs.device)
    return bool(procs.accelerator.reduce(flag, reduction="sum").item() > 0)
