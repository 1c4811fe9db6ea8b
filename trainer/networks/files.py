"""LoRA files: read and write kohya-format networks, tell what a file is and what it fits.

A kohya LoRA holds, for each layer, `<name>.lora_down.weight`, `<name>.lora_up.weight` and a
0-dim `<name>.alpha`; `.safetensors` files also carry string metadata (ss_* keys).
Base model families are named "sd1", "sd2" and "sdxl"; "sd" is SD 1.x or 2.x, not told apart.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Mapping

import torch

from ..atomic import atomic_path
from ..disk_space import ensure_free_space
from ..errors import UserError
from . import targets as T

SAFETENSORS = ".safetensors"
PICKLES = (".ckpt", ".pt", ".pth")
PRECISIONS = {"float": torch.float32, "fp32": torch.float32, "fp16": torch.float16,
              "bf16": torch.bfloat16}
_DOWN = ".lora_down.weight"
_TE_LAYER = re.compile(r"^lora_te_text_model_encoder_layers_(\d+)_")
FAMILY_TITLES = {"sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x",
                 "sdxl": "SDXL", "sd": "Stable Diffusion 1.x/2.x"}


def to_dtype(precision: torch.dtype | str | None) -> torch.dtype | None:
    if precision is None or isinstance(precision, torch.dtype):
        return precision
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise UserError(f"unknown precision {precision!r}", "use float, fp16 or bf16") from None


# ---------------------------------------------------------------------- reading


def read_network_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of a kohya LoRA file; a UserError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist" if not path.exists() else f"{path} is a folder",
                        "give a LoRA .safetensors file")
    state_dict, metadata = _read_tensors(path)
    problem = describe_non_lora(state_dict)
    if problem:
        raise UserError(f"{path.name} {problem}", "give a LoRA file in kohya format "
                        "(lora_unet_… / lora_te_… / lora_te1_… keys), such as the ones this "
                        "trainer writes")
    return state_dict, metadata


def _read_tensors(path: Path) -> tuple[dict, dict]:
    if path.suffix.lower() in PICKLES:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickles fail in many ways; all mean "not usable"
            raise UserError(f"{path.name} is not a readable weights file ({_short(err)})",
                            "give a .safetensors or .ckpt/.pt LoRA file") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path.name} does not hold a table of weights",
                            "give a LoRA .safetensors file")
        return {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}, {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            return {key: handle.get_tensor(key) for key in handle.keys()}, metadata
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise UserError(f"{path.name} is not a readable .safetensors file ({_short(err)})",
                        "give a LoRA .safetensors file") from None


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:120]


def describe_non_lora(state_dict: Mapping[str, object]) -> str | None:
    """Why `state_dict` is not a kohya LoRA ("is a …"), or None when it is one."""
    keys = list(state_dict)
    if not keys:
        return "holds no weights"
    if any(".hada_w1_a" in k or ".lokr_w" in k for k in keys):
        return "is a LyCORIS LoHa/LoKr network; only LoRA/LoCon layers are supported"
    if any(k.endswith((".dora_scale", ".lora_mid.weight")) for k in keys):
        return "uses DoRA or CP-decomposed layers; only plain LoRA/LoCon layers are supported"
    if any(k.startswith(("unet.", "text_encoder.")) and ("lora" in k) for k in keys):
        return "is a diffusers/PEFT-format LoRA, not a kohya-format one"
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.", "conditioner.")) for k in keys) \
            or any(k.startswith(("down_blocks.", "conv_in.")) for k in keys):
        return "is a Stable Diffusion model, not a LoRA"
    if not layer_names(state_dict):
        return "is not a LoRA (no lora_unet_…, lora_te_… or lora_te1_/lora_te2_… layers)"
    return None


def layer_names(state_dict: Mapping[str, object]) -> list[str]:
    return sorted(k[: -len(_DOWN)] for k in state_dict
                  if k.endswith(_DOWN) and T.part_of(k) is not None)


def layer_shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, float]]:
    """{layer: (rank, alpha)}; files without alphas (early LoRAs) mean alpha = rank."""
    shapes = {}
    for name in layer_names(state_dict):
        rank = int(state_dict[name + _DOWN].shape[0])
        alpha = state_dict.get(name + ".alpha")
        shapes[name] = (rank, float(alpha) if alpha is not None else float(rank))
    return shapes


def file_is_v2(state_dict: Mapping[str, torch.Tensor]) -> bool | None:
    """Whether an SD 1.x/2.x LoRA was trained on SD 2.x, from its shapes (None: cannot tell)."""
    votes = set()
    for key, value in state_dict.items():
        if not key.endswith(_DOWN):
            continue
        if key.startswith(T.UNET_PREFIX) and ("_proj_in." in key or "_proj_out." in key):
            votes.add(value.dim() == 2)  # SD 2 projects with Linear, SD 1 with 1x1 Conv2d
        elif key.endswith(("attn2_to_k" + _DOWN, "_self_attn_q_proj" + _DOWN)):
            width = value.shape[1]
            if width in (768, 1024):
                votes.add(width == 1024)
        match = _TE_LAYER.match(key)
        if match and int(match.group(1)) >= 12:  # SD 1 has 12 text layers, SD 2 uses 23
            votes.add(True)
    return votes.pop() if len(votes) == 1 else None


def file_family(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """'sdxl', 'sd1', 'sd2', 'sd' (1.x or 2.x) or None (cannot tell) for a kohya LoRA.

    SDXL files name their two text encoders lora_te1_/lora_te2_ and their U-Net layers by the
    SGM blocks (input_blocks…); some converters write SDXL U-Nets with diffusers names, which
    the 2048-wide cross-attention of SDXL gives away. A lora_te_ encoder means SD 1.x/2.x.
    """
    names = layer_names(state_dict)
    if any(T.encoder_of(name) in ("te1", "te2") for name in names):
        return "sdxl"
    unet_prefixes = tuple(f"{T.UNET_PREFIX}_{block}_" for block in T.SGM_BLOCKS)
    if any(name.startswith(unet_prefixes) for name in names):
        return "sdxl"
    if any(name.endswith("attn2_to_k") and state_dict[name + _DOWN].shape[1] == 2048
           for name in names):
        return "sdxl"
    v2 = file_is_v2(state_dict)
    if v2 is not None:
        return "sd2" if v2 else "sd1"
    return "sd" if any(T.encoder_of(name) == "te" for name in names) else None


def family_title(family: str | None) -> str:
    return FAMILY_TITLES.get(family or "", "unknown")


def family(v2: bool | None) -> str:
    """The title of SD 1.x (False) or 2.x (True)."""
    return family_title(None if v2 is None else ("sd2" if v2 else "sd1"))


def families_clash(first: str | None, second: str | None) -> bool:
    """True when two known families cannot share a LoRA ("sd" fits both sd1 and sd2)."""
    if first is None or second is None or first == second:
        return False
    return "sdxl" in (first, second) or {first, second} == {"sd1", "sd2"}


def check_compatible(state_dict, network, label: str, base_family: str | None = None) -> None:
    """UserError when the file was trained on another base family than the model's
    (`network`'s, or `base_family` without a network)."""
    model_family = network.family if network is not None else base_family
    lora_family = file_family(state_dict)
    if families_clash(lora_family, model_family):
        raise UserError(f"{label} is a LoRA for {family_title(lora_family)}, but the base model "
                        f"is {family_title(model_family)}", "use a LoRA trained on this kind of "
                        "base model, or the base model the LoRA was trained on")


# ---------------------------------------------------------------------- writing


def save_network_file(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, *,
                      dtype: torch.dtype | str | None = None,
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write atomically; .safetensors gets `metadata` plus the sshs_* hashes tools read."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != SAFETENSORS and suffix not in PICKLES:
        raise UserError(f"{path.name}: a LoRA is saved as .safetensors or .ckpt/.pt",
                        "change the file extension")
    tensors = cast_tensors(state_dict, to_dtype(dtype))
    ensure_free_space(path.parent, sum(t.numel() * t.element_size() for t in tensors.values()),
                      f"the LoRA {path.name}")
    with atomic_path(path) as tmp:
        if suffix == SAFETENSORS:
            from safetensors.torch import save_file

            meta = {str(k): str(v) for k, v in (metadata or {}).items()}
            meta.update(addnet_hashes(tensors, meta))
            save_file(tensors, str(tmp), metadata=meta)
        else:
            torch.save(tensors, tmp)
    return path


def cast_tensors(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | None) -> dict:
    out = {}
    for key, value in state_dict.items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        out[key] = value.contiguous()
    return out


def addnet_hashes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> dict:
    """sshs_model_hash / sshs_legacy_hash, as sd-scripts stores them for image generators.

    model hash: sha256 of the file's data section (everything after the header);
    legacy hash: sha256 of 64 KiB at offset 1 MiB of the file; both computed for the file
    written with only the ss_* metadata, so later metadata edits do not change them.
    """
    from safetensors.torch import save

    training_only = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    blob = save(dict(tensors), metadata=training_only or None)
    header_size = int.from_bytes(blob[:8], "little")
    model_hash = hashlib.sha256(blob[8 + header_size:]).hexdigest()
    legacy_hash = hashlib.sha256(blob[0x100000:0x110000]).hexdigest()[:8]
    return {"sshs_model_hash": model_hash, "sshs_legacy_hash": legacy_hash}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def legacy_model_hash(path: str | os.PathLike) -> str:
    """AUTOMATIC1111's old 8-digit model hash: sha256 of 64 KiB at offset 1 MiB."""
    with open(path, "rb") as handle:
        handle.seek(0x100000)
        return hashlib.sha256(handle.read(0x10000)).hexdigest()[:8]

