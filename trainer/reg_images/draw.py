"""The base model as a text-to-image pipeline, drawing batches of regularization images."""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_path
from ..sample_prompts import SamplePrompt
from .plan import Job


class Drawer:
    def __init__(self, args):
        import torch
        from diffusers import StableDiffusionPipeline

        from ..models import load_model
        from ..train.sampling import make_scheduler

        self.args = args
        print(f"loading {args.pretrained_model_name_or_path}", flush=True)
        bundle = load_model(args.pretrained_model_name_or_path, v2=args.v2 or None,
                            v_parameterization=args.v_parameterization or None, vae=args.vae,
                            tokenizer=args.tokenizer)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
            args.mixed_precision, torch.float32) if self.device == "cuda" else torch.float32
        self.pipe = StableDiffusionPipeline(
            vae=bundle.vae, text_encoder=bundle.text_encoder, tokenizer=bundle.tokenizer,
            unet=bundle.unet, scheduler=make_scheduler(args.sampler, bundle.noise_scheduler_config),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        ).to(self.device, self.dtype)
        self.pipe.set_progress_bar_config(disable=True)

    def draw(self, jobs: list[Job], out: Path) -> None:
        import torch
        from PIL.PngImagePlugin import PngInfo

        from ..train.sampling import png_parameters

        args = self.args
        width, height = jobs[0].size
        with torch.no_grad():
            images = self.pipe(
                prompt=[args.class_prompt] * len(jobs),
                negative_prompt=[args.negative_prompt] * len(jobs) if args.negative_prompt else None,
                num_inference_steps=args.steps, guidance_scale=args.scale, width=width,
                height=height,
                generator=[torch.Generator("cpu").manual_seed(job.seed) for job in jobs]).images
        sample = SamplePrompt(args.class_prompt, args.negative_prompt, width, height,
                              scale=args.scale, steps=args.steps)
        for job, image in zip(jobs, images):
            info = PngInfo()
            info.add_text("parameters", png_parameters(sample, job.seed, args.sampler, width,
                                                       height))
            image_path = out / job.name
            with atomic_path(image_path) as tmp:
                image.save(tmp, format="PNG", pnginfo=info)
            # The caption last: an image counts as done only once its caption exists.
            with atomic_path(image_path.with_suffix(args.caption_extension)) as tmp:
                tmp.write_text(args.class_prompt + "\n", encoding="utf-8")
