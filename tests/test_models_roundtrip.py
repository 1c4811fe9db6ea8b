"""Round trips on the tiny SD 1 / SD 2 / SD 2-v models: no weight changes, no output changes."""

import pytest

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser

VERSIONS = ["tiny-v1", "tiny-v2", "tiny-v2-v"]


def _tensors(bundle) -> dict:
    return {f"{part}.{k}": v for part in ("unet", "vae", "text_encoder")
            for k, v in getattr(bundle, part).state_dict().items()}


def _realign(module):
    """CPU kernels sum in a different order when a weight's address is not 64-byte aligned (as
    in memory-mapped files): give every weight a fresh allocation so outputs compare exactly."""
    for param in module.parameters():
        param.data = param.data.clone()


def _outputs(bundle) -> dict:
    """What training and sampling read from each part, on a fixed input."""
    import torch

    for part in (bundle.unet, bundle.vae, bundle.text_encoder):
        _realign(part)
    generator = torch.Generator().manual_seed(0)
    ids = bundle.tokenizer(["a photo of sks dog"], padding="max_length", max_length=77,
                           return_tensors="pt").input_ids
    image = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    with torch.no_grad():
        hidden = bundle.text_encoder(ids).last_hidden_state
        noise_pred = bundle.unet(latents, torch.tensor([500]), hidden).sample
        encoded = bundle.vae.encode(image).latent_dist.mean
        decoded = bundle.vae.decode(latents).sample
    return {"text": hidden, "unet": noise_pred, "vae.encode": encoded, "vae.decode": decoded,
            "ids": ids}


def _assert_same(a: dict, b: dict):
    import torch

    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


@pytest.mark.parametrize("fmt", ["safetensors", "ckpt"])
@pytest.mark.parametrize("name", VERSIONS)
def test_diffusers_to_single_file_and_back_is_lossless(tiny_model, tmp_path, name, fmt):
    from trainer.models import load_model, save_model

    source = tiny_model(name)
    original = load_model(str(source))
    single = save_model(original, tmp_path / f"model.{fmt}")
    assert single == tmp_path / f"model.{fmt}" and single.is_file()
    assert single.with_suffix(".yaml").is_file()  # tiny sizes (and every SD 2) need the .yaml

    reloaded = load_model(str(single), tokenizer=str(source))
    assert (reloaded.source_kind, reloaded.default_save_format) == ("single", fmt)
    folder = save_model(reloaded, tmp_path / "back", save_model_as="diffusers_safetensors")
    final = load_model(str(folder))

    for bundle in (reloaded, final):
        assert (bundle.v2, bundle.v_parameterization) == (original.v2, original.v_parameterization)
        assert bundle.unet.config.sample_size == original.unet.config.sample_size
        assert bundle.tokenizer.pad_token == original.tokenizer.pad_token
        _assert_same(_tensors(bundle), _tensors(original))
        _assert_same(_outputs(bundle), _outputs(original))
    assert final.noise_scheduler_config == original.noise_scheduler_config


def test_saved_diffusers_weights_equal_the_original_files(tiny_model, tiny_single, tmp_path):
    """The files themselves: what a diffusers user loads is byte-for-byte the same weights."""
    import torch
    from safetensors.torch import load_file

    from trainer.models import load_model, save_model

    source = tiny_model("tiny-v2")
    bundle = load_model(str(tiny_single("tiny-v2")), tokenizer=str(source))
    folder = save_model(bundle, tmp_path / "out", save_model_as="diffusers_safetensors")
    for part, file in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model")):
        want = load_file(source / part / f"{file}.safetensors")
        got = {k.removeprefix("text_model."): v
               for k, v in load_file(folder / part / f"{file}.safetensors").items()}
        assert got.keys() == want.keys()
        assert [k for k in want if not torch.equal(got[k], want[k])] == []


def test_pipeline_loads_the_saved_folder(tiny_single, tiny_model, tmp_path):
    """diffusers' own StableDiffusionPipeline reads a folder converted from a single file."""
    import numpy as np
    import torch
    import transformers
    from diffusers import StableDiffusionPipeline
    from transformers import PretrainedConfig

    from trainer.models import load_model, save_model

    bundle = load_model(str(tiny_single("tiny-v2-v", "ckpt")), tokenizer=str(tiny_model("tiny-v2-v")))
    folder = save_model(bundle, tmp_path / "pipe", save_model_as="diffusers")
    pipe = StableDiffusionPipeline.from_pretrained(str(folder))
    # diffusers' training scripts import the text encoder class named here.
    config = PretrainedConfig.from_pretrained(str(folder / "text_encoder"))
    assert getattr(transformers, config.architectures[0]) is type(pipe.text_encoder)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.tokenizer.pad_token == "!"
    image = pipe("a photo of sks dog", num_inference_steps=2, height=64, width=64,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


def _with_extra_keys(tiny_single, tmp_path):
    """The tiny SD 2 single file plus EMA weights and its own unused last OpenCLIP block."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    source = tiny_single("tiny-v2")
    state = load_file(source)
    generator = torch.Generator().manual_seed(7)
    for key in [k for k in state if ".resblocks.23." in k]:
        state[key] = torch.randn(state[key].shape, generator=generator)
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int64)
    state["model_ema.diffusion_modelconv_inweight"] = torch.randn(
        state["model.diffusion_model.input_blocks.0.0.weight"].shape, generator=generator)
    path = tmp_path / "with-ema.safetensors"
    save_file(state, path)
    shutil.copy(source.with_suffix(".yaml"), path.with_suffix(".yaml"))
    return path, state


@pytest.mark.parametrize("precision", ["float", "fp16"])
def test_single_file_save_keeps_what_was_not_trained(tiny_single, tiny_model, tmp_path, precision):
    import torch
    from safetensors.torch import load_file

    from trainer.models import load_model, save_model

    path, state = _with_extra_keys(tiny_single, tmp_path)
    bundle = load_model(str(path), tokenizer=str(tiny_model("tiny-v2")))
    with torch.no_grad():  # stands in for training: the U-Net changes
        bundle.unet.conv_in.weight.add_(1.0)
    out = load_file(save_model(bundle, tmp_path / "trained.safetensors", save_precision=precision))
    assert set(out) == set(state)  # nothing lost, nothing invented
    dtype = torch.float32 if precision == "float" else torch.float16
    assert torch.equal(out["model_ema.diffusion_modelconv_inweight"],
                       state["model_ema.diffusion_modelconv_inweight"].to(dtype))
    assert out["model_ema.num_updates"].item() == 1234
    last_block = [k for k in state if ".resblocks.23." in k]
    assert all(torch.equal(out[k], state[k].to(dtype)) for k in last_block)
    trained = "model.diffusion_model.input_blocks.0.0.weight"
    assert torch.equal(out[trained], (state[trained] + 1.0).to(dtype))


def test_diffusers_output_says_which_keys_it_drops(tiny_single, tiny_model, tmp_path, caplog):
    from trainer.models import load_model, save_model

    path, _ = _with_extra_keys(tiny_single, tmp_path)
    bundle = load_model(str(path), tokenizer=str(tiny_model("tiny-v2")))
    with caplog.at_level("INFO", logger="trainer.models"):
        save_model(bundle, tmp_path / "folder", save_model_as="diffusers_safetensors")
    assert any("3 tensors" in r.message and "model_ema" in r.message for r in caplog.records)
