"""The diffusion training objective: noise, timesteps, targets and the loss weighting."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .seeding import generator


@dataclass
class NoiseDraw:
    noise: torch.Tensor
    timesteps: torch.Tensor


def draw_noise(latents: torch.Tensor, sample_keys: list[tuple], *, num_timesteps: int,
               noise_offset: float = 0.0) -> NoiseDraw:
    """Noise and timestep of each sample from its own generator (see seeding.py)."""
    noises, steps = [], []
    shape = latents.shape[1:]
    for key in sample_keys:
        gen = generator(*key, "noise")
        noise = torch.randn(shape, generator=gen)
        if noise_offset:
            # Offset noise: a per-channel constant lets the model shift overall brightness.
            noise = noise + noise_offset * torch.randn((shape[0], 1, 1), generator=gen)
        noises.append(noise)
        steps.append(torch.randint(0, num_timesteps, (1,), generator=gen))
    noise = torch.stack(noises).to(latents.device, latents.dtype)
    timesteps = torch.cat(steps).to(latents.device)
    return NoiseDraw(noise, timesteps)


def target_for(scheduler, latents: torch.Tensor, noise: torch.Tensor,
               timesteps: torch.Tensor, v_prediction: bool) -> torch.Tensor:
    if v_prediction:
        return scheduler.get_velocity(latents, noise, timesteps)
    return noise


def snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    alpha = alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alpha / (1.0 - alpha)


def min_snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float,
                    v_prediction: bool) -> torch.Tensor:
    """Min-SNR-gamma weighting (Hang et al. 2023): min(SNR, gamma) / SNR, or / (SNR + 1) for v."""
    ratio = snr(alphas_cumprod, timesteps)
    clipped = torch.clamp(ratio, max=gamma)
    return clipped / (ratio + 1.0) if v_prediction else clipped / ratio


def per_sample_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each sample, computed in float32."""
    error = torch.nn.functional.mse_loss(prediction.float(), target.float(), reduction="none")
    return error.mean(dim=list(range(1, error.ndim)))


def combine(losses: torch.Tensor, weights: torch.Tensor, *, global_count: int,
            world_size: int) -> torch.Tensor:
    """Weighted sum scaled so that averaging over processes gives the mean over the global batch.

    With one process this is the plain mean. With N processes each holding part of a global batch
    (possibly unequal parts), DDP's gradient average then equals the single-process mean exactly.
    """
    return (losses * weights.to(losses.dtype)).sum() * (world_size / global_count)
