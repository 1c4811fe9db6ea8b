"""`python -m trainer lora-merge`: bake LoRA files into a base model.

W' = W + weight * (alpha / rank) * up @ down for every layer of every LoRA, computed in float32.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Mapping

from ..errors import UserError


def merge_into(unet, text_encoders, weights: str | os.PathLike | Mapping, multiplier: float = 1.0,
               label: str | None = None) -> int:
    """Add a LoRA's weight deltas into the base layers in place; returns the layers merged.

    text_encoders: the model's one text encoder (SD 1.x/2.x) or list of two (SDXL).
    Every layer of the file must find its base layer, or nothing is changed (UserError).
    """
    import torch

    from .create import create_network_from_weights

    network, report = create_network_from_weights(unet, text_encoders, weights, label=label)
    label = report.source
    if report.unexpected:
        raise UserError(f"{len(report.unexpected)} layers of {label} have no place in the base "
                        f"model (e.g. {report.unexpected[0]})",
                        "the LoRA was made for a different model")
    with torch.no_grad():
        for layer in network.loras:
            weight = layer.target.weight
            merged = weight.float() + layer.delta_weight(multiplier).to(weight.device)
            weight.copy_(merged.to(weight.dtype))
    return len(network.loras)


def parse_lora_arg(text: str) -> tuple[str, float]:
    """'style.safetensors:0.8' -> (path, 0.8); a path alone means weight 1."""
    path, sep, tail = text.rpartition(":")
    if sep and path:
        try:
            return path, float(tail)
        except ValueError:
            pass  # a colon that is part of the path (C:\…)
    return text, 1.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer lora-merge",
        description="Merge LoRA files into a base model and save the result as a new model; "
                    "without --base, merge them into one LoRA file.")
    parser.add_argument("--base", help="base model (checkpoint or diffusers folder); leave it out "
                                       "to merge the LoRAs into one LoRA")
    parser.add_argument("--lora", required=True, nargs="+", metavar="FILE[:WEIGHT]",
                        help="LoRA files, each with an optional strength (default 1), e.g. "
                             "style.safetensors:0.8")
    parser.add_argument("--out", required=True, help="where to save the merged model")
    parser.add_argument("--save_model_as", choices=("ckpt", "safetensors", "diffusers",
                                                    "diffusers_safetensors"),
                        help="format (default: from --out: .safetensors, .ckpt, else a folder)")
    parser.add_argument("--save_precision", choices=("float", "fp16", "bf16"), default="float",
                        help="precision of the saved weights (default: float)")
    parser.add_argument("--v2", action="store_true", help="the base model is SD 2.x")
    parser.add_argument("--v_parameterization", action="store_true",
                        help="the base model is a v-prediction model")
    parser.add_argument("--tokenizer",
                        help="tokenizer folder or hub id, for a single-file base model (they hold "
                             "none); saved with a diffusers --out")
    parser.add_argument("--vae", help="replace the base model's VAE (file, diffusers folder or "
                                      "hub id); the merged model keeps it")
    parser.add_argument("--new_rank", type=int,
                        help="LoRA into LoRA: lower the merged rank to this by SVD (default: keep "
                             "every source's rank, concatenated: exact)")
    parser.add_argument("--new_conv_rank", type=int,
                        help="LoRA into LoRA: the same for 3x3 convolutions (default --new_rank)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser


def guess_format(out: Path) -> str:
    """.safetensors / .ckpt name a single file; anything else a diffusers folder."""
    return {".safetensors": "safetensors", ".ckpt": "ckpt"}.get(out.suffix.lower(),
                                                                "diffusers_safetensors")


def _merge_loras(args, out: Path) -> int:
    """LoRA files into one LoRA: concatenated exactly, or lowered to --new_rank by SVD."""
    for flag in ("save_model_as", "tokenizer", "vae"):
        if getattr(args, flag):
            raise UserError(f"--{flag} applies to merging into a base model",
                            "add --base, or leave the flag out to merge the LoRAs into one LoRA")
    if args.new_rank is not None and args.new_rank < 1 or \
            args.new_conv_rank is not None and args.new_conv_rank < 1:
        raise UserError("--new_rank and --new_conv_rank must be at least 1", "e.g. --new_rank 16")
    if out.suffix.lower() not in (".safetensors", ".ckpt", ".pt"):
        raise UserError(f"--out {out.name}: a merged LoRA is a .safetensors (or .ckpt/.pt) file",
                        "name --out e.g. merged.safetensors")
    from .combine import Source, concat_loras, merged_metadata
    from .files import read_network_file, save_network_file

    sources = []
    for path, weight in (parse_lora_arg(text) for text in args.lora):
        tensors, metadata = read_network_file(path)
        sources.append(Source(Path(path).name, tensors, metadata, weight))
    merged = concat_loras(sources)
    if args.new_rank is not None:
        from .resize import resize_state_dict

        merged, _ = resize_state_dict(merged, args.new_rank, args.new_conv_rank)
    meta = merged_metadata(sources, merged)
    save_network_file(merged, out, dtype=args.save_precision, metadata=meta)
    how = f"SVD to rank {args.new_rank}" if args.new_rank else "ranks concatenated"
    print(f"merged {len(sources)} LoRA files into one ({how})")
    print(f"saved {out}")
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} already exists", "choose another --out or add --overwrite")
    if args.base is None:
        return _merge_loras(args, out)
    if args.new_rank is not None or args.new_conv_rank is not None:
        raise UserError("--new_rank applies to merging LoRAs into one LoRA",
                        "leave out --base for that, or leave out --new_rank")
    if out.resolve() == Path(args.base).resolve():
        raise UserError("--out is the base model itself", "save the merged model elsewhere")
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} already exists", "choose another --out or add --overwrite")
    from .files import read_network_file  # torch: only once the arguments are fine

    loras = [parse_lora_arg(text) for text in args.lora]
    files = [(path, weight, read_network_file(path)[0]) for path, weight in loras]
    from ..models import load_model, save_model

    bundle = load_model(args.base, v2=args.v2 or None,
                        v_parameterization=args.v_parameterization or None, vae=args.vae,
                        tokenizer=args.tokenizer, xl=True)
    encoders = [bundle.text_encoder] + ([bundle.text_encoder_2] if bundle.xl else [])
    for path, weight, state_dict in files:
        count = merge_into(bundle.unet, encoders, state_dict, weight, label=Path(path).name)
        print(f"merged {Path(path).name} at {weight:g}: {count} layers")
    save_as = args.save_model_as or guess_format(out)
    save_model(bundle, out, save_model_as=save_as, save_precision=args.save_precision)
    print(f"saved {out} ({save_as}, {args.save_precision})")
    return 0
