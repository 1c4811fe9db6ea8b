"""The seed's folder convention: train_data_dir/'20_sls frog', reg_data_dir/'1_frog'.

Finds the image folders and explains, in plain words, every way the layout can go wrong.
"""

from __future__ import annotations

import os
import re
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable

from ..config.options import SUBSET_OPTIONS
from ..errors import UserError
from .concepts import Augment, CaptionRules, Subset
from .imageinfo import IMAGE_EXTENSIONS, is_image_name
from .words import count as _count

FOLDER_NAME = re.compile(r"^(\d+)_(.*)$")
DATE = re.compile(r"^((19|20)?\d\d)(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")  # 20230115, 230115
# sd-scripts users go up to a few thousand repeats on tiny datasets. 10,000 shows one image
# 10,000 times per epoch, more than a whole usual run; beyond that it is a typo or a date.
MAX_REPEATS = 10_000
Warn = Callable[[str], None]


def dotted(extension: str | None) -> str:
    """'txt' -> '.txt' (sd-scripts accepts both); empty -> the default '.caption'."""
    extension = (extension or ".caption").strip()
    return extension if extension.startswith(".") else "." + extension


def caption_rules(cfg) -> CaptionRules:
    rules = CaptionRules(**subset_values(cfg, CaptionRules))
    return replace(rules, caption_extension=dotted(rules.caption_extension))


def augment(cfg) -> Augment:
    return Augment(**subset_values(cfg, Augment))


def subset_values(cfg, rules: type) -> dict[str, Any]:
    """The values in `cfg` of the subset options that are fields of `rules` (CaptionRules or
    Augment); fields that are no option (caption_prefix) keep their default."""
    names = {f.name for f in fields(rules)}
    return {o.name: getattr(cfg, o.name) for o in SUBSET_OPTIONS if o.name in names}


def parse_folder_name(name: str) -> tuple[int, str] | None:
    """'20_sls frog' -> (20, 'sls frog'); None without the '<repeats>_' prefix."""
    match = FOLDER_NAME.match(name)
    if not match:
        return None
    return int(match.group(1)), " ".join(match.group(2).replace("_", " ").split())


def repeats_problem(repeats: int, number: str) -> str | None:
    """Why a repeat count is refused (None when it is fine); `number` as the user wrote it."""
    if repeats <= MAX_REPEATS:
        return None
    problem = f"asks for {repeats:,} repeats, more than the limit of {MAX_REPEATS:,}"
    if DATE.match(number):
        problem += f" ('{number}' looks like a date, but a leading number is the repeat count)"
    return problem


def _entries(root: Path) -> tuple[list[Path], list[Path]]:
    folders, images = [], []
    with os.scandir(root) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                folders.append(Path(entry.path))
            elif is_image_name(entry.name):
                images.append(Path(entry.path))
    return sorted(folders), sorted(images)


def _has_concept_folders(folder: Path) -> bool:
    try:
        subfolders, _ = _entries(folder)
    except OSError:
        return False
    return any(parse_folder_name(sub.name) for sub in subfolders)


def _suggest_name(folder: Path, is_reg: bool) -> str:
    words = " ".join(folder.name.replace("_", " ").split()) or "sks dog"
    return f"{1 if is_reg else 10}_{words}"


def _loose_images_problem(root: Path, option: str, count: int, is_reg: bool, has_folders: bool) -> str:
    example = "1_dog" if is_reg else "20_sks dog"
    if has_folders:
        return (f"{option} {root} holds {_count(count, 'image')} directly; only images inside its "
                f"'<repeats>_…' folders are used, so {'it is' if count == 1 else 'they are'} ignored")
    parsed = parse_folder_name(root.name)
    if parsed:
        return (f"{option} points at the image folder {root} itself; point it at the folder "
                f"above it ({root.parent}), which holds '{root.name}'")
    return (f"{option} {root} holds the images directly, but it must hold image folders named "
            f"'<repeats>_<{'class' if is_reg else 'identifier class'}>'; move the images into "
            f"a subfolder such as '{root / example}' and keep {option}={root}")


def scan_root(root: str, option: str, is_reg: bool, cfg, warn: Warn) -> list[Subset]:
    """The concept folders directly inside `root`, with warnings for everything skipped."""
    path = Path(root).expanduser()
    what = "'<repeats>_<class>'" if is_reg else "'<repeats>_<identifier> <class>'"
    if not path.exists():
        raise UserError(f"{option} {path} does not exist", f"give a folder of {what} folders")
    if not path.is_dir():
        raise UserError(f"{option} {path} is a file", f"give a folder of {what} folders")
    folders, loose = _entries(path)
    subsets: list[Subset] = []
    for folder in folders:
        parsed = parse_folder_name(folder.name)
        if parsed is None:
            if _has_concept_folders(folder):
                warn(f"{option} {path} is one level too high: '{folder.name}' holds the "
                     f"'<repeats>_…' folders; set {option}={folder}")
            else:
                warn(f"folder '{folder.name}' in {option} has no '<repeats>_' prefix, so it is "
                     f"skipped; rename it to '{_suggest_name(folder, is_reg)}' "
                     f"(the number is how often each image is shown per epoch)")
            continue
        repeats, prompt = parsed
        too_many = repeats_problem(repeats, folder.name.split("_", 1)[0])
        if too_many:
            raise UserError(f"folder '{folder.name}' in {option} {too_many}",
                            f"the number before '_' is how often each image is shown per "
                            f"epoch; rename the folder to e.g. '10_{folder.name.split('_', 1)[1]}'")
        if repeats < 1:
            warn(f"folder '{folder.name}' asks for {repeats} repeats, so it is skipped; "
                 f"use 1 or more, e.g. '1_{prompt}'")
            continue
        if not prompt:
            warn(f"folder '{folder.name}' names no {'class' if is_reg else 'identifier or class'}"
                 f"; images without a caption file will train with an empty prompt")
        subsets.append(Subset(str(folder), folder.name, repeats, is_reg, prompt,
                              caption_rules(cfg), augment(cfg)))
    if loose:
        warn(_loose_images_problem(path, option, len(loose), is_reg, bool(folders)))
    return subsets


def folder_subsets(cfg, warn: Warn) -> list[Subset]:
    """Subsets of train_data_dir and reg_data_dir (the command-line folder convention)."""
    if not cfg.train_data_dir:
        raise UserError("no training images given",
                        "set train_data_dir (a folder of '<repeats>_<identifier> <class>' "
                        "folders) or dataset_config")
    subsets = scan_root(cfg.train_data_dir, "train_data_dir", False, cfg, warn)
    if cfg.reg_data_dir:
        same = Path(cfg.reg_data_dir).expanduser().resolve() == \
            Path(cfg.train_data_dir).expanduser().resolve()
        if same:
            raise UserError("reg_data_dir is the same folder as train_data_dir",
                            "keep regularization images in their own folder")
        subsets += scan_root(cfg.reg_data_dir, "reg_data_dir", True, cfg, warn)
    return subsets


def describe_extensions() -> str:
    return ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
