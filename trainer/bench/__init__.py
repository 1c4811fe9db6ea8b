"""`python -m trainer bench`: the trainer's seconds per step next to a bare training loop.

Both train the same weights (the whole U-Net for `--mode db`, a U-Net LoRA for `--mode lora`)
on batches of the same shape from cached latents: the bare loop does only forward, backward,
gradient clipping and the optimizer step; the trainer does everything it normally does (data
plan, per-sample noise, events, stop checks, the loss read-back). The ratio is the trainer's
overhead.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer bench", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", default="db", choices=("db", "lora"),
                        help="db: train the whole U-Net; lora: a U-Net LoRA (default db)")
    parser.add_argument("--model", default="tiny-v1",
                        help="a factory spec (tiny-v1, tiny-v2, sd15, sd21-base, sd21, tiny-xl, "
                             "sdxl) built with random weights, or a model path (default: tiny-v1)")
    parser.add_argument("--tokenizer", help="tokenizer folder or hub id, for a single-file --model "
                                            "(they hold none)")
    parser.add_argument("--resolution", type=int, default=64, help="square image size (default 64)")
    parser.add_argument("--batch", type=int, default=2, help="train_batch_size (default 2)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (default 3)")
    parser.add_argument("--mixed_precision", default="no", choices=("no", "fp16", "bf16"))
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--optimizer_type", default="AdamW")
    parser.add_argument("--network_dim", type=int, default=4, help="LoRA rank (--mode lora)")
    parser.add_argument("--network_alpha", type=float, default=1.0, help="LoRA alpha (--mode lora)")
    parser.add_argument("--only", choices=("trainer", "bare"),
                        help="time only one side (its peak RAM is then that side's alone)")
    parser.add_argument("--workdir", help="folder for the model and images (default: a temp dir)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to this JSON file")
    return parser


def _build_xl(name: str, folder: Path) -> None:
    from ..models import factory, xl_factory

    spec = xl_factory.xl_spec(name)
    tokenizers = None if spec.words else (
        factory.write_tokenizer(folder / "tokenizer", ("sks", "dog"), v2=False),
        factory.write_tokenizer(folder / "tokenizer_2", ("sks", "dog"), v2=True))
    xl_factory.save_xl_diffusers(xl_factory.build_xl(spec, folder, tokenizers=tokenizers), folder)


def _prepare(args, workdir: Path) -> tuple[str, Path]:
    from ..models import factory, xl_factory

    model = args.model
    if model in xl_factory.XL_SPECS:
        folder = workdir / f"model-{model}"
        if not (folder / "model_index.json").exists():
            print(f"building {model} with random weights in {folder}")
            _build_xl(model, folder)
        model = str(folder)
    elif model in factory.SPECS:
        folder = workdir / f"model-{model}"
        if not (folder / "model_index.json").exists():
            print(f"building {model} with random weights in {folder}")
            spec = factory.spec(model)
            # The real architectures come without a vocabulary; the captions here need 2 words
            # and the timed U-Net does not depend on it.
            tokenizer = None if spec.words else factory.write_tokenizer(
                folder / "tokenizer", ("sks", "dog"), spec.v2)
            factory.save_diffusers(factory.build(spec, folder, tokenizer=tokenizer), folder)
        model = str(folder)
    images = workdir / f"images-{args.resolution}" / "10_sks dog"
    if not images.exists():
        import numpy as np
        from PIL import Image

        images.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for index in range(8):
            pixels = rng.integers(0, 255, (args.resolution, args.resolution, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / f"{index}.png")
    return model, images.parent


def trainer_config(args, model: str, images: Path, out: Path):
    """The run the trainer does: the bench's shape, cached latents, no saves or samples."""
    from ..config import Config

    values = {
        "pretrained_model_name_or_path": model, "train_data_dir": str(images),
        "output_dir": str(out), "resolution": str(args.resolution),
        "train_batch_size": args.batch, "max_train_steps": args.warmup + args.steps,
        # The VAE only fills the latent cache before the timed steps; float32 keeps that quick
        # on CPUs, where bf16 convolutions are slow.
        "cache_latents": True, "no_half_vae": True, "seed": 0,
        "mixed_precision": args.mixed_precision,
        "optimizer_type": args.optimizer_type, "learning_rate": 1e-6,
        "gradient_checkpointing": args.gradient_checkpointing, "tokenizer": args.tokenizer}
    if args.mode == "lora":
        values.update(network_dim=args.network_dim, network_alpha=args.network_alpha,
                      network_train_unet_only=True)
    else:
        values["stop_text_encoder_training"] = 0
    return Config(args.mode, values)


def _trainer_seconds(args, model: str, images: Path, workdir: Path) -> tuple[list[float], int | None]:
    import torch

    from ..runs import read_events
    from ..train.loop import train_loop
    from ..train.session import Session

    out = workdir / "run"
    session = Session(trainer_config(args, model, images, out))
    try:
        session.setup()
        # time the loop, not the final model write
        session.target.save = lambda path, **_: path
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        train_loop(session)
        peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
        if session.reporter is not None:
            session.reporter.close()
    finally:  # the next measurement of this process trains in the same folder
        session.release_run_folder()
    times = [e["time"] for e in read_events(out / "events.jsonl")[0] if e["kind"] == "step"]
    del session
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return [b - a for a, b in zip(times[args.warmup - 1:], times[args.warmup:])], peak


def _peak_ram_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(args) -> dict:
    """Bare loop, trainer, bare loop again (or one side with --only); the figures as a dict."""
    from ..train.session import quiet_libraries
    from .bare import bare_seconds

    quiet_libraries()
    trainer: list[float] = []
    bare: list[float] = []
    trainer_peak = bare_peak = None
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(args.workdir or temp)
        workdir.mkdir(parents=True, exist_ok=True)
        model, images = _prepare(args, workdir)
        # Whatever runs first in a fresh process is a few percent slower (allocator, caches):
        # the bare loop runs before and after the trainer, and both runs count.
        if args.only != "trainer":
            bare, bare_peak = bare_seconds(args, model)
            gc.collect()
        if args.only != "bare":
            trainer, trainer_peak = _trainer_seconds(args, model, images, workdir)
            gc.collect()
        if args.only is None:
            bare += bare_seconds(args, model)[0]
    t = statistics.median(trainer) if trainer else None
    b = statistics.median(bare) if bare else None
    return {"mode": args.mode, "model": args.model, "resolution": args.resolution,
            "batch": args.batch, "steps": args.steps, "mixed_precision": args.mixed_precision,
            "trainer_s_per_step": t, "bare_s_per_step": b,
            "ratio": t / b if t is not None and b is not None else None,
            "trainer_mean": statistics.mean(trainer) if trainer else None,
            "bare_mean": statistics.mean(bare) if bare else None,
            "trainer_peak_bytes": trainer_peak, "bare_peak_bytes": bare_peak,
            "peak_ram_bytes": _peak_ram_bytes()}


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    result = measure(args)
    what = "U-Net LoRA" if args.mode == "lora" else "U-Net"
    print(f"{what}, model {args.model}, {args.resolution} px, batch {args.batch}, "
          f"{args.steps} timed steps, mixed_precision {args.mixed_precision}")
    for side in ("trainer", "bare"):
        if result[f"{side}_s_per_step"] is not None:
            label = "trainer  " if side == "trainer" else "bare loop"
            print(f"{label} {result[f'{side}_s_per_step']:.4f} s/step "
                  f"(median; mean {result[f'{side}_mean']:.4f})")
    if result["ratio"] is not None:
        print(f"ratio     {result['ratio']:.3f}  (trainer / bare loop)")
    if result["peak_ram_bytes"]:
        print(f"peak RAM  {result['peak_ram_bytes'] / 2**30:.2f} GiB (the whole process)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0
