"""The step loop: batches of the epoch plan -> loss -> optimizer step, with saves and samples."""

from __future__ import annotations

import contextlib
import math

import torch

from ..processes import start_token
from .checkpoints import prune, save_training_state
from .conditioning import Conditioning
from .feed import BatchFeed, Group, LocalBatch
from .latents import batch_latents
from .noise import combine, draw_noise, min_snr_weights, per_sample_loss, target_for
from .seeding import seed_step


class StepRunner:
    """One optimizer step over a group of global batches (gradient accumulation)."""

    def __init__(self, session, conditioning: Conditioning):
        self.s = session
        self.conditioning = conditioning
        self.params = [p for group in session.optimizer.param_groups for p in group["params"]]
        self.alphas_cumprod = session.noise_scheduler.alphas_cumprod

    def run(self, group: Group, epoch: int, step: int) -> torch.Tensor:
        s = self.s
        total = torch.zeros((), device=s.device)
        for index, local in enumerate(group.batches):
            last = index == len(group.batches) - 1
            with self._no_sync(not last):
                loss = self.loss(local, epoch, step, group.global_count)
                self._backward(loss)
            total += loss.detach()
        self._optimizer_step()
        if s.world > 1:
            total = s.accelerator.reduce(total, reduction="mean")
        return total

    def _no_sync(self, skip_sync: bool):
        stack = contextlib.ExitStack()
        if skip_sync and self.s.world > 1:
            for module in self.s.target.prepared_modules:
                stack.enter_context(self.s.accelerator.no_sync(module))
        return stack

    def loss(self, local: LocalBatch, epoch: int, step: int, global_count: int) -> torch.Tensor:
        """This process's part of the loss of one global batch (see noise.combine)."""
        s, cfg = self.s, self.s.cfg
        batch = local.data
        keys = [(cfg.seed, epoch, ref.pos) for ref in local.refs]
        latents = batch_latents(s.bundle.vae, s.precision.vae_dtype, s.device, batch, keys)
        hidden = self.conditioning(batch["captions"], step)
        draw = draw_noise(latents, keys, num_timesteps=s.noise_scheduler.config.num_train_timesteps,
                          noise_offset=cfg.noise_offset)
        noisy = s.noise_scheduler.add_noise(latents, draw.noise, draw.timesteps)
        with s.precision.autocast():
            prediction = s.target.forward_unet()(noisy, draw.timesteps, hidden).sample
        target = target_for(s.noise_scheduler, latents, draw.noise, draw.timesteps, s.v_prediction)
        losses = per_sample_loss(prediction, target)
        if cfg.min_snr_gamma:
            losses = losses * min_snr_weights(self.alphas_cumprod, draw.timesteps,
                                              cfg.min_snr_gamma, s.v_prediction)
        weights = batch["loss_weights"].to(s.device)
        if local.dummy:
            weights = torch.zeros_like(weights)
        return combine(losses, weights, global_count=global_count, world_size=s.world)

    def _backward(self, loss: torch.Tensor) -> None:
        scaler = self.s.precision.scaler
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def _average_gradients(self) -> None:
        """Average gradients over processes for weights that no DDP wrapper syncs (LoRA)."""
        if self.s.world == 1 or self.s.target.prepared_modules:
            return
        import torch.distributed as dist

        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.s.world
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def _optimizer_step(self) -> None:
        s = self.s
        self._average_gradients()
        scaler = s.precision.scaler
        if s.cfg.max_grad_norm:
            if scaler is not None:
                scaler.unscale_(s.optimizer)
            torch.nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None],
                                           s.cfg.max_grad_norm)
        if scaler is not None:
            scaler.step(s.optimizer)
            scaler.update()
        else:
            s.optimizer.step()
        s.lr_scheduler.step()
        s.optimizer.zero_grad(set_to_none=True)


def _learning_rates(session) -> dict[str, float]:
    return {name: group["lr"] for name, group in zip(session.group_names,
                                                    session.optimizer.param_groups)}


def _trained_bytes(session) -> int:
    """The trained weights' size: every state holds them (and more: the optimizer's moments)."""
    return sum(p.numel() * p.element_size() for group in session.optimizer.param_groups
               for p in group["params"])


def save_checkpoint(session, stem: str, *, kind: str, number: int, with_state: bool) -> None:
    s, cfg = session, session.cfg
    if s.is_main:
        path = s.target.save(s.naming.model_path(stem), session=s)
        s.reporter.save(s.position.step, s.epoch_of_last_step, path, "model")
        if kind in ("epoch", "step"):
            keep = cfg.save_last_n_epochs if kind == "epoch" else cfg.save_last_n_steps
            prune(s.naming, kind, state=False, keep_last=keep, current=number)
    if with_state:
        folder = save_training_state(s.accelerator, s.naming.state_path(stem), s.train_state(),
                                     weight_bytes=_trained_bytes(s))
        if s.is_main:
            s.reporter.save(s.position.step, s.epoch_of_last_step, folder, "state")
            if kind in ("epoch", "step"):
                keep = cfg.save_last_n_epochs_state if kind == "epoch" else cfg.save_last_n_steps_state
                prune(s.naming, kind, state=True, keep_last=keep, current=number)
    s.accelerator.wait_for_everyone()
    s.reporter.resume_clock()


def _stop_requested(session) -> bool:
    """Any process asked to stop -> all stop together (each may have seen the signal alone)."""
    if session.world == 1:
        return session.stop.check()
    flag = torch.tensor(1.0 if session.stop.check() else 0.0, device=session.device)
    return bool(session.accelerator.reduce(flag, reduction="sum").item() > 0)


def train_loop(session) -> str:
    """Run until total_steps (-> "finished") or a stop request (-> "stopped")."""
    s, cfg = session, session.cfg
    conditioning = Conditioning(s)
    sampler = None
    if cfg.sample_prompts:
        from .sampling import SampleMaker

        sampler = SampleMaker(s, conditioning)
    runner = StepRunner(s, conditioning)
    s.reporter.start(total_steps=s.total_steps, total_epochs=s.total_epochs,
                     steps_per_epoch=s.steps_per_epoch, mode=cfg.mode, pid=_pid(),
                     pid_started=start_token(_pid()),
                     first_step=s.position.step, global_batch=s.global_batch,
                     processes=s.world, attention=s.attention, seed=cfg.seed,
                     dataset=s.dataset.summary())
    if sampler and cfg.sample_at_first and s.position.step == 0:
        sampler.make(0, 0)
        s.reporter.resume_clock()
    feed = BatchFeed(s.dataset, rank=s.rank, batch_size=cfg.train_batch_size,
                     accumulation=s.accumulation, workers=cfg.max_data_loader_n_workers)
    while s.position.step < s.total_steps:
        plan = s.dataset.epoch_batches(s.position.epoch, s.global_batch)
        for group in feed.groups(plan, s.position.epoch, s.position.batch):
            step = s.position.step
            seed_step(cfg.seed, step)
            loss = runner.run(group, s.position.epoch, step).item()
            s.position.batch += group.size
            s.position.step = step = step + 1
            s.target.on_step(step)
            if not math.isfinite(loss):
                from .session import TrainingDiverged

                raise TrainingDiverged(f"the loss became {loss} at step {step}; nothing of this "
                                       "step was saved")
            s.reporter.step(step, s.position.epoch + 1, loss, _learning_rates(s))
            if _stop_requested(s):
                save_checkpoint(s, s.naming.step(step), kind="stop", number=step, with_state=True)
                return "stopped"
            if cfg.save_every_n_steps and step % cfg.save_every_n_steps == 0 \
                    and step < s.total_steps:
                save_checkpoint(s, s.naming.step(step), kind="step", number=step,
                                with_state=cfg.save_state)
            if sampler and cfg.sample_every_n_steps and step % cfg.sample_every_n_steps == 0:
                sampler.make(step, s.position.epoch + 1)
                s.reporter.resume_clock()
            if s.position.step >= s.total_steps:
                break
        if s.position.batch >= len(plan):
            s.position.epoch += 1
            s.position.batch = 0
            _end_of_epoch(s, sampler)
    save_checkpoint(s, s.naming.last(), kind="last", number=s.position.step,
                    with_state=cfg.save_state or cfg.save_state_on_train_end)
    if sampler and (cfg.sample_every_n_steps or cfg.sample_every_n_epochs) \
            and not _sampled_at(s, cfg):
        sampler.make(s.position.step, s.position.epoch)
    return "finished"


def _sampled_at(s, cfg) -> bool:
    """Whether the last step or epoch already produced samples."""
    step_hit = cfg.sample_every_n_steps and s.position.step % cfg.sample_every_n_steps == 0
    epoch_hit = cfg.sample_every_n_epochs and s.position.batch == 0 \
        and s.position.epoch % cfg.sample_every_n_epochs == 0
    return bool(step_hit or epoch_hit)


def _end_of_epoch(s, sampler) -> None:
    cfg, epoch = s.cfg, s.position.epoch  # epochs completed so far
    if cfg.save_every_n_epochs and epoch % cfg.save_every_n_epochs == 0 \
            and s.position.step < s.total_steps:
        save_checkpoint(s, s.naming.epoch(epoch), kind="epoch", number=epoch,
                        with_state=cfg.save_state)
    if sampler and cfg.sample_every_n_epochs and epoch % cfg.sample_every_n_epochs == 0:
        sampler.make(s.position.step, epoch)
        s.reporter.resume_clock()


def _pid() -> int:
    import os

    return os.getpid()
