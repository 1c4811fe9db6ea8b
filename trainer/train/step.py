"""One optimizer step: the loss of each global batch of a group, backward, and the update."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch

from .feed import Group, LocalBatch
from .latents import batch_latents
from .noise import combine, draw_noise, min_snr_weights, per_sample_loss, target_for
from .processes import Processes
from .schedule import Position
from .seeding import seed_step


class TrainingDiverged(Exception):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Objective:
    """What is learned: the noise schedule, the prediction and the options that weight it."""

    noise_scheduler: Any  # diffusers DDPMScheduler
    v_prediction: bool
    seed: int  # noise and timesteps come from (seed, epoch, sample position)
    noise_offset: float | None
    min_snr_gamma: float | None
    # SDXL: the U-Net also gets the pooled text and each sample's size facts (time_ids)
    size_conditioning: bool = False


class StepRunner:
    """One optimizer step over a group of global batches (gradient accumulation)."""

    def __init__(self, procs: Processes, target, precision, vae, objective: Objective,
                 conditioning, optimizer, lr_scheduler, *, max_grad_norm: float | None):
        self.procs, self.target, self.precision, self.vae = procs, target, precision, vae
        self.objective, self.conditioning = objective, conditioning
        self.optimizer, self.lr_scheduler, self.max_grad_norm = optimizer, lr_scheduler, max_grad_norm
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.alphas_cumprod = objective.noise_scheduler.alphas_cumprod

    def step(self, group: Group, position: Position) -> float:
        """Train on the group and advance the position; returns the loss."""
        step = position.step
        seed_step(self.objective.seed, step)
        loss = self.run(group, position.epoch, step).item()
        position.advance(group.size)
        self.target.on_step(position.step)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss} at step {position.step}; nothing of "
                                   "this step was saved")
        return loss

    def run(self, group: Group, epoch: int, step: int) -> torch.Tensor:
        total = torch.zeros((), device=self.procs.device)
        for index, local in enumerate(group.batches):
            last = index == len(group.batches) - 1
            with self._no_sync(not last):
                loss = self.loss(local, epoch, step, group.global_count)
                self._backward(loss)
            total += loss.detach()
        self._optimizer_step()
        if self.procs.world > 1:
            total = self.procs.accelerator.reduce(total, reduction="mean")
        return total

    def _no_sync(self, skip_sync: bool):
        stack = contextlib.ExitStack()
        if skip_sync and self.procs.world > 1:
            for module in self.target.prepared_modules:
                stack.enter_context(self.procs.accelerator.no_sync(module))
        return stack

    def loss(self, local: LocalBatch, epoch: int, step: int, global_count: int) -> torch.Tensor:
        """This process's part of the loss of one global batch (see noise.combine)."""
        objective, device = self.objective, self.procs.device
        scheduler = objective.noise_scheduler
        batch = local.data
        keys = [(objective.seed, epoch, ref.pos) for ref in local.refs]
        latents = batch_latents(self.vae, self.precision.vae_dtype, device, batch, keys)
        text = self.conditioning(batch["captions"], step)
        extra = {}
        if objective.size_conditioning:
            extra["added_cond_kwargs"] = {"text_embeds": text.pooled,
                                          "time_ids": batch["time_ids"].to(device, torch.float32)}
        draw = draw_noise(latents, keys, num_timesteps=scheduler.config.num_train_timesteps,
                          noise_offset=objective.noise_offset or 0.0)
        noisy = scheduler.add_noise(latents, draw.noise, draw.timesteps)
        with self.precision.autocast():
            prediction = self.target.forward_unet()(noisy, draw.timesteps, text.hidden,
                                                    **extra).sample
        target = target_for(scheduler, latents, draw.noise, draw.timesteps, objective.v_prediction)
        losses = per_sample_loss(prediction, target)
        if objective.min_snr_gamma:
            losses = losses * min_snr_weights(self.alphas_cumprod, draw.timesteps,
                                              objective.min_snr_gamma, objective.v_prediction)
        weights = batch["loss_weights"].to(device)
        if local.dummy:
            weights = torch.zeros_like(weights)
        return combine(losses, weights, global_count=global_count, world_size=self.procs.world)

    def _backward(self, loss: torch.Tensor) -> None:
        scaler = self.precision.scaler
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def _average_gradients(self) -> None:
        """Average gradients over processes for weights that no DDP wrapper syncs (LoRA)."""
        if self.procs.world == 1 or self.target.prepared_modules:
            return
        import torch.distributed as dist

        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.procs.world
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def _optimizer_step(self) -> None:
        self._average_gradients()
        scaler = self.precision.scaler
        if self.max_grad_norm:
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None],
                                           self.max_grad_norm)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def learning_rates(self, names: list[str]) -> dict[str, float]:
        return {name: group["lr"] for name, group in zip(names, self.optimizer.param_groups)}
