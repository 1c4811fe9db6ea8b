"""The diffusion training objective: noise, timesteps, targets and the loss weighting.

Option names and formulas follow kohya-ss sd-scripts (train_util.get_noise_noisy_latents_and_timesteps,
custom_train_functions); every random number comes from the sample's own generator, so a sample's
noise never depends on its batch, its process or a resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .seeding import generator

# SNR is infinite at timestep 0 of some schedules; sd-scripts' weightings clip it here.
SNR_CLIP = 1000.0


@dataclass(frozen=True)
class NoiseOptions:
    """How noise and timesteps are drawn (sd-scripts' flags of the same names)."""

    noise_offset: float = 0.0
    noise_offset_random_strength: bool = False
    adaptive_noise_scale: float | None = None
    multires_noise_iterations: int | None = None
    multires_noise_discount: float = 0.3
    ip_noise_gamma: float | None = None
    ip_noise_gamma_random_strength: bool = False
    min_timestep: int | None = None
    max_timestep: int | None = None

    @classmethod
    def from_config(cls, cfg) -> NoiseOptions:
        return cls(noise_offset=cfg.noise_offset or 0.0,
                   noise_offset_random_strength=cfg.noise_offset_random_strength,
                   adaptive_noise_scale=cfg.adaptive_noise_scale,
                   multires_noise_iterations=cfg.multires_noise_iterations,
                   multires_noise_discount=cfg.multires_noise_discount,
                   ip_noise_gamma=cfg.ip_noise_gamma,
                   ip_noise_gamma_random_strength=cfg.ip_noise_gamma_random_strength,
                   min_timestep=cfg.min_timestep, max_timestep=cfg.max_timestep)


@dataclass(frozen=True)
class LossOptions:
    """How the per-sample loss is computed and weighted."""

    loss_type: str = "l2"
    huber_c: float = 0.1
    huber_schedule: str = "snr"
    huber_scale: float = 1.0
    min_snr_gamma: float | None = None
    debiased_estimation_loss: bool = False
    scale_v_pred_loss_like_noise_pred: bool = False
    v_pred_like_loss: float | None = None

    @classmethod
    def from_config(cls, cfg) -> LossOptions:
        return cls(loss_type=cfg.loss_type, huber_c=cfg.huber_c,
                   huber_schedule=cfg.huber_schedule, huber_scale=cfg.huber_scale,
                   min_snr_gamma=cfg.min_snr_gamma,
                   debiased_estimation_loss=cfg.debiased_estimation_loss,
                   scale_v_pred_loss_like_noise_pred=cfg.scale_v_pred_loss_like_noise_pred,
                   v_pred_like_loss=cfg.v_pred_like_loss)


@dataclass
class NoiseDraw:
    noise: torch.Tensor  # what the model learns to predict (the target's noise)
    timesteps: torch.Tensor
    input_noise: torch.Tensor | None = None  # noise added to the input, when it differs (ip noise)

    @property
    def noise_for_input(self) -> torch.Tensor:
        return self.noise if self.input_noise is None else self.input_noise


def timestep_range(num_timesteps: int, options: NoiseOptions) -> tuple[int, int]:
    low = 0 if options.min_timestep is None else options.min_timestep
    high = num_timesteps if options.max_timestep is None else options.max_timestep
    return low, high


def _draw_timestep(gen: torch.Generator, low: int, high: int) -> torch.Tensor:
    if low < high:
        return torch.randint(low, high, (1,), generator=gen)
    return torch.full((1,), high, dtype=torch.long)  # min == max pins the timestep (sd-scripts)


def _offset_strength(latent: torch.Tensor, gen: torch.Generator,
                     options: NoiseOptions) -> torch.Tensor | float:
    """Offset-noise strength of one sample: fixed, or uniform in [0, noise_offset), plus the
    adaptive part that grows with the mean brightness of each latent channel."""
    strength: torch.Tensor | float = options.noise_offset
    if options.noise_offset_random_strength:
        strength = torch.rand(1, generator=gen) * options.noise_offset
    if options.adaptive_noise_scale is not None:
        channel_mean = latent.detach().float().cpu().mean(dim=(1, 2), keepdim=True).abs()
        strength = torch.clamp(strength + options.adaptive_noise_scale * channel_mean, min=0.0)
    return strength


def multires_noise(noise: torch.Tensor, gen: torch.Generator, iterations: int,
                   discount: float) -> torch.Tensor:
    """Pyramid noise of one sample (C, H, W): coarser noise levels, each scaled down by
    `discount`, upsampled and added, then rescaled to unit standard deviation.

    As sd-scripts, each level shrinks by a random factor in [2, 4); unlike it, the factor and the
    final standard deviation belong to the sample, not to the whole batch.
    """
    channels, height, width = noise.shape
    upsample = torch.nn.Upsample(size=(height, width), mode="bilinear")
    noise = noise.clone()
    for level in range(iterations):
        factor = float(torch.rand(1, generator=gen)) * 2 + 2
        h = max(1, int(height / factor ** level))
        w = max(1, int(width / factor ** level))
        coarse = torch.randn((1, channels, h, w), generator=gen)
        noise += upsample(coarse)[0] * discount ** level
        if h == 1 or w == 1:
            break
    return noise / noise.std()


def draw_noise(latents: torch.Tensor, sample_keys: list[tuple], *, num_timesteps: int,
               noise_offset: float = 0.0, options: NoiseOptions | None = None) -> NoiseDraw:
    """Noise and timestep of each sample from its own generator (see seeding.py).

    The draws of the default options come first and in a fixed order, so runs without the
    newer options draw exactly what they always drew."""
    options = options or NoiseOptions(noise_offset=noise_offset)
    low, high = timestep_range(num_timesteps, options)
    noises, steps, input_noises = [], [], []
    shape = latents.shape[1:]
    for index, key in enumerate(sample_keys):
        gen = generator(*key, "noise")
        noise = torch.randn(shape, generator=gen)
        if options.noise_offset:
            # Offset noise: a per-channel constant lets the model shift overall brightness.
            strength = _offset_strength(latents[index], gen, options)
            noise = noise + strength * torch.randn((shape[0], 1, 1), generator=gen)
        steps.append(_draw_timestep(gen, low, high))
        if options.multires_noise_iterations:
            noise = multires_noise(noise, gen, options.multires_noise_iterations,
                                   options.multires_noise_discount)
        noises.append(noise)
        if options.ip_noise_gamma:
            # Input perturbation: extra noise on the model's input only; the target keeps `noise`.
            gamma: torch.Tensor | float = options.ip_noise_gamma
            if options.ip_noise_gamma_random_strength:
                gamma = torch.rand(1, generator=gen) * options.ip_noise_gamma
            input_noises.append(noise + gamma * torch.randn(shape, generator=gen))
    noise = torch.stack(noises).to(latents.device, latents.dtype)
    timesteps = torch.cat(steps).to(latents.device)
    input_noise = None
    if input_noises:
        input_noise = torch.stack(input_noises).to(latents.device, latents.dtype)
    return NoiseDraw(noise, timesteps, input_noise)


def enforce_zero_terminal_snr(scheduler) -> None:
    """Rescale a DDPM schedule in place so the last timestep is pure noise (Lin et al. 2023,
    arxiv.org/abs/2305.08891, algorithm 1): sqrt(alphas_cumprod) is shifted to end at 0 and
    scaled to keep its first value."""
    alphas_cumprod = torch.cumprod(1.0 - scheduler.betas.double(), dim=0)
    root = alphas_cumprod.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    cumprod = root ** 2
    alphas = torch.cat([cumprod[:1], cumprod[1:] / cumprod[:-1]])
    dtype = scheduler.betas.dtype
    scheduler.betas = (1.0 - alphas).to(dtype)
    scheduler.alphas = alphas.to(dtype)
    scheduler.alphas_cumprod = torch.cumprod(alphas, dim=0).to(dtype)


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


def huber_threshold(options: LossOptions, alphas_cumprod: torch.Tensor,
                    timesteps: torch.Tensor, num_timesteps: int) -> torch.Tensor:
    """The huber / smooth_l1 threshold of each sample, by huber_schedule (as sd-scripts: the
    snr schedule ignores huber_scale)."""
    c = options.huber_c
    if options.huber_schedule == "exponential":
        rate = -math.log(c) / num_timesteps
        return torch.exp(-rate * timesteps.float()) * options.huber_scale
    if options.huber_schedule == "snr":
        alpha = alphas_cumprod.to(timesteps.device)[timesteps].float()
        sigma = ((1.0 - alpha) / alpha) ** 0.5
        return (1 - c) / (1 + sigma) ** 2 + c
    return torch.full(timesteps.shape, c * options.huber_scale, device=timesteps.device)


def per_sample_loss(prediction: torch.Tensor, target: torch.Tensor, loss_type: str = "l2",
                    threshold: torch.Tensor | None = None) -> torch.Tensor:
    """The mean loss of each sample, computed in float32.

    huber: 2c(sqrt(e^2 + c^2) - c), about e^2 for small errors and 2c|e| for large ones;
    smooth_l1: the same divided by c."""
    error = prediction.float() - target.float()
    if loss_type == "l2":
        loss = error ** 2
    elif loss_type == "l1":
        loss = error.abs()
    elif loss_type in ("huber", "smooth_l1"):
        if threshold is None:
            raise ValueError(f"loss_type {loss_type} needs a threshold")
        c = threshold.float().view(-1, *([1] * (error.ndim - 1)))
        loss = 2 * (torch.sqrt(error ** 2 + c ** 2) - c)
        if loss_type == "huber":
            loss = loss * c
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}")
    return loss.mean(dim=list(range(1, loss.ndim)))


def _clipped_snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    return torch.clamp(snr(alphas_cumprod, timesteps), max=SNR_CLIP)


def loss_weights(options: LossOptions, alphas_cumprod: torch.Tensor, timesteps: torch.Tensor,
                 losses: torch.Tensor, v_prediction: bool) -> torch.Tensor:
    """The per-sample losses with sd-scripts' weightings applied, in its order: min-SNR,
    v loss scaled like the noise loss, the added v-like loss, debiased estimation."""
    if options.min_snr_gamma:
        losses = losses * min_snr_weights(alphas_cumprod, timesteps, options.min_snr_gamma,
                                          v_prediction).to(losses.device)
    if options.scale_v_pred_loss_like_noise_pred or options.v_pred_like_loss:
        ratio = _clipped_snr(alphas_cumprod, timesteps).to(losses.device)
        scale = ratio / (ratio + 1)
        if options.scale_v_pred_loss_like_noise_pred:
            losses = losses * scale
        if options.v_pred_like_loss:
            losses = losses + losses / scale * options.v_pred_like_loss
    if options.debiased_estimation_loss:
        ratio = _clipped_snr(alphas_cumprod, timesteps).to(losses.device)
        losses = losses * (1 / (ratio + 1) if v_prediction else 1 / torch.sqrt(ratio))
    return losses


def combine(losses: torch.Tensor, weights: torch.Tensor, *, global_count: int,
            world_size: int) -> torch.Tensor:
    """Weighted sum scaled so that averaging over processes gives the mean over the global batch.

    With one process this is the plain mean. With N processes each holding part of a global batch
    (possibly unequal parts), DDP's gradient average then equals the single-process mean exactly.
    """
    return (losses * weights.to(losses.dtype)).sum() * (world_size / global_count)
