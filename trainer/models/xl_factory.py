"""Build Stable-Diffusion-XL-shaped models from scratch (random weights, no download).

The real SDXL 1.0 base topology at any width: a U-Net of three levels (no attention on the
first, transformer depth per level), additional time and pooled-text embeddings ("text_time"),
two text encoders (CLIP ViT-L, and OpenCLIP ViT-bigG with a projection) whose penultimate
states are concatenated, and the 8x VAE. `sdxl` is the real size; `tiny-xl` trains in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .factory import SD_BETAS, TINY_WORDS, write_tokenizer

XL_VAE_SCALING = 0.13025
# Six size numbers (original h/w, crop top/left, target h/w), each a sinusoidal embedding.
TIME_IDS = 6


@dataclass(frozen=True)
class XLSpec:
    unet_channels: tuple[int, ...]
    unet_heads: tuple[int, ...]  # diffusers' "attention_head_dim" (the head count) per level
    transformer_depth: tuple[int, ...]  # transformer blocks per attention, per level
    time_embed_dim: int  # addition_time_embed_dim: width of each size number's embedding
    vae_channels: tuple[int, ...]
    text1: tuple[int, int, int, int]  # CLIP ViT-L: hidden, layers, heads, intermediate
    text2: tuple[int, int, int, int]  # OpenCLIP bigG: hidden, layers, heads, intermediate
    sample_size: int  # latent side of the native resolution (1024 px -> 128)
    norm_groups: int = 32
    words: tuple[str, ...] = ()
    vocab_size: int = 0

    @property
    def context_dim(self) -> int:
        return self.text1[0] + self.text2[0]

    @property
    def pooled_dim(self) -> int:
        return self.text2[0]  # the projection keeps bigG's width


XL_SPECS: dict[str, XLSpec] = {
    "tiny-xl": XLSpec(unet_channels=(32, 64, 64), unet_heads=(2, 4, 4), transformer_depth=(1, 1, 2),
                      time_embed_dim=8, vae_channels=(32, 64, 64, 64), text1=(32, 3, 4, 64),
                      # Two widths, as in the real model: readers tell the encoders apart by it.
                      text2=(48, 4, 4, 96), sample_size=16, words=TINY_WORDS),
    "sdxl": XLSpec(unet_channels=(320, 640, 1280), unet_heads=(5, 10, 20),
                   transformer_depth=(1, 2, 10), time_embed_dim=256,
                   vae_channels=(128, 256, 512, 512), text1=(768, 12, 12, 3072),
                   text2=(1280, 32, 20, 5120), sample_size=128, vocab_size=49408),
}


def xl_spec(name: str) -> XLSpec:
    try:
        return XL_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown SDXL spec {name!r}; known: {', '.join(XL_SPECS)}") from None


def unet_config(s: XLSpec) -> dict:
    return dict(
        sample_size=s.sample_size, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=s.unet_channels, layers_per_block=2,
        transformer_layers_per_block=s.transformer_depth, attention_head_dim=s.unet_heads,
        cross_attention_dim=s.context_dim, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=s.time_embed_dim,
        projection_class_embeddings_input_dim=s.pooled_dim + TIME_IDS * s.time_embed_dim,
        norm_num_groups=s.norm_groups,
    )


def vae_config(s: XLSpec) -> dict:
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=s.vae_channels, norm_num_groups=s.norm_groups,
        sample_size=s.sample_size * 8, scaling_factor=XL_VAE_SCALING, force_upcast=True,
    )


def text_config(sizes: tuple[int, int, int, int], act: str, vocab_size: int, tokenizer,
                projection_dim: int) -> dict:
    hidden, layers, heads, intermediate = sizes
    return dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
        hidden_act=act, projection_dim=projection_dim, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def scheduler_config() -> dict:
    """SDXL's schedule: SD's betas and epsilon target, sampled with Euler as SDXL ships."""
    return dict(**SD_BETAS, prediction_type="epsilon", steps_offset=1,
                timestep_spacing="leading")


@dataclass
class XLComponents:
    unet: object
    vae: object
    text_encoder: object  # CLIPTextModel (ViT-L)
    text_encoder_2: object  # CLIPTextModelWithProjection (bigG)
    tokenizer: object  # pads with the end-of-text token
    tokenizer_2: object  # pads with "!" (OpenCLIP's convention)
    scheduler: object


def build_xl(name_or_spec: str | XLSpec, folder: Path | None = None, seed: int = 0,
             tokenizers: tuple | None = None) -> XLComponents:
    """Random-weight SDXL parts. Tokenizers: given, or written to `folder`/tokenizer(_2)."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection)

    s = xl_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    if tokenizers is None:
        if not s.words:
            raise ValueError("tokenizers are needed for specs without a word list")
        base = folder or Path(tempfile.mkdtemp())
        tokenizers = (write_tokenizer(base / "tokenizer", s.words, v2=False),
                      write_tokenizer(base / "tokenizer_2", s.words, v2=True))
    tok1, tok2 = tokenizers
    vocab = max(len(tok1), s.vocab_size)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config(s))
    vae = AutoencoderKL(**vae_config(s))
    text1 = CLIPTextModel(CLIPTextConfig(**text_config(s.text1, "quick_gelu", vocab, tok1,
                                                       s.text1[0])))
    text2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_config(s.text2, "gelu", vocab, tok2,
                                                                     s.pooled_dim)))
    scheduler = EulerDiscreteScheduler(**scheduler_config())
    return XLComponents(unet, vae, text1, text2, tok1, tok2, scheduler)


def save_xl_diffusers(parts: XLComponents, folder: Path) -> Path:
    """Save as a diffusers StableDiffusionXLPipeline folder."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, text_encoder_2=parts.text_encoder_2,
        tokenizer=parts.tokenizer, tokenizer_2=parts.tokenizer_2, unet=parts.unet,
        scheduler=parts.scheduler)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)


def build_xl_diffusers(name: str, folder: Path, seed: int = 0) -> Path:
    folder = Path(folder)
    return save_xl_diffusers(build_xl(name, folder, seed), folder)
