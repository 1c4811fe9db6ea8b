"""`python -m trainer bench`: the trainer's seconds per step next to a bare training loop.

Both train the same U-Net on batches of the same shape from cached latents: the bare loop does
only forward, backward, gradient clipping and the optimizer step; the trainer does everything
it normally does (data plan, per-sample noise, events, stop checks, the loss read-back). The
ratio is the trainer's overhead.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-v1",
                        help="a factory spec (tiny-v1, tiny-v2, sd15, sd21-base, sd21) built with "
                             "random weights, or a model path (default: tiny-v1)")
    parser.add_argument("--resolution", type=int, default=64, help="square image size (default 64)")
    parser.add_argument("--batch", type=int, default=2, help="train_batch_size (default 2)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (default 3)")
    parser.add_argument("--mixed_precision", default="no", choices=("no", "fp16", "bf16"))
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--optimizer_type", default="AdamW")
    parser.add_argument("--workdir", help="folder for the model and images (default: a temp dir)")
    return parser


def _prepare(args, workdir: Path) -> tuple[str, Path]:
    from .models import factory

    model = args.model
    if model in factory.SPECS:
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


def _trainer_seconds(args, model: str, images: Path, workdir: Path) -> list[float]:
    from .config import Config
    from .runs import read_events
    from .train.loop import train_loop
    from .train.session import Session

    out = workdir / "run"
    cfg = Config("db", {
        "pretrained_model_name_or_path": model, "train_data_dir": str(images),
        "output_dir": str(out), "resolution": str(args.resolution),
        "train_batch_size": args.batch, "max_train_steps": args.warmup + args.steps,
        "cache_latents": True, "stop_text_encoder_training": 0, "seed": 0,
        "mixed_precision": args.mixed_precision, "optimizer_type": args.optimizer_type,
        "gradient_checkpointing": args.gradient_checkpointing, "learning_rate": 1e-6})
    session = Session(cfg)
    session.setup()
    session.target.save = lambda path, **_: path  # time the loop, not the final model write
    train_loop(session)
    session.reporter.close()
    times = [e["time"] for e in read_events(out / "events.jsonl")[0] if e["kind"] == "step"]
    del session
    gc.collect()
    return [b - a for a, b in zip(times[args.warmup - 1:], times[args.warmup:])]


def _bare_seconds(args, model: str) -> list[float]:
    import torch
    from diffusers import DDPMScheduler

    from .models import load_model
    from .train.optim import build_optimizer
    from .train.precision import DTYPES

    bundle = load_model(model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    unet = bundle.unet.to(device).train()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    dtype = DTYPES[args.mixed_precision]
    scheduler = DDPMScheduler.from_config(bundle.noise_scheduler_config)
    side = args.resolution // 8
    latents = torch.randn(args.batch, 4, side, side, device=device)
    with torch.no_grad():
        ids = bundle.tokenizer(["sks dog"] * args.batch, padding="max_length", max_length=77,
                               return_tensors="pt").input_ids
        hidden = bundle.text_encoder.to(device)(ids.to(device))[0]
    optimizer = build_optimizer(args.optimizer_type, [{"params": list(unet.parameters())}],
                                1e-6, [])
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    seconds = []
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        noise = torch.randn_like(latents)
        steps = torch.randint(0, 1000, (args.batch,), device=device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            prediction = unet(scheduler.add_noise(latents, noise, steps), steps, hidden).sample
        loss = torch.nn.functional.mse_loss(prediction.float(), noise)
        (scaler.scale(loss) if scaler else loss).backward()
        # The trainer clips gradients by default (max_grad_norm 1.0, as sd-scripts does): that
        # is training work, not overhead, so the bare loop does it too.
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= args.warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from .train.session import quiet_libraries

    quiet_libraries()
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(args.workdir or temp)
        workdir.mkdir(parents=True, exist_ok=True)
        model, images = _prepare(args, workdir)
        # Whatever runs first in a fresh process is a few percent slower (allocator, caches):
        # the bare loop runs before and after the trainer, and both runs count.
        bare = _bare_seconds(args, model)
        gc.collect()
        trainer = _trainer_seconds(args, model, images, workdir)
        gc.collect()
        bare += _bare_seconds(args, model)
    t, b = statistics.median(trainer), statistics.median(bare)
    print(f"model {args.model}, {args.resolution} px, batch {args.batch}, "
          f"{args.steps} timed steps, mixed_precision {args.mixed_precision}")
    print(f"trainer   {t:.4f} s/step (median; mean {statistics.mean(trainer):.4f})")
    print(f"bare loop {b:.4f} s/step (median; mean {statistics.mean(bare):.4f})")
    print(f"ratio     {t / b:.3f}  (trainer / bare loop)")
    return 0
