"""diffusers / transformers state dicts -> the original Stable Diffusion ("LDM") single-file layout.

No library offers this direction, so it is written here; tests check it against diffusers' own
LDM -> diffusers converters in both directions and against the real SD 1.5 / 2.1 key sets.
The mapping is derived from the key names, so any width (tiny test models included) works.
"""

from __future__ import annotations

import math
import re

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
OPEN_CLIP_PREFIX = "cond_stage_model.model."

# DDPM buffers LatentDiffusion keeps in its state dict (register_schedule).
SCHEDULE_KEYS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
)

_UNET_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"),
                ("conv_shortcut", "skip_connection"))
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             # SDXL's embedding of the pooled text and the size numbers
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
_VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"),
                  ("to_out.0", "proj_out"))


def _rename(rest: str, pairs) -> str:
    for new, old in pairs:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


def unet_to_ldm(unet_sd: dict, layers_per_block: int) -> dict:
    """diffusers UNet2DConditionModel keys -> `model.diffusion_model.*` keys (same tensors)."""
    per_level = layers_per_block + 1
    up_has_attention = {int(m.group(1)) for k in unet_sd
                        if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out = {}
    for key, value in unet_sd.items():
        out[UNET_PREFIX + _unet_key(key, per_level, up_has_attention)] = value
    return out


def _unet_key(key: str, per_level: int, up_has_attention: set[int]) -> str:
    for new, old in _UNET_TOP.items():
        if key.startswith(new + "."):
            return old + key[len(new):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, index, rest = int(m[1]), m[2], int(m[3]), m[4]
        ldm = f"input_blocks.{1 + block * per_level + index}"
        return f"{ldm}.0.{_rename(rest, _UNET_RESNET)}" if kind == "resnets" else f"{ldm}.1.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per_level}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}.{_rename(m[2], _UNET_RESNET)}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, index, rest = int(m[1]), m[2], int(m[3]), m[4]
        ldm = f"output_blocks.{block * per_level + index}"
        return f"{ldm}.0.{_rename(rest, _UNET_RESNET)}" if kind == "resnets" else f"{ldm}.1.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        block = int(m[1])
        slot = 2 if block in up_has_attention else 1
        return f"output_blocks.{block * per_level + per_level - 1}.{slot}.conv.{m[2]}"
    raise ValueError(f"no Stable Diffusion single-file name for U-Net weight {key!r}")


def vae_to_ldm(vae_sd: dict) -> dict:
    """diffusers AutoencoderKL keys -> `first_stage_model.*` keys (attention as 1x1 convs)."""
    up_blocks = 1 + max((int(m.group(1)) for k in vae_sd
                         if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))), default=-1)
    out = {}
    for key, value in vae_sd.items():
        ldm = _vae_key(key, up_blocks)
        if ".mid.attn_1." in ldm and ldm.endswith(".weight") and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)
        out[VAE_PREFIX + ldm] = value
    return out


def _vae_key(key: str, up_blocks: int) -> str:
    key = key.replace("conv_norm_out.", "norm_out.")
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
        return f"{m[1]}.mid.attn_1.{_rename(m[2], _VAE_ATTENTION)}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", key):
        return f"encoder.down.{m[1]}.downsample.{m[2]}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        level = up_blocks - 1 - int(m[1])  # diffusers counts decoder levels the other way round
        return f"decoder.up.{level}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key):
        return f"decoder.up.{up_blocks - 1 - int(m[1])}.upsample.{m[2]}"
    if re.match(r"(encoder|decoder)\.(conv_in|conv_out|norm_out)\.|(post_)?quant_conv\.", key):
        return key
    raise ValueError(f"no Stable Diffusion single-file name for VAE weight {key!r}")


def strip_text_model(text_sd: dict) -> dict:
    """transformers 4 wrote CLIPTextModel keys under `text_model.`, transformers 5 does not."""
    return {k.removeprefix("text_model."): v for k, v in text_sd.items()}


def clip_to_ldm(text_sd: dict, prefix: str = CLIP_PREFIX) -> dict:
    """transformers' CLIP keys under `prefix` (SD 1.x: `cond_stage_model.transformer.text_model.`),
    with the position ids the original layout stores."""
    import torch

    out = {prefix + k: v for k, v in strip_text_model(text_sd).items()
           if not k.endswith("position_ids")}
    positions = out[prefix + "embeddings.position_embedding.weight"].shape[0]
    out[prefix + "embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    return out


_OPEN_CLIP_LAYER = (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                    ("mlp.fc2", "mlp.c_proj"), ("self_attn.out_proj", "attn.out_proj"))


def open_clip_layers(text_sd: dict, prefix: str) -> dict:
    """transformers' CLIP text keys -> OpenCLIP's under `prefix`, q/k/v fused into in_proj."""
    import torch

    sd = strip_text_model(text_sd)
    out = {
        prefix + "token_embedding.weight": sd["embeddings.token_embedding.weight"],
        prefix + "positional_embedding": sd["embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": sd["final_layer_norm.weight"],
        prefix + "ln_final.bias": sd["final_layer_norm.bias"],
    }
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k)))
    for i in range(layers):
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [sd[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"])
        for new, old in _OPEN_CLIP_LAYER:
            for kind in ("weight", "bias"):
                out[f"{dst}{old}.{kind}"] = sd[f"{src}{new}.{kind}"]
    return out


def logit_scale(like) -> "object":
    """CLIP's learned temperature, unused by image generation; the value CLIP ends training at."""
    import torch

    return torch.tensor(math.log(100.0), dtype=like.dtype, device=like.device)


def open_clip_to_ldm(text_sd: dict) -> tuple[dict, set[str]]:
    """SD 2.x: OpenCLIP keys under `cond_stage_model.model.`.

    diffusers keeps 23 of OpenCLIP's 24 blocks (SD 2 reads the penultimate layer) and no
    projection; the original layout has them, so placeholders are written (returned as the
    second value, so a caller holding the original weights can put those back instead).
    """
    import torch

    out = open_clip_layers(text_sd, OPEN_CLIP_PREFIX)
    layers = 1 + max(int(m.group(1)) for k in out if (m := re.search(r"\.resblocks\.(\d+)\.", k)))
    like = out[OPEN_CLIP_PREFIX + "ln_final.weight"]
    placeholders = {k.replace(f".resblocks.{layers - 1}.", f".resblocks.{layers}."): v.clone()
                    for k, v in out.items() if f".resblocks.{layers - 1}." in k}
    placeholders[OPEN_CLIP_PREFIX + "text_projection"] = torch.eye(
        like.shape[0], dtype=like.dtype, device=like.device)
    placeholders[OPEN_CLIP_PREFIX + "logit_scale"] = logit_scale(like)
    out.update(placeholders)
    return out, set(placeholders)


def schedule_buffers(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012) -> dict:
    """LatentDiffusion's DDPM buffers for SD's scaled-linear schedule (float32, as LDM stores)."""
    import numpy as np
    import torch

    betas = np.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps,
                        dtype=np.float64) ** 2
    alphas = 1.0 - betas
    cumprod = np.cumprod(alphas)
    prev = np.append(1.0, cumprod[:-1])
    variance = betas * (1.0 - prev) / (1.0 - cumprod)
    values = dict(
        betas=betas, alphas_cumprod=cumprod, alphas_cumprod_prev=prev,
        sqrt_alphas_cumprod=np.sqrt(cumprod), sqrt_one_minus_alphas_cumprod=np.sqrt(1 - cumprod),
        log_one_minus_alphas_cumprod=np.log(1 - cumprod),
        sqrt_recip_alphas_cumprod=np.sqrt(1 / cumprod),
        sqrt_recipm1_alphas_cumprod=np.sqrt(1 / cumprod - 1), posterior_variance=variance,
        posterior_log_variance_clipped=np.log(np.maximum(variance, 1e-20)),
        posterior_mean_coef1=betas * np.sqrt(prev) / (1 - cumprod),
        posterior_mean_coef2=(1 - prev) * np.sqrt(alphas) / (1 - cumprod),
    )
    return {k: torch.tensor(values[k], dtype=torch.float32) for k in SCHEDULE_KEYS}


def to_ldm(unet_sd: dict, vae_sd: dict, text_sd: dict, *, v2: bool,
           layers_per_block: int = 2) -> tuple[dict, set[str]]:
    """The whole single-file state dict, and the keys that hold placeholders, not weights."""
    out = unet_to_ldm(unet_sd, layers_per_block)
    out.update(vae_to_ldm(vae_sd))
    placeholders = set(SCHEDULE_KEYS)
    if v2:
        text, text_placeholders = open_clip_to_ldm(text_sd)
        placeholders |= text_placeholders
    else:
        text = clip_to_ldm(text_sd)
        placeholders.add(CLIP_PREFIX + "embeddings.position_ids")
    out.update(text)
    out.update(schedule_buffers())
    return out, placeholders
