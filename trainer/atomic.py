"""Atomic file writes: a crash never leaves a half-written file where a good one was.

A write goes to a hidden temporary name beside its target (`.<name>.<random>.saving`, or a
`.<name>-state.partial` folder for training states) and is renamed over the target when
complete. A process killed mid-write leaves such a name behind; `remove_leftovers` recognises
exactly these names and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .disk_space import disk_full_error, is_disk_full

TEMP_SUFFIX = ".saving"
_TEMP_FILE = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}(\.saving|\.tmp)$")  # .tmp: older versions
_PARTIAL_STATE = re.compile(r"^\.(?P<target>.+-state)\.partial$")
_SWAPPED_OUT = re.compile(r"^\.(?P<target>.+)\.old$")  # a folder being replaced (_replace_dir)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed over `target`.

    For directories (diffusers folders) the old folder is swapped out only after the new one
    is complete. On any error the temporary file or folder is removed and `target` is untouched;
    a full disk becomes a UserError naming the target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}."
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp, and writers that replace the file themselves (safetensors), make private
        # 0600 files; a saved model gets the mode any new file gets, so that other programs
        # (image generators, another user's GUI) can read it.
        give_default_mode(tmp)
        if is_dir:
            _replace_dir(tmp, target)
        else:
            _fsync_file(tmp)
            os.replace(tmp, target)
    except BaseException as err:
        full = isinstance(err, Exception) and is_disk_full(err, target.parent)
        remove_path(tmp)
        if full:
            raise disk_full_error(target) from None
        raise


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def default_mode(is_dir: bool) -> int:
    """What open()/mkdir() would give a new file or folder under the current umask."""
    return (0o777 if is_dir else 0o666) & ~_umask()


def give_default_mode(path: Path) -> None:
    """chmod a file, or a folder and everything in it, to the default modes."""
    if os.name == "nt":  # pragma: no cover - Windows has no such modes
        return
    if path.is_dir():
        os.chmod(path, default_mode(True))
        for child in path.rglob("*"):
            if not child.is_symlink():
                os.chmod(child, default_mode(child.is_dir()))
    elif path.exists():
        os.chmod(path, default_mode(False))


def _umask() -> int:
    # Linux shows the umask without changing it; elsewhere set-and-restore is the only way
    # (briefly process-wide, so it is not the first choice in the threaded GUI).
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _replace_dir(new: Path, target: Path) -> None:
    for file in new.rglob("*"):
        if file.is_file():
            _fsync_file(file)
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def partial_state_dir(folder: Path) -> Path:
    """Where a training state is written before it is renamed to `folder`."""
    return folder.with_name(f".{folder.name}.partial")


def leftovers(folder: str | os.PathLike) -> list[Path]:
    """Temporary files and folders of saves that never finished (the process was killed)."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        name = path.name
        if _TEMP_FILE.match(name) or (_PARTIAL_STATE.match(name) and path.is_dir()):
            found.append(path)
        elif (swapped := _SWAPPED_OUT.match(name)) and path.is_dir():
            # Only a leftover when its replacement is in place; otherwise it is the last copy.
            if (folder / swapped["target"]).exists():
                found.append(path)
    return found


def restore_swapped_out(folder: str | os.PathLike) -> list[Path]:
    """Move back folders that a killed save had swapped aside before its replacement arrived
    (they are the only copy); returns the folders restored."""
    folder = Path(folder)
    restored = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = _SWAPPED_OUT.match(path.name)
        if match and path.is_dir() and not (folder / match["target"]).exists():
            os.replace(path, folder / match["target"])
            restored.append(folder / match["target"])
    return restored


def remove_leftovers(folder: str | os.PathLike, keep: tuple = ()) -> list[tuple[Path, int]]:
    """Delete `leftovers(folder)` except the paths in `keep`; returns each path with the bytes
    it freed.

    Call this only while holding the folder's run lock (a live save's temporary file has the
    same kind of name), and after `restore_swapped_out`.
    """
    folder = Path(folder)
    kept = {Path(path).resolve() for path in keep if path}
    removed = []
    for path in leftovers(folder):
        if path.resolve() in kept:
            continue
        size = _size(path)
        remove_path(path)
        removed.append((path, size))
    return removed


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
