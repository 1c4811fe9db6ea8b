"""Which regularization images are still missing, and at which size each one is drawn.

Image i is always `<i:05d>.png` with the seed derived from (seed, i) and a size fixed by i, so
a stopped run continues where it was and a rerun with a larger count adds only the new ones.
Pure arithmetic and file listing: no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..data.buckets import Bucketer, Sizing
from ..data.imageinfo import UnreadableImage, is_image_name, read_header


@dataclass(frozen=True)
class Job:
    index: int
    seed: int
    size: tuple[int, int]  # (width, height)

    @property
    def name(self) -> str:
        return f"{self.index:05d}.png"


def image_seed(seed: int, index: int) -> int:
    """The seed of image `index`: fixed by (seed, index), within 32 bits like UI seeds."""
    from ..train.seeding import derive_seed

    return derive_seed(seed, "reg", index) % 2 ** 32


def training_sizes(folder: Path) -> list[tuple[int, int]]:
    """(width, height) of every readable image under `folder`, sorted."""
    sizes = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if is_image_name(name):
                try:
                    header = read_header(Path(root) / name)
                except UnreadableImage:
                    continue
                sizes.append((header.width, header.height))
    return sorted(sizes)


def size_of_each(count: int, sizing: Sizing, train_sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The size of image i: the resolution, or with buckets the buckets of the training images
    in their proportions (image i takes the bucket at the same fraction of the sorted list)."""
    if not sizing.enable_bucket or not train_sizes:
        return [sizing.resolution] * count
    bucketer = Bucketer(sizing)
    buckets = sorted(bucketer.place(size).bucket for size in train_sizes)
    return [buckets[i * len(buckets) // count] for i in range(count)]


def missing_jobs(out: Path, count: int, seed: int, sizes: list[tuple[int, int]],
                 caption_extension: str = ".caption") -> list[Job]:
    """The images of 0..count-1 that are not in `out` yet (a complete image has its caption)."""
    jobs = []
    for index in range(count):
        job = Job(index, image_seed(seed, index), sizes[index])
        image = out / job.name
        if not (image.is_file() and image.with_suffix(caption_extension).is_file()):
            jobs.append(job)
    return jobs


def batches(jobs: list[Job], batch_size: int) -> list[list[Job]]:
    """Jobs grouped by size (one pipeline call draws one size), in index order within a size."""
    by_size: dict[tuple[int, int], list[Job]] = {}
    for job in jobs:
        by_size.setdefault(job.size, []).append(job)
    groups = []
    for size_jobs in by_size.values():
        groups += [size_jobs[i:i + batch_size] for i in range(0, len(size_jobs), batch_size)]
    return sorted(groups, key=lambda group: group[0].index)
