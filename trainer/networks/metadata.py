"""The metadata stored in a LoRA .safetensors file.

The ss_* keys are the ones sd-scripts writes and AUTOMATIC1111, its extensions, ComfyUI nodes
and model sites read (training settings, base model, dataset folders and tag frequency);
the modelspec.* keys follow the Stability AI model spec. All values are strings.
With `no_metadata` only the minimum is written: what a tool needs to use the file.
"""

from __future__ import annotations

import json
import os
import random
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping

from ..models.family import family_for

if TYPE_CHECKING:
    from ..data.summary import DatasetFacts

NETWORK_MODULE = "networks.lora"
# What remains with no_metadata (sd-scripts' minimum keys).
MINIMUM_KEYS = ("ss_v2", "ss_base_model_version", "ss_network_module", "ss_network_dim",
                "ss_network_alpha", "ss_network_args")

# cfg options stored as ss_<name> verbatim. Not among them: the dataset's sizes (a dataset TOML
# may set its own, so they come from DatasetFacts), max_train_steps (the run's computed total),
# the unet/text encoder rates (the rate in effect) and network_dropout (the network's own).
_OPTION_KEYS = (
    "output_name", "learning_rate", "gradient_checkpointing",
    "gradient_accumulation_steps", "lr_warmup_steps", "lr_scheduler",
    "mixed_precision", "full_fp16", "clip_skip", "max_token_length",
    "cache_latents", "seed", "noise_offset", "training_comment", "max_grad_norm",
    "caption_dropout_rate", "caption_dropout_every_n_epochs", "caption_tag_dropout_rate",
    "prior_loss_weight", "min_snr_gamma", "color_aug", "flip_aug", "random_crop",
    "shuffle_caption", "keep_tokens",
)


# modelspec.implementation of SDXL LoRAs: Stability's reference code, as sd-scripts declares.
SDXL_IMPLEMENTATION = "https://github.com/Stability-AI/generative-models"
SDXL_RESOLUTION = (1024, 1024)


def base_model_version(v2: bool, v_parameterization: bool, xl: bool = False) -> str:
    version = family_for(xl=xl, v2=v2, v_parameterization=False).base_model_version
    return version + ("_v" if v_parameterization and not xl else "")


class _Keys(dict):
    """The metadata being assembled: each key is set by exactly one line of this module."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self:
            raise KeyError(f"metadata key {key} is written twice")
        super().__setitem__(key, value)

    def update(self, other: Mapping[str, Any]) -> None:  # type: ignore[override]
        for key, value in other.items():
            self[key] = value


def build_metadata(cfg, network, *, v2: bool, v_parameterization: bool, num_epochs: int,
                   max_train_steps: int, dataset: DatasetFacts | None = None,
                   total_batch_size: int | None = None, optimizer: str | None = None,
                   network_args: Mapping[str, Any] | None = None,
                   training_started_at: float | None = None,
                   xl: bool | None = None) -> dict[str, str]:
    """Metadata for the LoRA files of one run (call once at the start; see `for_save`).

    dataset: the indexed dataset's facts (trainer.data.summary.dataset_facts); without it,
    only what the options say (sizes from cfg, no folders or counts).
    xl: the base model is SDXL (sdxl_base_v1-0; ss_v2 and v_parameterization do not apply);
    None: whatever the network was built on.
    """
    from ..data.summary import DatasetFacts

    if xl is None:
        xl = bool(getattr(network, "xl", False))
    if xl:
        v2 = v_parameterization = False
    default_size = SDXL_RESOLUTION if xl else (512, 512)
    facts = dataset or DatasetFacts(resolution=_resolution(cfg.resolution, default_size),
                                    enable_bucket=bool(cfg.enable_bucket),
                                    min_bucket_reso=cfg.min_bucket_reso,
                                    max_bucket_reso=cfg.max_bucket_reso,
                                    bucket_no_upscale=bool(cfg.bucket_no_upscale))
    started = time.time() if training_started_at is None else training_started_at
    meta = _Keys({
        "ss_v2": bool(v2),
        "ss_base_model_version": base_model_version(v2, v_parameterization, xl),
        "ss_network_module": NETWORK_MODULE,
    })
    meta.update(_network_keys(network, network_args))
    meta.update(_modelspec(cfg, v2, v_parameterization, started, facts.resolution, xl))
    if cfg.no_metadata:
        return _strings(meta)
    meta.update({f"ss_{name}": cfg.get(name) for name in _OPTION_KEYS})
    for part in ("unet_lr", "text_encoder_lr"):  # the rate in effect, not just the override
        meta[f"ss_{part}"] = cfg.get(part) if cfg.get(part) is not None else cfg.learning_rate
    meta.update({
        "ss_session_id": random.randint(0, 2**32 - 1),
        "ss_training_started_at": started,
        "ss_max_train_steps": max_train_steps,
        "ss_num_epochs": num_epochs,
        "ss_batch_size_per_device": cfg.train_batch_size,
        "ss_total_batch_size": total_batch_size or cfg.train_batch_size
        * cfg.gradient_accumulation_steps * cfg.num_processes,
        "ss_optimizer": optimizer or _optimizer_text(cfg),
    })
    meta.update(_dataset_keys(facts))
    meta.update(_model_identity("sd_model", cfg.pretrained_model_name_or_path))
    meta.update(_model_identity("vae", cfg.vae))
    return _strings(meta)


def _dataset_keys(facts: DatasetFacts) -> dict:
    width, height = facts.resolution
    return {
        "ss_resolution": f"({width}, {height})",
        "ss_enable_bucket": bool(facts.enable_bucket),
        "ss_min_bucket_reso": facts.min_bucket_reso,
        "ss_max_bucket_reso": facts.max_bucket_reso,
        "ss_bucket_no_upscale": bool(facts.bucket_no_upscale),
        "ss_num_train_images": facts.num_train_images,
        "ss_num_reg_images": facts.num_reg_images,
        "ss_num_batches_per_epoch": facts.num_batches_per_epoch,
        "ss_dataset_dirs": json.dumps(dict(facts.dataset_dirs)),
        "ss_reg_dataset_dirs": json.dumps(dict(facts.reg_dataset_dirs)),
        "ss_tag_frequency": json.dumps(dict(facts.tag_frequency)),
        "ss_bucket_info": json.dumps(facts.bucket_info) if facts.bucket_info is not None else None,
    }


def for_save(metadata: Mapping[str, str], *, steps: int, epoch: int) -> dict[str, str]:
    """The run's metadata stamped for one saved file (step, epoch, time)."""
    stamped = dict(metadata)
    now = time.time()
    if "ss_training_started_at" in stamped:  # full metadata, not the no_metadata minimum
        stamped.update({"ss_training_finished_at": str(now), "ss_steps": str(steps),
                        "ss_epoch": str(epoch)})
    stamped["modelspec.date"] = datetime.fromtimestamp(int(now)).isoformat()
    return stamped


def _network_keys(network, network_args: Mapping[str, Any] | None) -> dict:
    settings = network.settings
    args = {k: str(v) for k, v in (network_args or {}).items()}
    if settings.conv_dim is not None:  # tools detect LoCon from these two
        args["conv_dim"] = str(settings.conv_dim)
        args["conv_alpha"] = str(settings.conv_alpha)
    keys = {"ss_network_dim": settings.dim, "ss_network_alpha": float(settings.alpha),
            "ss_network_dropout": settings.dropout}
    if args:
        keys["ss_network_args"] = json.dumps(args)
    return keys


def _modelspec(cfg, v2: bool, v_parameterization: bool, started: float,
               resolution: tuple[int, int], xl: bool) -> dict:
    arch = family_for(xl=xl, v2=v2, v_parameterization=v_parameterization).modelspec_architecture
    width, height = resolution
    spec = {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": f"{arch}/lora",
        "modelspec.implementation": SDXL_IMPLEMENTATION if xl else "diffusers",
        "modelspec.title": cfg.output_name or "LoRA",
        "modelspec.resolution": f"{width}x{height}",
        "modelspec.prediction_type": "v" if v_parameterization else "epsilon",
        "modelspec.date": datetime.fromtimestamp(int(started)).isoformat(),
    }
    if cfg.clip_skip:
        spec["modelspec.encoder_layer"] = str(cfg.clip_skip)
    return spec


def _model_identity(kind: str, name: str | None) -> dict:
    """ss_<kind>_name plus the old and new AUTOMATIC1111 hashes of a single-file model."""
    if not name:
        return {}
    from .files import file_sha256, legacy_model_hash

    shown = os.path.basename(os.path.normpath(name)) if os.path.exists(name) else name
    keys = {f"ss_{kind}_name": shown}  # a hub id stays whole
    if os.path.isfile(name):
        prefix = "sd_model" if kind == "sd_model" else kind
        keys[f"ss_{prefix}_hash"] = legacy_model_hash(name)
        keys[f"ss_new_{prefix}_hash"] = file_sha256(name)
    return keys


def _optimizer_text(cfg) -> str:
    args = " ".join(cfg.optimizer_args or [])
    return cfg.optimizer_type + (f"({args})" if args else "")


def _resolution(text, default: tuple[int, int]) -> tuple[int, int]:
    from ..config.validate import parse_resolution

    if text in (None, ""):
        return default
    try:
        return parse_resolution(str(text))
    except ValueError:
        return default


def _strings(meta: Mapping[str, Any]) -> dict[str, str]:
    """Every value as text, as the format requires; unset values are left out."""
    return {key: str(value) for key, value in meta.items() if value is not None}
