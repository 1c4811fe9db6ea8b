"""The `db` and `lora` commands: parse and validate options, then train (or report)."""

from __future__ import annotations

import sys

from .config import errors, normalize, parse_args, save_config, validate


def _warn(problems) -> None:
    for problem in problems:
        if problem.level == "warning":
            print(f"warning: {problem}", file=sys.stderr)


def _needed(cfg, problems):
    """Leave out what a report does not need: the dataset report loads no model (and without
    output_dir only prints); the memory estimate reads no images and writes nothing."""
    if cfg.estimate_memory:
        unset = ("output_dir", "train_data_dir")
        return [p for p in problems if not (p.option in unset and not cfg.get(p.option))]
    if cfg.debug_dataset:
        return [p for p in problems if p.option != "pretrained_model_name_or_path"
                and not (p.option == "output_dir" and not cfg.output_dir)]
    return problems


def _print_estimate(cfg, *, detailed: bool) -> None:
    from .memory import estimate_vram

    estimate = estimate_vram(cfg)
    print(f"estimated peak GPU memory: {estimate.summary()}", flush=True)
    if detailed:
        print(estimate.breakdown())


def _estimate_line(cfg) -> None:
    """The dataset report's one-line estimate; a model that cannot be read does not stop it."""
    from .errors import UserError

    try:
        _print_estimate(cfg, detailed=False)
    except UserError as err:
        print(f"estimated peak GPU memory: unknown ({err.message})", flush=True)


def _check_dataset_early(cfg) -> None:
    """An unusable dataset is reported before the heavy imports (tens of seconds) start.
    The training session indexes again and reports its warnings itself."""
    from .data import DatasetError, build_dataset

    found: list[str] = []
    try:
        build_dataset(cfg, warn=found.append)
    except DatasetError:
        for message in found:
            print(f"warning: {message}", file=sys.stderr)
        raise


def run(mode: str, argv: list[str]) -> int:
    cfg, output_config = parse_args(mode, argv)
    problems = _needed(cfg, validate(cfg))
    cfg = normalize(cfg)
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
    if cfg.estimate_memory:
        _print_estimate(cfg, detailed=True)
        return 0
    if cfg.debug_dataset:
        from .data import run_debug_dataset

        if cfg.pretrained_model_name_or_path:
            _estimate_line(cfg)
        return run_debug_dataset(cfg)
    _check_dataset_early(cfg)
    from .launch import needs_launch, relaunch

    if needs_launch(cfg):
        return relaunch(cfg, mode, argv)
    from .train import train  # heavy imports (torch, diffusers) only from here on

    return train(cfg)


def main_db(argv: list[str]) -> int:
    return run("db", argv)


def main_lora(argv: list[str]) -> int:
    return run("lora", argv)
