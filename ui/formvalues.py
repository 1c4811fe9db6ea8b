"""Between the form's widget values and a Config: no gradio here, so it is easy to test.

Numbers with a fraction are text fields (so 1e-6 stays 1e-6), required whole numbers are number
fields, an unset optional value is an empty text field or the "(default)" entry of a drop-down.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from typing import Any, Mapping

from trainer.config import (OPTIONS, Config, Option, Problem, coerce, normalize, options_for,
                            to_argv, validate)
from trainer.errors import UserError

DEFAULT_CHOICE = "(default)"


def widget_kind(option: Option) -> str:
    if option.type is bool:
        return "checkbox"
    if option.choices:
        return "dropdown"
    if option.type is int and not option.nullable:
        return "number"  # a number field cannot be empty, so optional numbers are text fields
    if option.path:
        return "path"
    return "text"


def dropdown_choices(option: Option) -> list[str]:
    choices = [str(c) for c in option.choices or ()]
    return [DEFAULT_CHOICE, *choices] if option.nullable else choices


def to_widget(option: Option, value: Any) -> Any:
    """The value a widget shows for an option value."""
    kind = widget_kind(option)
    if kind == "checkbox":
        return bool(value)
    if kind == "dropdown":
        return DEFAULT_CHOICE if value is None else str(value)
    if kind == "number":
        return value
    if value is None:
        return ""
    if option.type is list:
        return shlex.join(value)
    if option.type is float:
        return format_float(value)
    return str(value)


def format_float(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def from_widget(option: Option, raw: Any) -> Any:
    """Typed value of a widget's value; raises UserError naming the option."""
    if raw == DEFAULT_CHOICE and option.choices:
        raw = None
    if isinstance(raw, float) and option.type is int and raw.is_integer():
        raw = int(raw)
    return coerce(option, raw)


def config_from_widgets(mode: str, raw: Mapping[str, Any]) -> tuple[Config, list[Problem]]:
    """A Config of `mode` from widget values, and one Problem per value that could not be read."""
    values, problems = {}, []
    for option in options_for(mode):
        if option.name not in raw:
            continue
        try:
            values[option.name] = from_widget(option, raw[option.name])
        except UserError as err:
            problems.append(Problem(option.name, err.message))
    return Config(mode, values), problems


def check(mode: str, raw: Mapping[str, Any], *, check_paths: bool = True
          ) -> tuple[Config, list[Problem]]:
    """What the Check button shows: unreadable values first, then validate()'s findings; and
    the config as it will be trained (normalized), which Start writes and Print command shows.
    Without check_paths the paths may lie outside the allowed folders: the base model is then
    not read (an unset resolution stays unset, and the trainer picks the model's own)."""
    cfg, problems = config_from_widgets(mode, raw)
    return (normalize(cfg, read_model=check_paths),
            problems + validate(cfg, check_paths=check_paths))


def widget_values(cfg: Config) -> dict[str, Any]:
    return {o.name: to_widget(o, cfg.get(o.name)) for o in OPTIONS}


def launch_argv(cfg: Config, python: str = sys.executable) -> list[str]:
    """The interpreter and arguments up to the trainer's own flags. With num_processes > 1 the
    trainer relaunches itself through accelerate and supervises the processes (one coordinated
    stop), so the GUI starts it the same way in every case."""
    return [python, "-m", "trainer", cfg.mode]


def command_line(cfg: Config, windows: bool | None = None) -> str:
    """The command a user can paste into a terminal (in the project folder, venv active)."""
    argv = launch_argv(cfg, python="python") + to_argv(cfg)
    windows = sys.platform == "win32" if windows is None else windows
    return subprocess.list2cmdline(argv) if windows else shlex.join(argv)
