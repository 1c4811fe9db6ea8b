"""Sample images during training, from a prompt file in the sd-scripts format (parsed and
checked by trainer.sample_prompts).

Without --d a seed is derived from the run seed and the line, so the same prompt is drawn from
the same noise every time and the images show what changed.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..sample_prompts import SamplePrompt, read_prompts
from .seeding import derive_seed

SAMPLERS = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "k_lms": ("LMSDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "k_euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "k_euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm_2": ("KDPM2DiscreteScheduler", {}),
    "k_dpm_2": ("KDPM2DiscreteScheduler", {}),
    "dpm_2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "k_dpm_2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpmsolver": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver"}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmsingle": ("DPMSolverSinglestepScheduler", {}),
}


def make_scheduler(sampler: str, noise_scheduler_config: dict):
    import diffusers

    class_name, extra = SAMPLERS[sampler]
    cls = getattr(diffusers, class_name)
    config = {**dict(noise_scheduler_config), "steps_offset": 1, "clip_sample": False,
              "set_alpha_to_one": False, **extra}
    try:
        return cls.from_config(config)
    except ImportError as err:
        raise UserError(f"sampler {sampler} needs a package that is missing: {err}",
                        "choose another sample_sampler such as ddim or euler_a") from None


def png_parameters(sample: SamplePrompt, seed: int, sampler: str, width: int, height: int) -> str:
    """The 'parameters' text AUTOMATIC1111 writes, so image viewers show the prompt."""
    lines = [sample.prompt]
    if sample.negative:
        lines.append(f"Negative prompt: {sample.negative}")
    lines.append(f"Steps: {sample.steps}, Sampler: {sampler}, CFG scale: {sample.scale}, "
                 f"Seed: {seed}, Size: {width}x{height}")
    return "\n".join(lines)


def sample_seed(run_seed: int, index: int, sample: SamplePrompt) -> int:
    return sample.seed if sample.seed is not None else derive_seed(run_seed, "sample", index) % 2**32


@dataclass(frozen=True)
class SampleSettings:
    prompts_file: str
    folder: Path  # where the images go
    default_size: tuple[int, int]  # (width, height) of prompts that set none
    sampler: str  # a SAMPLERS name
    seed: int  # the run's seed, from which each prompt's seed is derived
    name_prefix: str  # output_name and "_", or nothing

    @classmethod
    def for_run(cls, cfg, run_dir: Path) -> "SampleSettings":
        from ..config import parse_resolution

        return cls(cfg.sample_prompts, Path(run_dir) / "samples", parse_resolution(cfg.resolution),
                   cfg.sample_sampler, cfg.seed, f"{cfg.output_name}_" if cfg.output_name else "")


class SampleMaker:
    """Generates the prompt file's images with the models as they are at this step."""

    def __init__(self, settings: SampleSettings, bundle, target, conditioning, precision,
                 reporter, *, enabled: bool):
        """enabled: this process makes the images (only the main one does)."""
        self.settings, self.bundle, self.target = settings, bundle, target
        self.conditioning, self.precision, self.reporter = conditioning, precision, reporter
        self.enabled = enabled
        self.prompts = read_prompts(settings.prompts_file)

    def make(self, step: int, epoch: int) -> list[Path]:
        """The images of every prompt. A failure (out of memory, an unwritable folder...) is a
        warning: sample images are never worth losing the training for."""
        if not self.enabled:
            return []
        try:
            return self._make(step, epoch)
        except Exception as err:
            traceback.print_exc(file=sys.stderr)  # the details go to trainer.log
            _free_cached_memory()
            self.reporter.warning(f"making sample images at step {step} failed "
                                  f"({type(err).__name__}: {err}); training goes on")
            return []

    def _make(self, step: int, epoch: int) -> list[Path]:
        bundle, settings = self.bundle, self.settings
        unet, text_encoders, extras = self.target.sampling_modules()
        modes = [(m, m.training) for m in (unet, *text_encoders, *extras)]
        for module, _ in modes:
            module.eval()
        # encoders parked off the GPU (cached text outputs) come back while sampling
        homes = [(e, next(e.parameters()).device) for e in text_encoders]
        for encoder, _ in homes:
            encoder.to(self.precision.device)
        paths = []
        try:
            pipe = _pipeline(bundle, unet, text_encoders,
                             make_scheduler(settings.sampler, bundle.noise_scheduler_config))
            pipe.set_progress_bar_config(disable=True)
            settings.folder.mkdir(parents=True, exist_ok=True)
            for index, sample in enumerate(self.prompts):
                paths.append(self._one(pipe, text_encoders, index, sample, step, epoch))
        finally:
            for module, was_training in modes:
                module.train(was_training)
            for encoder, device in homes:
                encoder.to(device)
        return paths

    def _one(self, pipe, text_encoders, index: int, sample: SamplePrompt, step: int,
             epoch: int) -> Path:
        import torch
        from PIL.PngImagePlugin import PngInfo

        settings = self.settings
        width = _multiple_of_8(sample.width or settings.default_size[0])
        height = _multiple_of_8(sample.height or settings.default_size[1])
        seed = sample_seed(settings.seed, index, sample)
        positive = self.conditioning.for_sampling(text_encoders, sample.prompt)
        negative = self.conditioning.for_sampling(text_encoders, sample.negative)
        embeds = {"prompt_embeds": positive.hidden, "negative_prompt_embeds": negative.hidden}
        if positive.pooled is not None:
            embeds.update(pooled_prompt_embeds=positive.pooled,
                          negative_pooled_prompt_embeds=negative.pooled)
        with torch.no_grad(), self.precision.autocast():
            image = pipe(**embeds, num_inference_steps=sample.steps, guidance_scale=sample.scale,
                         width=width, height=height,
                         generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        path = settings.folder / f"{settings.name_prefix}step{step:06d}_{index:02d}_seed{seed}.png"
        info = PngInfo()
        info.add_text("parameters", png_parameters(sample, seed, settings.sampler, width, height))
        info.add_text("prompt", sample.prompt)
        info.add_text("step", str(step))
        image.save(path, pnginfo=info)
        self.reporter.sample(step, epoch, path, sample.prompt, image)
        return path


def _pipeline(bundle, unet, text_encoders, scheduler):
    """The diffusers pipeline of the model's family, fed with embeddings computed here."""
    from ..models.family import family_of

    if family_of(bundle).pooled_text:
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline(
            vae=bundle.vae, text_encoder=text_encoders[0], text_encoder_2=text_encoders[1],
            tokenizer=bundle.tokenizer, tokenizer_2=bundle.tokenizer_2, unet=unet,
            scheduler=scheduler, add_watermarker=False)
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=bundle.vae, text_encoder=text_encoders[0], tokenizer=bundle.tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def _free_cached_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _multiple_of_8(value: int) -> int:
    return max(8, int(value) // 8 * 8)
