"""Where the GUI keeps things, and which folders the page may browse."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILTIN_PRESETS = REPO / "presets"
DEMO_ASSETS = REPO / "trainer" / "demo" / "assets"  # the built-in demo preset's files


@dataclass
class Workspace:
    """home: the working directory; outputs: where new runs go; roots: the only folders the page
    may read, list, preview or write (outputs, datasets, --root folders, the bundled demo and
    presets). The working directory itself is not one: it may hold keys and secrets."""

    home: Path
    outputs: Path
    user_presets: Path
    datasets: Path  # where the folder builder and the regularization images put new datasets
    roots: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls, home: str | os.PathLike | None = None, outputs: str | None = None,
               roots: list[str] | None = None, user_presets: str | None = None) -> "Workspace":
        home_path = Path(home or os.getcwd()).resolve()
        out = _under(home_path, outputs or "outputs")
        presets = _under(home_path, user_presets or "user_presets")
        datasets = home_path / "datasets"
        allowed = [out, datasets, *(_under(home_path, r) for r in roots or []), DEMO_ASSETS,
                   BUILTIN_PRESETS]
        unique = list(dict.fromkeys(allowed))  # nested ones stay: each is a browser entry point
        return cls(home_path, out, presets, datasets, unique)

    def resolve(self, text: str) -> Path:
        """A path typed by the user: relative ones are relative to the working directory."""
        return _under(self.home, text.strip())

    def allowed(self, path: str | os.PathLike) -> bool:
        """Inside a root once symlinks are resolved, and no dotfile or dot-folder below it."""
        return allowed_in(path, self.roots)

    def propose_run_dir(self, name: str | None, now: datetime | None = None,
                        avoid: tuple[str, ...] = ()) -> Path:
        """outputs/<name>-<date-time>, never an existing folder nor one in `avoid`."""
        stem = safe_name(name or "run")
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        candidate = self.outputs / f"{stem}-{stamp}"
        counter = 2
        while candidate.exists() or str(candidate) in avoid:
            candidate = self.outputs / f"{stem}-{stamp}-{counter}"
            counter += 1
        return candidate


def safe_name(text: str) -> str:
    """Something usable as a folder name on every system (keeps letters of any script)."""
    cleaned = re.sub(r'[\\/:*?"<>|\s]+', "-", text.strip()).strip("-.")
    return cleaned[:60] or "run"


def _under(base: Path, text: str | os.PathLike) -> Path:
    path = Path(text).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def allowed_in(path: str | os.PathLike, roots: list[Path]) -> bool:
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return False
    for root in roots:
        if resolved.is_relative_to(root):
            below = resolved.relative_to(root).parts
            if not any(part.startswith(".") for part in below):
                return True
    return False
