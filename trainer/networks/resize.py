"""`python -m trainer lora-resize`: lower a LoRA's rank with the least loss (SVD).

Each layer's update up @ down is factored exactly as U·S·Vᵀ and only the largest singular
values are kept; alpha is rescaled so alpha / rank, the layer's strength, stays the same.
Because up @ down has rank ≤ r, the SVD is taken of an r×r matrix (QR of both factors first)
instead of the full out×in update: exact and fast even for 3x3 convolutions.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

DYNAMIC_METHODS = ("sv_ratio", "sv_fro", "sv_cumulative")


@dataclass
class LayerResize:
    name: str
    old_rank: int
    new_rank: int
    alpha: float
    fro_retained: float  # share of the update's Frobenius norm that is kept
    conv3x3: bool = False


def low_rank_svd(up, down):
    """U (out×r), S (r), Vh (r×in_flat) with U·diag(S)·Vh == up @ down (flattened)."""
    import torch

    rank = down.shape[0]
    up2 = up.reshape(up.shape[0], rank).double()
    down2 = down.reshape(rank, -1).double()
    q_up, r_up = torch.linalg.qr(up2)
    q_down, r_down = torch.linalg.qr(down2.T)
    u_small, s, vh_small = torch.linalg.svd(r_up @ r_down.T)
    return q_up @ u_small, s, (q_down @ vh_small.T).T


def choose_rank(s, max_rank: int, method: str | None, param: float | None) -> int:
    """How many singular values to keep (at least 1, at most max_rank)."""
    import torch

    if float(s[0]) <= 1e-12:  # an all-zero update (an untrained layer)
        return 1
    if method is None:
        keep = max_rank
    elif param is None:  # the command line refuses this with a message first
        raise ValueError(f"the dynamic method {method} needs a parameter")
    elif method == "sv_ratio":  # values within a factor `param` of the largest
        keep = int((s >= s[0] / param).sum())
    else:
        weights = s if method == "sv_cumulative" else s * s
        share = torch.cumsum(weights, 0) / weights.sum()
        target = param if method == "sv_cumulative" else param * param
        keep = int((share < target - 1e-12).sum()) + 1
    return max(1, min(keep, max_rank, len(s)))


def resize_state_dict(state_dict, new_dim: int, new_conv_dim: int | None = None,
                      method: str | None = None, param: float | None = None):
    """(new state dict in float32, [LayerResize]) for a kohya LoRA state dict."""
    import torch

    from .files import layer_shapes

    new_conv_dim = new_conv_dim or new_dim
    out = {k: v for k, v in state_dict.items()}
    report = []
    for name, (rank, alpha) in layer_shapes(state_dict).items():
        down = state_dict[f"{name}.lora_down.weight"].float()
        up = state_dict[f"{name}.lora_up.weight"].float()
        conv3x3 = down.dim() == 4 and tuple(down.shape[2:]) != (1, 1)
        u, s, vh = low_rank_svd(up, down)
        keep = choose_rank(s, min(new_conv_dim if conv3x3 else new_dim, rank), method, param)
        root = s[:keep].sqrt()
        new_up = (u[:, :keep] * root).float()
        new_down = (root[:, None] * vh[:keep]).float()
        if down.dim() == 4:
            new_up = new_up.reshape(up.shape[0], keep, 1, 1)
        new_alpha = alpha / rank * keep
        out[f"{name}.lora_down.weight"] = new_down.reshape(keep, *down.shape[1:]).contiguous()
        out[f"{name}.lora_up.weight"] = new_up.contiguous()
        out[f"{name}.alpha"] = torch.tensor(new_alpha, dtype=torch.float32)
        total = float((s * s).sum())
        kept = float((s[:keep] ** 2).sum())
        report.append(LayerResize(name, rank, keep, new_alpha,
                                  1.0 if total == 0 else (kept / total) ** 0.5, conv3x3))
    return out, report


def resized_metadata(metadata: dict, report: list[LayerResize], new_dim: int,
                     new_conv_dim: int | None, dynamic: bool) -> dict:
    meta = dict(metadata)
    old = max((r.old_rank for r in report), default=0)
    comment = meta.get("ss_training_comment", "")
    linear = {round(r.alpha, 6) for r in report if not r.conv3x3}
    if dynamic:
        meta["ss_network_dim"] = meta["ss_network_alpha"] = "Dynamic"
        note = f"dynamic resize from rank {old}"
    else:
        new = max((r.new_rank for r in report if not r.conv3x3), default=new_dim)
        meta["ss_network_dim"] = str(new)
        meta["ss_network_alpha"] = str(linear.pop()) if len(linear) == 1 else "Dynamic"
        note = f"rank resized from {old} to {new}"
    meta["ss_training_comment"] = f"{note}; {comment}" if comment else note
    if "ss_network_args" in meta and new_conv_dim:
        try:
            args = json.loads(meta["ss_network_args"])
            if "conv_dim" in args:
                scale = float(args.get("conv_alpha", 1)) / float(args["conv_dim"])
                conv = min(int(args["conv_dim"]), new_conv_dim)
                args.update(conv_dim=str(conv), conv_alpha=str(scale * conv))
                meta["ss_network_args"] = json.dumps(args)
        except (ValueError, TypeError):
            pass  # foreign metadata: leave it as it was
    meta.pop("sshs_model_hash", None)
    meta.pop("sshs_legacy_hash", None)
    return meta


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer lora-resize",
        description="Reduce the rank (dim) of a LoRA file by SVD, keeping its strength.")
    parser.add_argument("file", help="the LoRA file (.safetensors, .ckpt, .pt)")
    parser.add_argument("--new_dim", type=int, required=True,
                        help="new rank (with --dynamic_method: the largest rank allowed)")
    parser.add_argument("--new_conv_dim", type=int,
                        help="new rank of the 3x3 convolution layers (default: --new_dim)")
    parser.add_argument("--dynamic_method", choices=DYNAMIC_METHODS,
                        help="choose each layer's rank: sv_fro keeps a share of the Frobenius "
                             "norm, sv_cumulative of the sum of singular values, sv_ratio the "
                             "values within a factor of the largest")
    parser.add_argument("--dynamic_param", type=float,
                        help="the share (e.g. 0.9) or factor (e.g. 2) for --dynamic_method")
    parser.add_argument("--out", help="output file (default: <name>-dim<N> beside the input)")
    parser.add_argument("--save_precision", choices=("float", "fp16", "bf16"),
                        help="precision of the saved file (default: that of the input)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--verbose", action="store_true", help="print every layer")
    return parser


def _check_args(args) -> Path:
    if args.new_dim < 1 or (args.new_conv_dim is not None and args.new_conv_dim < 1):
        raise UserError("--new_dim must be at least 1", "give the rank to keep, e.g. 8")
    if args.dynamic_method and args.dynamic_param is None:
        raise UserError(f"--dynamic_method {args.dynamic_method} needs --dynamic_param",
                        "e.g. --dynamic_param 0.9 for sv_fro")
    if args.dynamic_param is not None and args.dynamic_param <= 0:
        raise UserError("--dynamic_param must be positive", "e.g. 0.9")
    source = Path(args.file)
    if not source.is_file():
        raise UserError(f"{source} does not exist" if not source.exists() else
                        f"{source} is a folder", "give a LoRA .safetensors file")
    tag = "dynamic" if args.dynamic_method else f"dim{args.new_dim}"
    out = Path(args.out) if args.out else source.with_name(f"{source.stem}-{tag}.safetensors")
    if out.exists() and out.resolve() == source.resolve():
        raise UserError("--out is the input file itself", "save the resized LoRA elsewhere")
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} already exists", "choose another --out or add --overwrite")
    return out


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    out = _check_args(args)
    from .files import read_network_file, save_network_file  # torch: once the arguments are fine

    state_dict, metadata = read_network_file(args.file)
    downs = [v for k, v in state_dict.items() if k.endswith(".lora_down.weight")]
    precision = args.save_precision or downs[0].dtype
    resized, report = resize_state_dict(state_dict, args.new_dim, args.new_conv_dim,
                                        args.dynamic_method, args.dynamic_param)
    meta = resized_metadata(metadata, report, args.new_dim, args.new_conv_dim,
                            bool(args.dynamic_method))
    save_network_file(resized, out, dtype=precision, metadata=meta)
    if args.verbose:
        for r in report:
            print(f"{r.name:80} {r.old_rank:>4} -> {r.new_rank:<4} "
                  f"alpha {r.alpha:g}  kept {r.fro_retained:.1%}")
    kept = sum(r.fro_retained for r in report) / max(1, len(report))
    ranks = sorted({r.new_rank for r in report})
    print(f"resized {len(report)} layers to rank {_span(ranks)}; on average {kept:.1%} of each "
          f"update kept (Frobenius norm)")
    print(f"saved {out}")
    return 0


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"
