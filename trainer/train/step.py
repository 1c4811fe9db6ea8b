"""One optimizer step: the loss of each global batch of a group, backward, and the update."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch

from .feed import Group, LocalBatch
from .latents import batch_latents
from .noise import (LossOptions, NoiseOptions, combine, draw_noise, enforce_zero_terminal_snr,
                    huber_threshold, loss_weights, per_sample_loss, target_for)
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
    noise: NoiseOptions = NoiseOptions()
    loss: LossOptions = LossOptions()
    # SDXL: the U-Net also gets the pooled text and each sample's size facts (time_ids)
    size_conditioning: bool = False

    @classmethod
    def for_run(cls, cfg, noise_scheduler, v_prediction: bool, *,
                size_conditioning: bool = False) -> Objective:
        if cfg.zero_terminal_snr:
            enforce_zero_terminal_snr(noise_scheduler)
        return cls(noise_scheduler, v_prediction, cfg.seed, NoiseOptions.from_config(cfg),
                   LossOptions.from_config(cfg), size_conditioning)


class StepRunner:
    """One optimizer step over a group of global batches (gradient accumulation)."""

    def __init__(self, procs: Processes, target, precision, vae, objective: Objective,
                 conditioning, optimizer, lr_scheduler, *, max_grad_norm: float | None):
        self.procs, self.target, self.precision, self.vae = procs, target, precision, vae
        self.objective, self.conditioning = objective, conditioning
        self.optimizer, self.lr_scheduler, self.max_grad_norm = optimizer, lr_scheduler, max_grad_norm
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.alphas_cumprod = objective.noise_scheduler.alphas_cumprod
        # fused_backward_pass: the weights were already stepped by the backward pass
        self.fused_backward = hasattr(_unwrap_optimizer(optimizer), "per_parameter")
        if self.fused_backward and procs.world > 1:
            from ..errors import UserError

            raise UserError("fused_backward_pass works on one GPU only (each weight is updated "
                            "before the GPUs have averaged its gradient)",
                            "train with one process or drop fused_backward_pass")

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
                          options=objective.noise)
        noisy = scheduler.add_noise(latents, draw.noise_for_input, draw.timesteps)
        with self.precision.autocast():
            prediction = self.target.forward_unet()(noisy, draw.timesteps, text.hidden,
                                                    **extra).sample
        target = target_for(scheduler, latents, draw.noise, draw.timesteps, objective.v_prediction)
        losses = self._weighted_losses(prediction, target, draw.timesteps)
        weights = batch["loss_weights"].to(device)
        if local.dummy:
            weights = torch.zeros_like(weights)
        return combine(losses, weights, global_count=global_count, world_size=self.procs.world)

    def _weighted_losses(self, prediction: torch.Tensor, target: torch.Tensor,
                         timesteps: torch.Tensor) -> torch.Tensor:
        """Per-sample loss of loss_type with the SNR weightings (noise.loss_weights)."""
        options = self.objective.loss
        threshold = None
        if options.loss_type in ("huber", "smooth_l1"):
            threshold = huber_threshold(
                options, self.alphas_cumprod, timesteps,
                self.objective.noise_scheduler.config.num_train_timesteps)
        losses = per_sample_loss(prediction, target, options.loss_type, threshold)
        return loss_weights(options, self.alphas_cumprod, timesteps, losses,
                            self.objective.v_prediction)

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
        if self.fused_backward:
            self.optimizer.step()  # nothing left to step; keeps the schedule's step count
            self.lr_scheduler.step()
            return
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


def _unwrap_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer
