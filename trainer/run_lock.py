"""One run at a time in a run folder: an OS lock on `<output_dir>/run.lock`, held for the run's life.

The system releases the lock when the process ends, however it ends (kill -9 included), so a
lock file left behind by a dead run never blocks the next one. The file's text names the
holder (pid, machine, start time) for the message a second run gets.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from . import file_lock
from .errors import UserError

LOCK_FILE = "run.lock"


class RunFolderLock:
    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunFolderLock":
        """Take the lock or raise a UserError naming the folder and the run that holds it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            if not file_lock.try_lock(fd):
                os.close(fd)
                raise UserError(f"{self.run_dir} is in use by another training run "
                                f"({describe_holder(self.path)})",
                                "choose another output_dir, or wait until that run ends")
            if self._still_at_path(fd):
                break
            # The previous holder removed the file between our open and lock: lock the new one.
            file_lock.unlock(fd)
            os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode("utf-8"))
        self._fd = fd
        return self

    def _still_at_path(self, fd: int) -> bool:
        if os.name == "nt":  # pragma: no cover - an open file cannot be removed there
            return True
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked, so nobody takes it half-gone
        except OSError:
            pass  # Windows: an open file stays; the next run locks it again
        file_lock.unlock(self._fd)
        os.close(self._fd)
        self._fd = None


def describe_holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        pid = int(holder["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid is not known yet"
    host = holder.get("host")
    if host and host != socket.gethostname():
        return f"pid {pid} on {host}"
    return f"pid {pid}"


def held_by_another(run_dir: str | os.PathLike) -> str | None:
    """A description of the run holding `run_dir`'s lock, or None when the folder is free."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if file_lock.try_lock(fd):
            file_lock.unlock(fd)
            return None
        return describe_holder(path)
    finally:
        os.close(fd)
