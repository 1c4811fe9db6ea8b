"""One training run from options to saved model: setup in small steps, then the loop.

setup(): run folder and events -> dataset -> models -> precision -> what to train -> latent cache
-> optimizer and schedule -> accelerate -> resume. The loop itself lives in loop.py.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..config.files import save_config
from ..errors import UserError
from ..runs import CONFIG_FILE, EVENTS_FILE, LOG_FILE
from .checkpoints import MODEL_EXTENSIONS, Naming, read_training_state
from .reporting import Reporter
from .state_check import check_state_folder
from .stopping import StopFlag, launch_time


class TrainingDiverged(Exception):
    """The loss became NaN or infinite."""


@dataclass
class Position:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # 0-based epoch in progress
    batch: int = 0  # next global batch of that epoch


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
        self.cfg = cfg
        self.run_dir = Path(cfg.output_dir)
        self.position = Position()
        self.reporter: Reporter | None = None
        self.launched = launch_time(default=time.time())
        self.run_lock = None  # the main process's RunFolderLock, held until the run ends

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        quiet_libraries()
        if self.cfg.resume:  # refused before anything is loaded or written
            read_training_state(self.cfg.resume)
            check_state_folder(self.cfg.resume)
        self._setup_accelerator()
        self._setup_run_folder()
        self._setup_dataset()
        self._setup_models()
        self._setup_target()
        self._setup_latents()
        self._setup_schedule()
        self._setup_optimizer()
        self._prepare()
        self._resume()

    def _setup_accelerator(self) -> None:
        import torch
        from accelerate import Accelerator
        from accelerate.utils import broadcast_object_list

        # Several processes without GPUs (torchrun or accelerate launch on a CPU machine) need
        # accelerate's CPU mode to join one gloo process group.
        many = int(os.environ.get("WORLD_SIZE", "1")) > 1
        cpu = many and not torch.cuda.is_available()
        # Mixed precision is handled here (autocast + GradScaler), the same on CPU and GPU.
        self.accelerator = Accelerator(mixed_precision="no", cpu=cpu)
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        if self.cfg.seed is None:
            chosen = [random.SystemRandom().randrange(2 ** 31)]
            if self.world > 1:
                broadcast_object_list(chosen)
            self.cfg.seed = chosen[0]
        torch.manual_seed(self.cfg.seed)

    def _setup_run_folder(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--output_dir: cannot create {self.run_dir}: {err.strerror}",
                            "give a folder you can write to") from None
        self._lock_run_folder()  # before anything in the folder is touched
        events = self.run_dir / EVENTS_FILE
        if self.is_main and events.exists() and not self.cfg.resume:
            # A fresh run in a used folder: keep the old history beside it, never delete it.
            events.rename(events.with_name(f"events-{int(events.stat().st_mtime)}.jsonl"))
        self.accelerator.wait_for_everyone()
        self.reporter = Reporter(self.run_dir, enabled=self.is_main,
                                 logging_dir=self.cfg.logging_dir, log_prefix=self.cfg.log_prefix)
        self.reporter.forward_log("trainer.models")  # what saving keeps or drops
        self.stop = StopFlag(self.run_dir).install()
        if self.is_main:
            self.stop.clear_stale(self.launched)
            self._remove_unfinished_saves()
            save_config(self.cfg, self.run_dir / CONFIG_FILE)

    def _lock_run_folder(self) -> None:
        """Only one run writes a run folder; the others are refused at once, on every rank."""
        from ..run_lock import RunFolderLock

        refusal = None
        if self.is_main:
            try:
                self.run_lock = RunFolderLock(self.run_dir).acquire()
            except UserError as err:
                refusal = (err.message, err.hint)
        if self.world > 1:
            from accelerate.utils import broadcast_object_list

            shared = [refusal]
            broadcast_object_list(shared)
            refusal = shared[0]
        if refusal:
            raise UserError(*refusal)

    def _remove_unfinished_saves(self) -> None:
        """Temporary files of saves a killed run never finished (safe: the folder is locked)."""
        from ..atomic import remove_leftovers, restore_swapped_out
        from ..disk_space import size_text

        for path in restore_swapped_out(self.run_dir):
            self.reporter.info(f"restored {path.name}, which a save that never finished had "
                               "moved aside")
        for path, size in remove_leftovers(self.run_dir, keep=(self.cfg.resume,)):
            self.reporter.info(f"removed {path.name} ({size_text(size)}), left by a save that "
                               "never finished")

    def release_run_folder(self) -> None:
        if self.run_lock is not None:
            self.run_lock.release()
            self.run_lock = None

    def _setup_dataset(self) -> None:
        from ..data import build_dataset

        self.dataset = build_dataset(self.cfg, warn=self.reporter.warning)

    def _setup_models(self) -> None:
        from ..models import load_model

        cfg = self.cfg
        self.reporter.info(f"loading {cfg.pretrained_model_name_or_path}")
        self.bundle = load_model(cfg.pretrained_model_name_or_path, v2=cfg.v2 or None,
                                 v_parameterization=cfg.v_parameterization or None,
                                 vae=cfg.vae, tokenizer=cfg.tokenizer)
        for note in self.bundle.notes:  # e.g. the VAE was replaced
            self.reporter.warning(note)
        self.v_prediction = self.bundle.v_parameterization
        from diffusers import DDPMScheduler

        self.noise_scheduler = DDPMScheduler.from_config(self.bundle.noise_scheduler_config)

    def _setup_target(self) -> None:
        from .precision import setup_attention, setup_precision
        from .targets import DreamBoothTarget

        self.precision = setup_precision(self.cfg, self.device, self.reporter.warning)
        self.attention = setup_attention(self.cfg, self.bundle.unet, self.device,
                                         self.reporter.warning)
        if self.cfg.mode == "lora":
            from .lora_target import LoRATarget

            self.target = LoRATarget(self.cfg, self.bundle, self.precision,
                                     warn=self.reporter.warning)
        else:
            self.target = DreamBoothTarget(self.cfg, self.bundle, self.precision)
        self.target.place()  # also freezes the VAE in its dtype on the device
        self.naming = Naming(self.run_dir, self.cfg.output_name, self.target.model_format)

    def _setup_latents(self) -> None:
        if not self.cfg.cache_latents:
            return
        from ..data.latents import cache_latents, vae_identity
        from .latents import encode_images

        vae, dtype = self.bundle.vae, self.precision.vae_dtype

        def progress(done: int, total: int) -> None:
            self.reporter.progress("caching latents", done, total)

        cache_latents(self.dataset, lambda images: encode_images(vae, images, dtype),
                      vae_identity(vae, extra=str(dtype)), batch_size=self.cfg.vae_batch_size,
                      to_disk=self.cfg.cache_latents_to_disk, progress=progress, rank=self.rank,
                      world_size=self.world, barrier=self.accelerator.wait_for_everyone)

    def _setup_schedule(self) -> None:
        cfg = self.cfg
        self.global_batch = cfg.train_batch_size * self.world
        self.batches_per_epoch = self.dataset.steps_per_epoch(self.global_batch)
        if self.batches_per_epoch == 0:
            raise UserError("the dataset gives no batches", "add images or lower train_batch_size")
        self.accumulation = cfg.gradient_accumulation_steps
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / self.accumulation)
        if cfg.max_train_epochs:
            self.total_steps = cfg.max_train_epochs * self.steps_per_epoch
        else:
            self.total_steps = cfg.max_train_steps
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)

    def _setup_optimizer(self) -> None:
        from .optim import build_optimizer, build_scheduler

        cfg = self.cfg
        self.param_groups = self.target.param_groups()
        self.group_names = [g.pop("name") for g in self.param_groups]
        self.optimizer = build_optimizer(cfg.optimizer_type, self.param_groups, cfg.learning_rate,
                                         cfg.optimizer_args)
        self.lr_scheduler = build_scheduler(
            cfg.lr_scheduler, self.optimizer, warmup_steps=cfg.lr_warmup_steps,
            total_steps=self.total_steps, num_cycles=cfg.lr_scheduler_num_cycles,
            power=cfg.lr_scheduler_power)

    def _prepare(self) -> None:
        modules = self.target.trainable_modules()
        prepared = self.accelerator.prepare(*modules, self.optimizer)
        prepared = list(prepared) if isinstance(prepared, (list, tuple)) else [prepared]
        self.target.set_prepared(prepared[:-1])
        self.optimizer = prepared[-1]
        # The schedule is stepped once per optimizer step by the loop (not by accelerate, which
        # would step it once per process); it and the loss scaler are saved with the state.
        self.accelerator.register_for_checkpointing(self.lr_scheduler)
        if self.precision.scaler is not None:
            self.accelerator.register_for_checkpointing(self.precision.scaler)
        for obj in self.target.checkpoint_objects():
            self.accelerator.register_for_checkpointing(obj)
        self.target.build_metadata(self)

    def _resume(self) -> None:
        if not self.cfg.resume:
            return
        state = read_training_state(self.cfg.resume)
        if state.get("mode") != self.cfg.mode:
            raise UserError(f"{self.cfg.resume} holds a {state.get('mode')} run, not {self.cfg.mode}",
                            f"resume it with 'python -m trainer {state.get('mode')}'")
        if state.get("global_batch") not in (None, self.global_batch):
            self.reporter.warning(
                f"the state was saved with a global batch of {state['global_batch']}, this run "
                f"has {self.global_batch}; the data order will not continue exactly")
        self.accelerator.load_state(self.cfg.resume, load_kwargs={"weights_only": True})
        self.position = Position(state["step"], state["epoch"], state["batch"])
        self.target.on_step(self.position.step)
        self.reporter.info(f"resumed from {self.cfg.resume} at step {self.position.step}")

    # ------------------------------------------------------------------ helpers
    @property
    def epoch_of_last_step(self) -> int:
        """1-based epoch the last step belonged to (0 before the first step)."""
        return self.position.epoch + (1 if self.position.batch else 0)

    def train_state(self) -> dict:
        return {"mode": self.cfg.mode, "step": self.position.step, "epoch": self.position.epoch,
                "batch": self.position.batch, "seed": self.cfg.seed,
                "global_batch": self.global_batch, "total_steps": self.total_steps,
                "time": time.time()}

    def model_path(self, stem: str) -> Path:
        return self.run_dir / (stem + MODEL_EXTENSIONS[self.target.model_format])


def _lost_peer(session, err: BaseException) -> bool:
    """A collective failed because another rank died (gloo / NCCL connection errors)."""
    if getattr(session, "world", 1) <= 1:
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

        session.reporter.end(status, session.position.step, **peak_memory(session.device))
        return 0
    except UserError as err:
        if session.reporter:
            session.reporter.error(err.message, err.hint, echo=False)  # the CLI prints it
            session.reporter.end("failed", session.position.step)
        raise
    except TrainingDiverged as err:
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
        if getattr(session, "stop", None):
            session.stop.uninstall()
        session.release_run_folder()  # after the last event: a waiting run sees a whole history
