"""The demo world: one flat shape of one colour on a plain background, e.g. "a red circle".

Every picture is a pure function of a seed, so the world, the DreamBooth subject and the test
data are the same on every machine. Shapes are drawn 4x larger and scaled down, which gives them
smooth (anti-aliased) edges like the images a diffusion model produces.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

SIZE = 64  # image side in pixels
BACKGROUND = (244, 242, 236)
COLORS = {
    "red": (214, 40, 40),
    "green": (38, 160, 70),
    "blue": (40, 84, 214),
    "yellow": (236, 196, 28),
}
SHAPES = ("circle", "square", "triangle")  # what the base model learns
RING_WIDTH = 0.42  # a ring's line width as a fraction of its outer radius
MIN_SIDE, MAX_SIDE = 20, 44  # the shape's bounding box side in pixels
_OVERSAMPLE = 4


@dataclass(frozen=True)
class Scene:
    shape: str  # one of SHAPES, or "ring" (the DreamBooth subject's shape)
    color: str  # a key of COLORS
    side: int  # bounding-box side in pixels
    x: int  # left edge
    y: int  # top edge

    @property
    def caption(self) -> str:
        return f"a {self.color} {self.shape}"


def random_scene(rng: random.Random, shapes=SHAPES, colors=tuple(COLORS)) -> Scene:
    side = rng.randint(MIN_SIDE, MAX_SIDE)
    return Scene(shape=rng.choice(shapes), color=rng.choice(colors), side=side,
                 x=rng.randint(2, SIZE - side - 2), y=rng.randint(2, SIZE - side - 2))


def scenes(seed: int, count: int, shapes=SHAPES, colors=tuple(COLORS)) -> list[Scene]:
    rng = random.Random(seed)
    return [random_scene(rng, shapes, colors) for _ in range(count)]


def paint(pen, shape: str, box: Sequence[float], fill, hole) -> None:
    """Draw `shape` filling box (left, top, right, bottom) with PIL's ImageDraw `pen`."""
    left, top, right, bottom = box
    if shape == "square":
        pen.polygon([(left, top), (right, top), (right, bottom), (left, bottom)], fill=fill)
    elif shape == "triangle":
        pen.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=fill)
    elif shape in ("circle", "ring"):
        pen.ellipse(box, fill=fill)
        if shape == "ring":
            inset_x, inset_y = (right - left) / 2 * RING_WIDTH, (bottom - top) / 2 * RING_WIDTH
            pen.ellipse((left + inset_x, top + inset_y, right - inset_x, bottom - inset_y),
                        fill=hole)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def draw(scene: Scene):
    """The scene as a SIZE x SIZE RGB PIL image."""
    from PIL import Image, ImageDraw

    big = SIZE * _OVERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUND)
    box = tuple(v * _OVERSAMPLE for v in (scene.x, scene.y, scene.x + scene.side,
                                          scene.y + scene.side))
    paint(ImageDraw.Draw(image), scene.shape, box, COLORS[scene.color], BACKGROUND)
    return image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def write_images(folder: Path, items: list[Scene], caption_extension: str | None = ".txt",
                 prefix: str = "") -> list[Path]:
    """PNG files (and caption files, unless caption_extension is None) for the scenes."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, scene in enumerate(items):
        path = folder / f"{prefix}{index:05d}.png"
        draw(scene).save(path, optimize=True)
        if caption_extension:
            path.with_suffix(caption_extension).write_text(scene.caption + "\n", encoding="utf-8")
        paths.append(path)
    return paths
