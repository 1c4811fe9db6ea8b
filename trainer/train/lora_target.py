"""LoRA as a training target: the base model is frozen (in the compute dtype), only the
network's float32 weights learn, and the output is a kohya-format file."""

from __future__ import annotations

from pathlib import Path

import torch

from .precision import Precision
from .targets import TrainingTarget


class LoRATarget(TrainingTarget):
    def __init__(self, cfg, bundle, precision: Precision, warn=print):
        self.cfg, self.bundle, self.precision, self.warn = cfg, bundle, precision, warn
        self.model_format = cfg.save_model_as or "safetensors"
        self.prepared_modules: list = []
        self.metadata: dict[str, str] = {}

    # -- setup
    def place(self) -> None:
        from ..networks import create_network_for_config

        cfg, device, dtype = self.cfg, self.precision.device, self.precision.compute_dtype
        unet, vae = self.bundle.unet, self.bundle.vae
        encoders = self.text_encoders()  # SDXL: both, frozen and given LoRA layers alike
        frozen = [(unet, dtype), *((encoder, dtype) for encoder in encoders),
                  (vae, self.precision.vae_dtype)]
        for module, module_dtype in frozen:
            module.requires_grad_(False)
            module.eval()
            module.to(device=device, dtype=module_dtype)
        setup = create_network_for_config(cfg, unet, encoders)
        for note in setup.notes:
            self.warn(note)
        self.network = setup.network
        self.network_args = setup.args
        self.network.apply()
        # float32 unless full_fp16/full_bf16 keep the trained weights in half precision
        self.network.to(device=device, dtype=self.precision.train_dtype)
        self.network.train()
        self._groups = self.network.param_groups(cfg.unet_lr, cfg.text_encoder_lr,
                                                 cfg.learning_rate)
        self.trains_te = any(g["name"].startswith("text_encoder") for g in self._groups)
        if not self._groups:
            from ..errors import UserError

            raise UserError("the LoRA has nothing to train (every learning rate is 0)",
                            "set unet_lr or text_encoder_lr above 0")
        if cfg.gradient_checkpointing:
            # diffusers and transformers checkpoint only modules in training mode; the frozen
            # base has no dropout, so train mode changes nothing else.
            unet.enable_gradient_checkpointing()
            unet.train()
            if self.trains_te:
                for encoder in encoders:
                    encoder.gradient_checkpointing_enable(
                        gradient_checkpointing_kwargs={"use_reentrant": False})
                    encoder.train()

    def param_groups(self) -> list[dict]:
        return self._groups

    def trainable_modules(self) -> list[torch.nn.Module]:
        # Not wrapped in DDP: nothing calls the network's forward. Gradients are averaged by
        # the loop instead (see average_gradients), and the state is saved by registration.
        return []

    def set_prepared(self, modules: list) -> None:
        self.prepared_modules = []

    def checkpoint_objects(self) -> list:
        return [self.network]

    def describe_run(self, schedule, dataset) -> None:
        from ..networks import build_metadata

        self.metadata = build_metadata(
            self.cfg, self.network, v2=self.bundle.v2, xl=self.bundle.xl,
            v_parameterization=self.bundle.v_parameterization, num_epochs=schedule.total_epochs,
            max_train_steps=schedule.total_steps,
            dataset=dataset.lora_facts(schedule.global_batch),
            total_batch_size=schedule.global_batch * schedule.accumulation,
            network_args=self.network_args)

    # -- during training
    def trains_text_encoder(self, step: int) -> bool:  # noqa: ARG002 - same for every step
        return self.trains_te

    def on_step(self, step: int) -> None:
        pass

    def forward_unet(self):
        return self.bundle.unet

    def text_encoders(self) -> tuple:
        from ..models.family import family_of

        return tuple(getattr(self.bundle, name)
                     for name in family_of(self.bundle).text_encoder_names)

    def forward_text_encoders(self) -> tuple:
        return self.text_encoders()

    def sampling_modules(self):
        return self.bundle.unet, self.text_encoders(), [self.network]

    # -- output
    def save(self, path: Path, *, step: int = 0, epoch: int = 0) -> Path:
        from ..networks import for_save

        self.network.save(path, dtype=self.cfg.save_precision,
                          metadata=for_save(self.metadata, steps=step, epoch=epoch))
        return Path(path)
