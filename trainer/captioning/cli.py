"""`python -m trainer caption FOLDER --method blip|wd14`: write a caption file per image.

Existing caption files are kept unless --overwrite; --preview prints what would be written and
writes nothing. Each file is written whole (a stopped run leaves no half-written caption), so
running again with the default skips what is done and finishes the rest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from . import files

DEFAULT_TAGGER = "SmilingWolf/wd-v1-4-convnext-tagger-v2"


def _parser() -> argparse.ArgumentParser:
    from .blip import DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog="python -m trainer caption",
        description="Write a caption file beside each image of a folder: a sentence (BLIP) or "
                    "booru-style tags (WD14 tagger).")
    parser.add_argument("folder", help="the folder of images")
    parser.add_argument("--method", choices=("blip", "wd14"), default="blip")
    parser.add_argument("--model", help=f"hub id or folder (default: {DEFAULT_MODEL} for blip, "
                                        f"{DEFAULT_TAGGER} for wd14)")
    parser.add_argument("--prefix", default="", help='put before every caption, e.g. "sks dog"')
    parser.add_argument("--suffix", default="", help="put after every caption")
    parser.add_argument("--caption_extension", default=".caption")
    parser.add_argument("--recursive", action="store_true", help="also the folders inside")
    parser.add_argument("--overwrite", action="store_true", help="replace existing caption files")
    parser.add_argument("--preview", action="store_true", help="print the captions, write nothing")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--num_beams", type=int, default=1, help="blip: beam search width")
    parser.add_argument("--max_length", type=int, default=75, help="blip: longest caption (tokens)")
    parser.add_argument("--min_length", type=int, default=5, help="blip: shortest caption")
    parser.add_argument("--thresh", type=float, default=0.35, help="wd14: tag threshold")
    parser.add_argument("--general_threshold", type=float, help="wd14: for general tags "
                                                                "(default --thresh)")
    parser.add_argument("--character_threshold", type=float, help="wd14: for character tags "
                                                                  "(default --thresh)")
    parser.add_argument("--undesired_tags", default="",
                        help="wd14: tags never written, comma separated")
    parser.add_argument("--remove_underscore", action="store_true",
                        help="wd14: 'long_hair' -> 'long hair' (faces such as ^_^ stay)")
    return parser


def _check(args) -> None:
    files.check_extension(args.caption_extension)
    if not 1 <= args.batch_size <= 256:
        raise UserError(f"--batch_size {args.batch_size} is out of range", "e.g. 4")
    for flag in ("thresh", "general_threshold", "character_threshold"):
        value = getattr(args, flag)
        if value is not None and not 0 <= value <= 1:
            raise UserError(f"--{flag} {value} is not between 0 and 1", "e.g. 0.35")
    if not 1 <= args.min_length <= args.max_length <= 512:
        raise UserError("--min_length and --max_length must satisfy 1 <= min <= max <= 512",
                        "e.g. --min_length 5 --max_length 75")


def _describer(args):
    """A function: list of PIL images -> list of caption texts (without prefix/suffix)."""
    if args.method == "blip":
        from .blip import DEFAULT_MODEL, Captioner

        captioner = Captioner(args.model or DEFAULT_MODEL, num_beams=args.num_beams,
                              max_length=args.max_length, min_length=args.min_length)
        return captioner.caption
    from .tagger import Tagger

    tagger = Tagger(args.model or DEFAULT_TAGGER)
    undesired = {t.strip() for t in args.undesired_tags.split(",") if t.strip()}
    general = args.general_threshold if args.general_threshold is not None else args.thresh
    character = args.character_threshold if args.character_threshold is not None else args.thresh

    def describe(images):
        return [", ".join(tags) for tags in tagger.tag(
            images, general_threshold=general, character_threshold=character,
            undesired=undesired, remove_underscore=args.remove_underscore)]
    return describe


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    _check(args)
    images = files.images_in(Path(args.folder), args.recursive)
    todo = files.plan(images, args.caption_extension, args.overwrite or args.preview)
    if not images:
        raise UserError(f"no images in {args.folder}", "png, jpg, webp or bmp files; "
                        "--recursive looks into the folders inside")
    print(f"{len(images)} images; {len(todo.kept)} already have a caption file and keep it; "
          f"{'previewing' if args.preview else 'captioning'} {len(todo.write)}", flush=True)
    if not todo.write:
        return 0
    from ..atomic import atomic_path
    from ..data.imageinfo import DamagedImage, open_rgb

    describe = _describer(args)
    done = 0
    for start in range(0, len(todo.write), args.batch_size):
        batch, pictures = [], []
        for path in todo.write[start:start + args.batch_size]:
            try:
                pictures.append(open_rgb(str(path)))
                batch.append(path)
            except DamagedImage as err:
                print(f"warning: {err.message}; skipped", flush=True)
        for path, text in zip(batch, describe(pictures) if pictures else []):
            caption = files.compose(text, args.prefix, args.suffix)
            if args.preview:
                print(f"{path.name}: {caption}")
            else:
                with atomic_path(path.with_suffix(args.caption_extension)) as tmp:
                    tmp.write_text(caption + "\n", encoding="utf-8")
        done += len(batch)
        print(f"[caption] {done}/{len(todo.write)} images", flush=True)
    print("previewed, nothing written" if args.preview else
          f"wrote {done} caption files ({args.caption_extension})")
    return 0
