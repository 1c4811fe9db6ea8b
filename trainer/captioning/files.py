"""Which images get a caption file, and how the text is put together. No torch here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..data.imageinfo import is_image_name
from ..errors import UserError

# Extensions that are never caption files: writing one would replace a picture, a model or code.
NOT_CAPTIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".safetensors", ".ckpt",
                ".pt", ".pth", ".bin", ".pkl", ".py", ".sh", ".bat", ".exe", ".json", ".toml",
                ".yaml", ".html"}


def check_extension(extension: str) -> str:
    if not extension.startswith(".") or len(extension) < 2 or extension.lower() in NOT_CAPTIONS:
        raise UserError(f"--caption_extension {extension} is not a caption file extension",
                        "use .caption or .txt")
    return extension


def images_in(folder: Path, recursive: bool) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder", "give the folder of images to caption")
    if recursive:
        found = [Path(root) / name for root, _dirs, names in os.walk(folder)
                 for name in names if is_image_name(name)]
    else:
        found = [p for p in folder.iterdir() if p.is_file() and is_image_name(p.name)]
    return sorted(found)


@dataclass(frozen=True)
class Plan:
    write: list[Path]  # images whose caption file will be (re)written
    kept: list[Path]  # images that already have one and keep it


def plan(images: list[Path], extension: str, overwrite: bool) -> Plan:
    write: list[Path] = []
    kept: list[Path] = []
    for image in images:
        (kept if image.with_suffix(extension).exists() and not overwrite else write).append(image)
    return Plan(write, kept)


def compose(text: str, prefix: str = "", suffix: str = "") -> str:
    """prefix + text + suffix, each part separated once by ', ' when the parts are tag lists."""
    parts = [p.strip().strip(",").strip() for p in (prefix, text, suffix)]
    return ", ".join(p for p in parts if p)
