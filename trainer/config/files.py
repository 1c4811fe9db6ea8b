"""Load and save configs and presets as JSON or TOML (keys are option names)."""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Any, Mapping

from .. import atomic
from .options import BY_NAME, OPTIONS, Config
from .schema import MODE_TITLES, MODES
from ..errors import UserError
from .migrations import current_version, migrate
from .values import coerce

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Keys a file may hold besides option names.
META_KEYS = ("config_version", "mode", "description")


def suggest(name: str, candidates=None) -> str:
    """' (did you mean --learning_rate?)' or ''."""
    pool = list(candidates) if candidates is not None else list(BY_NAME)
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def read_file(path: str | Path) -> dict[str, Any]:
    """Parse a .json or .toml file into a flat dict, with one-line errors naming the file.
    A file written by an older version of this program is migrated to the current one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"options file {path} does not exist; give a .toml or .json file")
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text.decode("utf-8"))
        else:
            data = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise UserError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object of option names and values")
    return migrate(data, str(path))


def resolve_relative_paths(values: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """Relative values of path options joined to `root` (presets shipped with the program name
    their files relative to the repository, so they work from any working folder)."""
    resolved = dict(values)
    for name, value in values.items():
        option = BY_NAME.get(name)
        if option is not None and option.path and isinstance(value, str) and value.strip() \
                and not Path(value).expanduser().is_absolute():
            resolved[name] = str(Path(root) / value)
    return resolved


def typed_values(raw: Mapping[str, Any], mode: str, source: str = "config") -> dict[str, Any]:
    """Check names and coerce values of a flat {option: value} mapping for `mode`."""
    values = {}
    for key, value in raw.items():
        if key in META_KEYS:
            continue
        option = BY_NAME.get(key)
        if option is None:
            raise UserError(f"{source}: unknown option {key!r}{suggest(key)}")
        if not option.used_in(mode):
            users = " and ".join(MODE_TITLES[m] for m in option.modes)
            raise UserError(f"{source}: only used by {users} training, not {MODE_TITLES[mode]}",
                            option=key)
        values[key] = coerce(option, value)
    return values


def file_mode(raw: Mapping[str, Any], source: str) -> str | None:
    mode = raw.get("mode")
    if mode is not None and mode not in MODES:
        raise UserError(f"{source}: mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


def load_config(path: str | Path, mode: str | None = None) -> Config:
    """A Config from a file: defaults of the mode, then the file's values."""
    raw = read_file(path)
    mode = mode or file_mode(raw, str(path)) or "db"
    return Config(mode, typed_values(raw, mode, str(path)))


def config_dict(cfg: Config, *, only_changed: bool = False, description: str | None = None,
                keep_none: bool = True) -> dict[str, Any]:
    """The dict written to files: meta keys first, then options in schema order."""
    data: dict[str, Any] = {"config_version": current_version(), "mode": cfg.mode}
    if description:
        data["description"] = description
    values = cfg.changed() if only_changed else cfg.to_dict()
    for option in OPTIONS:
        if not option.used_in(cfg.mode) or option.name not in values:
            continue
        value = values[option.name]
        if value is None and not keep_none:
            continue
        data[option.name] = value
    return data


def dumps(cfg: Config, fmt: str, **kw) -> str:
    if fmt == "toml":
        # TOML has no null: an unset option is simply absent and reads back as unset.
        return toml_dumps(config_dict(cfg, keep_none=False, **kw))
    return json.dumps(config_dict(cfg, **kw), indent=2, ensure_ascii=False) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are a subset of TOML basic-string escapes; JSON leaves DEL raw,
        # which TOML forbids.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def toml_dumps(data: Mapping[str, Any]) -> str:
    """Flat key = value TOML (all our configs are flat)."""
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in data.items())


def save_config(cfg: Config, path: str | Path, **kw) -> Path:
    path = Path(path)
    fmt = "toml" if path.suffix.lower() == ".toml" else "json"
    atomic.write_text(path, dumps(cfg, fmt, **kw))
    return path
