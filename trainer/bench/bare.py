"""The bare training loops the trainer is timed against: forward, loss, backward, gradient
clipping and the optimizer step on the same model and batch shape, and nothing else."""

from __future__ import annotations

import time

import torch
from torch import nn


class _BareLoRA(nn.Module):
    """The least a LoRA layer can do: base(x) + scale * up(down(x)), as a module replacement."""

    def __init__(self, base: nn.Module, rank: int, alpha: float):
        super().__init__()
        self.base = base
        kw = dict(bias=False, device=base.weight.device, dtype=torch.float32)
        if isinstance(base, nn.Conv2d):  # the 1x1 proj_in/proj_out of SD 1.x
            self.down = nn.Conv2d(base.in_channels, rank, 1, **kw)
            self.up = nn.Conv2d(rank, base.out_channels, 1, **kw)
        else:
            self.down = nn.Linear(base.in_features, rank, **kw)
            self.up = nn.Linear(rank, base.out_features, **kw)
        nn.init.zeros_(self.up.weight)
        self.scale = alpha / rank

    def forward(self, x, *args, **kwargs):
        return self.base(x, *args, **kwargs) + self.up(self.down(x)) * self.scale


def add_bare_lora(unet: nn.Module, rank: int, alpha: float) -> list[nn.Parameter]:
    """LoRA on the U-Net layers a `lora` run trains (network_train_unet_only, no LoCon)."""
    from ..networks.targets import unet_targets

    paths = {id(t.module) for t in unet_targets(unet, with_conv=False)}
    swaps = [(name, module) for name, module in unet.named_modules() if id(module) in paths]
    params = []
    for name, module in swaps:
        parent_name, _, child = name.rpartition(".")
        lora = _BareLoRA(module, rank, alpha)
        setattr(unet.get_submodule(parent_name), child, lora)
        params += [lora.down.weight, lora.up.weight]
    return params


def bare_seconds(args, model: str) -> tuple[list[float], int | None]:
    """Seconds per step after the warm-up, and the peak CUDA memory allocated (None on CPU)."""
    from diffusers import DDPMScheduler

    from ..models import load_model
    from ..train.optim import build_optimizer
    from ..train.precision import DTYPES

    bundle = load_model(model, tokenizer=args.tokenizer, xl=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.mixed_precision]
    unet = bundle.unet
    if args.mode == "lora":
        # The frozen base runs in the compute dtype, the LoRA weights learn in float32.
        unet.requires_grad_(False).to(device=device, dtype=dtype).eval()
        params = add_bare_lora(unet, args.network_dim, args.network_alpha)
    else:
        unet.to(device).train()
        params = list(unet.parameters())
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        unet.train()
    scheduler = DDPMScheduler.from_config(bundle.noise_scheduler_config)
    side = args.resolution // 8
    latents = torch.randn(args.batch, 4, side, side, device=device)
    with torch.no_grad():
        hidden, extra = _text_conditioning(bundle, args.batch, args.resolution, device)
    optimizer = build_optimizer(args.optimizer_type, [{"params": params}], 1e-6, [])
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        _bare_step(unet, scheduler, latents, (hidden, extra), params, optimizer, scaler, dtype,
                   device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= args.warmup:
            seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return seconds, peak


def _text_conditioning(bundle, batch: int, resolution: int, device) -> tuple:
    """(cross-attention states, added_cond_kwargs or None) for the caption "sks dog".

    SDXL: both encoders' penultimate states side by side, the second's projected pooled output,
    and the six size numbers of an uncropped square picture."""
    def ids(tokenizer):
        return tokenizer(["sks dog"] * batch, padding="max_length", max_length=77,
                         return_tensors="pt").input_ids.to(device)

    if not bundle.xl:
        return bundle.text_encoder.to(device)(ids(bundle.tokenizer))[0], None
    first = bundle.text_encoder.to(device)(ids(bundle.tokenizer), output_hidden_states=True)
    second = bundle.text_encoder_2.to(device)(ids(bundle.tokenizer_2), output_hidden_states=True)
    hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    sizes = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]] * batch,
                         dtype=torch.float32, device=device)
    return hidden, {"text_embeds": second.text_embeds, "time_ids": sizes}


def _bare_step(unet, scheduler, latents, conditioning, params, optimizer, scaler, dtype, device):
    hidden, extra = conditioning
    noise = torch.randn_like(latents)
    steps = torch.randint(0, 1000, (latents.shape[0],), device=device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        prediction = unet(scheduler.add_noise(latents, noise, steps), steps, hidden,
                          added_cond_kwargs=extra).sample
    loss = torch.nn.functional.mse_loss(prediction.float(), noise)
    (scaler.scale(loss) if scaler else loss).backward()
    # The trainer clips gradients by default (max_grad_norm 1.0, as sd-scripts does): that is
    # training work, not overhead, so the bare loop does it too.
    if scaler:
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
