"""`python -m trainer lora-extract`: a LoRA (or LoCon) from a fine-tuned model and its base.

For every layer a LoRA trains, the difference of the weights W_tuned - W_base is factored by SVD
and its largest `--dim` singular directions become lora_up (U·S) and lora_down (Vᵀ), with
alpha = rank so the file applies the update at strength 1. Outlying factor values beyond
`--clamp_quantile` are clipped, as sd-scripts does, so a few large entries do not dominate
the file's value range. A text encoder that differs from the base by less than `--min_diff`
everywhere is left out: it was not trained.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError


@dataclass
class LayerExtract:
    name: str
    rank: int
    fro_retained: float  # share of the difference's Frobenius norm that the factors keep


def _pairs(base_targets, tuned_targets):
    tuned = {t.lora_name: t for t in tuned_targets}
    for target in base_targets:
        other = tuned.get(target.lora_name)
        if other is None or other.module.weight.shape != target.module.weight.shape:
            raise UserError(f"the tuned model has no layer {target.lora_name} of the base's shape",
                            "give the base model the tuned model was trained from")
        yield target, other


def _clamp_limit(up, down, quantile: float) -> float:
    import torch

    values = torch.cat([up.flatten(), down.flatten()]).abs().double()
    if quantile >= 1:
        return float(values.max())
    # torch.quantile refuses large inputs; kthvalue gives the same order statistic.
    k = max(1, min(values.numel(), int(round(quantile * (values.numel() - 1))) + 1))
    return float(values.kthvalue(k).values)


def factor_difference(diff, rank: int, clamp_quantile: float):
    """(up, down, retained share) for one layer's weight difference (Linear or Conv2d shape)."""
    import torch

    out_dim = diff.shape[0]
    flat = diff.reshape(out_dim, -1).double()
    rank = max(1, min(rank, *flat.shape))
    u, s, vh = torch.linalg.svd(flat, full_matrices=False)
    up, down = u[:, :rank] * s[:rank], vh[:rank]
    limit = _clamp_limit(up, down, clamp_quantile)
    up, down = up.clamp(-limit, limit), down.clamp(-limit, limit)
    total = float(torch.linalg.norm(flat))
    kept = 1.0 if total == 0 else 1.0 - float(torch.linalg.norm(flat - up @ down)) / total
    if diff.ndim == 4:
        up = up.reshape(out_dim, rank, 1, 1)
        down = down.reshape(rank, *diff.shape[1:])
    return up.float(), down.float(), kept


def extract_state_dict(base, tuned, *, dim: int, conv_dim: int | None = None,
                       clamp_quantile: float = 0.99, min_diff: float = 0.01):
    """kohya-format tensors of the LoRA base + LoRA ≈ tuned, and a report per layer."""
    import torch

    from .targets import text_encoder_targets, unet_targets

    with_conv = conv_dim is not None
    layers = list(_pairs(unet_targets(base.unet, with_conv=with_conv),
                         unet_targets(tuned.unet, with_conv=with_conv)))
    text_layers = list(_pairs(text_encoder_targets(base.text_encoder),
                              text_encoder_targets(tuned.text_encoder)))
    with torch.no_grad():
        text_changed = any(float((t.module.weight.float() - b.module.weight.float()).abs().max())
                           >= min_diff for b, t in text_layers)
    if text_changed:
        layers += text_layers
    tensors, report = {}, []
    with torch.no_grad():
        for base_target, tuned_target in layers:
            diff = tuned_target.module.weight.float() - base_target.module.weight.float()
            # 3x3 convolutions are targets only when conv_dim is set
            rank = conv_dim if base_target.is_conv3x3 and conv_dim is not None else dim
            up, down, kept = factor_difference(diff, rank, clamp_quantile)
            name = base_target.lora_name
            tensors[f"{name}.lora_up.weight"] = up.contiguous()
            tensors[f"{name}.lora_down.weight"] = down.contiguous()
            tensors[f"{name}.alpha"] = torch.tensor(float(down.shape[0]))
            report.append(LayerExtract(name, down.shape[0], kept))
    return tensors, report, text_changed


def extract_metadata(base, *, dim: int, conv_dim: int | None, base_name: str,
                     tuned_name: str) -> dict[str, str]:
    from .metadata import NETWORK_MODULE, base_model_version

    meta = {
        "ss_network_module": NETWORK_MODULE,
        "ss_network_dim": str(dim),
        "ss_network_alpha": str(float(dim)),
        "ss_v2": str(bool(base.v2)),
        "ss_base_model_version": base_model_version(base.v2, base.v_parameterization),
        "ss_sd_model_name": Path(base_name).name,
        "ss_extracted_from": Path(tuned_name).name,
    }
    if conv_dim is not None:
        meta["ss_network_args"] = json.dumps({"conv_dim": str(conv_dim),
                                              "conv_alpha": str(float(conv_dim))})
    return meta


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer lora-extract",
        description="Make a LoRA from the difference of a fine-tuned model and its base.")
    parser.add_argument("--model_org", required=True, help="the base model (file or diffusers folder)")
    parser.add_argument("--model_tuned", required=True, help="the fine-tuned model")
    parser.add_argument("--save_to", required=True, help="the LoRA file to write (.safetensors)")
    parser.add_argument("--dim", type=int, default=4, help="rank of the LoRA (default 4)")
    parser.add_argument("--conv_dim", type=int,
                        help="also extract the 3x3 convolutions (LoCon) at this rank")
    parser.add_argument("--clamp_quantile", type=float, default=0.99,
                        help="clip factor values beyond this quantile (default 0.99; 1 = none)")
    parser.add_argument("--min_diff", type=float, default=0.01,
                        help="a text encoder whose weights differ by less than this everywhere "
                             "is left out (default 0.01)")
    parser.add_argument("--v2", action="store_true", help="the models are SD 2.x")
    parser.add_argument("--tokenizer", help="tokenizer folder, for single files that need one")
    parser.add_argument("--save_precision", choices=("float", "fp16", "bf16"), default="float",
                        help="precision of the saved file (default float)")
    parser.add_argument("--overwrite", action="store_true", help="replace --save_to if it exists")
    return parser


def _check_args(args) -> Path:
    if args.dim < 1 or (args.conv_dim is not None and args.conv_dim < 1):
        raise UserError("--dim and --conv_dim must be at least 1", "e.g. --dim 8")
    if not 0 < args.clamp_quantile <= 1:
        raise UserError(f"--clamp_quantile {args.clamp_quantile} is not in (0, 1]",
                        "e.g. 0.99, or 1 to clip nothing")
    if not args.min_diff >= 0:
        raise UserError("--min_diff must be 0 or more", "e.g. 0.01")
    for flag, value in (("--model_org", args.model_org), ("--model_tuned", args.model_tuned)):
        if not Path(value).exists():
            raise UserError(f"{flag} {value} does not exist", "give a checkpoint or diffusers folder")
    out = Path(args.save_to)
    if out.suffix.lower() not in (".safetensors", ".ckpt", ".pt"):
        raise UserError(f"--save_to {out.name}: a LoRA is saved as .safetensors or .ckpt/.pt",
                        "change the file extension")
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} already exists", "choose another --save_to or add --overwrite")
    return out


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    out = _check_args(args)
    from ..models import load_model
    from .files import save_network_file

    print(f"loading {args.model_org}", flush=True)
    base = load_model(args.model_org, v2=args.v2 or None, tokenizer=args.tokenizer)
    print(f"loading {args.model_tuned}", flush=True)
    tuned = load_model(args.model_tuned, v2=args.v2 or None, tokenizer=args.tokenizer)
    if base.v2 != tuned.v2:
        raise UserError("--model_org and --model_tuned are different Stable Diffusion versions",
                        "give the base model the tuned model was trained from")
    tensors, report, text_changed = extract_state_dict(
        base, tuned, dim=args.dim, conv_dim=args.conv_dim, clamp_quantile=args.clamp_quantile,
        min_diff=args.min_diff)
    meta = extract_metadata(base, dim=args.dim, conv_dim=args.conv_dim,
                            base_name=args.model_org, tuned_name=args.model_tuned)
    save_network_file(tensors, out, dtype=args.save_precision, metadata=meta)
    kept = sum(r.fro_retained for r in report) / max(1, len(report))
    text = "with the text encoder" if text_changed else \
        f"text encoder unchanged (below --min_diff {args.min_diff}), left out"
    print(f"extracted {len(report)} layers, {text}; on average {kept:.1%} of each layer's "
          "difference kept (Frobenius norm)")
    print(f"saved {out}")
    return 0
