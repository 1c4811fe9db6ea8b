"""The option schema: one declaration per option, used by the CLI, the GUI, presets and runs.

Imports nothing heavy (no torch, diffusers or gradio).
"""

from .cli import build_parser, parse_args, to_argv
from .files import (config_dict, dumps, load_config, read_file, resolve_relative_paths,
                    save_config, typed_values)
from .migrations import current_version, register_migration, rename_option
from .options import BY_NAME, OPTIONS, SUBSET_OPTIONS, Config, options_for
from .schema import GROUPS, MODE_TITLES, MODES, Group, Option
from .validate import Problem, errors, normalize, parse_resolution, validate
from .values import coerce

__all__ = [
    "BY_NAME", "GROUPS", "MODES", "MODE_TITLES", "OPTIONS", "SUBSET_OPTIONS", "Config", "Group",
    "Option", "Problem", "build_parser", "coerce", "config_dict", "current_version", "dumps",
    "errors", "load_config", "normalize", "options_for", "parse_args", "parse_resolution",
    "read_file", "register_migration", "rename_option", "resolve_relative_paths", "save_config",
    "to_argv", "typed_values", "validate",
]
