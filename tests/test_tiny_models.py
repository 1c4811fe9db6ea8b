"""The tiny test models keep Stable Diffusion's real topology at a small width."""

import json

import pytest


@pytest.mark.parametrize("name, v2, layers, pred", [
    ("tiny-v1", False, 4, "epsilon"),
    ("tiny-v2", True, 23, "epsilon"),
    ("tiny-v2-v", True, 23, "v_prediction"),
])
def test_tiny_model_has_sd_topology(tiny_model, name, v2, layers, pred):
    from diffusers import StableDiffusionPipeline

    folder = tiny_model(name)
    assert json.loads((folder / "model_index.json").read_text())["unet"][1] == "UNet2DConditionModel"
    pipe = StableDiffusionPipeline.from_pretrained(str(folder))
    unet, vae, text = pipe.unet, pipe.vae, pipe.text_encoder
    assert [type(b).__name__ for b in unet.down_blocks] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert all(len(block.resnets) == 2 for block in unet.down_blocks)
    assert unet.config.use_linear_projection is v2
    assert unet.config.cross_attention_dim == text.config.hidden_size
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8
    assert text.config.num_hidden_layers == layers
    assert pipe.scheduler.config.prediction_type == pred
    assert pipe.tokenizer.pad_token == ("!" if v2 else "<|endoftext|>")
    # identifiers from the seed guide are single tokens, as real CLIP tokenizers make them
    assert len(pipe.tokenizer.tokenize("sks")) == 1


def test_tiny_model_generates_an_image(tiny_model):
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model("tiny-v1")))
    image = pipe("a photo of sks dog", num_inference_steps=2, height=64, width=64,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
