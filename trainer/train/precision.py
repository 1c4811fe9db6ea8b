"""Precision and attention: which dtype each part runs in, autocast, loss scaling, fallbacks."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Precision:
    device: torch.device
    compute_dtype: torch.dtype  # autocast dtype, and the dtype of frozen parts
    train_dtype: torch.dtype  # dtype of the trained weights (float32 unless full_fp16/bf16)
    vae_dtype: torch.dtype
    scaler: Any  # torch.amp.GradScaler for fp16, else None

    @property
    def enabled(self) -> bool:
        return self.compute_dtype != torch.float32

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)


def _allow_fp16_unscale(scaler) -> None:
    """full_fp16 keeps gradients in fp16, which GradScaler refuses to unscale by default."""
    original = scaler._unscale_grads_

    def unscale(optimizer, inv_scale, found_inf, allow_fp16):  # noqa: ARG001 - signature kept
        return original(optimizer, inv_scale, found_inf, True)

    scaler._unscale_grads_ = unscale


def _train_dtype(cfg, compute: torch.dtype, warn) -> torch.dtype:
    """The trained weights' dtype: float32, or the compute dtype with full_fp16 / full_bf16."""
    if cfg.full_fp16:
        return torch.float16
    if cfg.full_bf16:
        if compute != torch.bfloat16:  # the GPU fell back to fp16
            warn("full_bf16 needs bf16, which this GPU lacks; the trained weights stay float32")
            return torch.float32
        return torch.bfloat16
    return torch.float32


def _vae_dtype(cfg, compute: torch.dtype, vae, warn) -> torch.dtype:
    """float32 with no_half_vae, and under fp16 for a VAE whose config asks for it
    (force_upcast: SDXL's VAE overflows to NaN latents in fp16)."""
    if cfg.no_half_vae:
        return torch.float32
    config = getattr(vae, "config", None) or {}
    if compute == torch.float16 and config.get("force_upcast", False):
        warn("the VAE runs in float32 under fp16, as with no_half_vae, because its config "
               "sets force_upcast (it may give NaN latents in fp16)")
        return torch.float32
    return compute


def setup_precision(cfg, device: torch.device, warn, vae=None) -> Precision:
    """`vae`: the VAE of a family whose VAE overflows in fp16, whose config may then ask for
    float32 (reported through `warn`); None otherwise."""
    compute = DTYPES[cfg.mixed_precision]
    if compute == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        warn("this GPU has no bf16 support; training in fp16 instead (mixed_precision=fp16)")
        compute = torch.float16
    train = _train_dtype(cfg, compute, warn)
    vae_dtype = _vae_dtype(cfg, compute, vae, warn)
    scaler = None
    if compute == torch.float16:
        scaler = torch.amp.GradScaler(device.type)
        if cfg.full_fp16:
            _allow_fp16_unscale(scaler)
    return Precision(device, compute, train, vae_dtype, scaler)


def peak_memory(device: torch.device) -> dict[str, int]:
    """The run's peak GPU memory (what torch allocated, and what its allocator held)."""
    if device.type != "cuda":
        return {}
    return {"vram_peak_allocated": torch.cuda.max_memory_allocated(device),
            "vram_peak_reserved": torch.cuda.max_memory_reserved(device)}


def setup_attention(cfg, unet, device: torch.device, warn) -> str:
    """xformers when asked and possible; sliced attention for mem_eff_attn; otherwise SDPA."""
    if cfg.xformers:
        reason = None
        if device.type != "cuda":
            reason = "xformers needs a CUDA GPU"
        else:
            try:
                import xformers  # noqa: F401

                unet.enable_xformers_memory_efficient_attention()
                return "xformers"
            except Exception as err:  # missing package or a build that does not fit this torch
                reason = f"xformers is not usable here ({type(err).__name__}: {err})"
        warn(f"{reason}; using PyTorch scaled-dot-product attention instead")
    if cfg.mem_eff_attn and not cfg.xformers:
        unet.set_attention_slice("auto")
        return "sliced"
    return "sdpa"
