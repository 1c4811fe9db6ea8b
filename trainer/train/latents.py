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


def cache_latents(session) -> None:
    from ..data.latents import vae_identity

    vae, dtype = session.bundle.vae, session.precision.vae_dtype
    reporter = session.reporter

    def progress(done: int, total: int) -> None:
        reporter.progress("caching latents", done, total)

    session.dataset.cache_latents(
        lambda images: encode_images(vae, images, dtype), vae_identity(vae, extra=str(dtype)),
        batch_size=session.cfg.vae_batch_size, to_disk=session.cfg.cache_latents_to_disk,
        progress=progress, rank=session.rank, world_size=session.world,
        barrier=session.accelerator.wait_for_everyone)


def batch_latents(session, batch: dict, sample_keys: list[tuple]) -> torch.Tensor:
    """Scaled latents of a batch, from the cache or encoded now."""
    scale = session.bundle.vae.config.scaling_factor
    if "latents" in batch:
        latents = batch["latents"].to(session.device)
    else:
        generators = [generator(*key, "vae") for key in sample_keys]
        latents = encode_images(session.bundle.vae, batch["images"], session.precision.vae_dtype,
                                generators)
    return latents * scale
