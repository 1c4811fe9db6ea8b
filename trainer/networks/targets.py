"""Which layers of Stable Diffusion get a LoRA, and the kohya names image generators expect.

SD 1.x/2.x U-Net names are the diffusers module paths with "." replaced by "_" (what sd-scripts
writes and AUTOMATIC1111, ComfyUI and diffusers map). SDXL U-Net names are the original SGM
module paths instead (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`), because
sd-scripts trains SDXL on its SGM-layout U-Net and every SDXL tool expects those names.
Text-encoder names always carry the `text_model` level of the transformers 4 CLIPTextModel,
whatever the installed transformers calls its modules:
`lora_te_text_model_encoder_layers_0_self_attn_q_proj`; SDXL's two encoders are `lora_te1_…`
(CLIP ViT-L) and `lora_te2_…` (OpenCLIP bigG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

UNET_PREFIX = "lora_unet"
TEXT_ENCODER_PREFIX = "lora_te"
# SDXL: one prefix per text encoder, in the order the model uses them.
XL_TEXT_ENCODER_PREFIXES = ("lora_te1", "lora_te2")
# The SGM block names of an SDXL U-Net LoRA (SD 1.x/2.x files use down_blocks/mid_block/up_blocks).
SGM_BLOCKS = ("input_blocks", "middle_block", "output_blocks")

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
    # SDXL U-Net layers: the diffusers-path name some converters write instead of the SGM one
    alias: str | None = None

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


def is_xl_unet(unet) -> bool:
    """SDXL's U-Net embeds the pooled text and the image sizes ("text_time"); SD 1.x/2.x's not."""
    config = getattr(unet, "config", None)
    return getattr(config, "addition_embed_type", None) == "text_time"


def unet_targets(unet, *, with_conv: bool) -> Iterator[Target]:
    """Attention-block layers; with `with_conv`, every layer of ResNet blocks and samplers too."""
    renamed = sgm_paths(unet) if is_xl_unet(unet) else {}

    def target(module_path: str, module) -> Target:
        if module_path not in renamed:
            return Target(kohya_name(UNET_PREFIX, module_path), module, "unet")
        return Target(kohya_name(UNET_PREFIX, renamed[module_path]), module, "unet",
                      alias=kohya_name(UNET_PREFIX, module_path))

    for path, block in unet.named_modules():
        kind = type(block).__name__
        if kind == "Transformer2DModel":
            for child_path, child in block.named_modules():
                if _is_layer(child) and _is_attention_layer(child_path):
                    yield target(f"{path}.{child_path}", child)
        elif with_conv and kind in UNET_CONV_BLOCKS:
            for child_path, child in block.named_modules():
                if child_path and _is_layer(child):
                    yield target(f"{path}.{child_path}", child)


def sgm_paths(unet) -> dict[str, str]:
    """{diffusers module path: SGM module path} for every Linear/Conv2d of an SDXL U-Net.

    Uses the single-file export's key mapping, so LoRA names and saved models agree:
    `down_blocks.1.attentions.0.proj_in` -> `input_blocks.4.1.proj_in`,
    `down_blocks.0.resnets.0.conv1` -> `input_blocks.1.0.in_layers.2`.
    """
    from ..models.ldm_export import UNET_PREFIX as SGM_PREFIX, unet_to_ldm

    weights = {f"{path}.weight": path for path, module in unet.named_modules() if _is_layer(module)}
    exported = unet_to_ldm(weights, int(unet.config.layers_per_block))
    return {path: key[len(SGM_PREFIX):-len(".weight")] for key, path in exported.items()}


def rename_aliases(state_dict: Mapping, aliases: Mapping[str, str]) -> dict:
    """The state dict with aliased layer names (diffusers-path SDXL U-Net names) replaced by
    the network's own; a file that already uses the network's names is returned as it is."""
    renamed = {}
    for key, value in state_dict.items():
        layer, dot, rest = key.partition(".")
        renamed[aliases.get(layer, layer) + dot + rest] = value
    return renamed


def _is_attention_layer(child_path: str) -> bool:
    return child_path in ("proj_in", "proj_out") or any(
        child_path.startswith("transformer_blocks.") and child_path.endswith("." + layer)
        for layer in UNET_ATTENTION_LAYERS[2:]
    )


def text_encoder_prefix(index: int, count: int) -> str:
    """`lora_te` for the one encoder of SD 1.x/2.x; `lora_te1` / `lora_te2` for SDXL's two."""
    return TEXT_ENCODER_PREFIX if count == 1 else XL_TEXT_ENCODER_PREFIXES[index]


def text_encoder_targets(text_encoder, prefix: str = TEXT_ENCODER_PREFIX) -> Iterator[Target]:
    for path, module in text_encoder.named_modules():
        if _is_layer(module) and any(path.endswith("." + layer) for layer in TEXT_ENCODER_LAYERS):
            name = kohya_name(prefix, text_encoder_path(path))
            yield Target(name, module, "text_encoder")


_TEXT_PREFIXES = (TEXT_ENCODER_PREFIX,) + XL_TEXT_ENCODER_PREFIXES


def part_of(lora_name: str) -> str | None:
    """'unet', 'text_encoder' (either SDXL encoder too) or None for a kohya module name."""
    if lora_name.startswith(UNET_PREFIX + "_"):
        return "unet"
    if encoder_of(lora_name) is not None:
        return "text_encoder"
    return None


def encoder_of(lora_name: str) -> str | None:
    """'te' (SD 1.x/2.x), 'te1' / 'te2' (SDXL), or None for a U-Net or foreign name."""
    for prefix in _TEXT_PREFIXES:
        if lora_name.startswith(prefix + "_"):
            return prefix.removeprefix("lora_")
    return None
