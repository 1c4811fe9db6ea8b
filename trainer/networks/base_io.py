"""Loading and saving the base model for lora-merge.

Uses trainer.models (single files and diffusers folders, every save format) when it provides
load_model/save_model; until then, diffusers folders through diffusers' own pipeline class.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

FOLDER_FORMATS = ("diffusers", "diffusers_safetensors")
FILE_FORMATS = ("safetensors", "ckpt")


def _model_io():
    try:
        from ..models import load_model, save_model
    except ImportError:
        return None
    return load_model, save_model


def guess_format(out: str | os.PathLike) -> str:
    suffix = Path(out).suffix.lower()
    return {".safetensors": "safetensors", ".ckpt": "ckpt"}.get(suffix, "diffusers_safetensors")


@dataclass
class _Pipeline:
    """The parts of a diffusers pipeline folder that merging needs."""

    pipe: object

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def text_encoder(self):
        return self.pipe.text_encoder


def load_base(path: str, *, v2: bool = False, v_parameterization: bool = False):
    """An object with .unet and .text_encoder (float32), from a checkpoint or folder."""
    io = _model_io()
    if io is not None:
        return io[0](path, v2=v2, v_parameterization=v_parameterization)
    if not Path(path).is_dir() or not (Path(path) / "model_index.json").is_file():
        raise UserError(f"{path} is not a diffusers model folder (model_index.json missing)",
                        "give a diffusers folder")
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(path), safety_checker=None,
                                                   requires_safety_checker=False)
    return _Pipeline(pipe)


def save_base(bundle, out: str | os.PathLike, *, save_model_as: str, save_precision: str) -> None:
    io = _model_io()
    if io is not None:
        io[1](bundle, str(out), save_model_as=save_model_as, save_precision=save_precision)
        return
    if save_model_as not in FOLDER_FORMATS:
        raise UserError(f"saving as {save_model_as} is not available in this version",
                        "use --save_model_as diffusers_safetensors")
    import torch

    from ..atomic import atomic_path

    dtype = {"float": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[save_precision]
    pipe = bundle.pipe.to(dtype=dtype)
    with atomic_path(out, is_dir=True) as tmp:
        pipe.save_pretrained(str(tmp), safe_serialization=save_model_as == "diffusers_safetensors")
