"""The "Demo" presets, read the way the trainer needs them: paths joined to the repository.

Presets are sparse JSON files (only the options they set, plus "description" and "mode"). The
demo presets name files inside the repository relatively ("trainer/demo/assets/…"), so they
work from any working folder once joined to the repository root.
"""

from __future__ import annotations

from ..config import Config, read_file, resolve_relative_paths, typed_values
from .files import PRESETS, REPO


def preset_config(mode: str, **overrides) -> Config:
    """The demo preset of `mode` ("db" or "lora") as a Config, paths resolved, then overrides
    (None removes an option the preset sets)."""
    path = PRESETS[mode]
    values = resolve_relative_paths(typed_values(read_file(path), mode, str(path)), REPO)
    for name, value in overrides.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return Config(mode, values)
