"""diffusers SDXL parts -> the original SDXL single-file layout (Stability's "sgm" code).

The U-Net and VAE use SD's names (ldm_export); the two text encoders sit under
`conditioner.embedders.0` (CLIP ViT-L, transformers' names) and `conditioner.embedders.1`
(OpenCLIP bigG, OpenCLIP's names, with its projection stored as a matrix applied from the right).
"""

from __future__ import annotations

from .ldm_export import (clip_to_ldm, logit_scale, open_clip_layers, strip_text_model,
                         unet_to_ldm, vae_to_ldm)

TEXT1_PREFIX = "conditioner.embedders.0.transformer.text_model."
TEXT2_PREFIX = "conditioner.embedders.1.model."


def open_clip_g_to_sgm(text_sd: dict) -> dict:
    sd = strip_text_model(text_sd)
    out = open_clip_layers({k: v for k, v in sd.items() if k != "text_projection.weight"},
                           TEXT2_PREFIX)
    out[TEXT2_PREFIX + "text_projection"] = sd["text_projection.weight"].T.contiguous()
    out[TEXT2_PREFIX + "logit_scale"] = logit_scale(out[TEXT2_PREFIX + "ln_final.weight"])
    return out


def to_sgm(unet_sd: dict, vae_sd: dict, text1_sd: dict, text2_sd: dict, *,
           layers_per_block: int = 2) -> tuple[dict, set[str]]:
    """The whole SDXL single-file state dict, and the keys that hold placeholders."""
    out = unet_to_ldm(unet_sd, layers_per_block)
    out.update(vae_to_ldm(vae_sd))
    out.update(clip_to_ldm(text1_sd, TEXT1_PREFIX))
    out.update(open_clip_g_to_sgm(text2_sd))
    placeholders = {TEXT1_PREFIX + "embeddings.position_ids", TEXT2_PREFIX + "logit_scale"}
    return out, placeholders
