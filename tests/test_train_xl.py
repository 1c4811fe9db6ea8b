"""SDXL DreamBooth / fine-tune end to end through the real CLI, on the tiny SDXL model at 64 px."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_concept, make_db_dataset, run_cli
from test_train_db import base_args, events  # the same run shape as SD 1.x

pytestmark = pytest.mark.slow  # trains and loads models

PARTS = ("unet", "text_encoder", "text_encoder_2", "vae")


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    from trainer.models.xl_factory import build_xl_diffusers

    return build_xl_diffusers("tiny-xl", tmp_path_factory.mktemp("xl") / "tiny-xl")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_db_dataset(tmp_path_factory.mktemp("xl-data"), repeats=1, images=3, reg_images=3)


def state_dicts(model: Path) -> dict:
    from trainer.models import load_model

    bundle = load_model(str(model), xl=True)
    return {part: {k: v.clone() for k, v in getattr(bundle, part).state_dict().items()}
            for part in PARTS}


def changed(a: dict, b: dict, part: str) -> bool:
    import torch

    return any(not torch.equal(a[part][k], b[part][k]) for k in a[part])


def test_sdxl_dreambooth_with_reg_images_trains_the_unet_and_the_encoder_with_a_rate(
        tiny_xl, dataset, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of sks dog --w 64 --h 64 --s 2 --n blurry --d 3\n", "utf-8")
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_xl, dataset, out, "--max_train_steps=2",
                                      "--learning_rate_te1=1e-4", "--learning_rate_te2=0",
                                      "--clip_skip=2", "--sample_prompts", str(prompts),
                                      "--sample_every_n_steps=2"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "clip_skip 2 is ignored" in result.stdout + result.stderr
    steps = [e for e in events(out) if e["kind"] == "step"]
    assert steps[0]["lrs"] == {"unet": 1e-4, "text_encoder": 1e-4}  # the 0 rate is not trained
    base, last = state_dicts(tiny_xl), state_dicts(out / "last")
    assert changed(base, last, "unet") and changed(base, last, "text_encoder")
    assert not changed(base, last, "text_encoder_2") and not changed(base, last, "vae")

    samples = [e for e in events(out) if e["kind"] == "sample"]
    from PIL import Image

    assert [s["step"] for s in samples] == [2]
    assert Image.open(out / samples[0]["path"]).size == (64, 64)

    import torch
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(out / "last"))
    image = pipe("a photo of sks dog", num_inference_steps=2, height=64, width=64,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 64, 3)


def test_sdxl_interrupted_and_resumed_run_ends_bit_identical_with_both_encoders_learning(
        tiny_xl, dataset, tmp_path):
    # 3 images + 3 reg images, batch 2: 3 steps per epoch; the state at step 2 sits inside
    # the first epoch and the run ends in the second.
    common = ["--max_train_steps=4", "--learning_rate_te1=2e-4", "--learning_rate_te2=5e-5",
              "--flip_aug", "--shuffle_caption", "--max_token_length=150"]
    whole = tmp_path / "whole"
    result = run_cli("db", *base_args(tiny_xl, dataset, whole, *common))
    assert result.returncode == 0, result.stdout + result.stderr
    lrs = next(e for e in events(whole) if e["kind"] == "step")["lrs"]
    assert lrs == {"unet": 1e-4, "text_encoder": 2e-4, "text_encoder_2": 5e-5}
    parts = tmp_path / "parts"
    first = run_cli("db", *base_args(tiny_xl, dataset, parts, *common,
                                     "--save_every_n_steps=2", "--save_state"))
    assert first.returncode == 0, first.stdout + first.stderr
    resumed = tmp_path / "resumed"
    second = run_cli("db", *base_args(tiny_xl, dataset, resumed, *common,
                                      "--resume", str(parts / "at-step00000002-state")))
    assert second.returncode == 0, second.stdout + second.stderr
    assert [e["step"] for e in events(resumed) if e["kind"] == "step"] == [3, 4]

    import torch

    base, a, b = state_dicts(tiny_xl), state_dicts(whole / "last"), state_dicts(resumed / "last")
    assert changed(base, a, "text_encoder") and changed(base, a, "text_encoder_2")
    for part in PARTS:
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"


def solid_images(folder: Path, size: tuple[int, int]) -> Path:
    """Flat-colored images: resized to any training size, the pixels are the same."""
    from PIL import Image

    folder.mkdir(parents=True)
    for index, color in enumerate([(200, 60, 40), (40, 120, 200)]):
        Image.new("RGB", size, color).save(folder / f"img{index}.png")
    return folder


def test_the_original_image_size_reaches_the_unet(tiny_xl, tmp_path):
    """Two runs whose only difference is the images' file size (64 or 128 px, the same pixels
    at the 64 px training size) learn different weights: the size facts are a U-Net input."""
    from trainer.config import Config
    from trainer.data import build_dataset

    runs = {}
    for side in (64, 128):
        train = solid_images(tmp_path / f"data{side}" / "1_sks dog", (side, side)).parent
        cfg = Config("db", {"train_data_dir": str(train), "resolution": "64", "seed": 7})
        ds = build_dataset(cfg, warn=lambda m: None)
        batch = ds.load_batch(ds.epoch_batches(0, 2)[0], 0)
        assert batch["time_ids"][0].tolist() == [side, side, 0, 0, 64, 64]
        runs[side] = batch["images"]
        out = tmp_path / f"out{side}"
        result = run_cli("db", "--pretrained_model_name_or_path", str(tiny_xl),
                         "--train_data_dir", str(train), "--output_dir", str(out),
                         "--resolution=64", "--train_batch_size=2", "--learning_rate=1e-3",
                         "--seed=7", "--max_train_steps=1", "--stop_text_encoder_training=0")
        assert result.returncode == 0, result.stdout + result.stderr
    import torch

    assert torch.equal(runs[64], runs[128])  # the same training pixels
    assert changed(state_dicts(tmp_path / "out64" / "last"),
                   state_dicts(tmp_path / "out128" / "last"), "unet")


def test_text_encoder_outputs_cached_on_disk_are_reused_until_the_caption_changes(tiny_xl,
                                                                                  tmp_path):
    train, _ = make_db_dataset(tmp_path / "data", repeats=1, images=3, reg_images=0)
    args = ["--pretrained_model_name_or_path", str(tiny_xl), "--train_data_dir", str(train),
            "--resolution=64", "--train_batch_size=2", "--seed=7", "--max_train_steps=1",
            "--stop_text_encoder_training=0", "--cache_text_encoder_outputs_to_disk"]
    first = run_cli("db", *args, "--output_dir", str(tmp_path / "one"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 captions encoded, 0 read from disk" in first.stdout + first.stderr
    images = sorted((train / "1_sks dog").glob("*.png"))
    assert all(Path(f"{image}.te_outputs.safetensors").is_file() for image in images)

    images[0].with_suffix(".caption").write_text("sks dog on grass", "utf-8")
    second = run_cli("db", *args, "--output_dir", str(tmp_path / "two"))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 captions encoded, 1 read from disk" in second.stdout + second.stderr


@pytest.mark.parametrize("extra, words", [
    ([], "needs frozen text encoders"),
    (["--stop_text_encoder_training=0", "--shuffle_caption"], "needs captions that never change"),
])
def test_caching_text_encoder_outputs_is_refused_when_they_would_change(tiny_xl, dataset,
                                                                        tmp_path, extra, words):
    result = run_cli("db", *base_args(tiny_xl, dataset, tmp_path / "out", "--max_train_steps=1",
                                      "--cache_text_encoder_outputs", *extra))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0] and "--cache_text_encoder_outputs" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "last").exists()


def test_sdxl_locon_with_both_encoders_resumes_bit_identical_and_writes_an_sdxl_file(
        tiny_xl, dataset, tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    common = ["--max_train_steps=4", "--network_dim=4", "--network_alpha=2",
              "--network_args", "conv_dim=2", "conv_alpha=1", "--text_encoder_lr=5e-5"]
    whole, parts, resumed = tmp_path / "whole", tmp_path / "parts", tmp_path / "resumed"
    assert run_cli("lora", *base_args(tiny_xl, dataset, whole, *common)).returncode == 0
    assert run_cli("lora", *base_args(tiny_xl, dataset, parts, *common, "--save_every_n_steps=2",
                                      "--save_state")).returncode == 0
    result = run_cli("lora", *base_args(tiny_xl, dataset, resumed, *common,
                                        "--resume", str(parts / "at-step00000002-state")))
    assert result.returncode == 0, result.stderr
    a, b = load_file(whole / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {k.split("_")[1] for k in a} >= {"unet", "te1", "te2"}
    assert any(k.startswith("lora_unet_input_blocks_") for k in a)
    trained_te2 = [k for k in a if k.startswith("lora_te2_") and k.endswith("lora_up.weight")]
    assert any(a[k].abs().sum() > 0 for k in trained_te2)
    with safe_open(str(whole / "last.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
