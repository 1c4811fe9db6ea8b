"""The step loop: batches of the epoch plan -> loss -> optimizer step, then whatever is due
after that step or epoch (saves, samples, a stop request)."""

from __future__ import annotations

import os

from ..models.family import family_of
from ..processes import start_token
from . import text_cache
from .checkpoints import CheckpointSaver, Retention
from .conditioning import conditioning_for_run
from .feed import BatchFeed
from .processes import agree_to_stop
from .schedule import Cadence, Position
from .step import Objective, StepRunner


class TrainingLoop:
    def __init__(self, *, runner: StepRunner, feed: BatchFeed, dataset, schedule, saver,
                 naming, reporter, stop, procs, sampler, save_every: Cadence,
                 sample_every: Cadence, save_state: bool, save_state_at_end: bool,
                 group_names: list[str]):
        self.runner, self.feed, self.dataset, self.schedule = runner, feed, dataset, schedule
        self.saver, self.naming, self.reporter, self.stop = saver, naming, reporter, stop
        self.procs, self.sampler = procs, sampler
        self.save_every, self.sample_every = save_every, sample_every
        self.save_state, self.save_state_at_end = save_state, save_state_at_end
        self.group_names = group_names

    def run(self, position: Position) -> str:
        """Train from `position` until total_steps (-> "finished") or a stop request
        (-> "stopped"); `position` follows the run."""
        total = self.schedule.total_steps
        while position.step < total:
            plan = self.dataset.epoch_batches(position.epoch, self.schedule.global_batch)
            for group in self.feed.groups(plan, position.epoch, position.batch):
                loss = self.runner.step(group, position)
                self.reporter.step(position.step, position.epoch + 1, loss,
                                   self.runner.learning_rates(self.group_names))
                if agree_to_stop(self.stop, self.procs):
                    self.saver.save(self.naming.step(position.step), position, kind="stop",
                                    number=position.step, with_state=True)
                    return "stopped"
                self._after_step(position)
                if position.step >= total:
                    break
            if position.batch >= len(plan):
                position.next_epoch()
                self._after_epoch(position)
        self.saver.save(self.naming.last(), position, kind="last", number=position.step,
                        with_state=self.save_state_at_end)
        if self.sample_every.ever and not self.sample_every.met_at(position):
            self.sample(position.step, position.epoch)
        return "finished"

    def _after_step(self, position: Position) -> None:
        step = position.step
        if self.save_every.due_at_step(step) and step < self.schedule.total_steps:
            self.saver.save(self.naming.step(step), position, kind="step", number=step,
                            with_state=self.save_state)
        if self.sample_every.due_at_step(step):
            self.sample(step, position.epoch + 1)

    def _after_epoch(self, position: Position) -> None:
        epoch = position.epoch  # epochs completed so far
        if self.save_every.due_at_epoch(epoch) and position.step < self.schedule.total_steps:
            self.saver.save(self.naming.epoch(epoch), position, kind="epoch", number=epoch,
                            with_state=self.save_state)
        if self.sample_every.due_at_epoch(epoch):
            self.sample(position.step, epoch)

    def sample(self, step: int, epoch: int) -> None:
        self.sampler.make(step, epoch)
        self.reporter.resume_clock()  # sampling time is not step time


def train_loop(session) -> str:
    """Run the set-up session's loop: "finished" or "stopped"."""
    s, cfg = session, session.cfg
    loop = build_loop(s)
    schedule, pid = s.schedule, os.getpid()
    s.reporter.start(total_steps=schedule.total_steps, total_epochs=schedule.total_epochs,
                     steps_per_epoch=schedule.steps_per_epoch, mode=cfg.mode, pid=pid,
                     pid_started=start_token(pid), first_step=s.position.step,
                     global_batch=schedule.global_batch, processes=s.procs.world,
                     attention=s.attention, seed=cfg.seed, dataset=s.dataset.summary())
    if loop.sampler and cfg.sample_at_first and s.position.step == 0:
        loop.sample(0, 0)
    return loop.run(s.position)


def build_loop(session) -> TrainingLoop:
    """Wire the parts Session.setup built into a loop; each part gets only what it uses."""
    s, cfg = session, session.cfg
    conditioning = conditioning_for_run(cfg, s.dataset, s.bundle, s.target,
                                        s.precision, s.reporter.warning)
    if text_cache.wanted(cfg):
        text_cache.check_cacheable(cfg, s.target, s.dataset)
        counts = text_cache.fill_text_cache(conditioning, s.dataset, cfg, write=s.procs.is_main)
        s.reporter.info(f"text encoder outputs cached: {counts['encoded']} captions encoded, "
                        f"{counts['reused']} read from disk")
        if s.procs.device.type == "cuda":  # the encoders are needed again only for samples
            text_cache.park_encoders(s.target.forward_text_encoders())
    sampler = None
    if cfg.sample_prompts:
        from .sampling import SampleMaker, SampleSettings

        sampler = SampleMaker(SampleSettings.for_run(cfg, s.run_dir), s.bundle, s.target,
                              conditioning, s.precision, s.reporter, enabled=s.procs.is_main)
    objective = Objective.for_run(cfg, s.noise_scheduler, s.bundle.v_parameterization,
                                  size_conditioning=family_of(s.bundle).size_conditioning)
    runner = StepRunner(s.procs, s.target, s.precision, s.bundle.vae, objective, conditioning,
                        s.optimizer, s.lr_scheduler, max_grad_norm=cfg.max_grad_norm)
    retention = Retention(cfg.save_last_n_epochs, cfg.save_last_n_steps,
                          cfg.save_last_n_epochs_state, cfg.save_last_n_steps_state)
    saver = CheckpointSaver(s.procs, s.target, s.naming, s.reporter, retention, s.optimizer,
                            s.train_state)
    return TrainingLoop(
        runner=runner, dataset=s.dataset, schedule=s.schedule, saver=saver, naming=s.naming,
        reporter=s.reporter, stop=s.stop, procs=s.procs, sampler=sampler,
        feed=BatchFeed(s.dataset, rank=s.procs.rank, batch_size=cfg.train_batch_size,
                       accumulation=s.schedule.accumulation,
                       workers=cfg.max_data_loader_n_workers),
        save_every=Cadence(cfg.save_every_n_steps, cfg.save_every_n_epochs),
        sample_every=Cadence(cfg.sample_every_n_steps, cfg.sample_every_n_epochs) if sampler
        else Cadence(),
        save_state=cfg.save_state, save_state_at_end=cfg.save_state or cfg.save_state_on_train_end,
        group_names=s.group_names)
