"""Where a run tells the world how it goes: events.jsonl, TensorBoard, and the terminal.

Only the main process reports.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime
from pathlib import Path

from ..runs import EventWriter


class Reporter:
    def __init__(self, run_dir: Path, *, enabled: bool, logging_dir: str | None,
                 log_prefix: str | None, total_steps: int = 0):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.events = EventWriter(run_dir, enabled=enabled)
        self.tensorboard = None
        self.log_folder = None
        if enabled and logging_dir:
            from torch.utils.tensorboard import SummaryWriter

            stamp = datetime.now().strftime("%Y%m%d%H%M%S")
            self.log_folder = Path(logging_dir) / f"{log_prefix or ''}{stamp}"
            self.tensorboard = SummaryWriter(str(self.log_folder))
        self.total_steps = total_steps
        self._console = _Console(enabled)
        self._seconds_per_step: float | None = None
        self._last_step_time: float | None = None
        self._forwarded: list[tuple[logging.Logger, logging.Handler, int]] = []

    def forward_log(self, name: str) -> None:
        """Messages of one of the trainer's loggers (trainer.models tells what a save keeps or
        drops) become warnings and info lines here, so they reach events.jsonl and the GUI."""
        logger = logging.getLogger(name)
        handler = _ToReporter(self)
        self._forwarded.append((logger, handler, logger.level))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    # -- messages
    def info(self, message: str) -> None:
        if self.enabled:
            self._console.line(message)

    def warning(self, message: str) -> None:
        if self.enabled:
            self._console.line(f"warning: {message}")
            self.events.emit("warning", message=message)

    def error(self, message: str, hint: str | None = None, *, echo: bool = True) -> None:
        """echo=False: the caller prints the message itself (the CLI's one error line)."""
        if self.enabled:
            if echo:
                self._console.line(f"error: {message}" + (f" ({hint})" if hint else ""))
            self.events.emit("error", message=message, hint=hint)

    # -- run lifecycle
    def start(self, **fields) -> None:
        self.total_steps = fields.get("total_steps", self.total_steps)
        self.events.emit("start", **fields)
        self._last_step_time = time.monotonic()

    def progress(self, phase: str, done: int, total: int) -> None:
        if self.enabled:
            self.events.emit("progress", phase=phase, done=done, total=total)
            self._console.progress(phase, done, total)

    def step(self, step: int, epoch: int, loss: float | None, lrs: dict[str, float]) -> None:
        now = time.monotonic()
        if self._last_step_time is not None:
            elapsed = now - self._last_step_time
            # Smoothed, so one slow step (a save, a sample) does not swing the ETA.
            self._seconds_per_step = elapsed if self._seconds_per_step is None else \
                0.9 * self._seconds_per_step + 0.1 * elapsed
        self._last_step_time = now
        if not self.enabled:
            return
        eta = self._seconds_per_step * max(0, self.total_steps - step) \
            if self._seconds_per_step is not None else None
        lr = next(iter(lrs.values()), None)
        self.events.emit("step", step=step, epoch=epoch, loss=loss, lr=lr, lrs=lrs,
                         seconds_per_step=_round(self._seconds_per_step),
                         eta_seconds=_round(eta))
        self._console.step(step, self.total_steps, epoch, loss, lr, eta)
        if self.tensorboard is not None:
            if loss is not None:
                self.tensorboard.add_scalar("loss/current", loss, step)
            for name, value in lrs.items():
                self.tensorboard.add_scalar(f"lr/{name}", value, step)

    def resume_clock(self) -> None:
        """Do not count time spent saving or sampling as step time."""
        self._last_step_time = time.monotonic()

    def sample(self, step: int, epoch: int, path: Path, prompt: str, image=None) -> None:
        if not self.enabled:
            return
        self.events.emit("sample", step=step, epoch=epoch, path=self._relative(path), prompt=prompt)
        if self.tensorboard is not None and image is not None:
            import numpy as np

            self.tensorboard.add_image(f"sample/{path.stem.rsplit('_', 1)[-1]}",
                                       np.asarray(image), step, dataformats="HWC")

    def save(self, step: int, epoch: int, path: Path, what: str) -> None:
        if self.enabled:
            self.events.emit("save", step=step, epoch=epoch, path=self._relative(path), what=what)
            self._console.line(f"saved {what}: {path}")

    def _relative(self, path: Path) -> str:
        """Paths inside the run folder are written relative to it, so a moved folder still works."""
        try:
            return Path(path).resolve().relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:
            return str(path)

    def end(self, status: str, step: int, **fields) -> None:
        if self.enabled:
            self.events.emit("end", status=status, step=step, **fields)
            self._console.line(f"{status} at step {step}")
            if fields.get("vram_peak_reserved"):
                self._console.line(
                    f"peak GPU memory: {fields['vram_peak_allocated'] / 2 ** 30:.2f} GiB "
                    f"allocated, {fields['vram_peak_reserved'] / 2 ** 30:.2f} GiB reserved")
        self.close()

    def close(self) -> None:
        for logger, handler, level in self._forwarded:
            logger.removeHandler(handler)
            logger.setLevel(level)
        self._forwarded = []
        self._console.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        self.events.close()


class _ToReporter(logging.Handler):
    def __init__(self, reporter: Reporter):
        super().__init__(logging.INFO)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.reporter.warning(message)
        else:
            self.reporter.info(message)


def _round(value):
    return None if value is None else round(value, 4)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _Console:
    """A progress bar on a terminal; plain lines every few seconds in a log file."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._last_line = 0.0
        self._bar_open = False

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar_open:
            sys.stderr.write("\n")
            self._bar_open = False
        print(text, file=sys.stderr, flush=True)

    def progress(self, phase: str, done: int, total: int) -> None:
        self._update(f"{phase}: {done}/{total}", final=done >= total)

    def step(self, step, total, epoch, loss, lr, eta) -> None:
        width = 24
        filled = int(width * step / total) if total else 0
        loss_text = f"{loss:.4f}" if loss is not None else "…"
        lr_text = f"{lr:.2e}" if lr is not None else "-"
        text = (f"[{'#' * filled}{'.' * (width - filled)}] step {step}/{total} epoch {epoch} "
                f"loss {loss_text} lr {lr_text} eta {_duration(eta)}")
        self._update(text, final=step >= total)

    def _update(self, text: str, final: bool) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r" + text.ljust(100))
            sys.stderr.flush()
            self._bar_open = True
            if final:
                self.line("")
            return
        now = time.monotonic()
        if final or now - self._last_line >= 5:
            self._last_line = now
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar_open:
            sys.stderr.write("\n")
            self._bar_open = False
