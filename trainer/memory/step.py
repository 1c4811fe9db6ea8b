"""One training step traced on the meta device: the models placed as the trainer places them,
a forward pass at the run's size, and what it leaves for the backward pass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

from .architecture import MetaModels
from .autocast import GpuLikeMode
from .saved import SavedLog, storage_bytes, storage_key

META = torch.device("meta")


@dataclass
class Placed:
    target: Any  # DreamBoothTarget or LoRATarget, on meta
    precision: Any  # trainer.train.precision.Precision
    trained: list  # the parameters the optimizer updates
    frozen: list  # every other parameter on the GPU


def place(cfg, models: MetaModels, device: torch.device = META) -> Placed:
    """The trainer's own placement code (targets.py, lora_target.py) applied to the models
    (on meta for an estimate; real CPU models measure the same for comparison)."""
    from ..train.precision import setup_precision

    precision = dataclasses.replace(setup_precision(cfg, torch.device("cpu"), print),
                                    device=device)
    bundle = SimpleNamespace(unet=models.unet, text_encoder=models.text_encoder, vae=models.vae,
                             default_save_format="safetensors")
    target: Any  # LoRATarget or DreamBoothTarget (imported only for their mode)
    with device:  # LoRA layers are created here: on meta no weights are allocated
        if cfg.mode == "lora":
            from ..train.lora_target import LoRATarget

            target = LoRATarget(_without_weights(cfg), bundle, precision, warn=lambda _: None)
        else:
            from ..train.targets import DreamBoothTarget

            target = DreamBoothTarget(cfg, bundle, precision)
        target.place()
    trained = [p for group in target.param_groups() for p in group["params"]]
    ids = {id(p) for p in trained}
    modules = [models.unet, models.text_encoder, models.vae]
    frozen = {id(p): p for m in modules for p in m.parameters() if id(p) not in ids}
    return Placed(target, precision, trained, list(frozen.values()))


def _without_weights(cfg):
    """The network's shape is all that matters; read a network_weights file only when the
    shape comes from it (dim_from_weights)."""
    if cfg.network_weights and not cfg.dim_from_weights:
        cfg = cfg.copy()
        cfg.network_weights = None
    return cfg


def image_size(cfg) -> tuple[int, int]:
    """(width, height) of the largest training image: bucketing keeps every bucket's area at
    most resolution's."""
    from ..config import parse_resolution

    return parse_resolution(cfg.resolution)


def attention_kind(cfg) -> str:
    """As setup_attention chooses on a CUDA machine: sliced for mem_eff_attn alone, otherwise a
    fused kernel (xformers, or PyTorch SDPA's flash / memory-efficient kernels)."""
    return "sliced" if cfg.mem_eff_attn and not cfg.xformers else "kernel"


@dataclass
class StepTrace:
    log: SavedLog
    cast_bytes: int  # trained weights' compute-dtype copies that autocast caches in the forward


def trace_step(cfg, placed: Placed, watch_gradients: bool = True) -> StepTrace:
    """Forward of one batch as the loop runs it (text encoder when it learns, then the U-Net
    under autocast, then the loss), with every tensor saved for backward logged."""
    from ..train.text import TextSettings, encode

    target, precision = placed.target, placed.precision
    device = precision.device
    unet, text_encoder = target.forward_unet(), target.forward_text_encoder()
    log = SavedLog(skip={storage_key(p) for p in placed.trained + placed.frozen})
    if watch_gradients:  # (not with fused_backward_pass: no gradient waits for the step)
        log.watch_gradients(unet, {id(p) for p in placed.trained})
        log.watch_gradients(text_encoder, {id(p) for p in placed.trained})
    _route_checkpointing(log, unet, text_encoder)
    if attention_kind(cfg) == "sliced":
        unet.set_attention_slice("auto")
    compute = precision.compute_dtype if precision.enabled else None
    settings = TextSettings(cfg.max_token_length, cfg.clip_skip, cfg.no_token_padding)
    batch, (width, height) = cfg.train_batch_size, image_size(cfg)
    ids = torch.zeros(batch, 77 * settings.chunks, dtype=torch.long, device=device)
    channels = unet.config.in_channels
    latents = torch.zeros(batch, channels, height // 8, width // 8, device=device)
    timesteps = torch.zeros(batch, dtype=torch.long, device=device)
    with log.hooks():
        with GpuLikeMode(compute), torch.set_grad_enabled(target.trains_text_encoder(0)):
            hidden = encode(text_encoder, ids, settings)
        with GpuLikeMode(compute) as unet_mode:
            prediction = unet(latents, timesteps, hidden).sample
        torch.nn.functional.mse_loss(prediction.float(), latents)
    # The text encoder's autocast region has ended by now and its unsaved copies with it.
    return StepTrace(log, _cached_outside_log(log, unet_mode.cache.values()))


def _route_checkpointing(log: SavedLog, *models) -> None:
    """The blocks diffusers and transformers checkpoint call `_gradient_checkpointing_func`;
    it is set only where the trainer enabled checkpointing."""
    for model in models:
        for module in model.modules():
            if getattr(module, "_gradient_checkpointing_func", None) is not None:
                module._gradient_checkpointing_func = log.checkpoint


def _cached_outside_log(log: SavedLog, copies) -> int:
    """Bytes of cached weight copies that are not kept for backward (they were saved inside a
    checkpointed block, or not at all), yet live until the forward ends."""
    total = 0
    for copy in copies:
        entry = log.saved.get(storage_key(copy))
        if entry is None or entry.block is not None:
            total += storage_bytes(copy)
    return total
