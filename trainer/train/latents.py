"""Turning images into latents: once for the cache, or per batch when nothing is cached."""

from __future__ import annotations

import torch

from .seeding import generator


@torch.no_grad()
def encode_images(vae, images: torch.Tensor, dtype: torch.dtype,
                  generators: list | None = None) -> torch.Tensor:
    """Unscaled latents. Cached latents use the distribution's mean (deterministic); fresh
    per-step encodes draw a sample with each image's own generator."""
    device = next(vae.parameters()).device
    dist = vae.encode(images.to(device=device, dtype=dtype)).latent_dist
    latents = dist.mode() if generators is None else dist.sample(generator=generators)
    return latents.float()


def batch_latents(vae, vae_dtype: torch.dtype, device, batch: dict,
                  sample_keys: list[tuple]) -> torch.Tensor:
    """Scaled latents of a batch, from the cache or encoded now."""
    if "latents" in batch:
        latents = batch["latents"].to(device)
    else:
        generators = [generator(*key, "vae") for key in sample_keys]
        latents = encode_images(vae, batch["images"], vae_dtype, generators)
    return latents * vae.config.scaling_factor
