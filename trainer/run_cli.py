"""The `db` and `lora` commands: parse and validate options, then train (or report)."""

from __future__ import annotations

import sys

from .config import errors, parse_args, save_config, validate


def _warn(problems) -> None:
    for problem in problems:
        if problem.level == "warning":
            print(f"warning: {problem}", file=sys.stderr)


def run(mode: str, argv: list[str]) -> int:
    cfg, output_config = parse_args(mode, argv)
    problems = validate(cfg)
    if cfg.debug_dataset:  # the report loads no model; without output_dir it only prints
        problems = [p for p in problems if p.option != "pretrained_model_name_or_path"
                    and not (p.option == "output_dir" and not cfg.output_dir)]
    _warn(problems)
    bad = errors(problems)
    if bad:
        for problem in bad:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if output_config:
        save_config(cfg, output_config)
        print(f"wrote {output_config}")
        return 0
    if cfg.debug_dataset:
        from .data import run_debug_dataset

        return run_debug_dataset(cfg)
    from .launch import needs_launch, relaunch

    if needs_launch(cfg):
        return relaunch(cfg, mode, argv)
    from .train import train  # heavy imports (torch, diffusers) only from here on

    return train(cfg)


def main_db(argv: list[str]) -> int:
    return run("db", argv)


def main_lora(argv: list[str]) -> int:
    return run("lora", argv)
