"""The model families (SD 1.x, SD 2.x, SDXL) as data: what differs between them lives here only.

Code asks `family_of(bundle)` what to do instead of testing `bundle.v2` / `bundle.xl` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

LAST = -1
PENULTIMATE = -2


@dataclass(frozen=True)
class Family:
    name: str  # short key: "sd1", "sd2", "sd2-v", "sdxl"
    title: str
    # Text encoders whose hidden states are joined (on the feature axis) for cross-attention.
    text_encoders: int
    # The hidden layer each encoder contributes. With clip_skip_applies the user's clip_skip
    # picks it (1: last); otherwise it is fixed and taken without the final layer norm.
    hidden_layer: int
    clip_skip_applies: bool
    # The second encoder's pooled, projected output (at the EOS token) is a U-Net input too.
    pooled_text: bool
    # The U-Net gets the image's original size, crop offset and target size (SDXL's time_ids).
    size_conditioning: bool
    default_resolution: int  # pixels per side
    vae_scaling: float
    base_model_version: str  # ss_base_model_version in LoRA metadata
    modelspec_architecture: str

    # Its VAE gives NaN latents in fp16: a VAE config's force_upcast is honoured (sd-scripts and
    # diffusers' SDXL scripts keep it in float32). SD 1.x/2.x VAEs are fine in fp16.
    vae_overflows_in_fp16: bool = False

    @property
    def text_encoder_names(self) -> tuple[str, ...]:
        return ("text_encoder", "text_encoder_2")[:self.text_encoders]


SD1 = Family("sd1", "Stable Diffusion 1.x", 1, LAST, True, False, False, 512, 0.18215, "sd_v1",
             "stable-diffusion-v1")
# SD 2.x users set clip_skip=2 by convention (the penultimate layer); the flag decides.
SD2 = Family("sd2", "Stable Diffusion 2.x", 1, LAST, True, False, False, 512, 0.18215, "sd_v2",
             "stable-diffusion-v2-512")
SD2_V = Family("sd2-v", "Stable Diffusion 2.x v-prediction", 1, LAST, True, False, False, 768,
               0.18215, "sd_v2", "stable-diffusion-v2-768-v")
SDXL = Family("sdxl", "Stable Diffusion XL", 2, PENULTIMATE, False, True, True, 1024, 0.13025,
              "sdxl_base_v1-0", "stable-diffusion-xl-v1-base", vae_overflows_in_fp16=True)

FAMILIES = (SD1, SD2, SD2_V, SDXL)


def family_for(*, xl: bool, v2: bool, v_parameterization: bool) -> Family:
    if xl:
        return SDXL
    if v2:
        return SD2_V if v_parameterization else SD2
    return SD1


def family_of(bundle) -> Family:
    """The family of a loaded ModelBundle."""
    return family_for(xl=getattr(bundle, "text_encoder_2", None) is not None,
                      v2=getattr(bundle, "v2", False),
                      v_parameterization=getattr(bundle, "v_parameterization", False))


def prediction_type(bundle) -> str:
    """Every family learns noise unless the model says v (SD 2.x-v, or a v-tuned model)."""
    return "v_prediction" if bundle.v_parameterization else "epsilon"
