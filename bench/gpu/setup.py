"""What the GPU check trains on: random-weight models of the real architectures, images, configs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRESETS = ("sd15-lora", "sd15-dreambooth-lowvram", "sd15-dreambooth-12gb",
           "sd15-dreambooth-24gb", "sd2-512-base", "sd2-768-v")
# Trained on the real SDXL 1.0 base architecture (random weights) at 1024 px.
XL_PRESETS = ("sdxl-lora-12gb", "sdxl-lora-24gb", "sdxl-dreambooth-24gb")


@dataclass(frozen=True)
class Scale:
    """The real sizes on a GPU; miniatures (same code paths) for the CPU dry run."""

    dry: bool
    preset_steps: int
    bench_steps: int
    correctness_steps: int
    xl_steps: int

    def model_spec(self, v2: bool, v_pred: bool) -> str:
        if self.dry:
            return "tiny-v2-v" if v_pred else "tiny-v2" if v2 else "tiny-v1"
        return "sd21" if v_pred else "sd21-base" if v2 else "sd15"

    @property
    def xl_spec(self) -> str:
        return "tiny-xl" if self.dry else "sdxl"

    def resolution(self, wanted: int) -> int:
        return 64 if self.dry else wanted

    @property
    def bench_precision(self) -> str:
        return "no" if self.dry else "bf16"


GPU = Scale(dry=False, preset_steps=30, bench_steps=15, correctness_steps=60, xl_steps=12)
DRY = Scale(dry=True, preset_steps=3, bench_steps=2, correctness_steps=3, xl_steps=3)


def build_model(spec_name: str, workdir: Path) -> Path:
    """A diffusers folder with random weights (built on the GPU when there is one: faster)."""
    import torch

    from trainer.models import factory

    folder = workdir / f"model-{spec_name}"
    if (folder / "model_index.json").exists():
        return folder
    spec = factory.spec(spec_name)
    tokenizer = None if spec.words else factory.write_tokenizer(
        folder / "tokenizer", ("sks", "dog"), spec.v2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        components = factory.build(spec, folder, tokenizer=tokenizer)
    factory.save_diffusers(components, folder)
    return folder


def build_xl_model(spec_name: str, workdir: Path) -> Path:
    """An SDXL diffusers folder with random weights: the real architecture ("sdxl": 2.6 B U-Net
    parameters, CLIP ViT-L, OpenCLIP bigG, the VAE) or the miniature one. The real one is built
    on the GPU and saved in fp16 (half the disk and time; the trainer loads float32 anyway)."""
    import torch

    from trainer.models import factory, xl_factory

    folder = workdir / f"model-{spec_name}"
    if (folder / "model_index.json").exists():
        return folder
    if spec_name == "tiny-xl":
        return xl_factory.build_xl_diffusers(spec_name, folder)
    tokenizers = (factory.write_tokenizer(folder / "tokenizer", ("sks", "dog"), v2=False),
                  factory.write_tokenizer(folder / "tokenizer_2", ("sks", "dog"), v2=True))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        parts = xl_factory.build_xl(spec_name, folder, tokenizers=tokenizers)
    for part in (parts.unet, parts.vae, parts.text_encoder, parts.text_encoder_2):
        part.to(dtype=torch.float16)
    xl_factory.save_xl_diffusers(parts, folder)
    del parts
    if device == "cuda":
        torch.cuda.empty_cache()
    return folder


def make_images(folder: Path, resolution: int, count: int = 8) -> Path:
    """`count` noise pictures at the training resolution in `folder`."""
    import numpy as np
    from PIL import Image

    if folder.is_dir() and len(list(folder.glob("*.png"))) >= count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(resolution)
    for index in range(count):
        pixels = rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return folder


def read_preset(name: str) -> dict:
    return json.loads((REPO / "presets" / f"{name}.json").read_text())


def promised_gb(preset: dict) -> int | None:
    """The card size a preset's description promises ('for 8-10 GB GPUs' -> 8)."""
    found = re.search(r"(\d+)(?:\s*-\s*\d+)?\s*GB", preset.get("description", ""))
    return int(found.group(1)) if found else None


def preset_values(name: str, scale: Scale, workdir: Path) -> tuple[str, dict]:
    """The preset as the user gets it, on a random-weight model and noise pictures."""
    preset = read_preset(name)
    mode = preset.get("mode", "db")
    values = {k: v for k, v in preset.items() if k not in ("description", "mode", "config_version")}
    if name in XL_PRESETS:
        model, steps = build_xl_model(scale.xl_spec, workdir), scale.xl_steps
    else:
        spec = scale.model_spec(bool(values.get("v2")), bool(values.get("v_parameterization")))
        model, steps = build_model(spec, workdir), scale.preset_steps
    resolution = scale.resolution(int(str(values.get("resolution", "512")).split(",")[0]))
    data = workdir / f"data-{resolution}"
    make_images(data / "img" / "10_sks dog", resolution)
    values.update(pretrained_model_name_or_path=str(model),
                  train_data_dir=str(data / "img"), output_dir=str(workdir / "runs" / name),
                  resolution=str(resolution), max_train_steps=steps,
                  max_train_epochs=None, seed=0)
    if scale.dry:
        # bf16/fp16 matrix work is emulated on most CPUs and slow: the dry run checks the paths.
        values.update(mixed_precision="no", full_fp16=False, full_bf16=False)
        if values.get("enable_bucket"):
            values.update(min_bucket_reso=resolution, max_bucket_reso=2 * resolution)
    if mode == "db" and values.get("prior_loss_weight"):
        make_images(data / "reg" / "1_dog", resolution)
        values["reg_data_dir"] = str(data / "reg")
    return mode, values
