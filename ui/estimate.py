"""The memory estimate for the Check button: `python -m trainer <mode> … --estimate_memory` in a
subprocess, so the GUI process never loads torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from trainer.config import Config, to_argv

from .runner import trainer_env

PREFIX = "estimated peak GPU memory:"


def estimate_argv(cfg: Config) -> list[str]:
    cfg = cfg.copy()
    cfg.estimate_memory, cfg.debug_dataset = True, False
    return [sys.executable, "-m", "trainer", cfg.mode, *to_argv(cfg)]


def estimate_line(cfg: Config, cwd: Path, timeout: float = 300) -> tuple[str, bool]:
    """(the estimate's one line, True) or (why there is none, False)."""
    try:
        done = subprocess.run(estimate_argv(cfg), cwd=str(cwd), env=trainer_env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              encoding="utf-8", errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"The memory estimate took longer than {timeout:.0f} s and was stopped.", False
    for line in done.stdout.splitlines():
        if line.startswith(PREFIX):
            return "Estimated peak GPU memory: " + line[len(PREFIX):].strip(), True
    errors = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    reason = errors[-1][len("error:"):].strip() if errors else \
        (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"No memory estimate: {reason}", False
