"""LoRA key names on the real SD 1.5 / 2.1 architectures are the ones image generators map.

The models are built on the meta device: real module tree and shapes, no memory for weights.
"""

import re

import pytest

# How AUTOMATIC1111 turns kohya U-Net names into its own layer names; a key that matches none
# of these (or the text-encoder pattern) is silently ignored there.
A1111_UNET = [
    r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)",
    r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)",
    r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)",
    r"lora_unet_down_blocks_(\d+)_downsamplers_0_conv",
    r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv",
]
A1111_TEXT = r"lora_te_text_model_encoder_layers_(\d+)_(self_attn_[qkv]_proj|self_attn_out_proj|mlp_fc[12])"


def meta_models(name):
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from trainer.models import factory

    spec = factory.spec(name)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**factory.unet_config(spec))
        text = CLIPTextModel(CLIPTextConfig(**factory.text_config(spec, 49408, 49406, 49407, 49407)))
    return unet, text


def comfy_key_map(unet, text_encoder):
    """The names ComfyUI accepts: U-Net weights as lora_unet_<path>, CLIP layers by number."""
    keys = {"lora_unet_" + k[: -len(".weight")].replace(".", "_")
            for k in unet.state_dict() if k.endswith(".weight")}
    layers = text_encoder.config.num_hidden_layers
    for index in range(layers):
        for suffix in ("self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj",
                       "self_attn_out_proj", "mlp_fc1", "mlp_fc2"):
            keys.add(f"lora_te_text_model_encoder_layers_{index}_{suffix}")
    return keys


@pytest.fixture(scope="module")
def sd15():
    return meta_models("sd15")


def layer_names(state_dict):
    return {k.split(".")[0] for k in state_dict}


def test_sd15_lora_covers_every_target_with_generator_names(sd15):
    from trainer.networks import create_network

    unet, text = sd15
    sd = create_network(unet, text, dim=8, alpha=4).state_dict_kohya()
    names = layer_names(sd)
    unet_names = {n for n in names if n.startswith("lora_unet_")}
    text_names = {n for n in names if n.startswith("lora_te_")}
    # sd-scripts' well-known counts for SD 1.x: 16 transformer blocks x 12, 12 layers x 6
    assert (len(unet_names), len(text_names)) == (192, 72)
    assert names <= comfy_key_map(unet, text)
    assert all(any(re.fullmatch(p, n) for p in A1111_UNET) for n in unet_names)
    assert all(re.fullmatch(A1111_TEXT, n) for n in text_names)
    for expected in ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
                     "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_out_0",
                     "lora_unet_mid_block_attentions_0_proj_in",
                     "lora_unet_down_blocks_2_attentions_1_transformer_blocks_0_ff_net_0_proj",
                     "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_2",
                     "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
                     "lora_te_text_model_encoder_layers_11_mlp_fc2"):
        assert expected in names
    # every key of a layer: down, up and a 0-dim alpha
    assert len(sd) == 3 * len(names)
    assert sd["lora_unet_mid_block_attentions_0_proj_in.alpha"].shape == ()
    # SD 1.x projects with 1x1 convolutions, so proj_in/proj_out LoRAs are 1x1 convs too
    assert tuple(sd["lora_unet_mid_block_attentions_0_proj_in.lora_down.weight"].shape) == (8, 1280, 1, 1)
    assert tuple(sd["lora_unet_mid_block_attentions_0_proj_in.lora_up.weight"].shape) == (1280, 8, 1, 1)
    assert tuple(sd["lora_te_text_model_encoder_layers_3_mlp_fc1.lora_down.weight"].shape) == (8, 768)


def test_sd15_locon_adds_resnet_and_sampler_layers(sd15):
    from trainer.networks import create_network

    unet, text = sd15
    net = create_network(unet, text, dim=8, alpha=4, conv_dim=4, conv_alpha=2)
    sd = net.state_dict_kohya()
    names = layer_names(sd)
    assert names <= comfy_key_map(unet, text)
    conv = {n for n in names if sd[n + ".lora_down.weight"].dim() == 4
            and tuple(sd[n + ".lora_down.weight"].shape[2:]) == (3, 3)}
    # 22 ResNet blocks x 2 convs + 3 downsamplers + 3 upsamplers
    assert len(conv) == 22 * 2 + 3 + 3
    assert all(any(re.fullmatch(p, n) for p in A1111_UNET) for n in conv)
    down = sd["lora_unet_down_blocks_1_resnets_0_conv1.lora_down.weight"]
    up = sd["lora_unet_down_blocks_1_resnets_0_conv1.lora_up.weight"]
    assert (tuple(down.shape), tuple(up.shape)) == ((4, 320, 3, 3), (640, 4, 1, 1))
    assert getattr(net, "lora_unet_down_blocks_1_resnets_0_conv1").scale == 2.0 / 4
    # the 1x1 / linear companions in the ResNet blocks use network_dim, as in sd-scripts
    assert sd["lora_unet_down_blocks_1_resnets_0_conv_shortcut.lora_down.weight"].shape[0] == 8
    assert sd["lora_unet_mid_block_resnets_1_time_emb_proj.lora_down.weight"].shape[0] == 8
    assert "lora_unet_down_blocks_0_downsamplers_0_conv" in names
    assert "lora_unet_up_blocks_2_upsamplers_0_conv" in names


def test_sd21_keys_use_linear_projections_and_23_text_layers():
    from trainer.networks import create_network

    unet, text = meta_models("sd21-base")
    net = create_network(unet, text, dim=4, alpha=1)
    assert net.v2 is True
    sd = net.state_dict_kohya()
    names = layer_names(sd)
    text_names = {n for n in names if n.startswith("lora_te_")}
    assert len(text_names) == 23 * 6 and all(re.fullmatch(A1111_TEXT, n) for n in text_names)
    assert len(names - text_names) == 192 and names <= comfy_key_map(unet, text)
    assert tuple(sd["lora_unet_mid_block_attentions_0_proj_out.lora_down.weight"].shape) == (4, 1280)
    assert tuple(sd["lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
                    ".lora_down.weight"].shape) == (4, 1024)
    assert "lora_te_text_model_encoder_layers_22_self_attn_out_proj" in names
