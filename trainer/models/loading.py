"""load_model: any base model a user has -> a ModelBundle (float32, CPU), offline-safe.

Accepted: a single-file SD 1.x/2.x checkpoint (.safetensors/.ckpt, LDM layout), a diffusers
folder (model_index.json), or a hub id (local cache; downloaded only when online).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from . import hub
from .bundle import ModelBundle
from .checkpoint_io import SINGLE_FILE_SUFFIXES, read_metadata, read_state_dict
from .ldm_config import EMBEDDED_CONFIG, is_v2_text, ldm_config_from_weights, read_yaml, yaml_path_for
from .ldm_export import UNET_PREFIX, VAE_PREFIX
from .xl_loading import is_xl_folder, is_xl_state, load_xl_folder, load_xl_single

XL_HINT = "for SDXL, `python -m trainer convert` reads and writes single files and diffusers " \
          "folders; training, sampling and the LoRA tools take SD 1.x/2.x models"
MODEL_HINT = "give a .safetensors/.ckpt Stable Diffusion checkpoint, a diffusers model folder " \
             "(with model_index.json) or a hub id such as stabilityai/stable-diffusion-2"


def load_model(name_or_path: str, *, v2: bool | None = None,
               v_parameterization: bool | None = None, vae: str | None = None,
               tokenizer: str | None = None, xl: bool = False) -> ModelBundle:
    """Load a Stable Diffusion model. v2 / v_parameterization: True insists, None (or False,
    the flags' unset value) detects. `xl`: SDXL models are accepted (else refused in one line).
    Raises UserError with a one-line message for bad input."""
    if not name_or_path:
        raise UserError("no base model given", MODEL_HINT)
    path = Path(name_or_path)
    if path.is_file():
        bundle = _load_single(path, v2, v_parameterization, tokenizer)
    elif path.is_dir():
        bundle = _load_diffusers(path, name_or_path, v2, v_parameterization, tokenizer)
    elif hub.looks_like_hub_id(str(name_or_path)):
        folder = hub.pipeline_folder(str(name_or_path))
        bundle = _load_diffusers(folder, name_or_path, v2, v_parameterization, tokenizer)
        bundle.source_format = "diffusers_safetensors"
    else:
        raise UserError(f"base model {name_or_path} does not exist", MODEL_HINT)
    if bundle.xl and not xl:
        raise UserError(f"{name_or_path} is a Stable Diffusion XL model; this command takes "
                        "Stable Diffusion 1.x/2.x models", XL_HINT)
    if vae:
        _replace_vae(bundle, vae)
    return bundle


def _replace_vae(bundle: ModelBundle, spec: str) -> None:
    from .parts import load_vae

    new = load_vae(spec)
    if new.config.latent_channels != bundle.unet.config.in_channels:
        raise UserError(f"VAE {spec} makes {new.config.latent_channels}-channel latents but the "
                        f"U-Net of {bundle.source} takes {bundle.unet.config.in_channels}",
                        "use a VAE made for Stable Diffusion 1.x/2.x")
    bundle.vae = new
    bundle.notes.append(f"VAE replaced by {spec}; it is saved with the model")


# ---------------------------------------------------------------- single files


def refuse_non_model(state: dict, path: Path) -> None:
    if any(k.startswith(UNET_PREFIX) for k in state):
        return
    keys = list(state)
    if any(k.startswith("conditioner.embedders.") for k in keys):
        what = "an SDXL checkpoint of a kind not supported here (such as the refiner)"
    elif keys and all(k.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.",
                                    "model_ema.", "loss.")) for k in keys):
        raise UserError(f"{path} is a VAE, not a whole Stable Diffusion model",
                        "give a whole model as the base model (training, convert and lora-merge "
                        "take a VAE with --vae)")
    elif any(k.startswith(("lora_unet_", "lora_te_")) or ".lora_" in k for k in keys):
        what = "a LoRA network, not a whole model"
    elif any(k.startswith(("down_blocks.", "conv_in.")) for k in keys):
        what = "a lone diffusers U-Net file; give its whole diffusers folder instead"
    else:
        what = "not a Stable Diffusion checkpoint (no model.diffusion_model.* weights)"
    raise UserError(f"{path} is {what}", MODEL_HINT)


def _embedded_config(path: Path) -> dict | None:
    """Our .safetensors also carry their LDM config, for when the .yaml got lost."""
    text = read_metadata(path).get(EMBEDDED_CONFIG)
    try:
        config = json.loads(text) if text else None
        return config if config and config["model"]["params"]["unet_config"] else None
    except (ValueError, KeyError, TypeError):
        return None


def _declared_v_parameterization(path: Path, ldm_config: dict | None) -> bool | None:
    if ldm_config is not None:
        return ldm_config["model"]["params"].get("parameterization") == "v"
    prediction = read_metadata(path).get("modelspec.prediction_type")
    return None if prediction is None else prediction in ("v", "v_prediction")


def _check_v2(v2_flag: bool | None, detected: bool, source: str) -> None:
    if v2_flag and not detected:
        raise UserError(f"{source} is a Stable Diffusion 1.x model (OpenAI CLIP text encoder), "
                        "but --v2 was given", "remove --v2 (the version is read from the weights)")


_UNET_INPUTS = {9: "an inpainting model", 8: "an instruct-pix2pix model", 5: "a depth-to-image model"}


def refuse_other_unet(in_channels: int, source: str) -> None:
    """Only text-to-image U-Nets (4 latent channels in) train here; others would fail mid-step."""
    if in_channels != 4:
        kind = _UNET_INPUTS.get(in_channels, "not a text-to-image model")
        raise UserError(f"{source} is {kind} (its U-Net takes {in_channels} input channels, not 4)",
                        "use the model's plain text-to-image version")


def describe_single(path: Path, state: dict, v2_flag, v_flag) -> tuple[dict, bool, bool, bool]:
    """(LDM config, whether it came from a .yaml, v2, v_parameterization) of a single file."""
    detected_v2 = is_v2_text(state)
    if detected_v2 is None:
        raise UserError(f"{path} has no text encoder (cond_stage_model.*)", MODEL_HINT)
    conv_in = state.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is not None and conv_in.ndim == 4:
        refuse_other_unet(conv_in.shape[1], str(path))
    yaml_file = yaml_path_for(path)
    from_file = yaml_file.is_file()
    config = read_yaml(yaml_file) if from_file else _embedded_config(path)
    if config is not None:
        declared = "OpenCLIP" in str(config["model"]["params"].get("cond_stage_config", ""))
        if declared != detected_v2:
            raise UserError(
                f"{yaml_file} describes a Stable Diffusion {'2' if declared else '1'}.x model but "
                f"{path.name} holds {'2' if detected_v2 else '1'}.x weights",
                "fix or remove the .yaml beside the model")
    _check_v2(v2_flag, detected_v2, str(path))
    v_param = bool(v_flag) or bool(_declared_v_parameterization(path, config))
    return config or ldm_config_from_weights(state, v_param), from_file, detected_v2, v_param


def _load_single(path: Path, v2_flag, v_flag, tokenizer_spec) -> ModelBundle:
    from .ldm_import import build_text_encoder, build_unet, build_vae, sample_size
    from .parts import check_tokenizer, load_tokenizer

    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise UserError(f"{path} is not a model checkpoint (expected .safetensors or .ckpt)",
                        MODEL_HINT)
    state = read_state_dict(path)
    if is_xl_state(state):
        return load_xl_single(path, state, tokenizer_spec)
    refuse_non_model(state, path)
    try:
        config, from_file, v2, v_param = describe_single(path, state, v2_flag, v_flag)
        tokenizer = load_tokenizer(tokenizer_spec, v2)
        size, source = sample_size(config, v2, v_param), str(path)
        text_encoder = build_text_encoder(state, config, v2, tokenizer, source)
        check_tokenizer(tokenizer, text_encoder.config.vocab_size, source)
        unet, vae = build_unet(state, config, size, source), build_vae(state, config, size, source)
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as err:
        raise UserError(f"{path} does not have the Stable Diffusion 1.x/2.x layout "
                        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
                        MODEL_HINT) from None
    suffix = path.suffix.lower().lstrip(".")
    return ModelBundle(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, v2=v2,
        v_parameterization=v_param, source_kind="single", source=str(path),
        source_format=suffix if suffix in ("safetensors", "ckpt") else "ckpt",
        source_file=path.resolve(), source_keys=frozenset(state), ldm_config=config,
        ldm_config_from_file=from_file)


# ---------------------------------------------------------------- diffusers folders


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} cannot be read ({type(err).__name__})",
                        "the model folder is damaged") from None


def _part(cls, folder: Path, name: str):
    if not (folder / name).is_dir():
        raise UserError(f"diffusers model {folder} has no {name}/ folder", MODEL_HINT)
    try:
        return cls.from_pretrained(str(folder), subfolder=name).float().eval()
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise UserError(f"the {name} of diffusers model {folder} cannot be loaded "
                        f"({type(err).__name__}: {first})", "the model folder is damaged "
                        "or incomplete: copy or download it again") from None


def _load_diffusers(folder: Path, source: str, v2_flag, v_flag, tokenizer_spec) -> ModelBundle:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from .parts import check_tokenizer, load_tokenizer

    if not (folder / "model_index.json").is_file():
        raise UserError(f"folder {folder} is not a diffusers model (no model_index.json)",
                        MODEL_HINT)
    if is_xl_folder(folder):
        return load_xl_folder(folder, source, tokenizer_spec, _part)
    unet = _part(UNet2DConditionModel, folder, "unet")
    refuse_other_unet(unet.config.in_channels, source)
    text_encoder = _part(CLIPTextModel, folder, "text_encoder")
    detected_v2 = text_encoder.config.hidden_act == "gelu" or unet.config.cross_attention_dim == 1024
    _check_v2(v2_flag, detected_v2, source)
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    declared = _read_json(scheduler_file).get("prediction_type") if scheduler_file.is_file() else None
    tokenizer = load_tokenizer(tokenizer_spec, detected_v2, None if tokenizer_spec else folder)
    check_tokenizer(tokenizer, text_encoder.config.vocab_size, source)
    safetensors = (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    return ModelBundle(
        unet=unet, vae=_part(AutoencoderKL, folder, "vae"), text_encoder=text_encoder,
        tokenizer=tokenizer, v2=detected_v2,
        v_parameterization=bool(v_flag) or declared == "v_prediction",
        source_kind="diffusers", source=str(source),
        source_format="diffusers_safetensors" if safetensors else "diffusers")
