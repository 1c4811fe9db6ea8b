"""`python -m trainer reg-generate`: draw the class images for prior preservation.

    python -m trainer reg-generate --pretrained_model_name_or_path M --class_prompt "a dog" \
        --count 200 --out reg/1_dog [--train_data_dir train --enable_bucket]

Every image is written with its `.caption` (the class prompt) and the prompt and settings in
the PNG, as AUTOMATIC1111 writes them. Stopping and rerunning continues where it was.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import UserError
from ..sample_prompts import LIMITS

MAX_COUNT = 100_000


def _parser() -> argparse.ArgumentParser:
    from ..train.sampling import SAMPLERS

    parser = argparse.ArgumentParser(
        prog="python -m trainer reg-generate",
        description="Draw regularization (class) images with the base model, for DreamBooth's "
                    "prior preservation. Rerunning continues where it stopped.")
    parser.add_argument("--pretrained_model_name_or_path", required=True,
                        help="the base model you will train (file, diffusers folder or hub id)")
    parser.add_argument("--class_prompt", required=True, help='the class, e.g. "a photo of a dog"')
    parser.add_argument("--count", type=int, required=True, help="how many images the folder holds "
                        "when done (those already there count)")
    parser.add_argument("--out", required=True, help="the folder, e.g. reg/1_dog")
    parser.add_argument("--negative_prompt", default="", help="what the images should not show")
    parser.add_argument("--resolution", default="512", help="N or W,H (default 512)")
    parser.add_argument("--train_data_dir",
                        help="with --enable_bucket: draw in the aspect ratios of these images")
    parser.add_argument("--enable_bucket", action="store_true",
                        help="sizes from aspect-ratio buckets (see --train_data_dir)")
    parser.add_argument("--min_bucket_reso", type=int, default=256)
    parser.add_argument("--max_bucket_reso", type=int, default=1024)
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default="euler_a",
                        help="default euler_a")
    parser.add_argument("--steps", type=int, default=30, help="sampling steps (default 30)")
    parser.add_argument("--scale", type=float, default=7.5, help="CFG scale (default 7.5)")
    parser.add_argument("--seed", type=int, default=0, help="image i is drawn from (seed, i)")
    parser.add_argument("--batch_size", type=int, default=4,
                        help="images per pipeline call (more fills a large GPU)")
    parser.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="fp16",
                        help="on a GPU (default fp16); the CPU always uses float32")
    parser.add_argument("--caption_extension", default=".caption")
    parser.add_argument("--v2", action="store_true", help="the model is SD 2.x (normally detected)")
    parser.add_argument("--v_parameterization", action="store_true",
                        help="a v-prediction model (768-v)")
    parser.add_argument("--tokenizer", help="tokenizer folder, for single files that need one")
    parser.add_argument("--vae", help="another VAE (file, diffusers folder or hub id)")
    return parser


def _in_range(flag: str, value, low, high, hint: str) -> None:
    if not (low <= value <= high):
        raise UserError(f"--{flag} {value} is out of range; allowed {low:g} to {high:g}", hint)


def _check(args) -> tuple[int, int]:
    from ..config import parse_resolution

    try:
        resolution = parse_resolution(args.resolution)
    except ValueError as err:
        raise UserError(f"--resolution: {err}", "e.g. 512 or 768,512") from None
    for side in resolution:
        _in_range("resolution", side, 64, 4096, "Stable Diffusion draws 512 to 1024")
        if side % 8:
            raise UserError(f"--resolution {args.resolution}: sides must be multiples of 8",
                            "e.g. 512 or 768,512")
    _in_range("count", args.count, 1, MAX_COUNT, "e.g. 200")
    _in_range("batch_size", args.batch_size, 1, 256, "e.g. 4")
    _in_range("steps", args.steps, LIMITS["s"].low, LIMITS["s"].high, "e.g. 30")
    _in_range("scale", args.scale, LIMITS["l"].low, LIMITS["l"].high, "e.g. 7.5")
    _in_range("seed", args.seed, 0, 2 ** 63 - 1, "e.g. 0")
    if not args.class_prompt.strip():
        raise UserError("--class_prompt is empty", 'give the class, e.g. "a photo of a dog"')
    if args.train_data_dir and not Path(args.train_data_dir).is_dir():
        raise UserError(f"--train_data_dir {args.train_data_dir} is not a folder",
                        "give the folder of training images, or leave it out")
    if not args.caption_extension.startswith(".") or args.caption_extension.lower() in (
            ".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        raise UserError(f"--caption_extension {args.caption_extension} is not a caption "
                        "extension", "e.g. .caption or .txt")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file", "give a folder, e.g. reg/1_dog")
    return resolution


def _sizes(args, resolution):
    from ..data.buckets import Sizing
    from .plan import size_of_each, training_sizes

    sizing = Sizing(resolution, enable_bucket=args.enable_bucket,
                    min_bucket_reso=args.min_bucket_reso, max_bucket_reso=args.max_bucket_reso)
    train = training_sizes(Path(args.train_data_dir)) if args.train_data_dir else []
    return size_of_each(args.count, sizing, train), len(train)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    resolution = _check(args)
    from .plan import batches, missing_jobs

    out = Path(args.out)
    sizes, train_images = _sizes(args, resolution)
    jobs = missing_jobs(out, args.count, args.seed, sizes, args.caption_extension)
    done = args.count - len(jobs)
    if jobs:
        print(f"{done} of {args.count} images are there; drawing {len(jobs)}", flush=True)
        from .draw import Drawer

        drawer = Drawer(args)
        for group in batches(jobs, args.batch_size):
            drawer.draw(group, out)
            done += len(group)
            print(f"[reg-generate] {done}/{args.count} images", flush=True)
    else:
        print(f"all {args.count} images are there already")
    print(f"saved {args.count} images in {out}")
    if train_images:
        print(f"balance: {train_images} training images; with {args.count} regularization images "
              f"at repeats 1, training repeats {max(1, math.ceil(args.count / train_images))} "
              "use every one of them in each epoch")
    return 0
