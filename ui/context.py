"""What every tab needs: the workspace, the run queue, and page-load hooks."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .runner import Runner
from .tensorboard import TensorBoards
from .workspace import Workspace


@dataclass
class AppContext:
    workspace: Workspace
    runner: Runner
    tensorboards: TensorBoards = field(default_factory=TensorBoards)
    loads: list[tuple[Callable, list, list]] = field(default_factory=list)
    start_preset: str | None = None  # the preset the Train form starts with

    def on_load(self, fn: Callable, inputs: list, outputs: list) -> None:
        """Run fn when a page (re)loads, e.g. to propose a fresh run folder."""
        self.loads.append((fn, inputs, outputs))

    def temp_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="trainer-gui-"))
