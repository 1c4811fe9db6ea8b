"""The LoRA network: every LoRA layer of one U-Net and its text encoder(s), saved in kohya format.

The network's own state_dict already has the kohya key names
(`lora_unet_…_to_q.lora_down.weight`, `….lora_up.weight`, `….alpha`), because each layer is
registered under its kohya module name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from ..errors import UserError
from . import targets as T
from .module import LoRAModule


@dataclass(frozen=True)
class NetworkSettings:
    """What the network was built with (for metadata and messages)."""

    dim: int
    alpha: float
    conv_dim: int | None = None
    conv_alpha: float | None = None
    dropout: float | None = None
    rank_dropout: float | None = None
    module_dropout: float | None = None
    loraplus_lr_ratio: float | None = None


@dataclass
class LoadReport:
    """What load_weights did: modules loaded, left at their start values, or ignored."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the network, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the network
    alpha_changed: bool = False  # the file's alphas differ from the configured ones

    def notes(self) -> list[str]:
        notes = []
        if self.missing:
            notes.append(f"{len(self.missing)} LoRA layers are not in {self.source} and start "
                         f"fresh (e.g. {self.missing[0]})")
        if self.unexpected:
            notes.append(f"{len(self.unexpected)} LoRA layers of {self.source} are not trained "
                         f"now and are left out (e.g. {self.unexpected[0]})")
        if self.alpha_changed:
            notes.append(f"the alphas stored in {self.source} are used instead of network_alpha")
        return notes


class LoRANetwork(nn.Module):
    def __init__(self, layers: Iterable[LoRAModule], settings: NetworkSettings,
                 family: str | None = None, aliases: Mapping[str, str] | None = None):
        super().__init__()
        self.settings = settings
        # base model family the network was built on: "sd1", "sd2", "sdxl" (None: unknown)
        self.family = family
        # other names files may give a layer: {file layer name: network layer name}
        self.aliases = dict(aliases or {})
        self.unet_loras: list[LoRAModule] = []
        self.text_encoder_loras: list[LoRAModule] = []
        for layer in layers:
            if hasattr(self, layer.lora_name):
                raise ValueError(f"duplicate LoRA layer name {layer.lora_name}")
            self.add_module(layer.lora_name, layer)
            part = T.part_of(layer.lora_name)
            (self.unet_loras if part == "unet" else self.text_encoder_loras).append(layer)

    @property
    def v2(self) -> bool | None:
        """Built on SD 2.x (True), SD 1.x or SDXL (False), or unknown (None)."""
        return None if self.family is None else self.family == "sd2"

    @property
    def xl(self) -> bool:
        return self.family == "sdxl"

    @property
    def loras(self) -> list[LoRAModule]:
        return self.text_encoder_loras + self.unet_loras

    # ------------------------------------------------------------------ injection

    def apply(self) -> "LoRANetwork":
        """Add every LoRA update to its base layer's output (forward hooks)."""
        for layer in self.loras:
            layer.attach()
        return self

    def remove(self) -> None:
        """Take the hooks off again: the base model behaves exactly as before."""
        for layer in self.loras:
            layer.detach()

    @property
    def applied(self) -> bool:
        return any(layer.attached for layer in self.loras)

    def set_multiplier(self, multiplier: float) -> None:
        for layer in self.loras:
            layer.multiplier = float(multiplier)

    # ------------------------------------------------------------------ training

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, unet_lr: float | None, text_encoder_lr: float | None,
                     default_lr: float) -> list[dict]:
        """Optimizer parameter groups, each with "params", "lr" and a "name" for logging.

        A part whose learning rate resolves to 0 is frozen and left out, as in sd-scripts.
        SDXL's two text encoders share the text encoder's group and rate, as in sd-scripts.
        With loraplus_lr_ratio the `lora_up` weights get their own group at lr × ratio.
        """
        groups = []
        for name, layers, lr in (("text_encoder", self.text_encoder_loras, text_encoder_lr),
                                 ("unet", self.unet_loras, unet_lr)):
            lr = default_lr if lr is None else lr
            params = [p for layer in layers for p in layer.parameters()]
            if not params:
                continue
            if not lr:
                for p in params:
                    p.requires_grad_(False)
                continue
            for p in params:
                p.requires_grad_(True)
            ratio = self.settings.loraplus_lr_ratio
            if ratio:
                ups = [layer.lora_up.weight for layer in layers]
                downs = [layer.lora_down.weight for layer in layers]
                groups += [{"params": downs, "lr": lr, "name": name},
                           {"params": ups, "lr": lr * ratio, "name": f"{name} plus"}]
            else:
                groups.append({"params": params, "lr": lr, "name": name})
        return groups

    # ------------------------------------------------------------------ weights

    def state_dict_kohya(self) -> dict[str, torch.Tensor]:
        return {key: value.detach() for key, value in self.state_dict().items()}

    def load_weights(self, source: str | os.PathLike | Mapping[str, torch.Tensor],
                     strict: bool = True, label: str | None = None) -> LoadReport:
        """Load LoRA weights from a file or state dict.

        Always a UserError: not a LoRA file, a LoRA for another base model family, a rank or
        shape that differs from this network's. With `strict`, also any layer that is in only
        one of the two; otherwise such layers are reported and skipped.
        """
        from .files import check_compatible, read_network_file

        if isinstance(source, Mapping):
            state_dict, label = dict(source), label or "the given weights"
        else:
            state_dict, _ = read_network_file(source)
            label = label or Path(source).name
        check_compatible(state_dict, self, label)
        state_dict = T.rename_aliases(state_dict, self.aliases)
        report = _match(self, state_dict, label)
        if not report.loaded:
            raise UserError(f"none of the {len(report.unexpected)} LoRA layers of {label} belong "
                            "to this network", "check that the LoRA and the base model belong "
                            "together and which parts (U-Net / text encoder) are trained")
        if strict and (report.missing or report.unexpected):
            raise UserError(f"{label} does not match the network: " + "; ".join(report.notes()),
                            "train the same layers as the file (network_train_unet_only / "
                            "network_train_text_encoder_only, conv_dim) or use dim_from_weights")
        own = self.state_dict()
        with torch.no_grad():
            for name in report.loaded:
                for suffix in ("lora_down.weight", "lora_up.weight"):
                    own[f"{name}.{suffix}"].copy_(state_dict[f"{name}.{suffix}"])
                alpha = state_dict.get(f"{name}.alpha")
                # early LoRA files have no alpha: they meant alpha = rank (no scaling)
                own[f"{name}.alpha"].fill_(float(alpha) if alpha is not None
                                           else state_dict[f"{name}.lora_down.weight"].shape[0])
        for layer in self.loras:
            if layer.lora_name in report.loaded:
                before = layer.scale
                layer.sync_scale()
                report.alpha_changed |= abs(before - layer.scale) > 1e-6 * max(1.0, before)
        return report

    def save(self, path: str | os.PathLike, *, dtype: torch.dtype | str | None = None,
             metadata: Mapping[str, str] | None = None) -> Path:
        """Write the weights (kohya keys) atomically as .safetensors, or .ckpt/.pt/.pth."""
        from .files import save_network_file

        return save_network_file(self.state_dict_kohya(), path, dtype=dtype, metadata=metadata)


def _match(network: LoRANetwork, state_dict: Mapping[str, torch.Tensor], label: str) -> LoadReport:
    from .files import layer_names

    own = network.state_dict()
    file_layers = layer_names(state_dict)
    report = LoadReport(label)
    for layer in network.loras:
        name = layer.lora_name
        if name not in file_layers:
            report.missing.append(name)
            continue
        down = state_dict.get(f"{name}.lora_down.weight")
        up = state_dict.get(f"{name}.lora_up.weight")
        if down is None or up is None:
            raise UserError(f"{label}: layer {name} lacks its lora_down or lora_up weight",
                            "the file is incomplete or damaged")
        if down.shape[0] != layer.dim:
            option = "conv_dim" if _is_conv3x3(layer) else "network_dim"
            raise UserError(f"{label} has rank {down.shape[0]} at {name}, but {option} is "
                            f"{layer.dim}", f"set {option}={down.shape[0]} or use dim_from_weights")
        for theirs, mine in ((down, own[f"{name}.lora_down.weight"]),
                             (up, own[f"{name}.lora_up.weight"])):
            if tuple(theirs.shape) != tuple(mine.shape):
                raise UserError(f"{label}: layer {name} has shape {list(theirs.shape)}, the base "
                                f"model needs {list(mine.shape)}",
                                "the LoRA was trained on a different base model")
        report.loaded.append(name)
    report.unexpected = sorted(set(file_layers) - set(report.loaded) - set(report.missing))
    return report


def _is_conv3x3(layer: LoRAModule) -> bool:
    return layer.is_conv and tuple(layer.lora_down.kernel_size) != (1, 1)
