"""`python -m trainer demo [--mode db|lora] [--output_dir DIR]` and `... demo build-base`."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

# Overrides that remove the preset's sample pictures (None removes an option the preset sets).
NO_TRAINING_SAMPLES = {"sample_prompts": None, "sample_every_n_steps": None,
                       "sample_at_first": None}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer demo",
        description="Train the bundled demo (a tiny base model and a DreamBooth subject) on this "
                    "machine, with and without regularization images, and print how well the "
                    "subject was learned and the class kept. 'python -m trainer demo build-base' "
                    "rebuilds the demo model and dataset from scratch.")
    parser.add_argument("--mode", choices=("db", "lora"), default="db",
                        help="DreamBooth (db, default) or LoRA")
    parser.add_argument("--output_dir", help="run folder (default: outputs/demo-<mode>-<time>)")
    parser.add_argument("--no_compare", action="store_true",
                        help="skip the second run without regularization images")
    parser.add_argument("--samples", type=int, default=32,
                        help="pictures drawn per prompt to measure (default 32)")
    parser.add_argument("--max_train_steps", type=int, help="override the preset's steps")
    parser.add_argument("--no_samples", action="store_true",
                        help="draw no sample pictures while training (the measurement draws its "
                             "own; saves time)")
    return parser


def main(argv: list[str]) -> int:
    if argv and argv[0] == "build-base":
        from .build import main as build_main

        return build_main(argv[1:])
    args = _parser().parse_args(argv)
    from .files import REPO
    from .run import run_demo, table

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    output_dir = Path(args.output_dir or REPO / "outputs" / f"demo-{args.mode}-{stamp}")
    overrides = {"max_train_steps": args.max_train_steps} if args.max_train_steps else {}
    if args.no_samples:
        overrides.update(NO_TRAINING_SAMPLES)
    results = run_demo(args.mode, output_dir, compare=not args.no_compare,
                       samples=args.samples, **overrides)
    print()
    print(table(results))
    print(f"\nscores written to {output_dir / 'demo_scores.json'}, pictures to {results['grid']}")
    return 0
