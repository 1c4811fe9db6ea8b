"""SDXL through `python -m trainer convert`: diffusers folder -> single file -> diffusers folder
without changing a weight, read by diffusers' SDXL pipeline (training SDXL: test_train_xl.py)."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli

pytestmark = pytest.mark.slow  # builds and converts models


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    from trainer.models.xl_factory import build_xl_diffusers

    return build_xl_diffusers("tiny-xl", tmp_path_factory.mktemp("xl") / "tiny-xl")


def draw(folder) -> "object":
    import torch
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(folder))
    for part in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        for param in part.parameters():  # aligned copies: identical sums on the CPU
            param.data = param.data.clone()
    return pipe("a photo of sks dog", num_inference_steps=2, height=128, width=128,
                generator=torch.Generator().manual_seed(0), output_type="np").images[0]


def test_sdxl_folder_to_single_file_and_back_keeps_every_weight(tiny_xl, tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    single = tmp_path / "tiny-xl.safetensors"
    result = run_cli("convert", tiny_xl, single, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Stable Diffusion XL" in result.stdout
    with safe_open(str(single), "pt") as f:
        meta = f.metadata()
        assert "conditioner.embedders.1.model.text_projection" in f.keys()
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base"
    assert not single.with_suffix(".yaml").exists()

    back = tmp_path / "back"
    result = run_cli("convert", single, back, "--tokenizer", tiny_xl, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    index = json.loads((back / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    for part, name in [("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model"), ("text_encoder_2", "model")]:
        original = load_file(tiny_xl / part / f"{name}.safetensors")
        written = load_file(back / part / f"{name}.safetensors")
        strip = lambda sd: {k.removeprefix("text_model."): v for k, v in sd.items()
                            if not k.endswith("position_ids")}
        original, written = strip(original), strip(written)
        assert sorted(original) == sorted(written), part
        assert [k for k in original if not torch.equal(original[k], written[k])] == [], part
    assert (draw(back) == draw(tiny_xl)).all()


def test_a_single_sdxl_file_needs_both_tokenizers(tiny_xl, tmp_path):
    single = tmp_path / "tiny-xl.safetensors"
    assert run_cli("convert", tiny_xl, single, timeout=300).returncode == 0
    result = run_cli("convert", single, tmp_path / "out", "--tokenizer", tiny_xl / "tokenizer",
                     timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "tokenizer_2" in line and "--tokenizer" in line
    assert not (tmp_path / "out").exists()


def test_the_real_sdxl_configs_are_read_off_the_tensor_shapes():
    """A downloaded SDXL file carries no configs: the sizes come from its tensors."""
    import tempfile
    from pathlib import Path

    from accelerate import init_empty_weights

    from trainer.models.factory import TINY_WORDS, write_tokenizer
    from trainer.models.sgm_export import to_sgm
    from trainer.models.xl_factory import build_xl
    from trainer.models.xl_loading import text_configs_from_shapes, unet_config_from_shapes

    folder = Path(tempfile.mkdtemp())
    tokenizers = (write_tokenizer(folder / "t1", TINY_WORDS, v2=False),
                  write_tokenizer(folder / "t2", TINY_WORDS, v2=True))
    with init_empty_weights():
        real = build_xl("sdxl", tokenizers=tokenizers)
    state, _ = to_sgm(real.unet.state_dict(), real.vae.state_dict(),
                      real.text_encoder.state_dict(), real.text_encoder_2.state_dict())
    unet = unet_config_from_shapes(state)
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in unet.items()} == {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in real.unet.config.items()
        if k in unet}
    one, two = text_configs_from_shapes(state)
    for config, model in ((one, real.text_encoder), (two, real.text_encoder_2)):
        assert config == {k: getattr(model.config, k) for k in config}
