"""Keep the model libraries from importing what the trainer never uses.

diffusers imports bitsandbytes whenever it is installed, to load quantized models, and peft
(which imports bitsandbytes too), for its own LoRA adapters; the trainer uses neither (its
networks are its own). Importing bitsandbytes compiles its kernels with torch.compile, about a
third of a training process's start-up. The 8-bit optimizers import bitsandbytes themselves, so
they are unaffected. If a diffusers release renames the flags, this does nothing (start-up is
slower, nothing breaks).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

DIFFUSERS_IMPORT_UTILS = "diffusers.utils.import_utils"


class _DiffusersWithoutQuantizers(importlib.abc.MetaPathFinder):
    """Finds diffusers' import_utils as usual and, once it has run, marks bitsandbytes and peft
    absent."""

    def find_spec(self, name, path, target=None):
        if name != DIFFUSERS_IMPORT_UTILS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            module._bitsandbytes_available = False
            module._peft_available = False

        spec.loader.exec_module = exec_module
        return spec


def skip_unused_imports() -> None:
    """Once per process, before diffusers is imported (later calls change nothing)."""
    if DIFFUSERS_IMPORT_UTILS in sys.modules:
        return
    if not any(isinstance(finder, _DiffusersWithoutQuantizers) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DiffusersWithoutQuantizers())
