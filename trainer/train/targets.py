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
    def forward_text_encoders(self) -> tuple:
        """The text encoders to call, in the family's order (SDXL: CLIP-L, then bigG)."""

    def forward_text_encoder(self):
        """The first (SD 1.x/2.x: the only) text encoder."""
        return self.forward_text_encoders()[0]

    @abc.abstractmethod
    def sampling_modules(self) -> tuple:
        """(unet, (text encoders...), other modules that must be in eval mode while sampling)."""

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


def text_encoder_rates(cfg, family) -> list[float]:
    """Learning rate of each text encoder. SDXL's encoders each have their own option
    (learning_rate_te1/te2), falling back to text_encoder_lr, then learning_rate; 0 freezes."""
    shared = cfg.text_encoder_lr if cfg.text_encoder_lr is not None else cfg.learning_rate
    if family.text_encoders == 1:
        return [cfg.text_encoder_lr or cfg.learning_rate]
    own = (cfg.learning_rate_te1, cfg.learning_rate_te2)
    return [rate if rate is not None else shared for rate in own[:family.text_encoders]]


class DreamBoothTarget(TrainingTarget):
    """Trains the U-Net and (until stop_text_encoder_training) the text encoders whose
    learning rate is not 0."""

    def __init__(self, cfg, bundle, precision: Precision):
        from ..models.family import family_of

        self.cfg, self.bundle, self.precision = cfg, bundle, precision
        self.family = family_of(bundle)
        stop = cfg.stop_text_encoder_training
        self.text_encoder_steps = None if stop is None else max(0, stop)  # None: all steps
        self.unet = bundle.unet
        self.text_encoders = [getattr(bundle, name) for name in self.family.text_encoder_names]
        self.te_rates = text_encoder_rates(cfg, self.family)
        # which encoders learn at all (the rest stay frozen for the whole run)
        self.te_learns = [rate != 0 and self._within_te_steps(0) for rate in self.te_rates]
        self.model_format = cfg.save_model_as or bundle.default_save_format
        self.saved_text_encoders: list = [None] * len(self.text_encoders)  # frozen originals
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
        for index, encoder in enumerate(self.text_encoders):
            if self.te_learns[index]:
                encoder.requires_grad_(True)
                encoder.train()
                encoder.to(device=device, dtype=precision.train_dtype)
                for param in self._unused_parameters(index, encoder):
                    param.requires_grad_(False)
                if self.cfg.gradient_checkpointing:
                    encoder.gradient_checkpointing_enable(
                        gradient_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.saved_text_encoders[index] = _freeze(encoder, precision.compute_dtype,
                                                          device)
        self.saved_vae = _freeze(self.bundle.vae, precision.vae_dtype, device)

    def _unused_parameters(self, index: int, encoder) -> list:
        from .text import TextSettings, unused_parameters

        family = self.family
        return unused_parameters(
            encoder, TextSettings(clip_skip=self.cfg.clip_skip),
            fixed_layer=None if family.clip_skip_applies else family.hidden_layer,
            pooled=family.pooled_text and index == family.text_encoders - 1)

    def param_groups(self) -> list[dict]:
        groups = [{"params": [p for p in self.unet.parameters() if p.requires_grad],
                   "lr": self.cfg.learning_rate, "name": "unet"}]
        for index, name in enumerate(self.family.text_encoder_names):
            if self.te_learns[index]:
                encoder = self.text_encoders[index]
                groups.append({"params": [p for p in encoder.parameters() if p.requires_grad],
                               "lr": self.te_rates[index], "name": name})
        return groups

    def trainable_modules(self) -> list[torch.nn.Module]:
        return [self.unet] + [e for e, learns in zip(self.text_encoders, self.te_learns) if learns]

    def set_prepared(self, modules: list) -> None:
        self.prepared_modules = list(modules)
        self.unet = modules[0]
        wrapped = iter(modules[1:])
        self.text_encoders = [next(wrapped) if learns else encoder
                              for encoder, learns in zip(self.text_encoders, self.te_learns)]

    # -- during training
    def _within_te_steps(self, step: int) -> bool:
        return self.text_encoder_steps is None or step < self.text_encoder_steps

    def trains_text_encoder(self, step: int) -> bool:
        return any(self.te_learns) and self._within_te_steps(step)

    def on_step(self, step: int) -> None:
        """Freeze the text encoders once their steps are done (the optimizer then skips them)."""
        if not self.text_encoder_steps or step < self.text_encoder_steps:
            return
        for encoder in self.text_encoders:
            encoder = _unwrap(encoder)
            if encoder.training:
                encoder.requires_grad_(False)
                encoder.eval()

    def forward_unet(self):
        return self.unet

    def forward_text_encoders(self) -> tuple:
        return tuple(self.text_encoders)

    def sampling_modules(self):
        return _unwrap(self.unet), tuple(_unwrap(e) for e in self.text_encoders), []

    def checkpoint_objects(self) -> list:
        return []  # the prepared U-Net and text encoders are saved by accelerate already

    def describe_run(self, schedule, dataset) -> None:
        pass  # a full model's file carries the base model's own description

    # -- output
    def save(self, path: Path, *, step: int = 0, epoch: int = 0) -> Path:  # noqa: ARG002
        from ..models import save_model

        encoders = [saved if saved is not None else _unwrap(encoder)
                    for saved, encoder in zip(self.saved_text_encoders, self.text_encoders)]
        extra = {"text_encoder_2": encoders[1]} if len(encoders) > 1 else {}
        return save_model(self.bundle, path, save_model_as=self.model_format,
                          save_precision=self.cfg.save_precision, unet=_unwrap(self.unet),
                          text_encoder=encoders[0], vae=self.saved_vae, **extra)
