"""What a run trains and how it saves it: the full model (DreamBooth / fine-tune) or a LoRA.

The loop is the same for both; a target decides which weights learn, at which learning rates,
in which dtype, and what file comes out.
"""

from __future__ import annotations

import abc
import copy
from pathlib import Path

import torch

from .precision import Precision


class TrainingTarget(abc.ABC):
    """What setup, the step, sampling and saving ask of the thing being trained."""

    model_format: str  # a save_model_as value: what save() writes
    prepared_modules: list  # modules accelerate wrapped (DDP syncs their gradients itself)

    # -- setup
    @abc.abstractmethod
    def place(self) -> None:
        """Put every part on the device in its dtype, trainable or frozen."""

    @abc.abstractmethod
    def param_groups(self) -> list[dict]:
        """Optimizer groups, each with a "name" (the learning rates' names in the events)."""

    @abc.abstractmethod
    def trainable_modules(self) -> list[torch.nn.Module]:
        """Modules for accelerate to wrap."""

    @abc.abstractmethod
    def set_prepared(self, modules: list) -> None:
        """The wrapped trainable_modules, in the same order."""

    @abc.abstractmethod
    def checkpoint_objects(self) -> list:
        """More objects the training state must hold."""

    @abc.abstractmethod
    def describe_run(self, schedule, dataset) -> None:
        """Note what the saved files' metadata tells about the run."""

    # -- during training
    @abc.abstractmethod
    def trains_text_encoder(self, step: int) -> bool: ...

    @abc.abstractmethod
    def on_step(self, step: int) -> None:
        """`step` optimizer steps are done."""

    @abc.abstractmethod
    def forward_unet(self): ...

    @abc.abstractmethod
    def forward_text_encoder(self): ...

    @abc.abstractmethod
    def sampling_modules(self) -> tuple:
        """(unet, text_encoder, other modules that must be in eval mode while sampling)."""

    # -- output
    @abc.abstractmethod
    def save(self, path: Path, *, step: int, epoch: int) -> Path:
        """Write the trained model; returns the file or folder written."""


def _freeze(module: torch.nn.Module, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """Frozen parts run in the compute dtype; returns the untouched original for saving, so a
    saved model never carries weights rounded to fp16/bf16 that were never trained."""
    original = module
    if dtype != next(module.parameters()).dtype:
        original = copy.deepcopy(module).requires_grad_(False)
    module.requires_grad_(False)
    module.eval()
    module.to(device=device, dtype=dtype)
    return original


def _unwrap(module):
    return getattr(module, "module", module)


class DreamBoothTarget(TrainingTarget):
    """Trains the U-Net and (until stop_text_encoder_training) the text encoder."""

    def __init__(self, cfg, bundle, precision: Precision):
        self.cfg, self.bundle, self.precision = cfg, bundle, precision
        stop = cfg.stop_text_encoder_training
        self.text_encoder_steps = None if stop is None else max(0, stop)  # None: all steps
        self.unet = bundle.unet
        self.text_encoder = bundle.text_encoder
        self.model_format = cfg.save_model_as or bundle.default_save_format
        self.saved_text_encoder = None  # the original, when the text encoder never trains
        self.saved_vae = None
        self.prepared_modules: list = []

    # -- setup
    def place(self) -> None:
        device, precision = self.precision.device, self.precision
        self.unet.requires_grad_(True)
        self.unet.train()
        self.unet.to(device=device, dtype=precision.train_dtype)
        if self.cfg.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        if self.trains_text_encoder(0):
            self.text_encoder.requires_grad_(True)
            self.text_encoder.train()
            self.text_encoder.to(device=device, dtype=precision.train_dtype)
            if self.cfg.gradient_checkpointing:
                self.text_encoder.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.saved_text_encoder = _freeze(self.text_encoder, precision.compute_dtype, device)
        self.saved_vae = _freeze(self.bundle.vae, precision.vae_dtype, device)

    def param_groups(self) -> list[dict]:
        groups = [{"params": [p for p in self.unet.parameters() if p.requires_grad],
                   "lr": self.cfg.learning_rate, "name": "unet"}]
        if self.trains_text_encoder(0):
            groups.append({"params": [p for p in self.text_encoder.parameters()],
                           "lr": self.cfg.text_encoder_lr or self.cfg.learning_rate,
                           "name": "text_encoder"})
        return groups

    def trainable_modules(self) -> list[torch.nn.Module]:
        modules = [self.unet]
        if self.trains_text_encoder(0):
            modules.append(self.text_encoder)
        return modules

    def set_prepared(self, modules: list) -> None:
        self.prepared_modules = list(modules)
        self.unet = modules[0]
        if len(modules) > 1:
            self.text_encoder = modules[1]

    # -- during training
    def trains_text_encoder(self, step: int) -> bool:
        return self.text_encoder_steps is None or step < self.text_encoder_steps

    def on_step(self, step: int) -> None:
        """Freeze the text encoder once its steps are done (the optimizer then skips it)."""
        encoder = _unwrap(self.text_encoder)
        if self.text_encoder_steps and step >= self.text_encoder_steps and encoder.training:
            encoder.requires_grad_(False)
            encoder.eval()

    def forward_unet(self):
        return self.unet

    def forward_text_encoder(self):
        return self.text_encoder

    def sampling_modules(self):
        return _unwrap(self.unet), _unwrap(self.text_encoder), []

    def checkpoint_objects(self) -> list:
        return []  # the prepared U-Net and text encoder are saved by accelerate already

    def describe_run(self, schedule, dataset) -> None:
        pass  # a full model's file carries the base model's own description

    # -- output
    def save(self, path: Path, *, step: int = 0, epoch: int = 0) -> Path:  # noqa: ARG002
        from ..models import save_model

        return save_model(self.bundle, path, save_model_as=self.model_format,
                          save_precision=self.cfg.save_precision,
                          unet=_unwrap(self.unet),
                          text_encoder=self.saved_text_encoder or _unwrap(self.text_encoder),
                          vae=self.saved_vae)
