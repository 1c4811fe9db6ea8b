"""The shape of one option, and how the option list is read off a dataclass that declares them.

Pure standard library: the GUI and `--help` import this without torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Union

MODES = ("db", "lora")
MODE_TITLES = {"db": "DreamBooth / fine-tune", "lora": "LoRA"}
DB = ("db",)
LORA = ("lora",)


class Group(Enum):
    """Where an option is shown; the order here is the order in --help, the GUI and files."""

    MODEL = "Model"
    FOLDERS = "Folders"
    DATASET = "Dataset"
    TRAINING = "Training"
    OPTIMIZER = "Optimizer & schedule"
    MEMORY = "Memory & precision"
    SAVING = "Saving"
    SAMPLES = "Samples"
    LOGGING = "Logging"
    NETWORK = "Network"
    LAUNCH = "Launch"


GROUPS = tuple(group.value for group in Group)

# The value types an option may have; list means a list of strings.
OPTION_TYPES = (str, int, float, bool, list)


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
    # A dataset subset (a [[datasets.subsets]] table or its dataset / [general]) may set its
    # own value; the option's value is what subsets without one use.
    subset: bool = False
    # Validation refuses a value naming nothing on disk. For path="dir"/"file" the text says
    # what to give instead; for path="path" a value that does not look like a path is taken
    # as a hub id.
    must_exist: bool = False
    expects: str | None = None

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


_DECLARATION = "option"  # the key of a field's metadata that holds its declaration


def opt(default: Any, group: Group, help: str, **facts: Any) -> Any:
    """Declare one option as a dataclass field: its default, group, help and the other facts
    of `Option` (modes, choices, minimum, ...). Name and type come from the field itself."""
    declaration = dict(default=default, group=group.value, help=help, **facts)
    return dataclasses.field(metadata={_DECLARATION: declaration})


def options_of(cls: type) -> list[Option]:
    """The `Option` of every field of the dataclass `cls` declared with `opt`, in order."""
    hints = typing.get_type_hints(cls)
    options = []
    for f in dataclasses.fields(cls):
        if _DECLARATION not in f.metadata:
            continue
        value_type, nullable = _value_type(hints[f.name])
        option = Option(name=f.name, type=value_type, **f.metadata[_DECLARATION])
        if option.nullable != nullable:  # the annotation must say what the default says
            raise TypeError(f"option {f.name}: annotation {hints[f.name]} does not match "
                            f"default {option.default!r}")
        _check_declaration(option)
        options.append(option)
    return options


def _value_type(annotation: Any) -> tuple[type, bool]:
    """`int | None` -> (int, True); `list[str]` -> (list, False)."""
    nullable = False
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        if len(members) != 1:
            raise TypeError(f"an option has one value type, not {annotation}")
        annotation = members[0]
    base = typing.get_origin(annotation) or annotation
    if base not in OPTION_TYPES:
        raise TypeError(f"unsupported option type {annotation}")
    return base, nullable


def _check_declaration(option: Option) -> None:
    if option.must_exist and (option.path is None or (option.path != "path"
                                                      and not option.expects)):
        raise TypeError(f"option {option.name}: must_exist needs path= (and expects= for a "
                        "file or folder)")
