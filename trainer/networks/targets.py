"""Which layers of Stable Diffusion get a LoRA, and the kohya names image generators expect.

U-Net names are the diffusers module paths with "." replaced by "_" (what sd-scripts writes and
AUTOMATIC1111, ComfyUI and diffusers map). Text-encoder names always carry the `text_model`
level of the transformers 4 CLIPTextModel, whatever the installed transformers calls its
modules: `lora_te_text_model_encoder_layers_0_self_attn_q_proj`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

UNET_PREFIX = "lora_unet"
TEXT_ENCODER_PREFIX = "lora_te"

# Layers inside each Transformer2DModel (attention blocks of the U-Net).
UNET_ATTENTION_LAYERS = (
    "proj_in", "proj_out",
    "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
    "ff.net.0.proj", "ff.net.2",
)
# Blocks whose convolutions (and their 1x1 / linear companions) LoCon trains, as sd-scripts does.
UNET_CONV_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
TEXT_ENCODER_LAYERS = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
    "mlp.fc1", "mlp.fc2",
)


@dataclass(frozen=True)
class Target:
    lora_name: str
    module: object  # torch.nn.Linear or torch.nn.Conv2d of the base model
    part: str  # "unet" or "text_encoder"

    @property
    def is_conv3x3(self) -> bool:
        """A spatial convolution: gets conv_dim/conv_alpha instead of network_dim/alpha."""
        kernel = getattr(self.module, "kernel_size", (1, 1))
        return tuple(kernel) != (1, 1)


def kohya_name(prefix: str, module_path: str) -> str:
    return f"{prefix}_{module_path.replace('.', '_')}"


def text_encoder_path(module_path: str) -> str:
    """transformers 5 dropped `text_model.`; the file format keeps it."""
    return module_path if module_path.startswith("text_model.") else f"text_model.{module_path}"


def _is_layer(module) -> bool:
    import torch

    return isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))


def unet_targets(unet, *, with_conv: bool) -> Iterator[Target]:
    """Attention-block layers; with `with_conv`, every layer of ResNet blocks and samplers too."""
    for path, block in unet.named_modules():
        kind = type(block).__name__
        if kind == "Transformer2DModel":
            for child_path, child in block.named_modules():
                if _is_layer(child) and _is_attention_layer(child_path):
                    yield Target(kohya_name(UNET_PREFIX, f"{path}.{child_path}"), child, "unet")
        elif with_conv and kind in UNET_CONV_BLOCKS:
            for child_path, child in block.named_modules():
                if child_path and _is_layer(child):
                    yield Target(kohya_name(UNET_PREFIX, f"{path}.{child_path}"), child, "unet")


def _is_attention_layer(child_path: str) -> bool:
    return child_path in ("proj_in", "proj_out") or any(
        child_path.startswith("transformer_blocks.") and child_path.endswith("." + layer)
        for layer in UNET_ATTENTION_LAYERS[2:]
    )


def text_encoder_targets(text_encoder) -> Iterator[Target]:
    for path, module in text_encoder.named_modules():
        if _is_layer(module) and any(path.endswith("." + layer) for layer in TEXT_ENCODER_LAYERS):
            name = kohya_name(TEXT_ENCODER_PREFIX, text_encoder_path(path))
            yield Target(name, module, "text_encoder")


def part_of(lora_name: str) -> str | None:
    """'unet', 'text_encoder' or None for a kohya module name."""
    if lora_name.startswith(UNET_PREFIX + "_"):
        return "unet"
    if lora_name.startswith(TEXT_ENCODER_PREFIX + "_"):
        return "text_encoder"
    return None
