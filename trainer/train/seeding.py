"""Randomness keyed by position, not drawn from one global stream.

Every per-sample random number (noise, timestep, augmentation) comes from a generator seeded by
(run seed, epoch, the sample's position in the epoch, purpose). A resumed run, or a run split over
several GPUs, therefore draws exactly the same numbers as one uninterrupted single-GPU run.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of ints and strings (stable across runs and platforms)."""
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def generator(*parts: object, device="cpu"):
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(*parts))
    return gen


def seed_step(seed: int, step: int) -> None:
    """Reseed the global RNGs at each step, so dropout inside models is reproducible too."""
    import random

    import numpy as np
    import torch

    value = derive_seed(seed, "step", step)
    random.seed(value)
    np.random.seed(value % 2 ** 32)
    torch.manual_seed(value)
