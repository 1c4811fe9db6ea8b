"""Build Stable-Diffusion-shaped models from scratch (random weights, no download).

Used by the tests (tiny models with the real SD topology), the benchmark (the real SD 1.5 / 2.1
architectures) and the demo (a small model trained on a procedural world). Every spec keeps the
real layout: U-Net with 4 levels and 2 resnets per level, cross-attention in the first three;
VAE with 4 levels (8x downsampling); a CLIP text encoder. Only the widths differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear")
VAE_SCALING = 0.18215


@dataclass(frozen=True)
class ModelSpec:
    v2: bool
    unet_channels: tuple[int, ...]
    unet_heads: int | tuple[int, ...]  # diffusers' "attention_head_dim" (really the head count)
    vae_channels: tuple[int, ...]
    text_hidden: int
    text_layers: int
    text_heads: int
    text_intermediate: int
    sample_size: int  # latent side of the native resolution
    prediction_type: str = "epsilon"
    norm_groups: int = 32
    words: tuple[str, ...] = ()  # tiny tokenizers: whole words that become single tokens
    # The real architectures' text embedding has CLIP's 49408 rows whatever tokenizer is used,
    # so their parameter count and memory are those of the real models.
    vocab_size: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def context_dim(self) -> int:
        return self.text_hidden


TINY_WORDS = (
    "a", "an", "the", "photo", "picture", "of", "in", "on", "with", "and", "style",
    "sks", "shs", "sls", "cpc", "ohwx", "dog", "cat", "frog", "toy", "person", "man", "woman",
    "girl", "boy", "1girl", "red", "green", "blue", "yellow", "white", "black", "circle",
    "square", "triangle", "star", "ring", "cross", "shape", "background", "painting", "sitting",
)

SPECS: dict[str, ModelSpec] = {
    "tiny-v1": ModelSpec(v2=False, unet_channels=(32, 64, 64, 64), unet_heads=8,
                         vae_channels=(32, 64, 64, 64), text_hidden=32, text_layers=4,
                         text_heads=4, text_intermediate=64, sample_size=8, words=TINY_WORDS),
    "tiny-v2": ModelSpec(v2=True, unet_channels=(32, 64, 64, 64), unet_heads=(2, 4, 4, 4),
                         vae_channels=(32, 64, 64, 64), text_hidden=32, text_layers=23,
                         text_heads=4, text_intermediate=64, sample_size=8, words=TINY_WORDS),
    "sd15": ModelSpec(v2=False, unet_channels=(320, 640, 1280, 1280), unet_heads=8,
                      vae_channels=(128, 256, 512, 512), text_hidden=768, text_layers=12,
                      text_heads=12, text_intermediate=3072, sample_size=64, vocab_size=49408),
    "sd21-base": ModelSpec(v2=True, unet_channels=(320, 640, 1280, 1280),
                           unet_heads=(5, 10, 20, 20), vae_channels=(128, 256, 512, 512),
                           text_hidden=1024, text_layers=23, text_heads=16,
                           text_intermediate=4096, sample_size=64, vocab_size=49408),
}
SPECS["tiny-v2-v"] = replace(SPECS["tiny-v2"], prediction_type="v_prediction")
SPECS["sd21"] = replace(SPECS["sd21-base"], prediction_type="v_prediction", sample_size=96)


def spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model spec {name!r}; known: {', '.join(SPECS)}") from None


def unet_config(s: ModelSpec) -> dict:
    return dict(
        sample_size=s.sample_size, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=s.unet_channels, layers_per_block=2,
        cross_attention_dim=s.context_dim, attention_head_dim=s.unet_heads,
        use_linear_projection=s.v2, norm_num_groups=s.norm_groups,
    )


def vae_config(s: ModelSpec) -> dict:
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=s.vae_channels, norm_num_groups=s.norm_groups,
        sample_size=s.sample_size * 8, scaling_factor=VAE_SCALING,
    )


def text_config(s: ModelSpec, vocab_size: int, bos: int, eos: int, pad: int) -> dict:
    return dict(
        vocab_size=vocab_size, hidden_size=s.text_hidden, intermediate_size=s.text_intermediate,
        num_hidden_layers=s.text_layers, num_attention_heads=s.text_heads,
        max_position_embeddings=77, hidden_act="gelu" if s.v2 else "quick_gelu",
        projection_dim=512 if s.v2 else s.text_hidden,
        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
    )


def scheduler_config(prediction_type: str = "epsilon") -> dict:
    return dict(**SD_BETAS, prediction_type=prediction_type, clip_sample=False, steps_offset=1)


# ---------------------------------------------------------------- tokenizer


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2 / CLIP)."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) \
        | set(range(ord("®"), ord("ÿ") + 1))
    symbols, shifted = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def tokenizer_files(words: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """A CLIP-style byte-level BPE vocabulary where each of `words` is one token."""
    symbols = _byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols]
    known = set(vocab)
    merges = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merged = current + piece
            if merged not in known:
                known.add(merged)
                vocab.append(merged)
                merges.append(f"{current} {piece}")
            current = merged
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(vocab)}, merges


def write_tokenizer(folder: Path, words: Iterable[str], v2: bool):
    """Write vocab.json/merges.txt and the tokenizer.json form; return the tokenizer."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tokenizer_files(words)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                       encoding="utf-8")
    # SD 2 pads with "!" (OpenCLIP's convention); SD 1 with the end-of-text token.
    pad = "!" if v2 else "<|endoftext|>"
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), pad_token=pad, model_max_length=77)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


# ---------------------------------------------------------------- models


@dataclass
class Components:
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    v2: bool
    prediction_type: str


def build(name_or_spec: str | ModelSpec, folder: Path | None = None, seed: int = 0,
          tokenizer=None) -> Components:
    """Random-weight models for a spec. Tokenizer: given, or written to `folder`/tokenizer."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    s = spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    if tokenizer is None:
        if not s.words:
            raise ValueError("a tokenizer is needed for specs without a word list")
        import tempfile

        tok_dir = (folder / "tokenizer") if folder else Path(tempfile.mkdtemp()) / "tokenizer"
        tokenizer = write_tokenizer(tok_dir, s.words, s.v2)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config(s))
    vae = AutoencoderKL(**vae_config(s))
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(
        s, max(len(tokenizer), s.vocab_size), tokenizer.bos_token_id, tokenizer.eos_token_id,
        tokenizer.pad_token_id)))
    scheduler = DDPMScheduler(**scheduler_config(s.prediction_type))
    return Components(unet, vae, text_encoder, tokenizer, scheduler, s.v2, s.prediction_type)


def save_diffusers(components: Components, folder: Path) -> Path:
    """Save as a diffusers StableDiffusionPipeline folder (model_index.json + parts)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler.from_config(components.scheduler.config, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(
        vae=components.vae, text_encoder=components.text_encoder,
        tokenizer=components.tokenizer, unet=components.unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def build_diffusers(name: str, folder: Path, seed: int = 0) -> Path:
    """Build the spec's models and save them as a diffusers folder at `folder`."""
    folder = Path(folder)
    return save_diffusers(build(name, folder, seed), folder)
