"""SDXL LoRA files: the names sd-scripts writes, read by diffusers' own SDXL loader, merged into
SDXL models, merged with each other, resized, described, and refused on the wrong model."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli
from lora_helpers import assert_clean_failure, load_lora_weights_without_complaints, randomize

pytestmark = pytest.mark.slow  # builds and loads models

PROMPT = "a photo of a red dog"


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    from trainer.models.xl_factory import build_xl_diffusers

    return build_xl_diffusers("tiny-xl", tmp_path_factory.mktemp("xl") / "tiny-xl")


def xl_parts(folder):
    """(unet, [text_encoder, text_encoder_2]) of a tiny SDXL diffusers folder, in float32."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(str(folder / "unet")).eval()
    te1 = CLIPTextModel.from_pretrained(str(folder / "text_encoder")).eval()
    te2 = CLIPTextModelWithProjection.from_pretrained(str(folder / "text_encoder_2")).eval()
    return unet, [te1, te2]


@pytest.fixture(scope="module")
def xl_loras(tiny_xl, tmp_path_factory):
    """Two SDXL LoRA files for tiny-xl: rank 4 with LoCon layers, and rank 2 without."""
    from trainer.networks import create_network

    folder = tmp_path_factory.mktemp("xl-loras")
    unet, encoders = xl_parts(tiny_xl)
    a = randomize(create_network(unet, encoders, dim=4, alpha=2, conv_dim=2, conv_alpha=1), seed=1)
    b = randomize(create_network(unet, encoders, dim=2, alpha=2), seed=2)
    return a.save(folder / "xa.safetensors"), b.save(folder / "xb.safetensors")


# ---------------------------------------------------------------------- names on the real SDXL


@pytest.fixture(scope="module")
def real_sdxl(tmp_path_factory):
    """SDXL 1.0 base at full size, on the meta device: the module tree without memory."""
    from accelerate import init_empty_weights

    from trainer.models.factory import TINY_WORDS, write_tokenizer
    from trainer.models.xl_factory import build_xl

    folder = tmp_path_factory.mktemp("real-sdxl")
    tokenizers = (write_tokenizer(folder / "t1", TINY_WORDS, v2=False),
                  write_tokenizer(folder / "t2", TINY_WORDS, v2=True))
    with init_empty_weights():
        return build_xl("sdxl", tokenizers=tokenizers)


def test_real_sdxl_lora_has_the_sgm_names_and_counts_of_sd_scripts(real_sdxl):
    from trainer.networks import create_network

    encoders = [real_sdxl.text_encoder, real_sdxl.text_encoder_2]
    net = create_network(real_sdxl.unet, encoders, dim=4, alpha=1)
    names = {layer.lora_name for layer in net.loras}
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    # sd-scripts' Transformer2DModel targets: per transformer proj_in/out + 10 per block;
    # level 2 (depth 2) x 5 transformers, level 3 (depth 10) x 6 (with the middle block).
    assert len(net.unet_loras) == 5 * (2 + 2 * 10) + 6 * (2 + 10 * 10) == 722
    te1 = {n for n in names if n.startswith("lora_te1_text_model_encoder_layers_")}
    te2 = {n for n in names if n.startswith("lora_te2_text_model_encoder_layers_")}
    assert (len(te1), len(te2), len(net.text_encoder_loras)) == (12 * 6, 32 * 6, 264)
    expected = {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q": (4, 640),
        "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k": (4, 2048),
        "lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_0_proj": (4, 1280),
        "lora_unet_middle_block_1_transformer_blocks_9_ff_net_2": (4, 5120),
        "lora_unet_output_blocks_0_1_proj_in": (4, 1280),
        "lora_unet_output_blocks_5_1_transformer_blocks_1_attn1_to_out_0": (4, 640),
        "lora_te1_text_model_encoder_layers_11_mlp_fc2": (4, 3072),
        "lora_te2_text_model_encoder_layers_31_self_attn_out_proj": (4, 1280),
    }
    assert {k: shapes.get(f"{k}.lora_down.weight") for k in expected} == expected
    assert not [n for n in names if "down_blocks" in n or "up_blocks" in n or "mid_block_" in n]
    assert net.family == "sdxl"

    locon = create_network(real_sdxl.unet, encoders, dim=4, alpha=1, conv_dim=2)
    extra = {layer.lora_name for layer in locon.unet_loras} - names
    # 17 ResNet blocks x (in_layers.2, emb_layers.1, out_layers.3), 11 of them with a 1x1
    # skip_connection, 2 downsamplers (op) and 2 upsamplers (conv).
    assert len(extra) == 17 * 3 + 11 + 2 + 2 == 66
    assert {"lora_unet_input_blocks_1_0_in_layers_2", "lora_unet_input_blocks_1_0_emb_layers_1",
            "lora_unet_middle_block_2_out_layers_3", "lora_unet_output_blocks_8_0_skip_connection",
            "lora_unet_input_blocks_3_0_op", "lora_unet_input_blocks_6_0_op",
            "lora_unet_output_blocks_2_2_conv", "lora_unet_output_blocks_5_2_conv"} <= extra
    conv = locon.state_dict()["lora_unet_input_blocks_3_0_op.lora_down.weight"]
    assert tuple(conv.shape) == (2, 320, 3, 3)


# ---------------------------------------------------------------------- diffusers reads our files


def _latents(pipe):
    import torch

    with torch.no_grad():
        return pipe(PROMPT, num_inference_steps=2, height=64, width=64, guidance_scale=5.0,
                    generator=torch.Generator().manual_seed(0), output_type="latent").images


def _pipeline(folder):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _wrapped(model) -> int:
    return sum(1 for m in model.modules() if getattr(m, "lora_A", None))


def test_diffusers_sdxl_pipeline_consumes_every_layer_and_merging_gives_the_same_image(
        tiny_xl, tmp_path):
    import torch

    from trainer.networks import create_network

    pipe = _pipeline(tiny_xl)
    net = randomize(create_network(pipe.unet, [pipe.text_encoder, pipe.text_encoder_2], dim=4,
                                   alpha=2, conv_dim=2, conv_alpha=1), seed=3, std=0.2)
    path = net.save(tmp_path / "xl.safetensors")
    base = _latents(pipe)
    net.apply()
    ours = _latents(pipe)
    net.remove()

    load_lora_weights_without_complaints(pipe, path)
    te1 = [l for l in net.text_encoder_loras if l.lora_name.startswith("lora_te1_")]
    te2 = [l for l in net.text_encoder_loras if l.lora_name.startswith("lora_te2_")]
    assert te1 and te2 and any(l.is_conv for l in net.unet_loras)
    # every layer of the file found its module in each of the three parts
    assert _wrapped(pipe.unet) == len(net.unet_loras)
    assert _wrapped(pipe.text_encoder) == len(te1)
    assert _wrapped(pipe.text_encoder_2) == len(te2)
    loaded = _latents(pipe)
    assert (loaded - base).abs().max() > 1e-2  # the LoRA changes the picture
    torch.testing.assert_close(loaded, ours, rtol=1e-4, atol=1e-4)  # and exactly as ours does

    folder_out, file_out = tmp_path / "merged", tmp_path / "merged.safetensors"
    result = run_cli("lora-merge", "--base", tiny_xl, "--lora", path, "--out", folder_out,
                     check=True)
    assert f"merged xl.safetensors at 1: {len(net.loras)} layers" in result.stdout
    torch.testing.assert_close(_latents(_pipeline(folder_out)), loaded, rtol=1e-4, atol=1e-4)

    run_cli("lora-merge", "--base", tiny_xl, "--lora", path, "--out", file_out, check=True)
    from diffusers import StableDiffusionXLPipeline

    from trainer.models import load_model

    bundle = load_model(str(file_out), xl=True, tokenizer=str(tiny_xl))
    single = StableDiffusionXLPipeline(
        vae=bundle.vae, text_encoder=bundle.text_encoder, text_encoder_2=bundle.text_encoder_2,
        tokenizer=pipe.tokenizer, tokenizer_2=pipe.tokenizer_2, unet=bundle.unet,
        scheduler=pipe.scheduler)
    single.set_progress_bar_config(disable=True)
    torch.testing.assert_close(_latents(single), loaded, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------- tools


def test_lora_info_describes_an_sdxl_file(xl_loras):
    a, _ = xl_loras
    text = run_cli("lora-info", a, check=True).stdout
    assert "base model:  Stable Diffusion XL" in text
    assert "text encoder 1 (CLIP-L) 18, text encoder 2 (OpenCLIP bigG) 24" in text
    data = json.loads(run_cli("lora-info", a, "--json", check=True).stdout)
    assert data["base_model"] == "sdxl"
    by_name = {layer["name"]: layer for layer in data["layers"]}
    assert by_name["lora_te2_text_model_encoder_layers_3_mlp_fc1"]["encoder"] == "te2"
    assert by_name["lora_unet_input_blocks_3_0_op"]["kind"] == "conv3x3"
    assert by_name["lora_unet_output_blocks_0_1_transformer_blocks_0_attn2_to_k"]["rank"] == 4


def _deltas(path):
    from trainer.networks import read_network_file
    from trainer.networks.files import layer_shapes
    from trainer.networks.module import delta_from_factors

    sd, _ = read_network_file(path)
    return {name: delta_from_factors(sd[f"{name}.lora_up.weight"].float(),
                                     sd[f"{name}.lora_down.weight"].float(), alpha / rank)
            for name, (rank, alpha) in layer_shapes(sd).items()}


def test_sdxl_loras_merge_into_one_and_resize(tiny_xl, xl_loras, tmp_path):
    import torch

    from trainer.networks import create_network_from_weights, read_network_file

    a, b = xl_loras
    joined = tmp_path / "joined.safetensors"
    run_cli("lora-merge", "--lora", f"{a}:0.7", f"{b}:-0.4", "--out", joined, check=True)
    da, db, dj = _deltas(a), _deltas(b), _deltas(joined)
    assert dj.keys() == da.keys() | db.keys()
    for name, delta in dj.items():
        want = 0.7 * da[name] + (-0.4 * db[name] if name in db else 0)
        torch.testing.assert_close(delta, want, rtol=1e-4, atol=1e-6)

    small = tmp_path / "small.safetensors"
    result = run_cli("lora-resize", joined, "--new_dim", "2", "--out", small, check=True)
    assert f"resized {len(dj)} layers to rank" in result.stdout
    tensors, _ = read_network_file(small)
    assert {v.shape[0] for k, v in tensors.items() if k.endswith(".lora_down.weight")} <= {1, 2}
    assert json.loads(run_cli("lora-info", small, "--json", check=True).stdout)[
        "base_model"] == "sdxl"
    unet, encoders = xl_parts(tiny_xl)
    network, report = create_network_from_weights(unet, encoders, small)
    assert len(report.loaded) == len(dj) and not report.unexpected


def test_an_sdxl_file_with_diffusers_unet_names_loads_into_the_same_layers(tiny_xl, xl_loras,
                                                                          tmp_path):
    """Converters that keep diffusers' block names (lora_unet_down_blocks_…) for SDXL write
    the same layers under other names; they load and merge as the SGM-named file does."""
    import torch
    from diffusers.loaders.lora_conversion_utils import _maybe_map_sgm_blocks_to_diffusers
    from safetensors.torch import save_file

    from trainer.networks import create_network_from_weights, merge_into, read_network_file

    _, b = xl_loras  # attention layers only: diffusers' block renaming is the whole story
    tensors, _ = read_network_file(b)
    unet, encoders = xl_parts(tiny_xl)
    # diffusers' own SGM -> diffusers block renumbering; it renames the block words later
    renumbered = _maybe_map_sgm_blocks_to_diffusers(dict(tensors), unet.config)
    words = (("input_blocks", "down_blocks"), ("middle_block", "mid_block"),
             ("output_blocks", "up_blocks"))
    renamed = {}
    for key, value in renumbered.items():
        for sgm, diffusers_word in words:
            key = key.replace(sgm, diffusers_word)
        renamed[key] = value
    assert any(k.startswith("lora_unet_down_blocks_1_attentions_0_") for k in renamed)
    assert not any("input_blocks" in k or "output_blocks" in k for k in renamed)
    save_file(renamed, str(tmp_path / "diffusers-names.safetensors"))
    ours, _ = create_network_from_weights(unet, encoders, b)
    theirs, report = create_network_from_weights(unet, encoders,
                                                 tmp_path / "diffusers-names.safetensors")
    assert not report.unexpected and not report.missing
    assert theirs.state_dict().keys() == ours.state_dict().keys()
    for key, value in ours.state_dict().items():
        assert torch.equal(theirs.state_dict()[key], value)
    merged_ours, merged_theirs = xl_parts(tiny_xl)[0], xl_parts(tiny_xl)[0]
    merge_into(merged_ours, encoders, b)
    merge_into(merged_theirs, encoders, tmp_path / "diffusers-names.safetensors")
    for (name, a), (_, c) in zip(merged_ours.named_parameters(), merged_theirs.named_parameters()):
        assert torch.equal(a, c), name


def test_loras_of_the_other_family_are_refused_in_one_line(tiny_model, tiny_xl, xl_loras,
                                                           tmp_path):
    from trainer.networks import create_network

    a, _ = xl_loras
    out = tmp_path / "merged"
    result = run_cli("lora-merge", "--base", tiny_model("tiny-v1"), "--lora", a, "--out", out)
    assert_clean_failure(result, "xa.safetensors is a LoRA for SDXL",
                         "the base model is Stable Diffusion 1.x")
    assert not out.exists()

    from lora_helpers import load_parts

    v1 = create_network(*load_parts(tiny_model("tiny-v1")), dim=4, alpha=1)
    v1_file = v1.save(tmp_path / "v1.safetensors")
    result = run_cli("lora-merge", "--base", tiny_xl, "--lora", v1_file, "--out", out)
    assert_clean_failure(result, "v1.safetensors is a LoRA for Stable Diffusion 1.x",
                         "the base model is SDXL")
    assert not out.exists()

    from trainer.errors import UserError
    from trainer.networks.merge import main as lora_merge

    joined = tmp_path / "j.safetensors"  # the CLI's code path, without another process start
    with pytest.raises(UserError, match=r"different base models: xa.safetensors \(SDXL\), "
                                        r"v1.safetensors \(Stable Diffusion 1.x\)"):
        lora_merge(["--lora", str(a), str(v1_file), "--out", str(joined)])
    assert not joined.exists()


# ---------------------------------------------------------------------- training setup


def _cfg(model, **values):
    from trainer.config import Config

    return Config("lora", {"pretrained_model_name_or_path": str(model),
                           "output_name": "xlfrog", "network_dim": 4, "network_alpha": 2,
                           **values})


def test_lora_target_trains_both_sdxl_encoders_and_writes_sdxl_metadata(tiny_xl):
    import torch

    from trainer.models import load_model
    from trainer.networks import build_metadata
    from trainer.train.lora_target import LoRATarget
    from trainer.train.precision import Precision

    bundle = load_model(str(tiny_xl), xl=True)
    precision = Precision(torch.device("cpu"), torch.float32, torch.float32, torch.float32, None)
    target = LoRATarget(_cfg(tiny_xl, text_encoder_lr=5e-5, unet_lr=1e-4), bundle, precision)
    target.place()
    net = target.network
    prefixes = {layer.lora_name.split("_text_model")[0] for layer in net.text_encoder_loras}
    assert prefixes == {"lora_te1", "lora_te2"}
    for part in (bundle.unet, bundle.text_encoder, bundle.text_encoder_2):
        assert not any(p.requires_grad for p in part.parameters())  # the base stays frozen
    groups = {g["name"]: g for g in target.param_groups()}
    te2_weight = next(l for l in net.text_encoder_loras
                      if l.lora_name.startswith("lora_te2_")).lora_down.weight
    assert any(p is te2_weight for p in groups["text_encoder"]["params"])
    assert groups["text_encoder"]["lr"] == 5e-5 and groups["unet"]["lr"] == 1e-4

    meta = build_metadata(_cfg(tiny_xl, resolution=None), net, v2=False,
                          v_parameterization=False, num_epochs=1, max_train_steps=5)
    expected = {"ss_base_model_version": "sdxl_base_v1-0", "ss_v2": "False",
                "ss_sd_model_name": "tiny-xl",
                "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
                "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
                "modelspec.resolution": "1024x1024", "modelspec.prediction_type": "epsilon"}
    assert {k: meta.get(k) for k in expected} == expected
