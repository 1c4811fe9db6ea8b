"""The SDXL single-file layout: the real SDXL 1.0 architecture's weights get the original names
and shapes, and diffusers' own single-file reader loads what is written."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # builds models

XL = "model.diffusion_model."
TE1 = "conditioner.embedders.0.transformer.text_model."
TE2 = "conditioner.embedders.1.model."


def _state_dicts(parts) -> tuple[dict, dict, dict, dict]:
    return (parts.unet.state_dict(), parts.vae.state_dict(), parts.text_encoder.state_dict(),
            parts.text_encoder_2.state_dict())


@pytest.fixture(scope="module")
def real_sdxl():
    """SDXL 1.0 base at full size, on the meta device: shapes without memory."""
    import tempfile
    from pathlib import Path

    from accelerate import init_empty_weights

    from trainer.models.factory import TINY_WORDS, write_tokenizer
    from trainer.models.xl_factory import build_xl

    folder = Path(tempfile.mkdtemp())
    tokenizers = (write_tokenizer(folder / "t1", TINY_WORDS, v2=False),
                  write_tokenizer(folder / "t2", TINY_WORDS, v2=True))
    with init_empty_weights():
        return build_xl("sdxl", tokenizers=tokenizers)


def test_the_real_sdxl_gets_the_original_names_and_shapes(real_sdxl):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    from trainer.models.sgm_export import to_sgm

    state, placeholders = to_sgm(*_state_dicts(real_sdxl))
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert infer_diffusers_model_type(state) == "xl_base"
    expected = {
        XL + "label_emb.0.0.weight": (1280, 2816),  # pooled text 1280 + 6 size numbers x 256
        XL + "input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight": (640, 2048),
        XL + "input_blocks.7.1.transformer_blocks.9.ff.net.2.weight": (1280, 5120),
        XL + "middle_block.1.transformer_blocks.9.attn1.to_q.weight": (1280, 1280),
        XL + "output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
        XL + "output_blocks.5.2.conv.weight": (640, 640, 3, 3),
        XL + "output_blocks.8.0.skip_connection.weight": (320, 640, 1, 1),
        XL + "out.2.weight": (4, 320, 3, 3),
        "first_stage_model.decoder.up.0.block.0.conv1.weight": (128, 256, 3, 3),
        TE1 + "encoder.layers.11.mlp.fc2.weight": (768, 3072),
        TE1 + "embeddings.position_ids": (1, 77),
        TE2 + "transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
        TE2 + "text_projection": (1280, 1280),
        TE2 + "positional_embedding": (77, 1280),
        TE2 + "logit_scale": (),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    # The first level has no attention; the last has no downsampler; 3 levels in all.
    assert not [k for k in shapes if k.startswith((XL + "input_blocks.1.1.", XL + "input_blocks.2.1."))]
    assert max(int(k.split(".")[3]) for k in shapes if k.startswith(XL + "input_blocks.")) == 8
    assert placeholders <= set(state)


def test_diffusers_converters_read_every_written_weight_back(real_sdxl):
    """diffusers' original->diffusers converters turn the written names back into exactly the
    model's own keys and shapes, part by part."""
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint,
                                                     convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint,
                                                     convert_open_clip_checkpoint)

    from trainer.models.ldm_export import strip_text_model
    from trainer.models.sgm_export import TEXT2_PREFIX, to_sgm

    unet, vae, text1, text2 = _state_dicts(real_sdxl)
    state, _ = to_sgm(unet, vae, text1, text2)

    def same(ours: dict, theirs: dict) -> None:
        ours = {k: tuple(v.shape) for k, v in strip_text_model(ours).items()
                if not k.endswith("position_ids")}
        theirs = {k: tuple(v.shape) for k, v in strip_text_model(theirs).items()
                  if not k.endswith("position_ids")}
        assert sorted(set(ours) ^ set(theirs)) == [] and ours == theirs

    same(unet, convert_ldm_unet_checkpoint(state, dict(real_sdxl.unet.config)))
    same(vae, convert_ldm_vae_checkpoint(state, dict(real_sdxl.vae.config)))
    same(text1, convert_ldm_clip_checkpoint(state, remove_prefix="conditioner.embedders.0.transformer."))
    same(text2, convert_open_clip_checkpoint(real_sdxl.text_encoder_2, state, prefix=TEXT2_PREFIX))


def test_diffusers_single_file_loader_reads_a_written_tiny_sdxl(tmp_path):
    """An independent reader: diffusers' StableDiffusionXLPipeline.from_single_file, given the
    tiny model's folder for the configs, draws the very same picture as the folder itself."""
    import numpy as np
    import torch
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import save_file

    from trainer.models.sgm_export import to_sgm
    from trainer.models.xl_factory import build_xl, save_xl_diffusers

    parts = build_xl("tiny-xl", tmp_path / "folder")
    folder = save_xl_diffusers(parts, tmp_path / "folder")
    state, _ = to_sgm(*_state_dicts(parts))
    file = tmp_path / "tiny-xl.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(file))

    def draw(pipe) -> np.ndarray:
        return pipe("a photo of sks dog", num_inference_steps=2, height=128, width=128,
                    generator=torch.Generator().manual_seed(0), output_type="np").images[0]

    reference = draw(StableDiffusionXLPipeline.from_pretrained(str(folder)))
    loaded = StableDiffusionXLPipeline.from_single_file(str(file), config=str(folder),
                                                        local_files_only=True)
    assert np.abs(draw(loaded) - reference).max() < 1e-5
