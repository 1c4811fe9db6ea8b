"""Walking the allowed folders for the page's file picker (never above a root)."""

from __future__ import annotations

from pathlib import Path

from .workspace import Workspace

MAX_ENTRIES = 400


class FolderBrowser:
    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        # Every root, existing or not (./datasets appears with the first built dataset);
        # the first existing one is shown first.
        self.roots = sorted(workspace.roots, key=lambda r: not r.is_dir())

    def allowed(self, path: str | Path) -> bool:
        return self.workspace.allowed(path)

    def entries(self, folder: Path) -> list[tuple[str, str]]:
        """(label, path) of a folder's children: folders first (marked with /), then files."""
        if not self.allowed(folder):
            return []
        try:
            children = sorted(Path(folder).iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))
        except OSError:
            return []
        shown = [c for c in children if not c.name.startswith(".")][:MAX_ENTRIES]
        return [(c.name + ("/" if c.is_dir() else ""), str(c)) for c in shown]

    def enter(self, folder: str | Path, selected: str | None) -> Path | None:
        """The folder to show next: `selected` when it is an allowed folder, else `folder`."""
        candidate = Path(selected or folder)
        if candidate.is_dir() and self.allowed(candidate):
            return candidate.resolve()
        return None

    def parent(self, folder: str | Path) -> Path:
        folder = Path(folder).resolve()
        if folder in self.roots or not self.allowed(folder.parent):
            return folder
        return folder.parent
