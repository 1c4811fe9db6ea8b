"""Write a diffusers StableDiffusionPipeline folder from state dicts, atomically, offline.

Written by hand rather than with save_pretrained so that the weights can be cast to the save
precision without a second copy of the live (training) models, and so that the folder is
complete even when the input was a single file (no configs fetched from the hub).
"""

from __future__ import annotations

import json
from pathlib import Path

from .bundle import ModelBundle

WEIGHT_NAMES = {
    # part: (safetensors name, PyTorch pickle name)
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "text_encoder": ("model.safetensors", "pytorch_model.bin"),
}


def _write_weights(state: dict, file: Path, safetensors: bool) -> None:
    import torch

    from .checkpoint_io import _unshare

    tensors = {k: v.to("cpu").contiguous() for k, v in state.items()}
    if safetensors:
        from safetensors.torch import save_file

        save_file(_unshare(tensors), str(file), metadata={"format": "pt"})
    else:
        torch.save(tensors, file)


def _text_encoder_state(state: dict) -> dict:
    """Saved under `text_model.` (the layout transformers 4 reads; transformers 5 reads both);
    the projection of SDXL's second encoder sits beside it."""
    from .ldm_export import strip_text_model

    return {(k if k.startswith("text_projection.") else "text_model." + k): v
            for k, v in strip_text_model(state).items() if not k.endswith("position_ids")}


def _text_encoder_config(text_encoder):
    """The encoder's config naming its class, as model.save_pretrained writes it: diffusers'
    training scripts pick the class from `architectures[0]`."""
    config = text_encoder.config.__class__.from_dict(text_encoder.config.to_dict())
    config.architectures = [type(text_encoder).__name__]
    return config


def _scheduler_config(bundle: ModelBundle) -> dict:
    import diffusers

    if bundle.xl:
        from .xl_factory import scheduler_config

        return {"_class_name": "EulerDiscreteScheduler", "_diffusers_version": diffusers.__version__,
                **scheduler_config()}
    return {"_class_name": "DDIMScheduler", "_diffusers_version": diffusers.__version__,
            **bundle.noise_scheduler_config, "set_alpha_to_one": False,
            "timestep_spacing": "leading"}


def write_diffusers(bundle: ModelBundle, folder: Path, parts: dict, *, safetensors: bool) -> Path:
    from ..atomic import atomic_path
    from .saving import model_index

    with atomic_path(folder, is_dir=True) as tmp:
        for name, model in (("unet", bundle.unet), ("vae", bundle.vae)):
            (tmp / name).mkdir()
            model.save_config(str(tmp / name))
            _write_weights(parts[name], tmp / name / WEIGHT_NAMES[name][0 if safetensors else 1],
                           safetensors)
        encoders = [("text_encoder", bundle.text_encoder, bundle.tokenizer, "tokenizer")]
        if bundle.xl:
            encoders.append(("text_encoder_2", bundle.text_encoder_2, bundle.tokenizer_2,
                             "tokenizer_2"))
        for name, encoder, tokenizer, tokenizer_name in encoders:
            (tmp / name).mkdir()
            _text_encoder_config(encoder).save_pretrained(str(tmp / name))
            _write_weights(_text_encoder_state(parts[name]),
                           tmp / name / WEIGHT_NAMES["text_encoder"][0 if safetensors else 1],
                           safetensors)
            tokenizer.save_pretrained(str(tmp / tokenizer_name))
        (tmp / "scheduler").mkdir()
        (tmp / "scheduler" / "scheduler_config.json").write_text(
            json.dumps(_scheduler_config(bundle), indent=2), encoding="utf-8")
        (tmp / "model_index.json").write_text(model_index(bundle), encoding="utf-8")
    return folder
