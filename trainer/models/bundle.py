"""ModelBundle: the parts of a loaded Stable Diffusion model and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SINGLE_FORMATS = ("safetensors", "ckpt")
DIFFUSERS_FORMATS = ("diffusers", "diffusers_safetensors")
SAVE_FORMATS = SINGLE_FORMATS + DIFFUSERS_FORMATS


@dataclass
class ModelBundle:
    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer (SD 2: pads with "!")
    v2: bool
    v_parameterization: bool
    source_kind: str  # "single" | "diffusers" (hub ids count as diffusers)
    source: str  # the path or hub id the user gave
    source_format: str  # one of SAVE_FORMATS: what the input was
    source_file: Path | None = None  # single-file input: read again on save for untrained keys
    source_keys: frozenset = frozenset()  # every tensor name of a single-file input
    ldm_config: dict | None = None  # the LDM .yaml content of a single-file input
    ldm_config_from_file: bool = False  # True when it came from a .yaml beside the input
    notes: list[str] = field(default_factory=list)  # things the user should know (VAE replaced...)
    # SDXL's second text encoder (OpenCLIP bigG, with projection) and its tokenizer; None for 1.x/2.x
    text_encoder_2: object | None = None
    tokenizer_2: object | None = None

    @property
    def xl(self) -> bool:
        return self.text_encoder_2 is not None

    @property
    def family_title(self) -> str:
        from .family import SD1, family_of

        family = family_of(self)
        v_tuned_sd1 = family is SD1 and self.v_parameterization
        return family.title + (" v-prediction" if v_tuned_sd1 else "")

    @property
    def prediction_type(self) -> str:
        return "v_prediction" if self.v_parameterization else "epsilon"

    @property
    def noise_scheduler_config(self) -> dict:
        """SD's DDPM training schedule (1000 steps, scaled_linear 0.00085-0.012)."""
        from .factory import scheduler_config

        return scheduler_config(self.prediction_type)

    @property
    def default_save_format(self) -> str:
        """The seed's rule: save in the same kind of format as the input."""
        return self.source_format

    @property
    def resolution(self) -> int:
        """Native image side in pixels (512 for SD 1.x / 2.x-base, 768 for 2.x-v)."""
        return int(self.unet.config.sample_size) * 8
