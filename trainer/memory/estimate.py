"""Peak GPU memory of a training configuration, estimated on any machine (no GPU needed).

    from trainer.memory import estimate_vram
    estimate = estimate_vram(cfg)      # cfg: a Config of mode db or lora
    print(estimate.summary())          # "about 7.4 GB; fits an 8 GB card"

Weights, gradients and optimizer state come from the parameters the trainer's own placement
code trains and freezes (on meta models of the configured base model). Activations come from a
traced forward pass at the run's size (see step.py), replayed through backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024 ** 3
# The CUDA context (driver, kernels, cuBLAS/cuDNN handles) takes memory outside PyTorch's
# allocator: typically 0.3-0.6 GB with CUDA 12's lazy kernel loading, as nvidia-smi shows it.
CUDA_CONTEXT = int(0.5 * GIB)
# The caching allocator holds more than is allocated at the peak (rounding to blocks, freed
# blocks of other sizes); reserved memory commonly runs 5-15% above the allocated peak.
FRAGMENTATION = 0.10
CARDS_GB = (4, 6, 8, 10, 12, 16, 24, 32, 40, 48, 80)
USABLE = 0.95  # share of a card a run can count on (the desktop and driver keep some)


@dataclass
class VramEstimate:
    weights: int  # trained and frozen weights resident on the GPU
    gradients: int  # gradients of the trained weights (all of them exist at the optimizer step)
    optimizer: int  # optimizer state
    activations: int  # what the step needs beyond the above at its peak
    overhead: int  # CUDA context and allocator slack: on the card, not in max_memory_allocated
    saved_activations: int = 0  # what the forward keeps for backward (checkpointing keeps less)
    attention: str = "kernel"
    notes: tuple = ()

    @property
    def allocated(self) -> int:
        """Comparable to torch.cuda.max_memory_allocated()."""
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def total(self) -> int:
        """On the card, as nvidia-smi or the task manager shows it."""
        return self.allocated + self.overhead

    def card_gb(self) -> int | None:
        return next((c for c in CARDS_GB if self.total <= c * GIB * USABLE), None)

    def summary(self) -> str:
        card = self.card_gb()
        fits = f"fits a{'n' if card in (8, 80) else ''} {card} GB card" if card else \
            f"more than the largest common card ({CARDS_GB[-1]} GB)"
        return f"about {_gb(self.total)} GB; {fits}"

    def breakdown(self) -> str:
        rows = [("weights", self.weights), ("gradients", self.gradients),
                ("optimizer state", self.optimizer), ("activations", self.activations),
                ("allocated peak", self.allocated),
                ("CUDA context + allocator", self.overhead), ("total on the card", self.total)]
        lines = [f"  {name:<26}{_gb(size):>7} GB" for name, size in rows]
        lines.append(f"  (the forward keeps {_gb(self.saved_activations)} GB for backward; "
                     f"attention: {_ATTENTION[self.attention]})")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


_ATTENTION = {"kernel": "fused kernel, O(N) memory", "sliced": "sliced, saves N x N scores"}


def _gb(size: int) -> str:
    return f"{size / GIB:.1f}"


def _param_bytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def estimate_vram(cfg, models=None) -> VramEstimate:
    """Estimate the peak GPU memory of training `cfg` (mode db or lora) on one GPU.

    models: the base model's MetaModels; default: built from cfg.pretrained_model_name_or_path
    (a file, diffusers folder or cached hub id; SD 1.x, 2.x or XL), reading only configs and
    tensor shapes."""
    from ..config.validate import normalize
    from ..train.session import quiet_libraries
    from .architecture import meta_models
    from .optimizer_state import optimizer_bytes
    from .step import attention_kind, place, trace_step

    quiet_libraries()
    cfg = normalize(cfg)  # e.g. use_8bit_adam -> optimizer_type=AdamW8bit, as the trainer sees it
    if models is None:
        models = meta_models(cfg.pretrained_model_name_or_path, v2=cfg.v2 or None,
                             v_parameterization=cfg.v_parameterization or None)
    placed: Any  # Placed, or XLPlaced for SDXL
    if models.xl:
        from .xl import place_xl, trace_xl

        placed = place_xl(cfg, models)
        trace = trace_xl(cfg, placed)
        notes = list(placed.notes)
    else:
        placed = place(cfg, models)
        _full_bf16(cfg, placed.trained)
        trace = trace_step(cfg, placed, watch_gradients=not cfg.fused_backward_pass)
        notes = []
    all_grads = _param_bytes(placed.trained)
    # fused_backward_pass applies each gradient the moment backward makes it and frees it:
    # at most one tensor's gradient exists at a time.
    grads = _largest_bytes(placed.trained) if cfg.fused_backward_pass else all_grads
    ddp_buckets = all_grads if cfg.num_processes > 1 and cfg.mode == "db" else 0
    weights = _param_bytes(placed.trained) + _param_bytes(placed.frozen)
    optimizer = optimizer_bytes(cfg.optimizer_type, placed.trained)
    peak = _step_peak(cfg, trace, placed.trained, grads)
    allocated = weights + optimizer + ddp_buckets + peak
    return VramEstimate(
        weights=weights, gradients=grads + ddp_buckets, optimizer=optimizer,
        activations=max(0, peak - grads), overhead=_overhead(allocated),
        saved_activations=trace.log.total(with_blocks=False), attention=attention_kind(cfg),
        notes=tuple(notes + _notes(cfg)))


def _full_bf16(cfg, trained) -> None:
    """full_bf16 keeps the trained weights (and so their gradients and optimizer state) in
    bf16."""
    if cfg.full_bf16:
        import torch

        for p in trained:
            p.data = p.data.to(torch.bfloat16)


def _largest_bytes(params) -> int:
    return max((p.numel() * p.element_size() for p in params), default=0)


def _step_peak(cfg, trace, trained, grads: int) -> int:
    """The most a step holds beyond weights and optimizer state: at the end of the forward, in
    the backward pass (activations going, gradients coming) or in the optimizer step."""
    from .optimizer_state import step_transient

    held = cfg.gradient_accumulation_steps > 1  # later batches find all gradients there
    backward, _ = trace.log.backward_peak(grads_held=held)
    working = 2 * trace.log.largest()  # the gradients into and out of the op backward is at
    forward = trace.log.total(with_blocks=False) + trace.cast_bytes + (grads if held else 0)
    step = grads + step_transient(cfg.optimizer_type, trained)
    if cfg.fused_backward_pass:  # the optimizer steps inside backward, tensor by tensor
        return max(backward + working + step, forward)
    return max(backward + working, forward, step)


def _overhead(allocated: int) -> int:
    return CUDA_CONTEXT + int(FRAGMENTATION * allocated)


def _notes(cfg) -> list[str]:
    if cfg.num_processes <= 1:
        return []
    if cfg.mode == "db":
        return ["per GPU; DDP keeps a second copy of the gradients (counted)"]
    return ["per GPU"]
