"""Draw pictures with a demo model: the same pipeline and seeds every time."""

from __future__ import annotations

from dataclasses import dataclass

STEPS = 20  # DDIM steps
GUIDANCE = 4.0  # classifier-free guidance scale
BATCH = 16


@dataclass(frozen=True)
class Prompted:
    prompt: str
    seed: int


def pipeline(bundle, unet=None, text_encoder=None):
    """A StableDiffusionPipeline (DDIM) over a loaded ModelBundle, optionally with other parts."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler.from_config(
        {**bundle.noise_scheduler_config, "clip_sample": False, "set_alpha_to_one": False,
         "steps_offset": 1})
    pipe = StableDiffusionPipeline(
        vae=bundle.vae, text_encoder=text_encoder or bundle.text_encoder,
        tokenizer=bundle.tokenizer, unet=unet or bundle.unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, items: list[Prompted], size: int = 64, steps: int = STEPS,
             guidance: float = GUIDANCE):
    """PIL images for (prompt, seed) pairs; each image depends only on its own pair."""
    import torch

    images = []
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        # one generator per image: the batch size does not change any picture
        generators = [torch.Generator("cpu").manual_seed(item.seed) for item in chunk]
        with torch.no_grad():
            out = pipe([item.prompt for item in chunk], num_inference_steps=steps,
                       guidance_scale=guidance, width=size, height=size, generator=generators)
        images.extend(out.images)
    return images


def seeded(prompt: str, count: int, first_seed: int = 0) -> list[Prompted]:
    return [Prompted(prompt, first_seed + index) for index in range(count)]
