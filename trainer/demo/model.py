"""The demo model's architecture: Stable Diffusion 1.x in miniature, small enough for a CPU.

Same parts as SD 1.x (CLIP text encoder, U-Net with 4 levels, KL autoencoder), narrower and
shallower: one resnet per level, cross-attention in the middle two levels, a 3-level VAE (64 px
pictures -> 16x16x4 latents) and a 2-layer text encoder that knows a few whole words.
GroupNorm keeps SD's 32 groups because single-file configs (LDM .yaml) cannot say otherwise.
"""

from __future__ import annotations

from pathlib import Path

from ..models import factory
from .subject import IDENTIFIER
from .world import COLORS, SHAPES

WORDS = ("a", "an", "the", "of", "and", "photo", "picture", "shape", IDENTIFIER,
         *COLORS, *SHAPES, "ring", "star", "purple", "orange", "white", "black")
SPEC = factory.ModelSpec(
    v2=False, unet_channels=(32, 64, 64, 64), unet_heads=4, vae_channels=(32, 32, 32),
    text_hidden=64, text_layers=2, text_heads=4, text_intermediate=256, sample_size=16,
    words=WORDS)
LAYERS_PER_BLOCK = 1


def unet_config() -> dict:
    # Cross-attention at the 8x8 and 4x4 levels only: at 16x16 it would cost 40 % of the step
    # time on a CPU for nothing these flat pictures need.
    return {**factory.unet_config(SPEC), "layers_per_block": LAYERS_PER_BLOCK,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                 "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                               "UpBlock2D")}


def vae_config(scaling_factor: float = factory.VAE_SCALING) -> dict:
    levels = len(SPEC.vae_channels)
    return {**factory.vae_config(SPEC), "layers_per_block": LAYERS_PER_BLOCK,
            "down_block_types": ("DownEncoderBlock2D",) * levels,
            "up_block_types": ("UpDecoderBlock2D",) * levels,
            "sample_size": SPEC.sample_size * 2 ** (levels - 1), "scaling_factor": scaling_factor}


def build_vae(seed: int = 0):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**vae_config())


def build_random(tokenizer_folder: Path, vae, seed: int = 0):
    """A ModelBundle with a random U-Net and text encoder around the given (trained) VAE; the
    tokenizer is written to `tokenizer_folder`."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..models.bundle import ModelBundle

    tokenizer = factory.write_tokenizer(Path(tokenizer_folder), WORDS, v2=False)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config())
    text_encoder = CLIPTextModel(CLIPTextConfig(**factory.text_config(
        SPEC, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
        tokenizer.pad_token_id)))
    return ModelBundle(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                       v2=False, v_parameterization=False, source_kind="diffusers",
                       source="demo (random weights)", source_format="safetensors")
