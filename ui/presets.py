"""Presets: built-in ones under presets/**.json, the user's under the user preset folder.

A preset is a sparse config: only the options it sets, plus "mode" and "description". Loading
one sets exactly those options. A kohya_ss GUI JSON is recognised and translated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import Config, read_file, resolve_relative_paths, save_config, typed_values
from trainer.config.files import file_mode
from trainer.config.kohya_import import import_kohya, looks_like_kohya
from trainer.errors import UserError

from .workspace import BUILTIN_PRESETS, REPO, Workspace, safe_name

USER_PREFIX = "user: "


@dataclass
class Preset:
    mode: str | None  # None: the preset fits the form's current mode
    values: dict[str, Any]
    description: str = ""
    notes: list[str] = field(default_factory=list)
    source: str = ""


def list_presets(workspace: Workspace) -> dict[str, Path]:
    """Label -> file, built-ins first (by path), then the user's presets."""
    found: dict[str, Path] = {}
    if BUILTIN_PRESETS.is_dir():
        for path in sorted(BUILTIN_PRESETS.rglob("*.json")):
            found[path.relative_to(BUILTIN_PRESETS).with_suffix("").as_posix()] = path
    if workspace.user_presets.is_dir():
        for path in sorted(workspace.user_presets.rglob("*.json")):
            found[USER_PREFIX + path.relative_to(workspace.user_presets).with_suffix("").as_posix()] = path
    return found


def is_builtin(path: Path) -> bool:
    return BUILTIN_PRESETS.resolve() in Path(path).resolve().parents


def read_preset(path: str | Path, current_mode: str) -> Preset:
    """Options set by a preset/config file (ours or kohya_ss's); UserError on a bad file."""
    path = Path(path)
    raw = read_file(path)
    name = path.name
    if looks_like_kohya(raw):
        imported = import_kohya(raw)
        return Preset(imported.mode, imported.values, "imported from a kohya_ss GUI config",
                      imported.notes, name)
    mode = file_mode(raw, name)
    values = typed_values(raw, mode or current_mode, name)
    if is_builtin(path):  # shipped presets name the files shipped beside them relatively
        values = resolve_relative_paths(values, REPO)
    description = raw.get("description") or ""
    return Preset(mode, values, str(description), [], name)


def start_config(workspace: Workspace, label: str | None) -> tuple[Config, str | None]:
    """The form's first values: the preset `label` applied to the defaults (the label back), or
    the plain defaults (None) when there is no such preset."""
    path = list_presets(workspace).get(label or "")
    if path is None:
        return Config("db"), None
    try:
        return apply_preset(Config("db"), read_preset(path, "db")), label
    except UserError:
        return Config("db"), None


def apply_preset(cfg: Config, preset: Preset) -> Config:
    """The form's config with the preset's options set (and its mode, when it has one)."""
    mode = preset.mode or cfg.mode
    if mode == cfg.mode:
        result = cfg.copy()
    else:
        # Switching mode: keep what both modes share, take the new mode's defaults for the rest.
        result = Config(mode)
        for name, value in cfg.to_dict().items():
            if value != Config(cfg.mode).get(name):
                result.update({name: value})
    result.update(preset.values)
    return result


def user_preset_path(workspace: Workspace, name: str) -> Path:
    name = name.strip().removeprefix(USER_PREFIX).removesuffix(".json")
    if not name:
        raise UserError("give the preset a name")
    return workspace.user_presets / f"{safe_name(name)}.json"


def save_preset(cfg: Config, path: Path, description: str | None = None) -> Path:
    """Write only what differs from the defaults, so the preset stays meaningful as they change."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_config(cfg, path, only_changed=True, description=description or None)
