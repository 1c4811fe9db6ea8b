"""SDXL base models -> ModelBundle: a diffusers StableDiffusionXLPipeline folder, or a single file
in the original layout (`model.diffusion_model.*`, `conditioner.embedders.0/1.*`,
`first_stage_model.*`). Offline: configs come from the file (our own files carry them) or from
the tensor shapes (the real SDXL sizes: 64-wide attention heads)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import UserError
from . import hub
from .bundle import ModelBundle
from .sgm_export import TEXT1_PREFIX, TEXT2_PREFIX

XL_CONFIGS = "sdxl_configs"  # safetensors metadata: the parts' configs as JSON
XL_REPO = "stabilityai/stable-diffusion-xl-base-1.0"
XL_VAE_SCALING = 0.13025
UNET = "model.diffusion_model."
HEAD_WIDTH = 64  # SDXL's U-Net and both encoders use 64-wide attention heads
XL_TOKENIZER_HINT = ("pass --tokenizer PATH: a diffusers SDXL folder (with tokenizer/ and "
                     "tokenizer_2/); single-file models contain no tokenizer")


def is_xl_state(state: dict) -> bool:
    return any(k.startswith(TEXT2_PREFIX) for k in state)


def is_xl_folder(folder: Path) -> bool:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return "text_encoder_2" in index


# ---------------------------------------------------------------- tokenizers


def _tokenizer_at(folder: Path, sub: str, pad: str | None):
    from transformers import CLIPTokenizer

    where = folder / sub
    if not ((where / "vocab.json").is_file() or (where / "tokenizer.json").is_file()):
        raise UserError(f"tokenizer folder {folder} has no {sub}/ tokenizer", XL_TOKENIZER_HINT)
    tokenizer = CLIPTokenizer.from_pretrained(str(where), **({"pad_token": pad} if pad else {}))
    if tokenizer.model_max_length > 77 * 1000:
        tokenizer.model_max_length = 77
    return tokenizer


def load_xl_tokenizers(spec: str | None, model_folder: Path | None) -> tuple:
    """(CLIP ViT-L tokenizer, bigG tokenizer): --tokenizer, the model folder's, or the hub cache's."""
    if spec is not None and Path(spec).is_dir():
        folder = Path(spec)
    elif spec is None and model_folder is not None:
        folder = model_folder
    else:
        repo = spec or XL_REPO
        found = [hub.file_folder(repo, sub, ["vocab.json", "merges.txt", "tokenizer_config.json",
                                             "special_tokens_map.json"])
                 for sub in ("tokenizer", "tokenizer_2")]
        if None in found:
            state = "the machine is offline" if hub.offline() else "it could not be downloaded"
            raise UserError(f"the SDXL tokenizers of {repo!r} are not in the local hub cache and "
                            f"{state}", XL_TOKENIZER_HINT)
        folder = Path(found[0]).parent  # type: ignore[arg-type]
    # bigG pads with "!" (token 0), as OpenCLIP does; ViT-L with its end-of-text token.
    return _tokenizer_at(folder, "tokenizer", None), _tokenizer_at(folder, "tokenizer_2", "!")


# ---------------------------------------------------------------- diffusers folders


def load_xl_folder(folder: Path, source: str, tokenizer_spec: str | None, part) -> ModelBundle:
    """`part(cls, folder, name)` loads one component (loading.py's, with its error messages)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, tokenizer_2 = load_xl_tokenizers(tokenizer_spec, None if tokenizer_spec else folder)
    safetensors = (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    return ModelBundle(
        unet=part(UNet2DConditionModel, folder, "unet"), vae=part(AutoencoderKL, folder, "vae"),
        text_encoder=part(CLIPTextModel, folder, "text_encoder"), tokenizer=tokenizer,
        text_encoder_2=part(CLIPTextModelWithProjection, folder, "text_encoder_2"),
        tokenizer_2=tokenizer_2, v2=False, v_parameterization=False, source_kind="diffusers",
        source=str(source), source_format="diffusers_safetensors" if safetensors else "diffusers")


# ---------------------------------------------------------------- single files


def _count(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def unet_config_from_shapes(state: dict) -> dict:
    """The diffusers config of an original-layout SDXL U-Net, read off its tensors."""
    downsamplers = sorted(int(m.group(1)) for k in state
                          if (m := re.match(rf"{re.escape(UNET)}input_blocks\.(\d+)\.0\.op\.weight", k)))
    per_level = downsamplers[0]  # the resnets of a level, then its downsampler
    levels = len(downsamplers) + 1
    channels, depths = [], []
    for level in range(levels):
        first = f"{UNET}input_blocks.{1 + level * per_level}."
        channels.append(state[first + "0.out_layers.3.weight"].shape[0])
        depths.append(_count(state, re.escape(first) + r"1\.transformer_blocks\.(\d+)\."))
    context = next(v.shape[1] for k, v in state.items() if k.endswith("attn2.to_k.weight"))
    adm = state[UNET + "label_emb.0.0.weight"].shape[1]
    pooled = state[TEXT2_PREFIX + "text_projection"].shape[1]
    return dict(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=per_level - 1,
        down_block_types=["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        up_block_types=["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)],
        block_out_channels=channels, transformer_layers_per_block=[max(d, 1) for d in depths],
        attention_head_dim=[c // HEAD_WIDTH for c in channels], cross_attention_dim=context,
        use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=(adm - pooled) // 6, projection_class_embeddings_input_dim=adm)


def text_configs_from_shapes(state: dict) -> tuple[dict, dict]:
    def sizes(embedding, layers: int, intermediate: int) -> dict:
        vocab, hidden = embedding.shape
        return dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                    intermediate_size=intermediate, num_attention_heads=hidden // HEAD_WIDTH,
                    max_position_embeddings=77)

    one = sizes(state[TEXT1_PREFIX + "embeddings.token_embedding.weight"],
                _count(state, re.escape(TEXT1_PREFIX) + r"encoder\.layers\.(\d+)\."),
                state[TEXT1_PREFIX + "encoder.layers.0.mlp.fc1.weight"].shape[0])
    two = sizes(state[TEXT2_PREFIX + "token_embedding.weight"],
                _count(state, re.escape(TEXT2_PREFIX) + r"transformer\.resblocks\.(\d+)\."),
                state[TEXT2_PREFIX + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0])
    one.update(hidden_act="quick_gelu", projection_dim=one["hidden_size"])
    two.update(hidden_act="gelu", projection_dim=state[TEXT2_PREFIX + "text_projection"].shape[1])
    return one, two


def embedded_configs(metadata: dict) -> dict | None:
    try:
        configs = json.loads(metadata.get(XL_CONFIGS) or "null")
    except ValueError:
        return None
    wanted = ("unet", "text_encoder", "text_encoder_2")
    return configs if isinstance(configs, dict) and all(k in configs for k in wanted) else None


def load_xl_single(path: Path, state: dict, tokenizer_spec: str | None) -> ModelBundle:
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint, convert_open_clip_checkpoint)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .checkpoint_io import read_metadata
    from .ldm_config import _vae_params
    from .ldm_export import strip_text_model
    from .ldm_import import _HiddenSize, _materialize, build_vae

    source = str(path)
    tokenizer, tokenizer_2 = load_xl_tokenizers(tokenizer_spec, None)
    configs = embedded_configs(read_metadata(path)) if path.suffix == ".safetensors" else None
    try:
        unet_config = configs["unet"] if configs else unet_config_from_shapes(state)
        text1, text2 = ((configs["text_encoder"], configs["text_encoder_2"]) if configs
                        else text_configs_from_shapes(state))
    except (KeyError, IndexError, StopIteration) as err:
        raise UserError(f"{path} does not have the SDXL layout (no {err})",
                        "give a whole SDXL base model") from None
    unet_config = {k: v for k, v in unet_config.items() if not k.startswith("_")}
    unet = _materialize(UNet2DConditionModel, unet_config,
                        convert_ldm_unet_checkpoint(state, unet_config), "U-Net", source)
    vae_ldm = {"model": {"params": {"scale_factor": XL_VAE_SCALING,
                                    "first_stage_config": {"params": _vae_params(state)}}}}
    vae = build_vae(state, vae_ldm, unet_config["sample_size"], source)
    vae.register_to_config(force_upcast=True)

    def encoder(cls, config: dict, converted: dict, tok, what: str):
        config = CLIPTextConfig(**{**config, "bos_token_id": tok.bos_token_id,
                                   "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id})
        converted = {k: v for k, v in strip_text_model(converted).items()
                     if not k.endswith("position_ids")}
        if cls is CLIPTextModelWithProjection:  # it keeps the text_model. level
            converted = {(k if k.startswith("text_projection") else "text_model." + k): v
                         for k, v in converted.items()}
        return _materialize(cls, config, converted, what, source)

    te1 = encoder(CLIPTextModel, text1, convert_ldm_clip_checkpoint(
        state, remove_prefix=TEXT1_PREFIX.removesuffix("text_model.")), tokenizer, "first text encoder")
    te2 = encoder(CLIPTextModelWithProjection, text2, convert_open_clip_checkpoint(
        _HiddenSize(text2["hidden_size"]), state, prefix=TEXT2_PREFIX), tokenizer_2,
        "second text encoder")
    suffix = path.suffix.lower().lstrip(".")
    return ModelBundle(
        unet=unet, vae=vae, text_encoder=te1, tokenizer=tokenizer, text_encoder_2=te2,
        tokenizer_2=tokenizer_2, v2=False, v_parameterization=False, source_kind="single",
        source=source, source_format=suffix if suffix in ("safetensors", "ckpt") else "ckpt",
        source_file=path.resolve(), source_keys=frozenset(state))
