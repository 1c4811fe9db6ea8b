"""The LDM .yaml written beside a saved single file (v2-inference / v2-inference-v style)."""

from __future__ import annotations

from .bundle import ModelBundle
from .ldm_config import EXTRA_SECTION, ldm_config_from_weights


def _heads(unet_config) -> dict:
    """diffusers' attention_head_dim (per-level head counts) -> LDM num_heads/num_head_channels."""
    heads = unet_config.attention_head_dim
    heads = list(heads) if isinstance(heads, (list, tuple)) else [heads] * len(
        unet_config.block_out_channels)
    if len(set(heads)) == 1:
        return {"num_heads": heads[0]}
    return {"num_head_channels": unet_config.block_out_channels[0] // heads[0]}


def _default_sample_size(bundle: ModelBundle) -> int:
    return 96 if bundle.v2 and bundle.v_parameterization else 64


def _nonstandard(bundle: ModelBundle) -> dict:
    extra = {}
    size = int(bundle.unet.config.sample_size)
    if size != _default_sample_size(bundle):
        extra["sample_size"] = size
    text = bundle.text_encoder.config
    if text.num_attention_heads != max(1, text.hidden_size // 64):
        extra["text_num_attention_heads"] = text.num_attention_heads
    return extra


def needs_yaml(bundle: ModelBundle) -> bool:
    """SD 2 models need it in image generators; smaller-than-SD models to describe themselves."""
    return bundle.v2 or bundle.v_parameterization or bool(_nonstandard(bundle))


def ldm_config_for(bundle: ModelBundle, exported: dict | None = None) -> dict:
    """The config describing the bundle's architecture: from the exported shapes, plus what
    shapes do not tell (head counts, native resolution)."""
    exported = exported if exported is not None else _meta_export(bundle)
    config = ldm_config_from_weights(exported, bundle.v_parameterization)
    unet = config["model"]["params"]["unet_config"]["params"]
    for key in ("num_heads", "num_head_channels"):
        unet.pop(key, None)
    heads = _heads(bundle.unet.config)
    # keep the usual key order: heads come right after channel_mult
    ordered = {}
    for key, value in unet.items():
        ordered[key] = value
        if key == "channel_mult":
            ordered.update(heads)
    config["model"]["params"]["unet_config"]["params"] = ordered
    config["model"]["params"]["scale_factor"] = float(bundle.vae.config.scaling_factor)
    extra = _nonstandard(bundle)
    if extra:
        config[EXTRA_SECTION] = extra
    return config


def _meta_export(bundle: ModelBundle) -> dict:
    """The exported key names with their shapes, without copying any weight."""
    import torch

    from .ldm_export import to_ldm

    def meta(module):
        return {k: torch.empty(v.shape, device="meta") for k, v in module.state_dict().items()}

    state, _ = to_ldm(meta(bundle.unet), meta(bundle.vae), meta(bundle.text_encoder),
                      v2=bundle.v2, layers_per_block=bundle.unet.config.layers_per_block)
    return state
