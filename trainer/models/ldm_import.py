"""Single-file (LDM layout) weights -> diffusers / transformers models, with diffusers' converters.

Everything here works offline: the model configs come from the LDM config (the `.yaml` beside
the file, or one built from the tensor shapes), never from the hub.
"""

from __future__ import annotations

from ..errors import UserError
from .ldm_config import EXTRA_SECTION, text_sizes


def _float32(state_dict: dict) -> dict:
    import torch

    return {k: v.to(torch.float32).contiguous() if v.is_floating_point() else v
            for k, v in state_dict.items()}


def _materialize(cls, config, state_dict: dict, what: str, source: str):
    """Build `cls(config)` without random init and load `state_dict` into it, strictly."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls(**config) if isinstance(config, dict) else cls(config)
    try:
        result = model.load_state_dict(_float32(state_dict), strict=False, assign=True)
    except RuntimeError as err:  # a tensor of another shape than the config says
        mismatch = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line),
                        str(err).splitlines()[0])
        raise UserError(f"the {what} weights of {source} do not fit the architecture described by "
                        f"its config ({mismatch})",
                        "fix the .yaml beside the model, or remove it to detect the architecture"
                        ) from None
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        sample = (missing or result.unexpected_keys)[0]
        raise UserError(
            f"the {what} weights of {source} do not fit the architecture described by its "
            f"config ({len(missing)} missing, {len(result.unexpected_keys)} unexpected, "
            f"e.g. {sample!r})",
            "check the .yaml beside the model, or remove it to detect the architecture")
    return model.eval()


def sample_size(ldm_config: dict, v2: bool, v_parameterization: bool) -> int:
    extra = ldm_config.get(EXTRA_SECTION) or {}
    return int(extra.get("sample_size") or (96 if v2 and v_parameterization else 64))


def unet_config(state_dict: dict, ldm_config: dict, size: int, source: str) -> dict:
    """The diffusers U-Net config of these weights (shapes are enough: meta tensors work)."""
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    try:
        config = create_unet_diffusers_config_from_ldm(ldm_config, state_dict)
    except (KeyError, TypeError) as err:
        raise UserError(f"the LDM config for {source} lacks U-Net field {err}",
                        "fix or remove the .yaml beside the model") from None
    config["sample_size"] = size
    heads = config["attention_head_dim"]
    if not all(isinstance(h, int) and h > 0 for h in (heads if isinstance(heads, list) else [heads])):
        raise UserError(f"cannot tell the attention head count of {source}: its U-Net is not "
                        "Stable Diffusion's size and no .yaml describes it",
                        "put the model's .yaml (LDM config) beside it")
    return config


def build_unet(state_dict: dict, ldm_config: dict, size: int, source: str):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    config = unet_config(state_dict, ldm_config, size, source)
    converted = convert_ldm_unet_checkpoint(state_dict, config)
    return _materialize(UNet2DConditionModel, config, converted, "U-Net", source)


def vae_config(state_dict: dict, ldm_config: dict, size: int) -> dict:
    from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

    config = create_vae_diffusers_config_from_ldm(ldm_config, state_dict)
    config["sample_size"] = size * 8
    return config


def build_vae(state_dict: dict, ldm_config: dict, size: int, source: str):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = vae_config(state_dict, ldm_config, size)
    converted = convert_ldm_vae_checkpoint(state_dict, config)
    return _materialize(AutoencoderKL, config, converted, "VAE", source)


def text_config(state_dict: dict, ldm_config: dict, v2: bool, tokenizer):
    from transformers import CLIPTextConfig

    sizes = text_sizes(state_dict)
    extra = ldm_config.get(EXTRA_SECTION) or {}
    heads = extra.get("text_num_attention_heads")
    if not heads and sizes["hidden_size"] % 64:
        raise UserError("cannot tell the attention head count of the text encoder: it is not "
                        "Stable Diffusion's size and no .yaml describes it",
                        "put the model's .yaml (LDM config) beside it")
    heads = int(heads or sizes["hidden_size"] // 64)  # CLIP ViT-L and OpenCLIP ViT-H: 64 wide
    return CLIPTextConfig(
        **sizes, num_attention_heads=heads, hidden_act="gelu" if v2 else "quick_gelu",
        projection_dim=512 if v2 else sizes["hidden_size"], layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)


def build_text_encoder(state_dict: dict, ldm_config: dict, v2: bool, tokenizer, source: str):
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint, convert_open_clip_checkpoint)
    from transformers import CLIPTextModel

    from .ldm_export import strip_text_model

    config = text_config(state_dict, ldm_config, v2, tokenizer)
    if v2:
        converted = convert_open_clip_checkpoint(_HiddenSize(config.hidden_size), state_dict)
    else:
        converted = convert_ldm_clip_checkpoint(state_dict)
    converted = {k: v for k, v in strip_text_model(converted).items()
                 if not k.endswith("position_ids")}
    return _materialize(CLIPTextModel, config, converted, "text encoder", source)


class _HiddenSize:
    """What convert_open_clip_checkpoint reads from the model it is given: the hidden size."""

    def __init__(self, hidden_size: int):
        self.config = type("Config", (), {"hidden_size": hidden_size})()
