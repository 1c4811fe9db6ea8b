"""save_model: a (trained) bundle -> a single file (+ .yaml) or a diffusers folder, atomically."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..disk_space import ensure_free_space
from ..errors import UserError
from .bundle import SAVE_FORMATS, SINGLE_FORMATS, ModelBundle

log = logging.getLogger("trainer.models")
PRECISIONS = {"float": "float32", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def save_model(bundle: ModelBundle, path, *, save_model_as: str | None = None,
               save_precision: str = "float", unet=None, text_encoder=None, vae=None,
               text_encoder_2=None, metadata: dict[str, str] | None = None) -> Path:
    """Write the model; returns the file or folder written.

    unet / text_encoder / vae replace the bundle's (modules, possibly wrapped or compiled, or
    plain state dicts). Format: save_model_as, else the suffix of `path`, else the input's kind.
    """
    import torch

    fmt = _resolve_format(Path(path), save_model_as, bundle)
    path = _with_suffix(Path(path), fmt)
    if save_precision not in PRECISIONS:
        raise UserError(f"save_precision {save_precision!r} is not one of float, fp16, bf16")
    dtype = getattr(torch, PRECISIONS[save_precision])
    parts = {
        "unet": _state_dict(unet if unet is not None else bundle.unet, dtype),
        "vae": _state_dict(vae if vae is not None else bundle.vae, dtype),
        "text_encoder": _state_dict(text_encoder if text_encoder is not None
                                    else bundle.text_encoder, dtype),
    }
    if bundle.xl:
        parts["text_encoder_2"] = _state_dict(text_encoder_2 if text_encoder_2 is not None
                                              else bundle.text_encoder_2, dtype)
    ensure_free_space(path.parent, _bytes(parts), f"the model {path.name}")
    if fmt in SINGLE_FORMATS:
        _save_single(bundle, path, parts, dtype, metadata)
    else:
        from .diffusers_folder import write_diffusers

        if bundle.source_kind == "single":
            _note_dropped(bundle, "a diffusers folder keeps only the U-Net, VAE and text encoders")
        write_diffusers(bundle, path, parts, safetensors=fmt == "diffusers_safetensors")
    return path


def _bytes(parts: dict) -> int:
    return sum(t.numel() * t.element_size() for part in parts.values() for t in part.values())


def _resolve_format(path: Path, save_model_as: str | None, bundle: ModelBundle) -> str:
    by_suffix = {".safetensors": "safetensors", ".ckpt": "ckpt"}.get(path.suffix.lower())
    if save_model_as is None:
        return by_suffix or bundle.default_save_format
    if save_model_as not in SAVE_FORMATS:
        raise UserError(f"save_model_as {save_model_as!r} is not one of {', '.join(SAVE_FORMATS)}")
    if by_suffix and by_suffix != save_model_as:
        raise UserError(f"{path} ends in {path.suffix} but save_model_as is {save_model_as}",
                        "make the name and the format agree")
    return save_model_as


def _with_suffix(path: Path, fmt: str) -> Path:
    if fmt in SINGLE_FORMATS and path.suffix.lower() != "." + fmt:
        return path.with_name(path.name + "." + fmt)
    return path


def _unwrap(module):
    """DDP/accelerate wrappers keep the model in .module, torch.compile in ._orig_mod."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif hasattr(module, "module") and hasattr(module, "forward"):
            module = module.module
        else:
            return module


def _state_dict(part, dtype) -> dict:
    state = part if isinstance(part, dict) else _unwrap(part).state_dict()
    out = {}
    for key, value in state.items():
        for prefix in ("_orig_mod.", "module."):
            key = key.removeprefix(prefix)
        value = value.detach()
        out[key] = value.to(dtype) if value.is_floating_point() else value
    return out


# ---------------------------------------------------------------- single files


def _save_single(bundle: ModelBundle, path: Path, parts: dict, dtype, metadata) -> None:
    if bundle.xl:
        return _save_xl_single(bundle, path, parts, dtype, metadata)
    from .checkpoint_io import write_single_file
    from .ldm_config import EMBEDDED_CONFIG, write_yaml, yaml_path_for
    from .ldm_export import to_ldm
    from .yaml_export import ldm_config_for, needs_yaml

    layers = bundle.unet.config.layers_per_block
    state, placeholders = to_ldm(parts["unet"], parts["vae"], parts["text_encoder"],
                                 v2=bundle.v2, layers_per_block=layers)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    state.update(_kept_source_keys(bundle, state, placeholders, dtype))
    config = _source_config(bundle) if bundle.ldm_config_from_file else ldm_config_for(bundle, state)
    embedded = {EMBEDDED_CONFIG: json.dumps(config)} if path.suffix == ".safetensors" else {}
    write_single_file(state, path, {**_modelspec(bundle), **embedded, **(metadata or {})})
    # An existing .yaml of that name described the file just replaced: rewrite it too.
    yaml_file = yaml_path_for(path)
    if bundle.ldm_config_from_file or needs_yaml(bundle) or yaml_file.exists():
        write_yaml(yaml_file, config)


def _save_xl_single(bundle: ModelBundle, path: Path, parts: dict, dtype, metadata) -> None:
    """SDXL has no .yaml; the parts' configs travel in the metadata of a .safetensors."""
    from .checkpoint_io import write_single_file
    from .sgm_export import to_sgm
    from .xl_loading import XL_CONFIGS

    state, placeholders = to_sgm(parts["unet"], parts["vae"], parts["text_encoder"],
                                 parts["text_encoder_2"],
                                 layers_per_block=bundle.unet.config.layers_per_block)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    state.update(_kept_source_keys(bundle, state, placeholders, dtype))
    configs = {"unet": dict(bundle.unet.config), "text_encoder": _text_config(bundle.text_encoder),
               "text_encoder_2": _text_config(bundle.text_encoder_2)}
    embedded = {XL_CONFIGS: json.dumps(configs)} if path.suffix == ".safetensors" else {}
    write_single_file(state, path, {**_modelspec(bundle), **embedded, **(metadata or {})})


def _text_config(text_encoder) -> dict:
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "max_position_embeddings", "hidden_act", "projection_dim",
            "layer_norm_eps")
    return {k: getattr(text_encoder.config, k) for k in keys}


def _source_config(bundle: ModelBundle) -> dict:
    """The input's own .yaml, with the prediction type the model was trained with."""
    import copy

    config = copy.deepcopy(bundle.ldm_config or {})  # set whenever ldm_config_from_file is
    params = config["model"]["params"]
    if bundle.v_parameterization:
        params["parameterization"] = "v"
    else:
        params.pop("parameterization", None)
    return config


def _kept_source_keys(bundle: ModelBundle, state: dict, placeholders: set, dtype) -> dict:
    """Keys of a single-file input that this export does not produce (EMA, the unused last
    OpenCLIP block, ...) are copied from the input file rather than lost."""
    if bundle.source_kind != "single" or bundle.source_file is None:
        return {}
    wanted = [k for k in bundle.source_keys if k not in state or k in placeholders]
    if not wanted:
        return {}
    from .checkpoint_io import read_keys

    try:
        kept = read_keys(bundle.source_file, wanted)
    except Exception:  # the input was moved or changed since loading
        kept = {}
    if len(kept) < len(wanted):
        _note_dropped(bundle, f"{bundle.source_file} could no longer be read")
    extra = [k for k in kept if k not in state]
    if extra:
        log.info("kept %d tensors of %s that training does not change (e.g. %s)",
                 len(extra), bundle.source_file, sorted(extra)[0])
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in kept.items()}


def _note_dropped(bundle: ModelBundle, why: str) -> None:
    from .ldm_export import SCHEDULE_KEYS

    ignorable = set(SCHEDULE_KEYS) | {"cond_stage_model.transformer.text_model.embeddings.position_ids"}
    model_prefixes = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.",
                      "conditioner.embedders.")
    lost = [k for k in bundle.source_keys
            if k not in ignorable and not k.startswith(model_prefixes)]
    if lost:
        log.warning("%d tensors of %s are not saved (%s), e.g. %s", len(lost), bundle.source,
                    why, sorted(lost)[0])


def _modelspec(bundle: ModelBundle) -> dict:
    """Safetensors metadata tools read to recognise the model (Stability's model spec keys)."""
    from .family import family_of

    arch = family_of(bundle).modelspec_architecture
    return {"modelspec.sai_model_spec": "1.0.0", "modelspec.architecture": arch,
            "modelspec.prediction_type": "v" if bundle.v_parameterization else "epsilon",
            "modelspec.resolution": f"{bundle.resolution}x{bundle.resolution}"}


def model_index(bundle: ModelBundle) -> str:
    import diffusers

    if bundle.xl:
        return json.dumps({
            "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": diffusers.__version__,
            "force_zeros_for_empty_prompt": True, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]},
            indent=2)
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
             "feature_extractor": [None, None], "requires_safety_checker": False,
             "safety_checker": [None, None], "scheduler": ["diffusers", "DDIMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    return json.dumps(index, indent=2)

