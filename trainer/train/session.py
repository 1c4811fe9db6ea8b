"""One training run from options to saved model: setup in small steps, then the loop.

setup() reads top to bottom: processes -> run folder and events -> dataset -> models -> what to
train -> latent cache -> schedule -> optimizer -> accelerate -> resume. Each step takes what it
needs and returns what it builds. The loop itself lives in loop.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..config import Config
from ..config.files import save_config
from ..errors import UserError
from ..runs import CONFIG_FILE, EVENTS_FILE, LOG_FILE
from .checkpoints import Naming, read_training_state
from .processes import Processes, shared_seed, start_processes
from .reporting import Reporter
from .schedule import Position, Schedule, plan_schedule
from .state_check import check_state_folder
from .step import TrainingDiverged
from .stopping import StopFlag, launch_time


def quiet_libraries() -> None:
    """Keep the terminal and log for what matters to the user."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("diffusers", "transformers", "accelerate", "bitsandbytes", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    try:
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.set_verbosity_error()
        diffusers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    except ImportError:
        pass


class Session:
    def __init__(self, cfg: Config):
        if not cfg.output_dir:  # validation refuses this first; a Session is also built directly
            raise UserError("no output_dir given", "set --output_dir")
        self.cfg = cfg
        self.run_dir = Path(cfg.output_dir)
        self.position = Position()
        self.reporter: Reporter | None = None
        self.stop: StopFlag | None = None
        self.launched = launch_time(default=time.time())
        self.run_lock = None  # the main process's RunFolderLock, held until the run ends

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        import torch

        quiet_libraries()
        cfg = self.cfg
        if cfg.resume:  # refused before anything is loaded or written
            read_training_state(cfg.resume)
            check_state_folder(cfg.resume)
        self.procs = start_processes()
        cfg.seed = shared_seed(cfg.seed, self.procs)
        torch.manual_seed(cfg.seed)
        self.reporter, self.stop = self._setup_run_folder(self.procs)
        self.dataset = self._setup_dataset(self.reporter)
        self.bundle, self.noise_scheduler = self._setup_models(self.reporter)
        self.precision, self.attention, self.target = self._setup_target(
            self.bundle, self.procs.device, self.reporter)
        self.naming = Naming(self.run_dir, cfg.output_name, self.target.model_format)
        if cfg.cache_latents:
            self._setup_latents(self.dataset, self.bundle.vae, self.precision.vae_dtype,
                                self.procs, self.reporter)
        self.schedule = plan_schedule(
            self.dataset, batch_size=cfg.train_batch_size, world=self.procs.world,
            accumulation=cfg.gradient_accumulation_steps, max_train_epochs=cfg.max_train_epochs,
            max_train_steps=cfg.max_train_steps)
        self.optimizer, self.lr_scheduler, self.group_names = self._setup_optimizer(
            self.target, self.schedule)
        self.optimizer = self._prepare(self.procs.accelerator, self.target, self.optimizer,
                                       self.lr_scheduler, self.precision)
        self.target.describe_run(self.schedule, self.dataset)
        if cfg.resume:
            self.position = self._resume(cfg.resume, self.procs.accelerator, self.schedule,
                                         self.target, self.reporter)

    def _setup_run_folder(self, procs: Processes) -> tuple[Reporter, StopFlag]:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--output_dir: cannot create {self.run_dir}: {err.strerror}",
                            "give a folder you can write to") from None
        self.run_lock = self._lock_run_folder(procs)  # before anything in the folder is touched
        events = self.run_dir / EVENTS_FILE
        if procs.is_main and events.exists() and not self.cfg.resume:
            # A fresh run in a used folder: keep the old history beside it, never delete it.
            events.rename(events.with_name(f"events-{int(events.stat().st_mtime)}.jsonl"))
        procs.accelerator.wait_for_everyone()
        reporter = Reporter(self.run_dir, enabled=procs.is_main,
                            logging_dir=self.cfg.logging_dir, log_prefix=self.cfg.log_prefix)
        self.reporter = reporter  # from here on a failure is reported as an event
        reporter.forward_log("trainer.models")  # what saving keeps or drops
        stop = StopFlag(self.run_dir).install()
        self.stop = stop  # run() uninstalls it even when setup fails further on
        if procs.is_main:
            stop.clear_stale(self.launched)
            self._remove_unfinished_saves(reporter)
            save_config(self.cfg, self.run_dir / CONFIG_FILE)
        return reporter, stop

    def _lock_run_folder(self, procs: Processes):
        """Only one run writes a run folder; the others are refused at once, on every rank.
        Returns the main process's lock (None elsewhere)."""
        from ..run_lock import RunFolderLock

        lock = refusal = None
        if procs.is_main:
            try:
                lock = RunFolderLock(self.run_dir).acquire()
            except UserError as err:
                refusal = (err.message, err.hint)
        if procs.world > 1:
            from accelerate.utils import broadcast_object_list

            shared = [refusal]
            broadcast_object_list(shared)
            refusal = shared[0]
        if refusal:
            raise UserError(*refusal)
        return lock

    def _remove_unfinished_saves(self, reporter: Reporter) -> None:
        """Temporary files of saves a killed run never finished (safe: the folder is locked)."""
        from ..atomic import remove_leftovers, restore_swapped_out
        from ..disk_space import size_text

        for path in restore_swapped_out(self.run_dir):
            reporter.info(f"restored {path.name}, which a save that never finished had "
                          "moved aside")
        for path, size in remove_leftovers(self.run_dir, keep=(self.cfg.resume,)):
            reporter.info(f"removed {path.name} ({size_text(size)}), left by a save that "
                          "never finished")

    def _setup_dataset(self, reporter: Reporter):
        from ..data import build_dataset

        return build_dataset(self.cfg, warn=reporter.warning)

    def _setup_models(self, reporter: Reporter) -> tuple:
        """The model bundle and the noise schedule it was trained with."""
        from diffusers import DDPMScheduler

        from ..models import load_model

        cfg = self.cfg
        reporter.info(f"loading {cfg.pretrained_model_name_or_path}")
        bundle = load_model(cfg.pretrained_model_name_or_path, v2=cfg.v2 or None,
                            v_parameterization=cfg.v_parameterization or None,
                            vae=cfg.vae, tokenizer=cfg.tokenizer, xl=True)
        for note in bundle.notes:  # e.g. the VAE was replaced
            reporter.warning(note)
        return bundle, DDPMScheduler.from_config(bundle.noise_scheduler_config)

    def _setup_target(self, bundle, device, reporter: Reporter) -> tuple:
        """(precision, attention, target): the target placed on the device, ready to train."""
        from .precision import setup_attention, setup_precision
        from .targets import DreamBoothTarget, TrainingTarget

        from ..models.family import family_of

        vae = bundle.vae if family_of(bundle).vae_overflows_in_fp16 else None
        precision = setup_precision(self.cfg, device, reporter.warning, vae=vae)
        attention = setup_attention(self.cfg, bundle.unet, device, reporter.warning)
        target: TrainingTarget
        if self.cfg.mode == "lora":
            from .lora_target import LoRATarget

            target = LoRATarget(self.cfg, bundle, precision, warn=reporter.warning)
        else:
            target = DreamBoothTarget(self.cfg, bundle, precision)
        target.place()  # also freezes the VAE in its dtype on the device
        return precision, attention, target

    def _setup_latents(self, dataset, vae, vae_dtype, procs: Processes,
                       reporter: Reporter) -> None:
        """Encode every used image once; afterwards the dataset's batches hold latents."""
        from ..data.latents import cache_latents, vae_identity
        from .latents import encode_images

        def progress(done: int, total: int) -> None:
            reporter.progress("caching latents", done, total)

        cache_latents(dataset, lambda images: encode_images(vae, images, vae_dtype),
                      vae_identity(vae, extra=str(vae_dtype)), batch_size=self.cfg.vae_batch_size,
                      to_disk=self.cfg.cache_latents_to_disk, progress=progress, rank=procs.rank,
                      world_size=procs.world, barrier=procs.accelerator.wait_for_everyone)

    def _setup_optimizer(self, target, schedule: Schedule) -> tuple:
        """(optimizer, lr_scheduler, names of the parameter groups)."""
        from .optim import build_optimizer, build_scheduler

        cfg = self.cfg
        param_groups = target.param_groups()
        group_names = [g.pop("name") for g in param_groups]
        optimizer = build_optimizer(cfg.optimizer_type, param_groups, cfg.learning_rate,
                                    cfg.optimizer_args,
                                    fused_backward=cfg.mode == "db" and cfg.fused_backward_pass)
        lr_scheduler = build_scheduler(
            cfg.lr_scheduler, optimizer, warmup_steps=cfg.lr_warmup_steps,
            total_steps=schedule.total_steps, num_cycles=cfg.lr_scheduler_num_cycles,
            power=cfg.lr_scheduler_power)
        return optimizer, lr_scheduler, group_names

    @staticmethod
    def _prepare(accelerator, target, optimizer, lr_scheduler, precision):
        """Wrap the trainable modules and the optimizer; returns the wrapped optimizer."""
        modules = target.trainable_modules()
        prepared = accelerator.prepare(*modules, optimizer)
        prepared = list(prepared) if isinstance(prepared, (list, tuple)) else [prepared]
        target.set_prepared(prepared[:-1])
        # The schedule is stepped once per optimizer step by the loop (not by accelerate, which
        # would step it once per process); it and the loss scaler are saved with the state.
        accelerator.register_for_checkpointing(lr_scheduler)
        if precision.scaler is not None:
            accelerator.register_for_checkpointing(precision.scaler)
        for obj in target.checkpoint_objects():
            accelerator.register_for_checkpointing(obj)
        return prepared[-1]

    def _resume(self, resume: str, accelerator, schedule: Schedule, target,
                reporter: Reporter) -> Position:
        cfg = self.cfg
        state = read_training_state(resume)
        if state.get("mode") != cfg.mode:
            raise UserError(f"{cfg.resume} holds a {state.get('mode')} run, not {cfg.mode}",
                            f"resume it with 'python -m trainer {state.get('mode')}'")
        if state.get("global_batch") not in (None, schedule.global_batch):
            reporter.warning(
                f"the state was saved with a global batch of {state['global_batch']}, this run "
                f"has {schedule.global_batch}; the data order will not continue exactly")
        accelerator.load_state(cfg.resume, load_kwargs={"weights_only": True})
        position = Position(state["step"], state["epoch"], state["batch"])
        target.on_step(position.step)
        reporter.info(f"resumed from {cfg.resume} at step {position.step}")
        return position

    # ------------------------------------------------------------------ after setup
    def train_state(self, position: Position) -> dict:
        """What train_state.json says of a state saved at `position`."""
        return {"mode": self.cfg.mode, "step": position.step, "epoch": position.epoch,
                "batch": position.batch, "seed": self.cfg.seed,
                "global_batch": self.schedule.global_batch,
                "total_steps": self.schedule.total_steps, "time": time.time()}

    def release_run_folder(self) -> None:
        if self.run_lock is not None:
            self.run_lock.release()
            self.run_lock = None


def _lost_peer(session, err: BaseException) -> bool:
    """A collective failed because another rank died (gloo / NCCL connection errors)."""
    procs = getattr(session, "procs", None)
    if procs is None or procs.world <= 1:
        return False
    text = f"{type(err).__name__} {err}".lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "distbackend", "peer"))


def _where_to_look(run_dir: Path) -> str:
    log = run_dir / LOG_FILE  # written only when the GUI started the run
    return f"see {log}" if log.is_file() else "the traceback below says where it happened"


def run(cfg: Config) -> int:
    from .loop import train_loop

    session = Session(cfg)
    try:
        session.setup()
        status = train_loop(session)
        from .precision import peak_memory

        if session.reporter:
            session.reporter.end(status, session.position.step,
                                 **peak_memory(session.procs.device))
        return 0
    except UserError as err:
        if session.reporter:
            session.reporter.error(err.message, err.hint, echo=False)  # the CLI prints it
            session.reporter.end("failed", session.position.step)
        raise
    except TrainingDiverged as err:
        if session.reporter:
            session.reporter.error(str(err), "with fp16 try mixed_precision=bf16 or no_half_vae; "
                                   "otherwise lower the learning rate")
            session.reporter.end("failed", session.position.step)
        return 1
    except KeyboardInterrupt:
        if session.reporter:
            session.reporter.end("stopped", session.position.step)
        return 130
    except BaseException as err:
        if session.reporter:
            message = f"unexpected {type(err).__name__}: {err}"
            if _lost_peer(session, err):
                message = "another training process stopped unexpectedly"
            session.reporter.error(message, _where_to_look(session.run_dir))
            session.reporter.end("failed", session.position.step)
        raise
    finally:
        stop = getattr(session, "stop", None)
        if stop:
            stop.uninstall()
        session.release_run_folder()  # after the last event: a waiting run sees a whole history
