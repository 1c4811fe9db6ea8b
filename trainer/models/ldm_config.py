"""The LDM `.yaml` that describes a single-file model, read from the weights or written for them.

Image generators (AUTOMATIC1111, Forge) read `<model>.yaml` beside a checkpoint to know its
architecture; SD 2 models need one. We read it when present (it wins over detection), build the
same dict from the tensor shapes otherwise, and write it beside saved single files. Sizes a
standard LDM config cannot express (text-encoder heads, native resolution of a model smaller than
Stable Diffusion) go into an extra top-level section that LDM code ignores.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UserError
from .ldm_export import OPEN_CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX

EXTRA_SECTION = "nonstandard_sizes"
EMBEDDED_CONFIG = "ldm_config"  # safetensors metadata key holding the same config as JSON
SCALE_FACTOR = 0.18215
V1_TARGET = "ldm.modules.encoders.modules.FrozenCLIPEmbedder"
V2_TARGET = "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder"


def yaml_path_for(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".yaml")


def read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["model"]["params"]["unet_config"]["params"]
        return data
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise UserError(f"{path} is not a readable Stable Diffusion (LDM) config: "
                        f"{type(err).__name__}: {err}".splitlines()[0],
                        "fix or remove the .yaml beside the checkpoint") from None


def write_yaml(path: Path, config: dict) -> None:
    import yaml

    from ..atomic import write_text

    write_text(path, yaml.safe_dump(config, sort_keys=False))


# ---------------------------------------------------------------- detection from weights


def is_v2_text(state_dict: dict) -> bool | None:
    """True for OpenCLIP (SD 2), False for OpenAI CLIP (SD 1), None when there is no encoder."""
    if OPEN_CLIP_PREFIX + "token_embedding.weight" in state_dict:
        return True
    if any(k.startswith("cond_stage_model.transformer.") for k in state_dict):
        return False
    return None


def _count(state_dict: dict, pattern: str) -> int:
    found = {m.group(1) for k in state_dict if (m := re.match(pattern, k))}
    return len(found)


def _unet_params(sd: dict) -> dict:
    p = UNET_PREFIX
    channels = sd[p + "input_blocks.0.0.weight"].shape[0]
    levels = 1 + _count(sd, re.escape(p) + r"input_blocks\.(\d+)\.0\.op\.weight")
    per_level = _count(sd, re.escape(p) + r"input_blocks\.(\d+)\.") // levels
    mult, attention = [], []
    for level in range(levels):
        first = f"{p}input_blocks.{1 + level * per_level}."
        mult.append(sd[first + "0.out_layers.3.weight"].shape[0] // channels)
        if first + "1.proj_in.weight" in sd:
            attention.append(2 ** level)
    if not attention:
        raise KeyError("no cross-attention layers")
    first_attention = f"{p}input_blocks.{1 + (attention[0].bit_length() - 1) * per_level}.1."
    linear = sd[first_attention + "proj_in.weight"].ndim == 2
    context = sd[first_attention + "transformer_blocks.0.attn2.to_k.weight"].shape[1]
    depth = _count(sd, re.escape(first_attention) + r"transformer_blocks\.(\d+)\.")
    params = dict(
        use_checkpoint=True, image_size=32, in_channels=sd[p + "input_blocks.0.0.weight"].shape[1],
        out_channels=sd[p + "out.2.weight"].shape[0], model_channels=channels,
        attention_resolutions=attention, num_res_blocks=per_level - 1, channel_mult=mult,
    )
    # Head counts are not in the weights: SD 1 uses 8 heads, SD 2 heads of 64 channels.
    if linear:
        params["num_head_channels"] = 64
    else:
        params["num_heads"] = 8
    params.update(use_spatial_transformer=True, use_linear_in_transformer=linear,
                  transformer_depth=depth, context_dim=context, legacy=False)
    return params


def _vae_params(sd: dict, prefix: str = VAE_PREFIX) -> dict:
    ch = sd[prefix + "encoder.conv_in.weight"].shape[0]
    levels = _count(sd, re.escape(prefix) + r"encoder\.down\.(\d+)\.")
    mult = [sd[f"{prefix}encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch
            for i in range(levels)]
    z = sd[prefix + "decoder.conv_in.weight"].shape[1]
    return dict(
        embed_dim=sd[prefix + "post_quant_conv.weight"].shape[0], monitor="val/rec_loss",
        ddconfig=dict(double_z=True, z_channels=z, resolution=256,
                      in_channels=sd[prefix + "encoder.conv_in.weight"].shape[1],
                      out_ch=sd[prefix + "decoder.conv_out.weight"].shape[0], ch=ch, ch_mult=mult,
                      num_res_blocks=_count(sd, re.escape(prefix) + r"encoder\.down\.0\.block\.(\d+)\."),
                      attn_resolutions=[], dropout=0.0),
        lossconfig=dict(target="torch.nn.Identity"),
    )


def ldm_config_from_weights(state_dict: dict, v_parameterization: bool = False) -> dict:
    """An LDM config (the v1-/v2-inference.yaml shape) describing these weights."""
    v2 = bool(is_v2_text(state_dict))
    params = dict(
        linear_start=0.00085, linear_end=0.012, num_timesteps_cond=1, log_every_t=200,
        timesteps=1000, first_stage_key="jpg", cond_stage_key="txt", image_size=64, channels=4,
        cond_stage_trainable=False, conditioning_key="crossattn", monitor="val/loss_simple_ema",
        scale_factor=SCALE_FACTOR, use_ema=False,
    )
    if v_parameterization:
        params = {"parameterization": "v", **params}
    params["unet_config"] = dict(target="ldm.modules.diffusionmodules.openaimodel.UNetModel",
                                 params=_unet_params(state_dict))
    params["first_stage_config"] = dict(target="ldm.models.autoencoder.AutoencoderKL",
                                        params=_vae_params(state_dict))
    cond = dict(target=V2_TARGET, params=dict(freeze=True, layer="penultimate")) if v2 \
        else dict(target=V1_TARGET)
    params["cond_stage_config"] = cond
    return {"model": dict(base_learning_rate=1.0e-4,
                          target="ldm.models.diffusion.ddpm.LatentDiffusion", params=params)}


def text_sizes(state_dict: dict) -> dict:
    """Text-encoder sizes readable from the weights (layers as diffusers counts them)."""
    if is_v2_text(state_dict):
        p = OPEN_CLIP_PREFIX
        embedding = state_dict[p + "token_embedding.weight"]
        blocks = _count(state_dict, re.escape(p) + r"transformer\.resblocks\.(\d+)\.")
        return dict(vocab_size=embedding.shape[0], hidden_size=embedding.shape[1],
                    num_hidden_layers=blocks - 1,  # SD 2 reads the penultimate block
                    intermediate_size=state_dict[p + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                    max_position_embeddings=state_dict[p + "positional_embedding"].shape[0])
    text = {k.removeprefix("cond_stage_model.transformer.").removeprefix("text_model."): v
            for k, v in state_dict.items() if k.startswith("cond_stage_model.transformer.")}
    embedding = text["embeddings.token_embedding.weight"]
    return dict(vocab_size=embedding.shape[0], hidden_size=embedding.shape[1],
                num_hidden_layers=_count(text, r"encoder\.layers\.(\d+)\."),
                intermediate_size=text["encoder.layers.0.mlp.fc1.weight"].shape[0],
                max_position_embeddings=text["embeddings.position_embedding.weight"].shape[0])

