"""Disk space: a clear message before a save that clearly cannot fit, and when a disk fills up.

Libraries report a full disk in their own words (safetensors "StorageFull", torch "file write
failed", plain OSError ENOSPC); all of them become one UserError naming the file.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from .errors import UserError

_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_WORDS = ("no space left on device", "storagefull", "not enough space on the disk",
               "disk quota exceeded")
_NEARLY_FULL = 1 << 20  # bytes: less than this left when a write failed means the disk was full


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Free space of the disk holding `folder` (or its nearest existing parent)."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def size_text(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover - the loop returns first


def ensure_free_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """UserError when the disk has less free space than `needed` bytes (a lower bound of what
    the save writes), before anything is written."""
    free = free_bytes(folder)
    if free is not None and free < needed:
        raise UserError(f"not enough free disk space to save {what} in {folder}: it needs at "
                        f"least {size_text(needed)}, {size_text(free)} are free",
                        "free some space on that disk or choose another output_dir")


def is_disk_full(err: BaseException | None, folder: str | os.PathLike | None = None) -> bool:
    """Whether `err` (or what caused it) means the disk ran out of space while writing."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if any(word in str(err).lower() for word in _FULL_WORDS):
            return True
        err = err.__cause__ or err.__context__
    if folder is not None:  # torch only says "file write failed": look at the disk itself
        free = free_bytes(folder)
        return free is not None and free < _NEARLY_FULL
    return False


def disk_full_error(path: str | os.PathLike) -> UserError:
    return UserError(f"the disk is full: could not finish writing {path}",
                     "the unfinished file was removed and earlier saves are kept; free some "
                     "space on that disk or choose another output_dir")
