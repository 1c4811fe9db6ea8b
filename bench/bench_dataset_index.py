"""How long indexing a large dataset takes (image sizes come from headers, nothing is decoded).

    python bench/bench_dataset_index.py [--images 10000] [--folder DIR]

Generates the images once (png, jpg and webp of many sizes and aspect ratios, half of them with
a caption file) in ten '<repeats>_<identifier> <class>' folders, then times build_dataset with
aspect-ratio bucketing, and the epoch plan.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ASPECTS = [(1, 1), (4, 3), (3, 4), (16, 9), (9, 16), (3, 2), (2, 3)]
FORMATS = [(".jpg", "JPEG"), (".png", "PNG"), (".webp", "WEBP")]


def generate(root: Path, count: int, folders: int = 10) -> Path:
    from PIL import Image

    train = root / "img"
    marker = train / f".generated-{count}"
    if marker.exists():
        return train
    rng = random.Random(0)
    for index in range(count):
        folder = train / f"{1 + index % 5}_sks{index % folders} dog"
        folder.mkdir(parents=True, exist_ok=True)
        aw, ah = rng.choice(ASPECTS)
        unit = rng.randint(24, 96)
        ext, fmt = FORMATS[index % len(FORMATS)]
        color = tuple(rng.randint(0, 255) for _ in range(3))
        Image.new("RGB", (aw * unit, ah * unit), color).save(folder / f"{index:05d}{ext}", fmt)
        if index % 2 == 0:
            (folder / f"{index:05d}.caption").write_text(f"sks dog, tag{index % 50}, photo",
                                                        encoding="utf-8")
    marker.touch()
    return train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--folder", help="where to generate (kept for reuse); default: a temp dir")
    args = parser.parse_args()
    root = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="bench-index-"))

    started = time.perf_counter()
    train = generate(root, args.images)
    print(f"images ready in {train} ({time.perf_counter() - started:.1f} s to generate)")

    from trainer.config import Config
    from trainer.data import build_dataset

    cfg = Config("db", {"train_data_dir": str(train), "resolution": "512", "enable_bucket": True,
                        "seed": 1, "shuffle_caption": True})
    warnings: list[str] = []
    started = time.perf_counter()
    ds = build_dataset(cfg, warn=warnings.append)
    index_s = time.perf_counter() - started
    started = time.perf_counter()
    batches = ds.epoch_batches(0, 8)
    plan_s = time.perf_counter() - started
    print(f"indexed {len(ds.items)} images in {index_s:.2f} s "
          f"({index_s / max(1, len(ds.items)) * 1e3:.3f} ms per image); "
          f"{len(ds.bucket_counts())} buckets, {len(ds)} samples per epoch, {len(warnings)} warnings")
    print(f"epoch plan: {len(batches)} batches of 8 in {plan_s * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
