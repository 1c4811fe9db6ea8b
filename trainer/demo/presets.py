"""The "Demo" presets, read the way the trainer needs them: relative paths from the repo root.

Presets are sparse JSON files (only the options they set, plus "description" and "mode"). The
demo presets name files inside the repository with relative paths such as
"trainer/demo/assets/demo-base.safetensors"; whoever loads them joins such paths to the
repository root, so they work from any working folder.
"""

from __future__ import annotations

from pathlib import Path

from ..config import BY_NAME, Config, read_file, typed_values
from .files import PRESETS, REPO


def resolve_paths(values: dict, root: Path = REPO) -> dict:
    """Relative values of path options -> absolute paths under `root`."""
    resolved = dict(values)
    for name, value in values.items():
        option = BY_NAME.get(name)
        if option is not None and option.path and isinstance(value, str) and value \
                and not Path(value).is_absolute():
            resolved[name] = str(root / value)
    return resolved


def preset_config(mode: str, **overrides) -> Config:
    """The demo preset of `mode` ("db" or "lora") as a Config, paths resolved, then overrides
    (None removes an option the preset sets)."""
    path = PRESETS[mode]
    values = resolve_paths(typed_values(read_file(path), mode, str(path)))
    for name, value in overrides.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return Config(mode, values)
