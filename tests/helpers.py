"""Small real files for tests: images in the seed's folder convention, runs of the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

COLORS = [(220, 40, 40), (40, 160, 60), (40, 70, 220), (230, 200, 40), (150, 60, 190)]


def make_image(path: Path, size=(64, 64), color=(200, 50, 50), seed: int = 0, fmt=None) -> Path:
    """A deterministic picture: a colored disc on a light background with a little noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    width, height = size
    image = Image.new("RGB", size, (235, 235, 230))
    draw = ImageDraw.Draw(image)
    radius = int(min(size) * rng.uniform(0.2, 0.35))
    cx, cy = rng.integers(radius, width - radius + 1), rng.integers(radius, height - radius + 1)
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=tuple(color))
    pixels = np.asarray(image).astype(np.int16) + rng.integers(-6, 7, (height, width, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(path, format=fmt)
    return path


def make_concept(folder: Path, count: int, size=(64, 64), color_index: int = 0, seed: int = 0,
                 ext: str = ".png", captions: dict[int, str] | None = None,
                 caption_extension: str = ".caption") -> Path:
    """A folder of `count` images (and optional caption files by image index)."""
    for index in range(count):
        image = make_image(folder / f"img{index:03d}{ext}", size, COLORS[color_index % len(COLORS)],
                           seed=seed * 1000 + index)
        if captions and index in captions:
            image.with_suffix(caption_extension).write_text(captions[index], encoding="utf-8")
    return folder


def make_db_dataset(root: Path, identifier="sks", cls="dog", repeats=5, images=3, reg_repeats=1,
                    reg_images=6, size=(64, 64)) -> tuple[Path, Path | None]:
    """root/img/<repeats>_<identifier> <class>, root/reg/<reg_repeats>_<class>."""
    train = root / "img"
    make_concept(train / f"{repeats}_{identifier} {cls}", images, size, color_index=0, seed=1)
    reg = None
    if reg_images:
        reg = root / "reg"
        make_concept(reg / f"{reg_repeats}_{cls}", reg_images, size, color_index=2, seed=2)
    return train, reg


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m trainer …` for real, in a subprocess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    result = subprocess.run([PYTHON, "-m", "trainer", *map(str, args)], cwd=cwd or REPO,
                            env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"trainer {' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def wait_for(condition, timeout: float = 60.0, what: str = "condition", every: float = 0.1):
    """The first truthy value of condition(), polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def damage_inside(path):
    """Garbage over the middle of the pixel data; the header and the end stay valid, so only
    decoding the whole picture can tell."""
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 40
    data[start:start + 200] = bytes(range(200))
    path.write_bytes(bytes(data))
    return path


def ended_trainer_start_token() -> str | None:
    """What a trainer records about itself, from a real process that has ended since."""
    code = "import os; from trainer.processes import start_token; print(start_token(os.getpid()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    return None if out == "None" else out
