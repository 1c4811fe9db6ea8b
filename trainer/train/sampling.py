"""Sample images during training, from a prompt file in the sd-scripts format (parsed and
checked by trainer.sample_prompts).

Without --d a seed is derived from the run seed and the line, so the same prompt is drawn from
the same noise every time and the images show what changed.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from ..errors import UserError
# parse_prompt_line is re-exported for callers that knew it here.
from ..sample_prompts import SamplePrompt, parse_prompt_line, read_prompts  # noqa: F401
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


class SampleMaker:
    """Generates the prompt file's images with the models as they are at this step."""

    def __init__(self, session, conditioning):
        self.session = session
        self.conditioning = conditioning
        self.prompts = read_prompts(session.cfg.sample_prompts)
        self.folder = session.run_dir / "samples"
        from ..config import parse_resolution

        self.default_size = parse_resolution(session.cfg.resolution)

    def make(self, step: int, epoch: int) -> list[Path]:
        """The images of every prompt. A failure (out of memory, an unwritable folder...) is a
        warning: sample images are never worth losing the training for."""
        session = self.session
        if not session.is_main:
            return []
        try:
            return self._make(step, epoch)
        except Exception as err:
            traceback.print_exc(file=sys.stderr)  # the details go to trainer.log
            _free_cached_memory()
            session.reporter.warning(f"making sample images at step {step} failed "
                                     f"({type(err).__name__}: {err}); training goes on")
            return []

    def _make(self, step: int, epoch: int) -> list[Path]:
        from diffusers import StableDiffusionPipeline

        session, cfg = self.session, self.session.cfg
        unet, text_encoder, extras = session.target.sampling_modules()
        modes = [(m, m.training) for m in (unet, text_encoder, *extras)]
        for module, _ in modes:
            module.eval()
        paths = []
        try:
            pipe = StableDiffusionPipeline(
                vae=session.bundle.vae, text_encoder=text_encoder,
                tokenizer=session.bundle.tokenizer, unet=unet,
                scheduler=make_scheduler(cfg.sample_sampler, session.bundle.noise_scheduler_config),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            for index, sample in enumerate(self.prompts):
                paths.append(self._one(pipe, text_encoder, index, sample, step, epoch))
        finally:
            for module, was_training in modes:
                module.train(was_training)
        return paths

    def _one(self, pipe, text_encoder, index: int, sample: SamplePrompt, step: int,
             epoch: int) -> Path:
        import torch
        from PIL.PngImagePlugin import PngInfo

        session, cfg = self.session, self.session.cfg
        width = _multiple_of_8(sample.width or self.default_size[0])
        height = _multiple_of_8(sample.height or self.default_size[1])
        seed = sample_seed(cfg.seed, index, sample)
        positive = self.conditioning.for_sampling(text_encoder, sample.prompt)
        negative = self.conditioning.for_sampling(text_encoder, sample.negative)
        with torch.no_grad(), session.precision.autocast():
            image = pipe(prompt_embeds=positive, negative_prompt_embeds=negative,
                         num_inference_steps=sample.steps, guidance_scale=sample.scale,
                         width=width, height=height,
                         generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        prefix = f"{cfg.output_name}_" if cfg.output_name else ""
        path = self.folder / f"{prefix}step{step:06d}_{index:02d}_seed{seed}.png"
        info = PngInfo()
        info.add_text("parameters", png_parameters(sample, seed, cfg.sample_sampler, width, height))
        info.add_text("prompt", sample.prompt)
        info.add_text("step", str(step))
        image.save(path, pnginfo=info)
        session.reporter.sample(step, epoch, path, sample.prompt, image)
        return path


def _free_cached_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _multiple_of_8(value: int) -> int:
    return max(8, int(value) // 8 * 8)
