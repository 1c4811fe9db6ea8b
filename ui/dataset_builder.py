"""Build the seed's folder layout from a pile of images: copies, never moves or overwrites.

    <dest>/img/<repeats>_<identifier> <class>/...   training images (+ their caption files)
    <dest>/reg/<repeats>_<class>/...                regularization images
"""

from __future__ import annotations

import filecmp
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from trainer.data.folders import MAX_REPEATS
from trainer.errors import UserError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
CAPTION_EXTENSIONS = (".caption", ".txt")
BAD_NAME_CHARACTERS = set('/\\:*?"<>|')


@dataclass
class Balance:
    samples: int  # training samples per epoch: repeats x images
    reg_samples: int  # regularization samples offered: reg repeats x reg images
    used_reg: int  # how many of them an epoch uses
    suggested_repeats: int  # instance repeats that use every regularization image
    text: str


@dataclass
class BuildResult:
    train_dir: Path
    reg_dir: Path | None
    concept_dir: Path
    reg_concept_dir: Path | None
    copied: int
    reg_copied: int
    skipped: list[str]


def concept_folder_name(repeats: int, identifier: str, cls: str) -> str:
    return f"{repeats}_{identifier.strip()} {cls.strip()}"


def reg_folder_name(repeats: int, cls: str) -> str:
    return f"{repeats}_{cls.strip()}"


def balance(images: int, repeats: int, reg_images: int, reg_repeats: int) -> Balance:
    """The seed's rule: repeats x images >= reg repeats x reg images, with the numbers filled in."""
    samples, reg_samples = repeats * images, reg_repeats * reg_images
    suggested = max(1, math.ceil(reg_samples / images)) if images and reg_images else max(1, repeats)
    if not reg_images:
        text = (f"Training: {repeats} repeats × {images} images = {samples} samples per epoch. "
                "No regularization images: the whole class drifts toward your subject.")
        return Balance(samples, 0, 0, suggested, text)
    used = min(samples, reg_samples)
    lines = [f"Training: {repeats} repeats × {images} images = {samples} samples per epoch.",
             f"Regularization: {reg_repeats} repeats × {reg_images} images = {reg_samples}.",
             f"Rule: training repeats × images ≥ regularization repeats × images, i.e. "
             f"{samples} ≥ {reg_samples}: {'holds' if samples >= reg_samples else 'does not hold'}."]
    if samples < reg_samples:
        lines.append(f"Only {used} of the {reg_samples} regularization samples are used per epoch. "
                     f"Suggested repeats: {suggested} ({suggested} × {images} = {suggested * images}).")
    elif samples > reg_samples:
        lines.append(f"Each epoch uses all {reg_samples} regularization samples; more regularization "
                     f"images (up to {samples // max(1, reg_repeats)}) would add variety.")
    return Balance(samples, reg_samples, used, suggested, " ".join(lines))


def _check_word(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise UserError(f"no {what} given", f"type the {what} (e.g. 'sks' and 'dog')")
    if BAD_NAME_CHARACTERS & set(value):
        raise UserError(f"the {what} {value!r} contains a character folder names cannot have",
                        "use letters, digits and spaces")
    return value


def split_images(paths: list[Path]) -> tuple[list[Path], list[str]]:
    images, skipped = [], []
    for path in paths:
        if path.is_dir():
            inner, inner_skipped = split_images(sorted(path.iterdir()))
            images += inner
            skipped += inner_skipped
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(path)
        elif path.suffix.lower() not in CAPTION_EXTENSIONS:
            skipped.append(f"{path.name}: not an image")
    return images, skipped


def _plan(images: list[Path], folder: Path) -> list[tuple[Path, Path]]:
    """(source, target) pairs: each image plus a caption file beside it with the same stem."""
    pairs = []
    for image in images:
        pairs.append((image, folder / image.name))
        for ext in CAPTION_EXTENSIONS:
            caption = image.with_suffix(ext)
            if caption.is_file():
                pairs.append((caption, folder / caption.name))
    targets = [target for _, target in pairs]
    duplicates = {t.name for t in targets if targets.count(t) > 1}
    if duplicates:
        raise UserError(f"two images are both named {sorted(duplicates)[0]!r}",
                        "rename one of them before building the folders")
    return pairs


def _copy(pairs: list[tuple[Path, Path]]) -> int:
    copied = 0
    for source, target in pairs:
        if target.exists():
            continue  # identical (checked before copying anything)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied += 1
    return copied


def _conflicts(pairs: list[tuple[Path, Path]]) -> list[Path]:
    return [target for source, target in pairs
            if target.exists() and not filecmp.cmp(source, target, shallow=False)]


def build(dest: Path, images: list[Path], identifier: str, cls: str, repeats: int,
          reg_images: list[Path] | None = None, reg_repeats: int = 1) -> BuildResult:
    identifier, cls = _check_word(identifier, "identifier"), _check_word(cls, "class")
    if int(repeats) < 1 or int(reg_repeats) < 1:
        raise UserError("repeats must be 1 or more", "set how often each image is used per epoch")
    if max(int(repeats), int(reg_repeats)) > MAX_REPEATS:
        raise UserError(f"repeats must be at most {MAX_REPEATS:,}",
                        "set how often each image is used per epoch")
    instance, skipped = split_images([Path(p) for p in images])
    if not instance:
        raise UserError("no training images given", "pick or upload .png/.jpg/.webp/.bmp images")
    regs, reg_skipped = split_images([Path(p) for p in reg_images or []])
    dest = Path(dest)
    concept_dir = dest / "img" / concept_folder_name(int(repeats), identifier, cls)
    reg_concept_dir = dest / "reg" / reg_folder_name(int(reg_repeats), cls) if regs else None
    pairs = _plan(instance, concept_dir)
    reg_pairs = _plan(regs, reg_concept_dir) if reg_concept_dir else []
    conflicts = _conflicts(pairs + reg_pairs)
    if conflicts:
        raise UserError(f"{conflicts[0]} already exists with other content",
                        "choose another destination folder; existing files are never overwritten")
    copied = _copy(pairs)
    reg_copied = _copy(reg_pairs)
    return BuildResult(dest / "img", dest / "reg" if regs else None, concept_dir, reg_concept_dir,
                       copied, reg_copied, skipped + reg_skipped)
