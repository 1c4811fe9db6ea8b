"""The run folder and its event stream: written by the trainer, read by the GUI.

Every run owns one folder (its output_dir):

    config.toml     the fully resolved options the run was started with
    events.jsonl    one JSON object per line, appended and flushed
    trainer.log     stdout/stderr of the trainer process (written by whoever spawned it)
    samples/        sample images
    stop.request    created by anyone who wants the run to stop gracefully (holds the time of
                    the request; a trainer clears only requests older than its launch)
    run.lock        locked by the running trainer (trainer/run_lock.py): one run per folder

Event kinds and their fields (every event also has "kind" and "time"):

    start     total_steps, total_epochs, steps_per_epoch, mode, pid, pid_started, first_step,
              dataset{...}    (pid_started: processes.start_token of pid, so that a reused
              PID is not taken for the trainer)
    progress  phase, done, total            (e.g. phase="caching latents")
    step      step, epoch, loss, lr, seconds_per_step, eta_seconds
    sample    step, epoch, path, prompt
    save      step, epoch, path, what ("model" | "state")
    warning   message
    error     message, hint
    end       status ("finished" | "stopped" | "failed"), step

Pure standard library, so the GUI can read runs without importing torch.
"""

from __future__ import annotations

import enum
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .processes import is_process, pid_alive  # noqa: F401 - pid_alive: for readers of runs

CONFIG_FILE = "config.toml"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "trainer.log"
SAMPLES_DIR = "samples"
STOP_FILE = "stop.request"
# Set by whoever starts a trainer (the GUI, the several-GPU supervisor): when the launch began, in
# time.time() seconds. A stop request made after that moment is meant for this run.
LAUNCH_TIME_ENV = "TRAINER_LAUNCH_TIME"
# Written by the trainer into each state folder (trainer/train/checkpoints.py); a folder
# without it is not a complete state.
STATE_FILE = "train_state.json"


class RunStatus(enum.StrEnum):
    """Where a run is. The events give new/running and the end status; the GUI's queue adds
    queued and starting (launched, its start event not written yet)."""

    NEW = "new"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        """A trainer process is working on the run (it can be stopped)."""
        return self in (RunStatus.STARTING, RunStatus.RUNNING)

    @property
    def ended(self) -> bool:
        return self in (RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.FAILED)

    @property
    def interrupted(self) -> bool:
        """Ended before its last step: it can be resumed from a saved state."""
        return self in (RunStatus.STOPPED, RunStatus.FAILED)

    @classmethod
    def of_end_event(cls, value: object) -> "RunStatus":
        """The status an `end` event names; one the trainer never writes counts as failed."""
        if value is None:
            return cls.FINISHED
        try:
            status = cls(str(value))
        except ValueError:
            return cls.FAILED
        return status if status.ended else cls.FAILED


END_STATUSES = tuple(status.value for status in RunStatus if status.ended)


class EventWriter:
    """Appends one JSON line per event and flushes it at once (the GUI tails the file)."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True):
        self.path = Path(run_dir) / EVENTS_FILE
        self._handle = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")

    def emit(self, kind: str, **fields: Any) -> dict:
        event = {"kind": kind, "time": round(time.time(), 3), **fields}
        if self._handle is not None:
            self._handle.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
            self._handle.flush()
        return event

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_events(path: str | os.PathLike, offset: int = 0) -> tuple[list[dict], int]:
    """Events appended since byte `offset`, and the offset to continue from.

    A line still being written (no trailing newline yet) is left for the next call.
    """
    path = Path(path)
    if not path.exists():
        return [], 0
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    events = []
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        consumed += len(line)
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a damaged line must not hide the rest of the run
    return events, offset + consumed


def request_stop(run_dir: str | os.PathLike) -> Path:
    """Ask a running trainer to stop after the current step (it saves state and model)."""
    path = Path(run_dir) / STOP_FILE
    path.write_text(str(time.time()), encoding="utf-8")
    return path


def stop_requested(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / STOP_FILE).exists()


def stop_request_time(run_dir: str | os.PathLike) -> float | None:
    """When the stop was requested (the time written in the file, else its mtime), or None."""
    path = Path(run_dir) / STOP_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    try:
        return float(text)
    except ValueError:  # written by hand (`touch stop.request`)
        try:
            return path.stat().st_mtime
        except OSError:
            return None


@dataclass
class RunState:
    """What the GUI shows about one run, folded from its events."""

    run_dir: Path
    status: RunStatus = RunStatus.NEW  # NEW until its start event, then RUNNING, then how it ended
    mode: str | None = None
    pid: int | None = None
    pid_started: str | None = None
    step: int = 0
    epoch: int = 0
    total_steps: int | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None
    started: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    saves: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: dict | None = None
    phase: dict | None = None
    offset: int = 0

    def apply(self, events: Iterable[dict]) -> "RunState":
        for event in events:
            handler = getattr(self, "_on_" + str(event.get("kind")), None)
            if handler:
                handler(event)
        return self

    def refresh(self) -> "RunState":
        """Read what was appended since the last call."""
        events, self.offset = read_events(self.run_dir / EVENTS_FILE, self.offset)
        self.apply(events)
        if self.status == RunStatus.RUNNING and not is_process(self.pid, self.pid_started, self.started):
            self.status = RunStatus.FAILED  # the process is gone without writing "end"
            self.error = self.error or {"message": "the trainer process ended unexpectedly",
                                        "hint": f"see {self.run_dir / LOG_FILE}"}
        return self

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def _on_start(self, e: dict) -> None:
        self.status, self.mode, self.pid = RunStatus.RUNNING, e.get("mode"), e.get("pid")
        self.pid_started = e.get("pid_started")
        self.total_steps = e.get("total_steps")
        self.step = e.get("first_step", 0)
        # A resumed run repeats the steps after its state was saved: forget their old points.
        self.losses = [point for point in self.losses if point[0] <= self.step]
        self.started = e.get("time")
        self.error = None

    def _on_progress(self, e: dict) -> None:
        self.phase = e

    def _on_step(self, e: dict) -> None:
        self.phase = None
        self.step, self.epoch = e["step"], e.get("epoch", self.epoch)
        self.seconds_per_step = e.get("seconds_per_step")
        self.eta_seconds = e.get("eta_seconds")
        if e.get("loss") is not None:
            self.losses.append((e["step"], float(e["loss"])))

    def _on_sample(self, e: dict) -> None:
        self.samples.append(e)

    def _on_save(self, e: dict) -> None:
        self.saves.append(e)

    def _on_warning(self, e: dict) -> None:
        self.warnings.append(e.get("message", ""))

    def _on_error(self, e: dict) -> None:
        self.error = e

    def _on_end(self, e: dict) -> None:
        self.status = RunStatus.of_end_event(e.get("status"))
        self.step = e.get("step", self.step)


def load_run(run_dir: str | os.PathLike) -> RunState:
    return RunState(Path(run_dir)).refresh()


def latest_state(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete state folder in a run folder (what Resume continues from)."""
    candidates = []
    for folder in Path(run_dir).glob("*-state"):
        state_file = folder / STATE_FILE
        if state_file.is_file():
            try:
                step = json.loads(state_file.read_text(encoding="utf-8")).get("step", 0)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            candidates.append((step, state_file.stat().st_mtime, folder))
    return max(candidates)[2] if candidates else None
