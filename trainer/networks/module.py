"""One LoRA layer: a low-rank update added to the output of a frozen Linear or Conv2d.

output = base(x) + multiplier * (alpha / dim) * up(down(x))

The base layer is never replaced or modified: the update is added by a forward hook, so
`remove()` leaves the model exactly as it was. For a 3x3 convolution `down` is a 3x3
convolution with the base layer's stride and padding and `up` a 1x1 convolution (the LoCon
layout of sd-scripts); for 1x1 convolutions (proj_in/proj_out of SD 1.x) both are 1x1.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRAModule(nn.Module):
    def __init__(self, lora_name: str, target: nn.Module, dim: int, alpha: float | None, *,
                 dropout: float | None = None, rank_dropout: float | None = None,
                 module_dropout: float | None = None):
        super().__init__()
        self.lora_name = lora_name
        self.dim = int(dim)
        kw = dict(bias=False, device=target.weight.device, dtype=torch.float32)
        if isinstance(target, nn.Conv2d):
            self.lora_down = nn.Conv2d(target.in_channels, self.dim, target.kernel_size,
                                       target.stride, target.padding, target.dilation, **kw)
            self.lora_up = nn.Conv2d(self.dim, target.out_channels, 1, **kw)
        else:
            self.lora_down = nn.Linear(target.in_features, self.dim, **kw)
            self.lora_up = nn.Linear(self.dim, target.out_features, **kw)
        # alpha 0 or unset means "no scaling" (alpha = dim), as in sd-scripts.
        alpha = float(self.dim if not alpha else alpha)
        self.register_buffer("alpha", torch.tensor(alpha, dtype=torch.float32,
                                                   device=target.weight.device))
        self.scale = alpha / self.dim
        self.multiplier = 1.0
        self.dropout, self.rank_dropout, self.module_dropout = dropout, rank_dropout, module_dropout
        if not target.weight.is_meta:
            nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_up.weight)
        self._target = (target,)  # a tuple, so the base layer is not registered as our child
        self._hook = None

    @property
    def target(self) -> nn.Module:
        return self._target[0]

    @property
    def is_conv(self) -> bool:
        return isinstance(self.lora_down, nn.Conv2d)

    def sync_scale(self) -> None:
        """Take the scale from the alpha buffer (after loading weights from a file)."""
        self.scale = float(self.alpha) / self.dim

    # ------------------------------------------------------------------ injection

    def attach(self) -> None:
        if self._hook is None:
            self._hook = self.target.register_forward_hook(self._add_update)

    def detach(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    @property
    def attached(self) -> bool:
        return self._hook is not None

    def _regularizing(self) -> bool:
        # Dropouts only while training; never under no_grad (sampling, validation).
        return self.training and torch.is_grad_enabled()

    def _add_update(self, _module, args, output):
        if self.multiplier == 0:
            return output
        regularizing = self._regularizing()
        if regularizing and self.module_dropout and torch.rand(()) < self.module_dropout:
            return output
        x = args[0]
        if not _autocasting(x.device.type):
            # Under autocast the layer casts for itself; a cast here would copy x twice.
            x = x.to(self.lora_down.weight.dtype)
        hidden = self.lora_down(x)
        scale = self.scale
        if regularizing and self.dropout:
            hidden = nn.functional.dropout(hidden, p=self.dropout)
        if regularizing and self.rank_dropout:
            hidden = hidden * self._rank_mask(hidden)
            scale = scale / (1.0 - self.rank_dropout)
        update = self.lora_up(hidden) * (self.multiplier * scale)
        return output + update.to(output.dtype)

    def _rank_mask(self, hidden: torch.Tensor) -> torch.Tensor:
        mask = torch.rand((hidden.size(0), self.dim), device=hidden.device) > self.rank_dropout
        if self.is_conv:
            return mask[:, :, None, None].to(hidden.dtype)
        if hidden.dim() == 3:
            return mask[:, None, :].to(hidden.dtype)
        return mask.to(hidden.dtype)

    # ------------------------------------------------------------------ weights

    def delta_weight(self, multiplier: float = 1.0) -> torch.Tensor:
        """The change this LoRA makes to the base layer's weight (float32, same shape)."""
        up = self.lora_up.weight.detach().float()
        down = self.lora_down.weight.detach().float()
        return delta_from_factors(up, down, multiplier * self.scale)


def _autocasting(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device without autocast (meta)
        return False


def delta_from_factors(up: torch.Tensor, down: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * up @ down, shaped like the base weight (linear, 1x1 or kxk convolution)."""
    if down.dim() == 2:
        return (up @ down) * scale
    out_channels, rank = up.shape[:2]
    merged = up.reshape(out_channels, rank) @ down.reshape(rank, -1)
    return merged.reshape(out_channels, *down.shape[1:]) * scale
