"""A keyed shuffle of range(n) that computes one position at a time, in constant memory.

An epoch can hold millions of samples (many images times many repeats); a list of them, let
alone shuffled copies, would grow with the repeat count. Here position i of the shuffled order
is computed on demand by a small Feistel network over the next power of four, with "cycle
walking": values that land outside range(n) are encrypted again until they fall inside, which
keeps it a permutation of exactly range(n). The inverse (where did value v go?) is as cheap.
"""

from __future__ import annotations

import hashlib

_ROUNDS = 6
_MASK64 = (1 << 64) - 1


def _mix(value: int) -> int:
    """splitmix64's finalizer: every input bit affects every output bit."""
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB & _MASK64
    return value ^ (value >> 31)


class Shuffle:
    def __init__(self, n: int, key: str):
        if n < 0:
            raise ValueError("a shuffle needs n >= 0")
        self.n = n
        bits = max(2, (n - 1).bit_length())
        bits += bits & 1  # two equal halves
        self._half = bits // 2
        self._mask = (1 << self._half) - 1
        self._keys = [int.from_bytes(hashlib.blake2b(f"{key}/{r}".encode(), digest_size=8)
                                     .digest(), "little") for r in range(_ROUNDS)]

    def _round(self, half: int, key: int) -> int:
        return _mix(half ^ key) & self._mask

    def _encrypt(self, value: int) -> int:
        left, right = value >> self._half, value & self._mask
        for key in self._keys:
            left, right = right, left ^ self._round(right, key)
        return (left << self._half) | right

    def _decrypt(self, value: int) -> int:
        left, right = value >> self._half, value & self._mask
        for key in reversed(self._keys):
            left, right = right ^ self._round(left, key), left
        return (left << self._half) | right

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        """The value at shuffled position `index`."""
        if not 0 <= index < self.n:
            raise IndexError(index)
        value = self._encrypt(index)
        while value >= self.n:
            value = self._encrypt(value)
        return value

    def position(self, value: int) -> int:
        """Where `value` lands: shuffle[shuffle.position(v)] == v."""
        if not 0 <= value < self.n:
            raise IndexError(value)
        index = self._decrypt(value)
        while index >= self.n:
            index = self._decrypt(index)
        return index
