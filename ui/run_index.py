"""outputs/.runs.json: the runs and the queue, shared by every GUI that uses one outputs folder.

Each change is made to the file's current content under an OS lock (`.runs.json.lock`), then
written atomically, so two GUIs never lose each other's entries and a reader never sees half a
file. Reads are cached until the file changes.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

from trainer import atomic, file_lock


def empty() -> dict:
    return {"runs": {}, "queue": []}


class RunIndex:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._cached = empty()
        self._cached_key = None

    def current(self) -> dict:
        """The index as on disk now (re-read only when the file was replaced)."""
        key = self._file_key()
        if key != self._cached_key:
            self._cached, self._cached_key = self._load(), key
        return self._cached

    @contextlib.contextmanager
    def update(self) -> Iterator[dict]:
        """Yield the index as on disk, locked against other GUIs; what the block changes in it
        is written back when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            file_lock.lock(fd)
            try:
                data = self._load()
                yield data
                atomic.write_text(self.path, json.dumps(data, indent=1, ensure_ascii=False))
                self._cached, self._cached_key = data, self._file_key()
            finally:
                file_lock.unlock(fd)
        finally:
            os.close(fd)

    def _file_key(self):
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size  # an atomic write makes a new inode

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return empty()
        if not isinstance(data, dict):
            return empty()
        return {"runs": dict(data.get("runs", {})), "queue": list(data.get("queue", []))}
