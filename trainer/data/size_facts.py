"""SDXL's size conditioning of one sample: original size, crop offset, target size.

The numbers follow sd-scripts (and through it Stability's preprocessing), so a model trained
here is conditioned like one trained there:
- original size: the image file's (upright) width and height;
- crop offset: where the picture would sit if it were fitted *inside* the bucket, keeping its
  aspect ratio (left/top margins, floored), not the pixel offset of the actual crop; a random
  crop does not change it;
- a horizontal flip mirrors the offset: left becomes target width - (left + fitted width);
- target size: the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SizeFacts:
    original: tuple[int, int]  # (width, height) of the image file
    crop_left_top: tuple[int, int]
    target: tuple[int, int]  # (width, height) of the bucket

    def time_ids(self) -> list[int]:
        """[original_h, original_w, crop_top, crop_left, target_h, target_w]."""
        return [self.original[1], self.original[0], self.crop_left_top[1],
                self.crop_left_top[0], self.target[1], self.target[0]]


def fitted_box(bucket: tuple[int, int], size: tuple[int, int]) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of an image of `size` fitted inside `bucket`, centered."""
    bucket_w, bucket_h = bucket
    image_ratio = size[0] / size[1]
    if bucket_w / bucket_h > image_ratio:  # the bucket is wider: the heights match
        width, height = bucket_h * image_ratio, float(bucket_h)
    else:
        width, height = float(bucket_w), bucket_w / image_ratio
    left, top = (bucket_w - width) // 2, (bucket_h - height) // 2
    return left, top, left + width, top + height


def size_facts(size: tuple[int, int], bucket: tuple[int, int], flip: bool) -> SizeFacts:
    left, top, right, _ = fitted_box(bucket, size)
    if flip:
        left = bucket[0] - right
    return SizeFacts((int(size[0]), int(size[1])), (int(left), int(top)),
                     (int(bucket[0]), int(bucket[1])))
