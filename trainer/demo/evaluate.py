"""Measure what a demo picture shows: which shape, which colour (exact measurements, no model).

The background is the median colour of the picture's border; the shape is the largest connected
group of pixels that differ clearly from it. Its colour is the nearest of the world's colours,
and its shape is the template (circle, square, triangle, ring), fitted to its bounding box, that
overlaps it best. A picture without a clear shape, or whose best template overlaps poorly,
or whose background or shape is not one flat colour, measures as shape None, which counts as
wrong for every prompt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .world import COLORS, paint

FOREGROUND_DISTANCE = 90.0  # RGB distance from the background that counts as "shape"
MIN_AREA = 60  # pixels; smaller specks are not a shape
MIN_OVERLAP = 0.7  # intersection over union with the best template
MAX_COLOR_DISTANCE = 100.0  # farther from every world colour: colour None
MAX_SPREAD = 50.0  # median distance of pixels from their median colour: above it, not "plain"
TEMPLATES = ("circle", "square", "triangle", "ring")


@dataclass(frozen=True)
class Measurement:
    shape: str | None
    color: str | None
    overlap: float  # IoU with the template of `shape` (0 when nothing was found)
    area: int  # pixels of the shape

    def matches(self, shape: str | None = None, color: str | None = None) -> bool:
        return (self.shape is not None and (shape is None or self.shape == shape)
                and (color is None or self.color == color))


def _largest_component(mask):
    """The largest 4-connected region of a boolean array, as a boolean array."""
    import numpy as np

    height, width = mask.shape
    seen = np.zeros_like(mask)
    best: list[tuple[int, int]] = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        region, queue = [], deque([start])
        while queue:
            y, x = queue.popleft()
            region.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(region) > len(best):
            best = region
    out = np.zeros_like(mask)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def template(shape: str, box: tuple[int, int, int, int], size: tuple[int, int]):
    """Boolean mask of the ideal `shape` filling box (left, top, right, bottom), exclusive."""
    import numpy as np
    from PIL import Image, ImageDraw

    scale = 4
    image = Image.new("L", (size[0] * scale, size[1] * scale), 0)
    paint(ImageDraw.Draw(image), shape, tuple(v * scale for v in box), 255, 0)
    # about the edge coverage that FOREGROUND_DISTANCE lets through
    return np.asarray(image.resize(size, Image.Resampling.BOX)) >= 100


def measure(image) -> Measurement:
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width, _ = pixels.shape
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                             pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    distance = np.linalg.norm(pixels - background, axis=2)
    shape_mask = _largest_component(distance > FOREGROUND_DISTANCE)
    area = int(shape_mask.sum())
    if area < MIN_AREA or _spread(border) > MAX_SPREAD:
        return Measurement(None, None, 0.0, area)
    inside = pixels[shape_mask]
    color = _nearest_color(np.median(inside, axis=0))
    if _spread(inside) > MAX_SPREAD:
        return Measurement(None, color, 0.0, area)
    ys, xs = np.nonzero(shape_mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    overlaps = {}
    for name in TEMPLATES:
        ideal = template(name, box, (width, height))
        union = np.logical_or(ideal, shape_mask).sum()
        overlaps[name] = float(np.logical_and(ideal, shape_mask).sum() / union) if union else 0.0
    best = max(overlaps, key=lambda name: overlaps[name])
    if overlaps[best] < MIN_OVERLAP:
        return Measurement(None, color, overlaps[best], area)
    return Measurement(best, color, overlaps[best], area)


def _spread(rgb) -> float:
    import numpy as np

    return float(np.median(np.linalg.norm(rgb - np.median(rgb, axis=0), axis=1)))


def _nearest_color(rgb) -> str | None:
    import numpy as np

    name, distance = min(((n, float(np.linalg.norm(rgb - np.array(c)))) for n, c in COLORS.items()),
                         key=lambda pair: pair[1])
    return name if distance <= MAX_COLOR_DISTANCE else None


def fraction(images, shape: str | None = None, color: str | None = None) -> float:
    """The fraction of images that show `shape` (any if None) in `color` (any if None)."""
    images = list(images)
    if not images:
        return 0.0
    return sum(measure(image).matches(shape, color) for image in images) / len(images)
