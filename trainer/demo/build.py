"""Rebuild the demo's committed files: the base model, its tokenizer, the DreamBooth dataset.

    python -m trainer demo build-base [--workdir DIR] [--steps N] [--vae_steps N]

1. Draw the world: WORLD_IMAGES pictures with caption files ("a red circle", sometimes only
   "a circle").
2. Train the VAE on reconstruction (trainer/demo/vae.py).
3. Put a random U-Net and text encoder around it and save that as a single-file checkpoint.
4. Train U-Net and text encoder from scratch with this project's trainer (`python -m trainer db`
   on the world, captions from the caption files).
5. Copy the result into trainer/demo/assets and make the DreamBooth dataset with it.

On a 2-core CPU this takes a few hours (see the README for measured times); with a GPU, minutes.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

from . import files, world

WORLD_IMAGES = 4096
WORLD_SEED = 1
SHAPE_ONLY_CAPTIONS = 0.2  # share of captions without the colour ("a circle")
BASE_STEPS = 2000
BASE_BATCH = 32
BASE_LEARNING_RATE = 5e-4
VAE_STEPS = 600
VAE_BATCH = 16
VAE_POOL = 2048  # pictures the VAE learns from (all shapes, rings included)
VAE_POOL_SEED = 1
BASE_SAMPLE_PROMPTS = [f"a {color} {shape} --d {index}" for index, (color, shape) in enumerate(
    (c, s) for s in world.SHAPES for c in world.COLORS)] + ["a circle --d 99"]


def write_world(folder: Path, count: int = WORLD_IMAGES, seed: int = WORLD_SEED) -> Path:
    """The base model's training set: train_data_dir/1_shape/*.png with .txt captions."""
    concept = folder / "1_shape"
    items = world.scenes(seed, count)
    world.write_images(concept, items, caption_extension=None)
    wording = random.Random(seed)
    for index, scene in enumerate(items):
        caption = scene.caption if wording.random() >= SHAPE_ONLY_CAPTIONS else f"a {scene.shape}"
        (concept / f"{index:05d}.txt").write_text(caption + "\n", encoding="utf-8")
    return folder


def train_codec(steps: int, seed: int, log=print):
    from . import model, vae

    pool = vae.image_pool(VAE_POOL_SEED, VAE_POOL)
    codec = vae.train_vae(model.build_vae(seed), pool, steps, VAE_BATCH, seed=seed, log=log)
    codec.register_to_config(scaling_factor=round(vae.latent_scale(codec, pool[:1024]), 4))
    return codec


def save_initial_model(workdir: Path, codec, seed: int) -> Path:
    """The random-weight starting point (with the trained VAE), as a single file + .yaml."""
    from ..models import save_model
    from . import model

    bundle = model.build_random(workdir / "tokenizer", codec, seed)
    return save_model(bundle, workdir / "initial" / "demo-initial.safetensors")


def base_training_args(initial: Path, tokenizer: Path, world_dir: Path, run_dir: Path,
                       steps: int, prompts: Path) -> list[str]:
    return [
        "--pretrained_model_name_or_path", str(initial), "--tokenizer", str(tokenizer),
        "--train_data_dir", str(world_dir), "--caption_extension", ".txt",
        "--caption_dropout_rate", "0.1", "--resolution", "64", "--cache_latents",
        "--vae_batch_size", "32",
        "--train_batch_size", str(BASE_BATCH), "--max_train_steps", str(steps),
        "--learning_rate", str(BASE_LEARNING_RATE), "--lr_scheduler", "cosine",
        "--lr_warmup_steps", "100", "--seed", "0", "--output_dir", str(run_dir),
        "--output_name", "demo-base", "--save_model_as", "safetensors",
        "--save_precision", "fp16", "--save_every_n_steps", "250", "--save_state",
        "--save_last_n_steps_state", "250",
        "--sample_prompts", str(prompts), "--sample_every_n_steps", "250",
    ]


def install_base(trained: Path) -> None:
    """Copy the trained model (and its .yaml) into the assets."""
    files.ASSETS.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".yaml"):
        shutil.copyfile(trained.with_suffix(suffix), files.BASE_MODEL.with_suffix(suffix))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer demo build-base",
        description="Rebuild the demo base model from scratch and the DreamBooth demo dataset.")
    parser.add_argument("--workdir", default="outputs/demo-build",
                        help="folder for the world images, the VAE and the training run")
    parser.add_argument("--steps", type=int, default=BASE_STEPS, help="diffusion training steps")
    parser.add_argument("--vae_steps", type=int, default=VAE_STEPS, help="VAE training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", metavar="STATE",
                        help="continue an interrupted diffusion run from its state folder")
    parser.add_argument("--dataset_only", action="store_true",
                        help="keep the committed base model; only remake the DreamBooth dataset")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    started = time.monotonic()
    if not args.dataset_only:
        build_base(Path(args.workdir), args)
    from .dataset import build_dataset

    build_dataset(log=print)
    print(f"demo assets rebuilt in {(time.monotonic() - started) / 60:.1f} minutes")
    return 0


def build_base(workdir: Path, args) -> None:
    from ..run_cli import run

    workdir.mkdir(parents=True, exist_ok=True)
    initial = workdir / "initial" / "demo-initial.safetensors"
    if not initial.is_file():
        print("drawing the world ...")
        write_world(workdir / "world")
        clock = time.monotonic()
        codec = train_codec(args.vae_steps, args.seed)
        print(f"VAE trained in {(time.monotonic() - clock) / 60:.1f} minutes")
        save_initial_model(workdir, codec, args.seed)
        shutil.copytree(workdir / "tokenizer", files.TOKENIZER, dirs_exist_ok=True)
    prompts = workdir / "base_prompts.txt"
    prompts.write_text("\n".join(BASE_SAMPLE_PROMPTS) + "\n", encoding="utf-8")
    argv = base_training_args(initial, workdir / "tokenizer", workdir / "world",
                              workdir / "base-run", args.steps, prompts)
    if args.resume:
        argv += ["--resume", args.resume]
    clock = time.monotonic()
    if run("db", argv) != 0:
        raise SystemExit("the base model training failed; see the messages above")
    print(f"diffusion model trained in {(time.monotonic() - clock) / 60:.1f} minutes")
    install_base(workdir / "base-run" / "demo-base.safetensors")
