"""Bytes of optimizer state per trained tensor, for each optimizer_type, from how each one
allocates its state (read from the libraries the trainer uses)."""

from __future__ import annotations

import math

# bitsandbytes' 8-bit optimizers: one uint8 per element and state, one float32 absmax per
# block of 256 elements; tensors under min_8bit_size (4096) elements keep float32 state.
BNB_BLOCK = 256
BNB_MIN_8BIT = 4096
STEP_BYTES = 4  # a float32 scalar per tensor: AdamW's step count, Adafactor's RMS


def _bnb(numel: int, states: int) -> int:
    if numel < BNB_MIN_8BIT:
        return states * 4 * numel
    return states * (numel + 4 * math.ceil(numel / BNB_BLOCK))


def _adafactor(shape: tuple, size: int) -> int:
    """transformers' Adafactor without beta1: a row and a column mean of the squared gradient
    for tensors of 2 or more dims (over the last two dims), a full one otherwise, and an RMS
    scalar."""
    if len(shape) < 2:
        return size * math.prod(shape) + STEP_BYTES
    rows = math.prod(shape[:-1])
    cols = math.prod(shape[:-2]) * shape[-1]
    return size * (rows + cols) + STEP_BYTES


def state_bytes(optimizer_type: str, shape: tuple, element_size: int) -> int:
    numel = math.prod(shape)
    full = numel * element_size
    if optimizer_type == "AdamW":
        # exp_avg, exp_avg_sq; float16 weights (full_fp16) get float32 moments (see optim.py)
        return 2 * numel * max(element_size, 4) + STEP_BYTES
    if optimizer_type == "AdamW8bit":
        return _bnb(numel, 2)
    if optimizer_type in ("Lion", "SGDNesterov"):
        return full  # Lion's exp_avg; SGD's momentum buffer
    if optimizer_type in ("Lion8bit", "SGDNesterov8bit"):
        return _bnb(numel, 1)
    if optimizer_type == "Adafactor":
        return _adafactor(tuple(shape), element_size)
    if optimizer_type == "Prodigy":
        return 4 * full  # exp_avg, exp_avg_sq, s and p0 (a copy of the starting weights)
    raise ValueError(f"unknown optimizer_type {optimizer_type!r}")


def optimizer_bytes(optimizer_type: str, params) -> int:
    return sum(state_bytes(optimizer_type, tuple(p.shape), p.element_size()) for p in params)


def step_transient(optimizer_type: str, params) -> int:
    """Temporary memory of the optimizer step, which runs tensor by tensor: Adafactor makes
    float32 work copies of the largest tensor; the others update in place."""
    largest = max((p.numel() for p in params), default=0)
    return 3 * 4 * largest if optimizer_type == "Adafactor" else 0
