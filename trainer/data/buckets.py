"""Training sizes: one fixed size, or aspect-ratio buckets, and where each image is cropped.

Pure arithmetic (no image decoding), so the GUI can preview buckets for thousands of images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Sizing:
    """How images of one dataset are sized (the resolution and bucket options)."""

    resolution: tuple[int, int]  # (width, height)
    enable_bucket: bool = False
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False

    @property
    def max_area(self) -> int:
        return self.resolution[0] * self.resolution[1]


@dataclass(frozen=True)
class Placement:
    """Where an image of `size` lands: resized to `resized`, then cropped to `bucket`.

    `crop` is the (left, top) offset of the bucket inside the resized image for a center crop;
    random crops choose another offset within the same margins.
    """

    size: tuple[int, int]
    bucket: tuple[int, int]
    resized: tuple[int, int]
    crop: tuple[int, int]

    @property
    def scale(self) -> float:
        return self.resized[0] / self.size[0]

    @property
    def margin(self) -> tuple[int, int]:
        return self.resized[0] - self.bucket[0], self.resized[1] - self.bucket[1]

    @property
    def cropped_fraction(self) -> float:
        return 1.0 - (self.bucket[0] * self.bucket[1]) / (self.resized[0] * self.resized[1])

    def crop_box_in_original(self, offset: tuple[int, int] | None = None,
                             rounded: bool = True) -> list[float]:
        """[left, top, right, bottom] of the kept area in the original image's pixels."""
        left, top = offset or self.crop
        sx, sy = self.resized[0] / self.size[0], self.resized[1] / self.size[1]
        box = [left / sx, top / sy, (left + self.bucket[0]) / sx, (top + self.bucket[1]) / sy]
        return [round(edge, 1) for edge in box] if rounded else box


class TooSmall(ValueError):
    """The image cannot fill even the smallest bucket without enlarging (bucket_no_upscale)."""


def bucket_sizes(sizing: Sizing) -> list[tuple[int, int]]:
    """Candidate buckets: sides in steps between min and max, area at most the resolution's."""
    step, low, high = sizing.bucket_reso_steps, sizing.min_bucket_reso, sizing.max_bucket_reso
    area = sizing.max_area
    square = min(high, int(math.isqrt(area) // step) * step)
    sizes = {(square, square)} if square >= low else set()
    width = low
    while width <= high:
        height = min(high, (area // width) // step * step)
        if height >= low:
            sizes.add((width, height))
            sizes.add((height, width))
        width += step
    return sorted(sizes)


def cover(size: tuple[int, int], bucket: tuple[int, int]) -> Placement:
    """Resize so the image covers the bucket (keeping its aspect ratio), center the crop."""
    width, height = size
    scale = max(bucket[0] / width, bucket[1] / height)
    resized = (max(bucket[0], round(width * scale)), max(bucket[1], round(height * scale)))
    crop = ((resized[0] - bucket[0]) // 2, (resized[1] - bucket[1]) // 2)
    return Placement(size, bucket, resized, crop)


def _no_upscale(size: tuple[int, int], sizing: Sizing) -> Placement:
    """Shrink only when needed (area or longest side too large), then crop to whole steps."""
    width, height = size
    step = sizing.bucket_reso_steps
    scale = min(1.0, math.sqrt(sizing.max_area / (width * height)),
                sizing.max_bucket_reso / width, sizing.max_bucket_reso / height)
    resized = (max(1, round(width * scale)), max(1, round(height * scale)))
    bucket = (resized[0] - resized[0] % step, resized[1] - resized[1] % step)
    if bucket[0] < step or bucket[1] < step:
        raise TooSmall(f"is {width}x{height}, smaller than one bucket step ({step} px) on a side")
    crop = ((resized[0] - bucket[0]) // 2, (resized[1] - bucket[1]) // 2)
    return Placement(size, bucket, resized, crop)


class Bucketer:
    """Places images for one Sizing; candidate buckets are computed once."""

    def __init__(self, sizing: Sizing):
        self.sizing = sizing
        self.candidates = bucket_sizes(sizing) if sizing.enable_bucket else [sizing.resolution]
        self._ratios = [w / h for w, h in self.candidates]

    def place(self, size: tuple[int, int]) -> Placement:
        if not self.sizing.enable_bucket:
            return cover(size, self.sizing.resolution)
        if self.sizing.bucket_no_upscale:
            return _no_upscale(size, self.sizing)
        if size in self.candidates:
            return Placement(size, size, size, (0, 0))
        ratio = size[0] / size[1]
        # closest aspect ratio, compared on a log scale so 2:1 and 1:2 are equally far from 1:1
        best = min(range(len(self.candidates)),
                   key=lambda i: (abs(math.log(self._ratios[i] / ratio)), -i))
        return cover(size, self.candidates[best])
