"""Read every image folder: usable images, their captions and their buckets, plus problems."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from .buckets import Bucketer, TooSmall
from .captions import decorate, read_caption
from .concepts import Item, Subset
from .folders import describe_extensions
from .imageinfo import OTHER_IMAGE_EXTENSIONS, UnreadableImage, is_image_name, read_header
from .words import count, say, verb

Warn = Callable[[str], None]
OTHER_CAPTION_EXTENSIONS = (".txt", ".caption")
ENLARGE_WARNING = 2.0  # images enlarged more than this look soft to the model
_THREADS = 8  # header reads wait on the disk (slow drives, network shares), not the CPU


def _list_folder(folder: Path) -> tuple[list[str], set[str], list[str]]:
    """(image file names, all lower-cased file names, names of unsupported images)."""
    images, names, others = [], set(), []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            names.add(entry.name.lower())
            if is_image_name(entry.name):
                images.append(entry.name)
            elif entry.name.lower().endswith(OTHER_IMAGE_EXTENSIONS):
                others.append(entry.name)
    return sorted(images), names, sorted(others)


def _caption_extension_hint(subset: Subset, images: list[str], names: set[str], warn: Warn):
    """A '.txt' beside images while caption_extension is '.caption' (or the reverse)."""
    ext = subset.captions.caption_extension.lower()
    for other in OTHER_CAPTION_EXTENSIONS:
        if other == ext:
            continue
        stems = [Path(n).stem.lower() for n in images]
        unused = sum(1 for s in stems if s + other in names and s + ext not in names)
        if unused:
            warn(f"folder '{subset.name}': {say(unused, 'image', 'has', 'have')} a '{other}' file "
                 f"but caption_extension is '{ext}', so those files are ignored; set "
                 f"--caption_extension={other} to use them as captions")


def _caption_for(folder: Path, name: str, subset: Subset, names: set[str], warn: Warn):
    stem = Path(name).stem
    ext = subset.captions.caption_extension
    if (stem + ext).lower() not in names:
        return subset.prompt, "folder"
    path = folder / (stem + ext)
    if not path.exists():  # the case differs, on a case-sensitive file system
        path = next((p for p in folder.iterdir() if p.name.lower() == path.name.lower()), path)
    text, problem = read_caption(path)
    if problem:
        warn(problem)
    return (text, "file") if text is not None else (subset.prompt, "folder")


def _empty_folder_problem(subset: Subset, others: list[str], broken: int) -> str:
    where = f"folder '{subset.name}' ({subset.folder})"
    if broken:
        return f"{where} has no usable images left; all {broken} could not be read"
    if others:
        kinds = sorted({Path(n).suffix.lower() for n in others})
        return (f"{where} has no usable images: its "
                f"{say(len(others), 'picture', 'is', 'are')} "
                f"{', '.join(kinds)}, which are not read; convert them to png or jpg")
    return f"{where} has no images ({describe_extensions()}); it is skipped"


def index_subset(subset: Subset, index: int, bucketer: Bucketer, warn: Warn,
                 pool: ThreadPoolExecutor) -> list[Item]:
    folder = Path(subset.folder)
    try:
        images, names, others = _list_folder(folder)
    except OSError as err:
        warn(f"folder {folder} cannot be read ({err.strerror or err}); it is skipped")
        return []
    if others and images:
        kinds = sorted({Path(n).suffix.lower() for n in others})
        warn(f"folder '{subset.name}': {count(len(others), 'file')} of type {', '.join(kinds)} "
             f"{verb(len(others), 'is', 'are')} not read (use {describe_extensions()})")
    _caption_extension_hint(subset, images, names, warn)
    headers = list(pool.map(_safe_header, [folder / n for n in images]))
    items: list[Item] = []
    broken = 0
    enlarged: list[tuple[str, float]] = []
    for name, header in zip(images, headers):
        path = folder / name
        if isinstance(header, UnreadableImage):
            warn(f"image {path} {header}; it is skipped")
            broken += 1
            continue
        try:
            placement = bucketer.place((header.width, header.height))
        except TooSmall as err:
            warn(f"image {path} {err}; it is skipped (turn off bucket_no_upscale to enlarge it)")
            continue
        if placement.scale > ENLARGE_WARNING:
            enlarged.append((name, placement.scale))
        caption, source = _caption_for(folder, name, subset, names, warn)
        items.append(Item(str(path), index, header, decorate(caption, subset.captions), source,
                          placement))
    if enlarged:
        name, scale = max(enlarged, key=lambda e: e[1])
        warn(f"folder '{subset.name}': "
             f"{say(len(enlarged), 'image', 'is', 'are')} enlarged more than "
             f"{ENLARGE_WARNING:g}x to reach the training size (e.g. {name}, {scale:.1f}x) and "
             f"will look soft; use larger images or a smaller resolution")
    if not items:
        warn(_empty_folder_problem(subset, others, broken))
    subset.images = len(items)
    subset.captioned = sum(1 for item in items if item.caption_source == "file")
    uncaptioned = subset.images - subset.captioned
    if uncaptioned and not subset.is_reg and subset.prompt and not subset.class_name:
        warn(f"folder '{subset.name}' names no class: "
             f"{say(uncaptioned, 'image', 'trains', 'train')} with the "
             f"prompt '{subset.prompt}' alone; the convention is "
             f"'<repeats>_<identifier> <class>', e.g. '{subset.repeats}_{subset.prompt} dog'")
    return items


def _safe_header(path: Path):
    try:
        return read_header(path)
    except UnreadableImage as err:
        return err


def index_subsets(subsets: list[Subset], bucketers: list[Bucketer],
                  warn: Warn) -> tuple[list[Subset], list[Item]]:
    """The subsets that hold usable images (empty ones were reported), and their images."""
    kept: list[Subset] = []
    items: list[Item] = []
    with ThreadPoolExecutor(_THREADS) as pool:
        for subset in subsets:
            found = index_subset(subset, len(kept), bucketers[subset.sizing], warn, pool)
            if found:
                kept.append(subset)
                items += found
    return kept, items
