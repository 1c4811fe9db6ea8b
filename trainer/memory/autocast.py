"""CUDA autocast and CUDA attention kernels, reproduced for a forward pass on any device.

The meta device has no autocast, and the CPU's attention is not the GPU's. To see what a GPU
step keeps for backward, a forward runs inside `GpuLikeMode`, which casts the inputs of each op
as CUDA autocast does (its documented float16 and float32 op lists; trained float32 weights are
cast once per forward and the copy is cached, as autocast caches casts of leaf tensors) and
replaces scaled-dot-product attention with a function that saves what the CUDA flash and
memory-efficient kernels (and xformers) save: q, k, v, the output and one float32 logsumexp per
query and head. It never saves the N x N probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

T = torch.Tensor
# CUDA ops that autocast to the lower precision (torch.amp documentation, "CUDA Op-Specific
# Behavior") that Stable Diffusion's U-Net, VAE and CLIP call.
LOWER = {
    F.linear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
    F.conv_transpose3d, torch.matmul, T.matmul, T.__matmul__, torch.mm, T.mm, torch.bmm, T.bmm,
    torch.baddbmm, T.baddbmm, torch.addmm, T.addmm, torch.addbmm, F.prelu,
}
# CUDA ops that autocast to float32 (same list).
FLOAT32 = {
    F.group_norm, F.layer_norm, torch.layer_norm, torch.group_norm, F.softmax, torch.softmax,
    T.softmax, F.log_softmax, torch.log_softmax, T.log_softmax, torch.exp, T.exp, torch.log,
    T.log, torch.pow, T.pow, T.__pow__, torch.rsqrt, T.rsqrt, F.mse_loss, F.normalize,
    torch.norm, T.norm, F.softplus, torch.cumsum, T.cumsum,
}


class KernelAttention(torch.autograd.Function):
    """Attention that saves for backward exactly what the fused CUDA kernels keep."""

    @staticmethod
    def forward(ctx, q, k, v, kwargs):  # noqa: D401 - autograd signature
        out = F.scaled_dot_product_attention(q, k, v, **kwargs)
        if out.dim() == 4:  # the kernels write (batch, tokens, heads, dim): merging heads is free
            out = out.transpose(1, 2).contiguous().transpose(1, 2)
        logsumexp = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        ctx.save_for_backward(q, k, v, out, logsumexp)
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - estimates never run backward
        raise NotImplementedError("KernelAttention is for measuring a forward pass only")


def kernel_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                     scale=None, enable_gqa=False):
    kwargs = dict(attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    if enable_gqa:
        kwargs["enable_gqa"] = True
    return KernelAttention.apply(query, key, value, kwargs)


class GpuLikeMode(TorchFunctionMode):
    """Within it, ops cast like CUDA autocast to `compute_dtype` (None: no autocast) and
    attention saves like the CUDA kernels (unless `kernel_attention` is False)."""

    def __init__(self, compute_dtype: torch.dtype | None, kernel_attention: bool = True):
        super().__init__()
        self.compute_dtype = compute_dtype
        self.kernel = kernel_attention
        self.cache: dict[int, torch.Tensor] = {}

    def _cast(self, value, dtype):
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()) or \
                value.dtype == dtype:
            return value
        if value.is_leaf and value.requires_grad:  # autocast caches casts of trained weights
            key = id(value)
            if key not in self.cache:
                self.cache[key] = value.to(dtype)
            return self.cache[key]
        return value.to(dtype)

    def _cast_all(self, args, kwargs, dtype):
        args = tuple(self._cast(a, dtype) for a in args)
        return args, {k: self._cast(v, dtype) for k, v in kwargs.items()}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        half = self.compute_dtype is not None and self.compute_dtype != torch.float32
        if func is F.scaled_dot_product_attention:
            if half:
                args, kwargs = self._cast_all(args, kwargs, self.compute_dtype)
            return kernel_attention(*args, **kwargs) if self.kernel else func(*args, **kwargs)
        if half and func in LOWER:
            args, kwargs = self._cast_all(args, kwargs, self.compute_dtype)
        elif half and func in FLOAT32:
            args, kwargs = self._cast_all(args, kwargs, torch.float32)
        return func(*args, **kwargs)
