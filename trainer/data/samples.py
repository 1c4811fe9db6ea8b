"""Turn one planned sample into pixels: resize, crop, flip, hue shift (PIL + numpy, no torch).

Every random choice comes from the sample's own generators (seed, epoch, position), so the
same sample looks the same after a resume and on any number of GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from .concepts import Item, Subset
from .imageinfo import open_rgb
from .plan import SampleRef, sample_rng

HUE_SHIFT = 0.045  # of the color wheel (about 16 degrees), a small shift that keeps skin skin


@dataclass(frozen=True)
class Choices:
    flip: bool
    crop: tuple[int, int]  # (left, top) inside the resized image
    hue: float  # fraction of the color wheel, 0 for none


def choices(item: Item, subset: Subset, ref: SampleRef, seed: int, epoch: int) -> Choices:
    aug = subset.augment
    flip = aug.flip_aug and sample_rng(seed, epoch, ref.pos, "flip").random() < 0.5
    crop = item.placement.crop
    if aug.random_crop:
        rng = sample_rng(seed, epoch, ref.pos, "crop")
        margin_x, margin_y = item.placement.margin
        crop = (rng.randint(0, margin_x), rng.randint(0, margin_y))
    hue = 0.0
    if aug.color_aug:
        hue = sample_rng(seed, epoch, ref.pos, "color").uniform(-HUE_SHIFT, HUE_SHIFT)
    return Choices(flip, crop, hue)


def _upright(item: Item):
    """The decoded RGB image, upright (JPEGs decode at a reduced scale when shrunk anyway)."""
    placement = item.placement
    shrinking = placement.resized[0] < placement.size[0]
    return open_rgb(item.path, item.header.orientation,
                    draft_size=placement.resized if shrinking else None)


def shift_hue(image, hue: float):
    import numpy as np
    from PIL import Image

    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(hue * 256)) % 256
    return Image.frombytes("HSV", image.size, hsv.tobytes()).convert("RGB")


def render(item: Item, pick: Choices):
    """The training image of a sample, exactly the bucket's size.

    Only the kept part of the picture is resized (not the whole picture, then cropped): a very
    thin image, enlarged to cover its bucket, would otherwise grow to gigabytes.
    """
    from PIL import Image

    image = _upright(item)
    placement = item.placement
    box = placement.crop_box_in_original(pick.crop, rounded=False)
    if image.size != placement.size:  # a JPEG decoded at a reduced scale
        fx, fy = image.size[0] / placement.size[0], image.size[1] / placement.size[1]
        box = [box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy]
    image = image.resize(placement.bucket, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    if pick.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if pick.hue:
        image = shift_hue(image, pick.hue)
    return image


def to_tensor(images):
    """PIL images of one size -> float tensor [B, 3, H, W] in [-1, 1]."""
    import numpy as np
    import torch

    array = np.stack([np.asarray(image, dtype=np.uint8) for image in images])
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2).float()
    return tensor.div_(127.5).sub_(1.0).contiguous()
