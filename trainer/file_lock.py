"""OS-level exclusive locks on an open file, released by the system when the process dies.

fcntl.flock on POSIX; msvcrt.locking on Windows, where a locked byte cannot be read by other
processes, so the lock sits on a byte far past anything written and the file's text (who holds
it) stays readable.
"""

from __future__ import annotations

import os
import sys
import time

_WINDOWS_LOCK_OFFSET = 1 << 30


def try_lock(fd: int) -> bool:
    """Take the lock without waiting; False when another process holds it."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


def lock(fd: int, timeout: float = 30.0) -> None:
    """Wait for the lock (short critical sections only); TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not try_lock(fd):
        if time.monotonic() > deadline:
            raise TimeoutError("a lock file stayed locked for too long")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
