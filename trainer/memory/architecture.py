"""A base model's architecture on the meta device: the real module tree, no weights in memory.

Built from what describes it (a diffusers folder's config.json files, or a single file's tensor
shapes and .yaml) with the same detection the loader uses, so counting parameters and tracing a
forward pass of real Stable Diffusion sizes takes seconds and needs neither a GPU nor a network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError


@dataclass
class MetaModels:
    unet: Any  # UNet2DConditionModel on meta, float32
    text_encoder: Any  # CLIPTextModel on meta, float32
    vae: Any  # AutoencoderKL on meta, float32
    text_encoder_2: Any = None  # SDXL's CLIPTextModelWithProjection (OpenCLIP bigG); else None

    @property
    def xl(self) -> bool:
        return self.text_encoder_2 is not None


class _TokenIds:
    """What the text-encoder config reads from a tokenizer; the ids do not change any size."""

    bos_token_id, eos_token_id, pad_token_id = 0, 1, 1


def _on_meta(build):
    import torch

    with torch.device("meta"):
        return build()


def from_configs(unet_config: dict, vae_config: dict, text_config) -> MetaModels:
    """Meta models from a diffusers U-Net config, a VAE config and a CLIPTextConfig."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = _on_meta(lambda: UNet2DConditionModel.from_config(unet_config))
    vae = _on_meta(lambda: AutoencoderKL.from_config(vae_config))
    text = _on_meta(lambda: CLIPTextModel(text_config))
    return MetaModels(unet, text, vae)


def _read_config(folder: Path, part: str) -> dict:
    file = folder / part / "config.json"
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        from ..models.loading import MODEL_HINT

        raise UserError(f"{file} cannot be read ({type(err).__name__})", MODEL_HINT) from None


def from_diffusers_folder(folder: Path) -> MetaModels:
    from transformers import CLIPTextConfig

    from ..models.loading import MODEL_HINT

    if not (folder / "model_index.json").is_file():
        raise UserError(f"folder {folder} is not a diffusers model (no model_index.json)",
                        MODEL_HINT)
    from ..models.xl_loading import is_xl_folder

    if is_xl_folder(folder):
        from .xl import from_xl_folder

        return from_xl_folder(folder)
    text = CLIPTextConfig.from_dict(_read_config(folder, "text_encoder"))
    return from_configs(_read_config(folder, "unet"), _read_config(folder, "vae"), text)


def from_single_file(path: Path, v2: bool | None, v_parameterization: bool | None) -> MetaModels:
    from ..models.checkpoint_io import SINGLE_FILE_SUFFIXES, read_shapes
    from ..models.ldm_import import sample_size, text_config, unet_config, vae_config
    from ..models.loading import MODEL_HINT, describe_single, refuse_non_model

    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise UserError(f"{path} is not a model checkpoint (expected .safetensors or .ckpt)",
                        MODEL_HINT)
    state = read_shapes(path)
    from ..models.xl_loading import is_xl_state

    if is_xl_state(state):
        from .xl import from_xl_single

        return from_xl_single(path, state)
    refuse_non_model(state, path)
    try:
        config, _, is_v2, v_param = describe_single(path, state, v2, v_parameterization)
        size = sample_size(config, is_v2, v_param)
        return from_configs(unet_config(state, config, size, str(path)),
                            vae_config(state, config, size),
                            text_config(state, config, is_v2, _TokenIds()))
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as err:
        raise UserError(f"{path} does not have the Stable Diffusion 1.x/2.x layout "
                        f"({type(err).__name__})", MODEL_HINT) from None


def meta_models(name_or_path: str, *, v2: bool | None = None,
                v_parameterization: bool | None = None) -> MetaModels:
    """The architecture of any base model `load_model` accepts, on the meta device."""
    from ..models import hub
    from ..models.loading import MODEL_HINT

    if not name_or_path:
        raise UserError("no base model given", "set --pretrained_model_name_or_path")
    path = Path(name_or_path)
    if path.is_file():
        return from_single_file(path, v2, v_parameterization)
    if path.is_dir():
        return from_diffusers_folder(path)
    if hub.looks_like_hub_id(name_or_path):
        return from_diffusers_folder(hub.pipeline_folder(name_or_path))
    raise UserError(f"base model {name_or_path} does not exist", MODEL_HINT)


def from_spec(name: str) -> MetaModels:
    """A factory spec (tiny-v1, sd15, sd21, …, or an SDXL one: tiny-xl, sdxl) on meta, with
    CLIP's real vocabulary size."""
    from transformers import CLIPTextConfig

    from ..models import factory
    from ..models.xl_factory import XL_SPECS

    if name in XL_SPECS:
        from .xl import from_xl_spec

        return from_xl_spec(name)

    s = factory.spec(name)
    vocab = 49408  # the CLIP BPE vocabulary of SD 1.x and 2.x
    text = CLIPTextConfig(**factory.text_config(s, vocab, vocab - 2, vocab - 1, vocab - 1))
    return from_configs(factory.unet_config(s), factory.vae_config(s), text)
