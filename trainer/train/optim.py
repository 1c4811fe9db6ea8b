"""Optimizers and learning-rate schedules by their sd-scripts names."""

from __future__ import annotations

from ..config.values import literal, parse_key_values
from ..errors import UserError


def optimizer_kwargs(items: list[str]) -> dict:
    return {key: literal(value) for key, value in parse_key_values(items, "optimizer_args").items()}


def _bnb(name: str):
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise UserError(f"optimizer {name} needs bitsandbytes, which is not installed",
                        "pip install bitsandbytes, or choose optimizer_type=AdamW") from None
    return bnb.optim


def _factory(name: str):
    import torch

    if name == "AdamW":
        return torch.optim.AdamW, {}
    if name == "AdamW8bit":
        return _bnb(name).AdamW8bit, {}
    if name == "Lion":
        from lion_pytorch import Lion

        return Lion, {}
    if name == "Lion8bit":
        return _bnb(name).Lion8bit, {}
    if name == "SGDNesterov":
        return torch.optim.SGD, {"momentum": 0.9, "nesterov": True}
    if name == "SGDNesterov8bit":
        return _bnb(name).SGD8bit, {"momentum": 0.9, "nesterov": True}
    if name == "Adafactor":
        from transformers.optimization import Adafactor

        # With an explicit learning rate Adafactor must not choose its own (relative_step).
        return Adafactor, {"relative_step": False, "scale_parameter": False, "warmup_init": False}
    if name == "Prodigy":
        from prodigyopt import Prodigy

        return Prodigy, {}
    raise UserError(f"unknown optimizer_type {name!r}")


def _fused_fits(param_groups: list[dict]) -> bool:
    """torch's fused AdamW (one kernel for all tensors: about 3x faster than the per-tensor loop
    on a CPU, faster on CUDA too) takes float32 parameters on one CPU or CUDA device."""
    import torch

    params = [p for group in param_groups for p in group["params"]]
    devices = {p.device.type for p in params}
    return bool(params) and len(devices) == 1 and devices <= {"cpu", "cuda"} and all(
        p.dtype == torch.float32 for p in params)


def _half_params(param_groups: list[dict]) -> bool:
    import torch

    return any(p.dtype == torch.float16 for group in param_groups for p in group["params"])


def build_optimizer(name: str, param_groups: list[dict], lr: float, extra_args: list[str], *,
                    fused_backward: bool = False):
    """The optimizer `name` over `param_groups`; with fused_backward one of it per weight,
    stepped during the backward pass (see fused_backward.py)."""
    if fused_backward:
        from .fused_backward import FusedBackwardOptimizer

        for group in param_groups:  # the schedule reads and sets each group's rate
            group.setdefault("lr", lr)
        return FusedBackwardOptimizer(
            param_groups, lambda groups: _build_one(name, groups, lr, extra_args))
    return _build_one(name, param_groups, lr, extra_args)


def _build_one(name: str, param_groups: list[dict], lr: float, extra_args: list[str]):
    cls, defaults = _factory(name)
    if name == "AdamW" and _half_params(param_groups):
        # full_fp16: torch's AdamW would keep its moments in float16, where eps (1e-8) rounds
        # to 0 and small gradients give inf/NaN weights; bitsandbytes' 32-bit AdamW keeps them,
        # and does its arithmetic, in float32.
        cls, defaults = _bnb("AdamW with full_fp16").AdamW, {"optim_bits": 32}
    kwargs = {**defaults, **optimizer_kwargs(extra_args)}
    if name == "AdamW" and not {"fused", "foreach"} & set(kwargs) and _fused_fits(param_groups):
        kwargs["fused"] = True
    try:
        return cls(param_groups, lr=lr, **kwargs)
    except TypeError as err:
        raise UserError(f"optimizer_args do not fit {name}: {err}",
                        "check the names in --optimizer_args") from None


def build_scheduler(name: str, optimizer, *, warmup_steps: int, total_steps: int,
                    num_cycles: int = 1, power: float = 1.0):
    from diffusers.optimization import get_scheduler

    extra: dict[str, float] = {}
    if name == "cosine_with_restarts":
        extra["num_cycles"] = num_cycles
    elif name == "polynomial":
        extra["power"] = power
    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps,
                         num_training_steps=total_steps, **extra)
