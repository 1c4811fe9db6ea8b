"""Start trainer subprocesses one after another, stop them, and remember them across restarts.

The GUI owns no training state: each run's folder is the truth (config.toml, events.jsonl,
trainer.log). This module only keeps a small index (outputs/.runs.json, see run_index.py) of the
folders it has seen and the order of the queue, so a restarted GUI finds its runs and queue
again, and GUIs sharing one outputs folder share one queue. A trainer is
started in its own process group/session, so it outlives the GUI and keeps writing its folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trainer.config import Config, load_config, save_config
from trainer.errors import UserError
from trainer.processes import is_process, start_token
from trainer.run_lock import held_by_another
from trainer.runs import (CONFIG_FILE, EVENTS_FILE, LAUNCH_TIME_ENV, LOG_FILE, STOP_FILE, RunState,
                          RunStatus, request_stop, stop_request_time)

from .formvalues import launch_argv
from .run_index import RunIndex
from .workspace import REPO, Workspace

INDEX_FILE = ".runs.json"


@dataclass
class RunInfo:
    run_dir: Path
    status: RunStatus  # never NEW: see run_status()
    state: RunState
    error: dict | None = None

    @property
    def name(self) -> str:
        return self.run_dir.name


def folder_in_use(run_dir: Path) -> bool:
    """True when a folder already holds another run's files (which are never deleted)."""
    return (run_dir / EVENTS_FILE).exists() or (run_dir / CONFIG_FILE).exists()


def refuse_if_running(run_dir: Path) -> None:
    """A trainer (of this GUI, another GUI or the CLI) holds the folder: leave its config alone."""
    holder = held_by_another(run_dir)
    if holder:
        raise UserError(f"{run_dir} is in use by a training run ({holder})",
                        "wait until it ends, or choose another output folder")


def trainer_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", GRADIO_ANALYTICS_ENABLED="False")
    return env


def spawn(argv: list[str], log_path: Path, cwd: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a process writing stdout+stderr into log_path; it survives the GUI's exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {}
    if sys.platform == "win32":  # pragma: no cover - Windows only
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(cwd), env=env or trainer_env(), **kwargs)


def interrupt(pid: int) -> None:
    """SIGINT to the trainer's process group (CTRL_BREAK on Windows)."""
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            os.kill(pid, signal.CTRL_BREAK_EVENT)
        else:
            os.killpg(os.getpgid(pid), signal.SIGINT)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def log_tail(run_dir: Path, max_bytes: int = 20000) -> str:
    path = run_dir / LOG_FILE
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - max_bytes))
        data = handle.read()
    text = data.decode("utf-8", errors="replace")
    # A terminal progress bar rewrites its line with \r: keep only what it shows last.
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def last_error_line(run_dir: Path) -> str | None:
    for line in reversed(log_tail(run_dir).splitlines()):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    return None


def run_status(run_dir: Path, state: RunState, entry: dict, queued: bool,
               alive: Callable[[], bool]) -> tuple[RunStatus, dict | None]:
    """The one place a run's status is decided: (status, error) from its events (`state`), its
    index entry (`entry`: when this or another GUI launched it), whether it waits in the queue,
    and whether the launched process still lives (asked only when the events cannot tell)."""
    if queued:
        return RunStatus.QUEUED, None
    launched = entry.get("launched")
    if launched and (state.started is None or state.started < launched - 1):
        # Launched, but this launch's start event has not arrived (yet).
        if alive():
            return RunStatus.STARTING, None
        stopped_at = stop_request_time(run_dir)
        if stopped_at is not None and stopped_at >= launched:
            return RunStatus.STOPPED, None  # Stop pressed while it started
        message = entry.get("launch_error") or last_error_line(run_dir) or \
            "the trainer ended before training started"
        return RunStatus.FAILED, {"message": message, "hint": f"see {run_dir / LOG_FILE}"}
    if state.status == RunStatus.NEW:  # a folder whose trainer never wrote its start event
        return RunStatus.FAILED, state.error
    return state.status, state.error


class Runner:
    """The queue and the history of runs. Thread-safe; call tick() regularly (or start())."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.index_path = workspace.outputs / INDEX_FILE
        self._shared_index = RunIndex(self.index_path)
        self._lock = threading.RLock()
        self._children: dict[Path, subprocess.Popen] = {}
        self._states: dict[Path, RunState] = {}
        self._thread: threading.Thread | None = None
        self._stop_thread = threading.Event()

    # ------------------------------------------------------------------ index file
    @property
    def _index(self) -> dict:
        """Read-only view; changes go through self._shared_index.update()."""
        return self._shared_index.current()

    # ------------------------------------------------------------------ submitting
    def submit(self, cfg: Config) -> Path:
        """Write the run's config.toml and queue it; it starts when nothing else runs."""
        if not cfg.output_dir:
            raise UserError("no output_dir given", "choose the run folder")
        run_dir = Path(cfg.output_dir).resolve()
        cfg.output_dir = str(run_dir)
        with self._lock:
            refuse_if_running(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / CONFIG_FILE)
            self._enqueue(run_dir, cfg.mode)
        self.tick()
        return run_dir

    def resume(self, run_dir: Path, state_dir: Path) -> Path:
        """Queue the run again, continuing from a state folder, in the same run folder."""
        with self._lock:
            refuse_if_running(run_dir)
            cfg = load_config(run_dir / CONFIG_FILE)
            cfg.resume = str(Path(state_dir).resolve())
            save_config(cfg, run_dir / CONFIG_FILE)
            self._enqueue(run_dir, cfg.mode)
        self.tick()
        return run_dir

    def _enqueue(self, run_dir: Path, mode: str) -> None:
        key = str(run_dir)
        with self._shared_index.update() as index:
            index["runs"][key] = {"mode": mode, "queued": time.time()}
            if key not in index["queue"]:
                index["queue"].append(key)
        self._states.pop(run_dir, None)

    # ------------------------------------------------------------------ the queue
    def queue(self) -> list[Path]:
        with self._lock:
            return [Path(p) for p in self._index["queue"]]

    def move(self, run_dir: Path, delta: int) -> None:
        with self._lock, self._shared_index.update() as index:
            queue = index["queue"]
            key = str(run_dir)
            if key not in queue:
                return
            old = queue.index(key)
            new = max(0, min(len(queue) - 1, old + delta))
            queue.insert(new, queue.pop(old))

    def remove(self, run_dir: Path) -> bool:
        """Take a run out of the queue before it starts; its folder stays as it is."""
        with self._lock, self._shared_index.update() as index:
            key = str(run_dir)
            if key not in index["queue"]:
                return False
            index["queue"].remove(key)
            index["runs"].pop(key, None)
            return True

    # ------------------------------------------------------------------ processes
    def _launch(self, run_dir: Path, index: dict) -> None:
        cfg = load_config(run_dir / CONFIG_FILE)
        argv = launch_argv(cfg) + ["--config", str(run_dir / CONFIG_FILE)]
        launched = time.time()
        # A request left by an earlier run of this folder is not for this one; one made from
        # now on is, and the trainer keeps it (it knows the launch time from its environment).
        (run_dir / STOP_FILE).unlink(missing_ok=True)
        env = {**trainer_env(), LAUNCH_TIME_ENV: repr(launched)}
        process = spawn(argv, run_dir / LOG_FILE, self.workspace.home, env)
        self._children[run_dir] = process
        entry = index["runs"].setdefault(str(run_dir), {})
        # With its start time, a PID reused by another program after the trainer ended is not
        # taken for the trainer (nor signalled).
        entry.update(launched=launched, pid=process.pid, pid_started=start_token(process.pid))
        self._states.pop(run_dir, None)

    def _process_alive(self, run_dir: Path) -> bool:
        child = self._children.get(run_dir)
        if child is not None:
            if child.poll() is None:
                return True
            del self._children[run_dir]  # reaped: its pid must no longer count as alive
            return False
        entry = self._index["runs"].get(str(run_dir), {})
        return is_process(entry.get("pid"), entry.get("pid_started"), entry.get("launched"))

    def _trainer_pid(self, run_dir: Path) -> int | None:
        """The PID to signal: the process this GUI launched, else the one the run folder names,
        only while it is still that process."""
        if self._process_alive(run_dir):
            return self._index["runs"][str(run_dir)].get("pid")
        state = self.state(run_dir)
        return state.pid if is_process(state.pid, state.pid_started, state.started) else None

    def active(self) -> Path | None:
        """The run that is starting or training now, if any."""
        with self._lock:
            for info in self.runs():
                if info.status.active:
                    return info.run_dir
        return None

    def tick(self) -> None:
        """Reap finished trainers and start the next queued run when none is going."""
        with self._lock:
            if self.active() is not None or not self._index["queue"]:
                return
            # Decided again under the index lock: another GUI may have started one meanwhile.
            with self._shared_index.update() as index:
                if self.active() is not None or not index["queue"]:
                    return
                run_dir = Path(index["queue"].pop(0))
                try:
                    self._launch(run_dir, index)
                except Exception as err:  # a bad folder must not block the rest of the queue
                    index["runs"].setdefault(str(run_dir), {}).update(
                        launched=time.time(), pid=None, launch_error=f"could not start: {err}")

    def stop(self, run_dir: Path, now: bool = False) -> None:
        """Ask the trainer to stop after the current step (saving state and model);
        now=True interrupts it without saving.

        A trainer still starting up looks at its stop file only once it trains, so it is also
        sent SIGINT, which ends its start-up (or, once it trains, means the same request). The
        file stays for this launch either way. Only a PID that is still the trainer is signalled.
        """
        with self._lock:
            request_stop(run_dir)
            starting = self.info(run_dir).status == RunStatus.STARTING
            if now or starting:
                pid = self._trainer_pid(run_dir)
                # Several GPUs: the trainer's supervisor takes a first signal as "stop after
                # this step" and a second as "stop now".
                if pid:
                    for _ in range(2 if now and self._processes(run_dir) > 1 else 1):
                        interrupt(pid)
                        time.sleep(0.2)

    @staticmethod
    def _processes(run_dir: Path) -> int:
        try:
            return int(load_config(run_dir / CONFIG_FILE).num_processes)
        except Exception:
            return 1

    # ------------------------------------------------------------------ reading runs
    def state(self, run_dir: Path) -> RunState:
        with self._lock:
            state = self._states.get(run_dir)
            if state is None:
                state = self._states[run_dir] = RunState(run_dir)
            self._process_alive(run_dir)  # reap first, so refresh() sees a dead pid as dead
            return state.refresh()

    def info(self, run_dir: Path) -> RunInfo:
        with self._lock:
            key = str(run_dir)
            state = self.state(run_dir)
            status, error = run_status(run_dir, state, self._index["runs"].get(key, {}),
                                       key in self._index["queue"],
                                       lambda: self._process_alive(run_dir))
            return RunInfo(run_dir, status, state, error)

    def run_dirs(self) -> list[Path]:
        """Runs this GUI knows plus run folders found in outputs/, newest first."""
        with self._lock:
            known = [Path(p) for p in self._index["runs"] if Path(p).is_dir()]
        found = []
        if self.workspace.outputs.is_dir():
            for child in self.workspace.outputs.iterdir():
                if child.is_dir() and (child / EVENTS_FILE).exists() and child not in known:
                    found.append(child)
        return sorted(set(known) | set(found), key=self._newest_first)

    def _newest_first(self, run_dir: Path) -> float:
        """Order by when a run was queued (or, for runs found on disk, first started)."""
        queued = self._index["runs"].get(str(run_dir), {}).get("queued")
        if queued:
            return -queued
        started = self.state(run_dir).started
        if started:
            return -started
        try:
            return -(run_dir / EVENTS_FILE).stat().st_mtime
        except OSError:
            return 0.0

    def runs(self) -> list[RunInfo]:
        with self._lock:
            return [self.info(run_dir) for run_dir in self.run_dirs()]

    # ------------------------------------------------------------------ background thread
    def start(self, interval: float = 0.5) -> "Runner":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True,
                                            name="run-queue")
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop_thread.set()

    def _loop(self, interval: float) -> None:
        while not self._stop_thread.wait(interval):
            try:
                self.tick()
            except Exception as err:  # keep the queue alive whatever one folder does
                print(f"warning: run queue: {err}", file=sys.stderr)


