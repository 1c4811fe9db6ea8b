"""How long indexing a large dataset takes (image sizes come from headers, nothing is decoded).

    python bench/bench_dataset_index.py [--images 10000] [--folder DIR]

Generates the images once (real png, jpg and webp files of common photo and web sizes, JPEGs
with EXIF, half of the images with a caption file) in ten '<repeats>_<identifier> <class>'
folders, then times build_dataset with aspect-ratio bucketing, and the epoch plan. The files
were just written, so they are in the OS file cache: this measures the indexing work itself.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Sizes people really train on: phone and camera photos, web images, generated images.
SIZES = [(4032, 3024), (3024, 4032), (3000, 2000), (2000, 3000), (1920, 1080), (1080, 1920),
         (2048, 1365), (1536, 1024), (1024, 1536), (1024, 1024), (768, 768), (640, 960),
         (512, 512), (832, 1216), (1216, 832), (2560, 1440)]
FORMATS = [(".jpg", "JPEG"), (".png", "PNG"), (".webp", "WEBP"), (".jpeg", "JPEG")]


def _templates(folder: Path) -> list[Path]:
    """A few dozen real files of those sizes (JPEGs with EXIF, some rotated)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    paths = []
    for index, size in enumerate(SIZES * 3):
        ext, fmt = FORMATS[index % len(FORMATS)]
        image = Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
        ImageDraw.Draw(image).ellipse([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2],
                                      fill=(250, 250, 250))
        path = folder / f"t{index:03d}{ext}"
        extra = {}
        if fmt == "JPEG":
            exif = Image.Exif()
            exif[0x0112] = 6 if index % 5 == 0 else 1
            exif[0x010F] = "Camera maker"
            extra = {"exif": exif.tobytes(), "quality": 85}
        image.save(path, fmt, **extra)
        paths.append(path)
    return paths


def generate(root: Path, count: int, folders: int = 10) -> Path:
    import shutil

    train = root / "img"
    marker = train / f".generated-{count}"
    if marker.exists():
        return train
    templates = _templates(root / "templates")
    for index in range(count):
        folder = train / f"{1 + index % 5}_sks{index % folders} dog"
        folder.mkdir(parents=True, exist_ok=True)
        template = templates[index % len(templates)]
        shutil.copyfile(template, folder / f"{index:05d}{template.suffix}")
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
