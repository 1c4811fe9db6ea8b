"""`python -m trainer convert SRC DST`: convert a model between single-file and diffusers formats.

The output format follows DST (a name ending in .safetensors or .ckpt is a single file, anything
else a diffusers folder) unless --save_model_as says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ..errors import UserError

FORMATS = ("ckpt", "safetensors", "diffusers", "diffusers_safetensors")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer convert",
        description="Convert a Stable Diffusion 1.x/2.x/XL model between .safetensors/.ckpt single "
                    "files and diffusers folders (offline).")
    parser.add_argument("src", help="model to read: .safetensors/.ckpt file, diffusers folder or "
                                    "hub id")
    parser.add_argument("dst", help="where to write: NAME.safetensors / NAME.ckpt for a single "
                                    "file, any other name for a diffusers folder")
    parser.add_argument("--save_model_as", choices=FORMATS,
                        help="output format (default: from DST's name)")
    parser.add_argument("--save_precision", choices=("float", "fp16", "bf16"), default="float",
                        help="precision of the written weights (default: float)")
    parser.add_argument("--v2", action="store_true",
                        help="insist that SRC is Stable Diffusion 2.x (detected otherwise)")
    parser.add_argument("--v_parameterization", action="store_true",
                        help="SRC predicts v (768-v models); written into the .yaml/metadata")
    parser.add_argument("--vae", help="replace the VAE (file, diffusers folder or hub id)")
    parser.add_argument("--tokenizer",
                        help="tokenizer folder or hub id, for single-file SRC (they hold none; "
                             "for SDXL a folder with tokenizer/ and tokenizer_2/)")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    return parser


def _output_format(dst: str, save_model_as: str | None) -> str:
    by_name = {".safetensors": "safetensors", ".ckpt": "ckpt"}.get(Path(dst).suffix.lower())
    if save_model_as and by_name and save_model_as != by_name:
        raise UserError(f"DST {dst} ends in {Path(dst).suffix} but --save_model_as is "
                        f"{save_model_as}", "make the name and the format agree")
    return save_model_as or by_name or "diffusers_safetensors"


def _check_paths(src: str, dst: Path, overwrite: bool) -> None:
    if Path(src).exists() and Path(src).resolve() == dst.resolve():
        raise UserError(f"DST {dst} is the model being converted", "choose another name for DST")
    if dst.exists() and not overwrite:
        raise UserError(f"DST {dst} already exists", "delete it first, choose another name, or "
                        "add --overwrite")


def _quiet_libraries() -> None:
    """Progress bars and advice of the model libraries would bury the one line that matters.
    Set through the environment so that nothing heavy is imported before the inputs are checked."""
    import os

    for name, value in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                        ("DIFFUSERS_VERBOSITY", "error")):
        os.environ.setdefault(name, value)
    # bitsandbytes (imported by the model libraries) warns about optional CPU kernels on import
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    fmt = _output_format(args.dst, args.save_model_as)
    dst = Path(args.dst)
    if fmt in ("safetensors", "ckpt") and dst.suffix.lower() != "." + fmt:
        dst = dst.with_name(dst.name + "." + fmt)
    _check_paths(args.src, dst, args.overwrite)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("note: %(message)s"))
    notes = logging.getLogger("trainer.models")
    notes.addHandler(handler)
    notes.setLevel(logging.INFO)
    _quiet_libraries()
    from . import load_model, save_model

    started = time.monotonic()
    bundle = load_model(args.src, v2=args.v2 or None,
                        v_parameterization=args.v_parameterization or None, vae=args.vae,
                        tokenizer=args.tokenizer, xl=True)
    for note in bundle.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"loaded {args.src} ({bundle.family_title}, {bundle.source_format})")
    written = save_model(bundle, dst, save_model_as=fmt, save_precision=args.save_precision)
    extra = ""
    if written.with_suffix(".yaml").is_file() and fmt in ("safetensors", "ckpt"):
        extra = f" and {written.with_suffix('.yaml').name}"
    print(f"wrote {written}{extra} ({fmt}, {args.save_precision}) in "
          f"{time.monotonic() - started:.1f}s")
    return 0
