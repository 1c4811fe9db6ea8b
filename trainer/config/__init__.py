"""The option schema: one declaration per option, used by the CLI, the GUI, presets and runs.

Imports nothing heavy (no torch, diffusers or gradio).
"""

from .cli import build_parser, parse_args, to_argv
from .files import (CONFIG_VERSION, config_dict, dumps, load_config, read_file,
                    resolve_relative_paths, save_config, typed_values)
from .options import BY_NAME, OPTIONS, SUBSET_OPTIONS, Config, options_for
from .schema import GROUPS, MODE_TITLES, MODES, Group, Option
from .validate import Problem, errors, parse_resolution, validate
from .values import ConfigError, coerce

__all__ = [
    "BY_NAME", "CONFIG_VERSION", "GROUPS", "MODES", "MODE_TITLES", "OPTIONS", "SUBSET_OPTIONS",
    "Config", "ConfigError", "Group", "Option", "Problem", "build_parser", "coerce", "config_dict", "dumps",
    "errors", "load_config", "options_for", "parse_args", "parse_resolution", "read_file",
    "resolve_relative_paths", "save_config", "to_argv", "typed_values", "validate",
]
