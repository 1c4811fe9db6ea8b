"""Slow down password guessing: too many failed sign-ins lock the sign-in form for a while."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from typing import Callable


class SignInThrottle:
    """After `limit` failed sign-ins from one address within `window` seconds, that address may
    not try again for `lockout` seconds. A right password does not lift the lockout early, or
    guessing would go on at full speed."""

    def __init__(self, limit: int = 5, window: float = 60.0, lockout: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.lockout, self.clock = limit, window, lockout, clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._locked_until: dict[str, float] = {}

    def wait_seconds(self, client: str) -> int:
        """0 when `client` may try now, else the whole seconds left of its lockout."""
        left = self._locked_until.get(client, 0.0) - self.clock()
        if left <= 0:
            self._locked_until.pop(client, None)
            return 0
        return max(1, math.ceil(left))

    def failed(self, client: str) -> None:
        now = self.clock()
        recent = self._failures[client]
        recent.append(now)
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= self.limit:
            recent.clear()
            self._locked_until[client] = now + self.lockout

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
