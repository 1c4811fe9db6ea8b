"""Stable Diffusion model I/O: load any base model, save trained models in the user's format.

    from trainer.models import load_model, save_model, ModelBundle

Imports are lazy so that `trainer.models.factory` or this package can be imported without
pulling in torch until a model is actually loaded.
"""

from __future__ import annotations

_EXPORTS = {
    "load_model": ("trainer.models.loading", "load_model"),
    "save_model": ("trainer.models.saving", "save_model"),
    "ModelBundle": ("trainer.models.bundle", "ModelBundle"),
    "SAVE_FORMATS": ("trainer.models.bundle", "SAVE_FORMATS"),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trainer.models' has no attribute {name!r}")
    import importlib

    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)
