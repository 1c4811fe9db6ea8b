"""Graceful stop: SIGINT/SIGTERM (CTRL_BREAK on Windows) or a stop.request file in the run folder.

The first request lets the current step finish, then the trainer saves state and model and ends
with status "stopped". A second signal stops at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ..runs import LAUNCH_TIME_ENV, STOP_FILE, stop_request_time


def launch_time(default: float) -> float:
    """When the launcher started this run (it may have taken a stop request since), else default."""
    try:
        return float(os.environ[LAUNCH_TIME_ENV])
    except (KeyError, ValueError):
        return default


class StopFlag:
    def __init__(self, run_dir: str | Path):
        self.stop_file = Path(run_dir) / STOP_FILE
        self.requested = False
        self.reason = ""
        self._previous: dict[int, Any] = {}
        self._next_file_check = 0.0

    def install(self) -> "StopFlag":
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
            sig = getattr(signal, name, None)
            if sig is not None:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002 - signal API
        if self.requested:
            raise KeyboardInterrupt  # second request: stop now, without saving
        self.requested = True
        self.reason = signal.Signals(signum).name

    def check(self) -> bool:
        """True once a stop was asked for (by a signal or the stop file)."""
        if not self.requested and time.monotonic() >= self._next_file_check:
            self._next_file_check = time.monotonic() + 0.5  # a stat per step is needless I/O
            if self.stop_file.exists():
                self.requested = True
                self.reason = STOP_FILE
        return self.requested

    def clear_stale(self, launched: float) -> None:
        """Forget a stop request left from an earlier run; one made since `launched` (e.g. Stop
        pressed while this run was starting) stays and stops this run."""
        requested = stop_request_time(self.stop_file.parent)
        if requested is not None and requested < launched:
            self.stop_file.unlink(missing_ok=True)
