"""`reg-generate`: class images from the base model, resumable, in the training images' shapes."""

from __future__ import annotations

import pytest
import hashlib

from helpers import make_image, run_cli

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_images_with_captions_and_settings_and_a_rerun_adds_only_what_is_missing(tiny_model,
                                                                                  tmp_path):
    from PIL import Image

    out = tmp_path / "reg" / "1_dog"
    common = ["reg-generate", "--pretrained_model_name_or_path", tiny_model("tiny-v1"),
              "--class_prompt", "a photo of a dog", "--negative_prompt", "blurry",
              "--resolution", 64, "--steps", 2, "--batch_size", 2, "--seed", 7, "--out", out]
    result = run_cli(*common, "--count", 3, env=OFFLINE, check=True)
    assert "drawing 3" in result.stdout and "3/3 images" in result.stdout
    images = sorted(out.glob("*.png"))
    assert [p.name for p in images] == ["00000.png", "00001.png", "00002.png"]
    for image in images:
        assert image.with_suffix(".caption").read_text(encoding="utf-8").strip() == \
            "a photo of a dog"
        with Image.open(image) as picture:
            assert picture.size == (64, 64)
            parameters = picture.text["parameters"]
        assert parameters.startswith("a photo of a dog\nNegative prompt: blurry\n")
        assert "Steps: 2" in parameters and "Size: 64x64" in parameters
    seeds = {Image.open(p).text["parameters"].split("Seed: ")[1].split(",")[0] for p in images}
    assert len(seeds) == 3  # one seed per image
    before = {p.name: _digest(p) for p in images}

    # A run stopped between an image and its caption redraws that image, the same as before;
    # a larger count adds only the new images.
    out.joinpath("00001.caption").unlink()
    result = run_cli(*common, "--count", 5, env=OFFLINE, check=True)
    assert "2 of 5 images are there; drawing 3" in result.stdout
    after = {p.name: _digest(p) for p in sorted(out.glob("*.png"))}
    assert len(after) == 5 and all(after[name] == digest for name, digest in before.items())
    again = run_cli(*common, "--count", 5, env=OFFLINE, check=True)
    assert "all 5 images are there already" in again.stdout


def test_bucketing_draws_in_the_training_images_aspect_ratios(tiny_model, tmp_path):
    from PIL import Image

    train = tmp_path / "train" / "5_sks dog"
    for index in range(2):
        make_image(train / f"wide{index}.png", size=(256, 128), seed=index)
    out = tmp_path / "reg" / "1_dog"
    result = run_cli("reg-generate", "--pretrained_model_name_or_path", tiny_model("tiny-v1"),
                     "--class_prompt", "dog", "--count", 2, "--out", out, "--resolution", 128,
                     "--enable_bucket", "--min_bucket_reso", 64, "--train_data_dir",
                     tmp_path / "train", "--steps", 1, env=OFFLINE, check=True)
    for image in out.glob("*.png"):
        with Image.open(image) as picture:
            width, height = picture.size
        assert width > height and width * height <= 128 * 128
    assert "balance: 2 training images" in result.stdout
