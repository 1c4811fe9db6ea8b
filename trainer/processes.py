"""Is the process with this PID still the one we started? (PIDs are reused once a process ends.)

A run folder and the GUI's index remember a trainer's PID. After the trainer dies the system may
give that number to any other program, which must then neither count as the trainer nor receive
its stop signal. So besides the PID we remember when that process started (`start_token`) and
compare before trusting the PID.

Pure standard library: the GUI and the trainer both use it.
"""

from __future__ import annotations

import os
import sys

# A process that started this long after the moment it was recorded cannot be the recorded one
# (the recorded process was already running then). Generous against clock jitter.
START_SLACK_SECONDS = 2.0


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, int(pid))
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):  # a damaged number in a run folder
        return False
    return not _zombie(int(pid))


def _proc_stat_fields(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces and ')')."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[-1].split()
    except (OSError, ValueError):
        return None


def _zombie(pid: int) -> bool:
    """An exited process nobody has reaped yet (e.g. a trainer whose GUI was restarted, in a
    container whose init does not reap) still answers kill(pid, 0); it is not running."""
    fields = _proc_stat_fields(pid)
    return bool(fields and fields[0] == b"Z")


def _linux_start_ticks(pid: int) -> int | None:
    fields = _proc_stat_fields(pid)
    # stat field 22 (starttime, clock ticks after boot); fields[0] here is field 3 (state)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def _windows_creation_time(pid: int) -> int | None:  # pragma: no cover - Windows only
    """The process's creation time in 100 ns units since 1601 (a FILETIME), or None."""
    try:
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]  # exists on Windows only
        handle = kernel32.OpenProcess(0x1000, False, int(pid))  # QUERY_LIMITED_INFORMATION
        if not handle:
            return None
        try:
            times = [wintypes.FILETIME() for _ in range(4)]
            if not kernel32.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
                return None
            created = times[0]
            return (created.dwHighDateTime << 32) | created.dwLowDateTime
        finally:
            kernel32.CloseHandle(handle)
    except Exception:
        return None


def start_token(pid: int | None) -> str | None:
    """An exact mark of when process `pid` started, or None where this system gives none.

    Two processes that had the same PID at different times have different tokens."""
    if not pid:
        return None
    if sys.platform == "win32":  # pragma: no cover - Windows only
        created = _windows_creation_time(pid)
        return None if created is None else f"win:{created}"
    ticks = _linux_start_ticks(pid)
    return None if ticks is None else f"linux:{ticks}"


def started_at(pid: int | None) -> float | None:
    """When process `pid` started, in seconds since the epoch (about; None if unknown)."""
    if not pid:
        return None
    if sys.platform == "win32":  # pragma: no cover - Windows only
        created = _windows_creation_time(pid)
        return None if created is None else created / 1e7 - 11644473600.0
    ticks = _linux_start_ticks(pid)
    if ticks is None:
        return None
    try:
        with open("/proc/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def is_process(pid: int | None, token: str | None = None, seen_at: float | None = None) -> bool:
    """True when `pid` is alive and still the process that was recorded.

    token: its start_token when it was recorded (exact check). seen_at: a time at which the
    recorded process was known to be running, for records without a token (a process that
    started after that moment is another one). Without either, only liveness is checked."""
    if not pid_alive(pid):
        return False
    current = start_token(pid)
    if token and current:
        return current == token
    if seen_at is not None:
        began = started_at(pid)
        if began is not None:
            return began <= float(seen_at) + START_SLACK_SECONDS
    return True
