"""Peak GPU memory of a training configuration, estimated without a GPU (see estimate.py)."""

from .estimate import VramEstimate, estimate_vram

__all__ = ["VramEstimate", "estimate_vram"]
