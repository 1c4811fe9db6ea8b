"""The shape of one option, and the Config object built from the option table.

Pure standard library: the GUI and `--help` import this without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

MODES = ("db", "lora")
MODE_TITLES = {"db": "DreamBooth / fine-tune", "lora": "LoRA"}

# Order of the groups in --help, in the GUI's accordions and in written config files.
GROUPS = (
    "Model",
    "Folders",
    "Dataset",
    "Training",
    "Optimizer & schedule",
    "Memory & precision",
    "Saving",
    "Samples",
    "Logging",
    "Network",
    "Launch",
)


@dataclass(frozen=True)
class Option:
    """One training option, declared once and used by the CLI, GUI, files and validation."""

    name: str
    type: type  # str, int, float, bool or list (a list of strings)
    default: Any
    help: str
    group: str
    modes: tuple[str, ...] = MODES
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    # "dir", "file" or "path" (either) for options that name something on disk.
    path: str | None = None
    # Per-mode defaults, e.g. a LoRA learning rate that differs from DreamBooth's.
    mode_defaults: Mapping[str, Any] = field(default_factory=dict)
    # Shown in the GUI only under "advanced"; still on the CLI and in files.
    advanced: bool = False

    def default_for(self, mode: str) -> Any:
        value = self.mode_defaults.get(mode, self.default)
        return list(value) if isinstance(value, list) else value

    @property
    def nullable(self) -> bool:
        """An option may be unset (None) only when its default is unset."""
        return self.default is None or any(v is None for v in self.mode_defaults.values())

    @property
    def flag(self) -> str:
        return "--" + self.name

    def used_in(self, mode: str) -> bool:
        return mode in self.modes


class Config:
    """Resolved option values for one mode, with attribute access (cfg.learning_rate)."""

    __slots__ = ("mode", "_values")

    def __init__(self, mode: str, values: Mapping[str, Any] | None = None):
        from .options import OPTIONS  # late: options.py imports this module

        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "_values", {o.name: o.default_for(mode) for o in OPTIONS})
        if values:
            self.update(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no option named {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._values:
            raise AttributeError(f"no option named {name!r}")
        self._values[name] = value

    def update(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._values.items()}

    def changed(self) -> dict[str, Any]:
        """Only the values that differ from this mode's defaults (what a preset stores)."""
        from .options import OPTIONS

        return {
            o.name: self._values[o.name]
            for o in OPTIONS
            if self._values[o.name] != o.default_for(self.mode)
        }

    def copy(self) -> "Config":
        return Config(self.mode, self.to_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and other.mode == self.mode and other._values == self._values

    def __repr__(self) -> str:
        return f"Config({self.mode!r}, {self.changed()!r})"


def options_for(mode: str, options: Iterable[Option] | None = None) -> list[Option]:
    from .options import OPTIONS

    return [o for o in (options or OPTIONS) if o.used_in(mode)]
