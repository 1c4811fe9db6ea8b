"""Read and write single-file checkpoints (.safetensors, .ckpt) safely and atomically.

`.ckpt` files are pickles: they are read with `torch.load(weights_only=True)`, which refuses
anything that would run code. Real SD 1.x checkpoints also pickle a PyTorch Lightning callback
record and numpy scalars; those few harmless names are accepted as inert data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from ..errors import UserError

log = logging.getLogger("trainer.models")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


class _InertRecord:
    """Stands in for objects real checkpoints pickle beside the weights (training callbacks)."""

    def __setstate__(self, state):
        pass


def _extra_safe_globals() -> list:
    import numpy as np

    names = ["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
             "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint"]
    safe: list[object] = [(_InertRecord, name) for name in names]  # classes and (class, name)
    core = np._core if hasattr(np, "_core") else np.core
    scalar = core.multiarray.scalar
    safe += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
             np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.int64))]
    return safe


def _torch_load(path: Path, mmap: bool):
    import torch

    with torch.serialization.safe_globals(_extra_safe_globals()):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip (new format) or a pickle that opens with the PROTO opcode."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _read_pickle(path: Path) -> dict:
    import pickle

    if not _looks_like_torch_file(path):
        raise UserError(f"{path} is not a checkpoint (neither a zip nor a pickle file)",
                        "give a .safetensors or .ckpt model file")
    try:
        try:
            data = _torch_load(path, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) format cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            data = _torch_load(path, mmap=False)
    except pickle.UnpicklingError as err:
        detail = str(err).split("\n")[0] if "Unsupported" not in str(err) else \
            next((line for line in str(err).splitlines() if "Unsupported" in line), "")
        raise UserError(
            f"{path} is a pickle that needs to run code to load ({detail.strip()}); refusing it",
            "use a .safetensors version of this model, or convert it with a tool you trust",
        ) from None
    except Exception as err:  # truncated zip, garbage bytes, ...
        raise UserError(f"{path} cannot be read as a .ckpt checkpoint "
                        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
                        "the file is probably truncated or corrupt: download it again") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise UserError(f"{path} holds no state dict of weights", "is this a model checkpoint?")
    import torch

    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def read_state_dict(path: Path) -> dict:
    """All tensors of a single-file checkpoint; UserError (one line) for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {path} does not exist", "check the path")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:
            raise UserError(f"{path} is not a readable .safetensors file "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})",
                            "the file is probably truncated or corrupt: download it again") from None
    return _read_pickle(path)


def read_shapes(path: Path) -> dict:
    """The tensors of a single-file checkpoint as meta tensors (shape and dtype, no data):
    enough to tell the architecture without reading gigabytes."""
    import torch

    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        state = read_state_dict(path)  # .ckpt: memory-mapped where the format allows
        return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in state.items()}
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            slices = {k: handle.get_slice(k) for k in handle.keys()}
            return {k: torch.empty(s.get_shape(), device="meta",
                                   dtype=getattr(torch, _DTYPE_NAMES.get(s.get_dtype(), "float32")))
                    for k, s in slices.items()}
    except Exception as err:
        raise UserError(f"{path} is not a readable .safetensors file "
                        f"({str(err).splitlines()[0] if str(err) else type(err).__name__})",
                        "the file is probably truncated or corrupt: download it again") from None


_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                "BOOL": "bool"}


def read_metadata(path: Path) -> dict:
    if Path(path).suffix.lower() != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            return handle.metadata() or {}
    except Exception:
        return {}


def read_keys(path: Path, keys: Iterable[str]) -> dict:
    """Some tensors of a checkpoint (memory-mapped where the format allows)."""
    keys = list(keys)
    if Path(path).suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            present = set(handle.keys())
            return {k: handle.get_tensor(k) for k in keys if k in present}
    data = _read_pickle(Path(path))
    return {k: data[k] for k in keys if k in data}


def write_single_file(state_dict: dict, path: Path, metadata: dict | None = None) -> Path:
    """Write a .safetensors or .ckpt atomically (temporary name in the folder, then rename)."""
    import torch

    from ..atomic import atomic_path

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import save_file

            save_file(_unshare(tensors), str(tmp), metadata={"format": "pt", **(metadata or {})})
        else:
            torch.save({"state_dict": tensors}, tmp)
    return path


def _unshare(tensors: dict) -> dict:
    """safetensors refuses tensors that share memory; copy the (rare) duplicates."""
    seen, out = set(), {}
    for key, value in tensors.items():
        pointer = value.untyped_storage().data_ptr()
        out[key] = value.clone() if pointer in seen and value.numel() else value
        seen.add(pointer)
    return out
