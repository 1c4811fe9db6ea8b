"""Command-line parsing with the sd-scripts flag names, generated from the option table."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from .files import file_mode, read_file, suggest, typed_values
from .options import OPTIONS, Config
from .schema import GROUPS, MODE_TITLES, Option
from ..errors import UserError

DESCRIPTIONS = {
    "db": "DreamBooth / fine-tune of the U-Net and text encoder (like sd-scripts train_db.py).",
    "lora": "Train a LoRA network (like sd-scripts train_network.py); writes a kohya-format file.",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line instead of a usage dump."""

    def error(self, message: str):  # noqa: D401 - argparse API
        if message.startswith("unrecognized arguments:"):
            flags = [w for w in message.split(":", 1)[1].split() if w.startswith("--")]
            hints = [suggest(f, [o for o in self._option_string_actions]) for f in flags]
            message += "".join(h for h in hints if h)
        raise UserError(f"{message} (see {self.prog} --help)")


def _describe(option: Option, mode: str) -> str:
    default = option.default_for(mode)
    parts = [option.help]
    if option.choices:
        parts.append("choices: " + ", ".join(str(c) for c in option.choices))
    if default not in (None, False, [], ""):
        parts.append(f"default: {default}")
    return " | ".join(parts).replace("%", "%%")


def _metavar(option: Option) -> str | None:
    if option.type is bool:
        return "BOOL"
    if option.choices:
        return "{" + ",".join(str(c) for c in option.choices) + "}"
    if option.path:
        return option.path.upper() if option.path != "path" else "PATH"
    return {int: "N", float: "X", list: "KEY=VALUE", str: "TEXT"}[option.type]


def build_parser(mode: str) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=f"python -m trainer {mode}",
        usage=f"python -m trainer {mode} [options]",
        description=DESCRIPTIONS[mode],
        allow_abbrev=False,  # --v2 must never be read as a prefix of another flag
        argument_default=argparse.SUPPRESS,  # so we know which flags were given
    )
    parser.add_argument(
        "--config", "--config_file", dest="config", metavar="FILE",
        help="Read options from a .toml or .json file first; flags given here override it.")
    parser.add_argument(
        "--output_config", metavar="FILE",
        help="Write the resolved options to this .toml/.json file and exit without training.")
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for option in OPTIONS:
        if not option.used_in(mode):
            continue
        kwargs: dict[str, Any] = dict(dest=option.name, metavar=_metavar(option),
                                      help=_describe(option, mode))
        if option.type is bool:
            kwargs.update(nargs="?", const="true")  # --flag, or --flag=false
        elif option.type is list:
            kwargs.update(nargs="*")
        groups[option.group].add_argument(option.flag, **kwargs)
    return parser


def parse_args(mode: str, argv: Sequence[str]) -> tuple[Config, str | None]:
    """Defaults < --config file < flags. Returns the Config and the --output_config path."""
    args = vars(build_parser(mode).parse_args(list(argv)))
    config_path = args.pop("config", None)
    output_config = args.pop("output_config", None)
    cfg = Config(mode)
    if config_path:
        raw = read_file(config_path)
        file_mode_ = file_mode(raw, config_path)
        if file_mode_ and file_mode_ != mode:
            raise UserError(f"{config_path} is a {MODE_TITLES[file_mode_]} config, not "
                            f"{MODE_TITLES[mode]}; run 'python -m trainer {file_mode_}'")
        cfg.update(typed_values(raw, mode, config_path))
    cfg.update(typed_values(args, mode, "command line"))
    return cfg, output_config


def print_help(mode: str, file=None) -> None:
    build_parser(mode).print_help(file or sys.stdout)


def to_argv(cfg: Config, *, only_changed: bool = True) -> list[str]:
    """The flags that reproduce `cfg` on the command line (used by "Print command")."""
    values = cfg.changed() if only_changed else cfg.to_dict()
    argv: list[str] = []
    for option in OPTIONS:
        if option.name not in values or not option.used_in(cfg.mode):
            continue
        value = values[option.name]
        if value is None:
            continue
        if option.type is bool:
            argv.append(option.flag if value else f"{option.flag}=false")
        elif option.type is list:
            argv += [option.flag, *value]
        else:
            argv.append(f"{option.flag}={value}")
    return argv
