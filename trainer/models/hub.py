"""Hub ids: the local Hugging Face cache first, a download only when the machine is online."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UserError

V1_TOKENIZER = ("openai/clip-vit-large-patch14", None)
V2_TOKENIZER = ("stabilityai/stable-diffusion-2", "tokenizer")

_PIPELINE_FILES = ["model_index.json", "scheduler/*.json", "tokenizer/*",
                   "unet/config.json", "vae/config.json", "text_encoder/config.json"]
_SAFETENSORS = ["unet/diffusion_pytorch_model.safetensors",
                "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"]
_BIN = ["unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.bin",
        "text_encoder/pytorch_model.bin"]


def looks_like_hub_id(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text)) and \
        not text.lower().endswith((".safetensors", ".ckpt", ".yaml", ".bin", ".pt"))


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _snapshot(repo_id: str, patterns: list[str], local_only: bool) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=local_only))


def _has_weights(folder: Path) -> bool:
    return all((folder / a).is_file() or (folder / b).is_file()
               for a, b in zip(_SAFETENSORS, _BIN))


def pipeline_folder(repo_id: str) -> Path:
    """A local folder holding the diffusers pipeline `repo_id` (safetensors preferred)."""
    attempts = [True] if offline() else [True, False]
    last_error = None
    for local_only in attempts:
        for weights in (_SAFETENSORS, _BIN):
            try:
                folder = _snapshot(repo_id, _PIPELINE_FILES + weights, local_only)
            except Exception as err:  # not cached / not reachable / no such repo
                last_error = err
                continue
            if (folder / "model_index.json").is_file() and _has_weights(folder):
                return folder
    reason = "the machine is offline (HF_HUB_OFFLINE)" if offline() else \
        f"it could not be downloaded ({type(last_error).__name__})"
    raise UserError(
        f"{repo_id!r} is neither a file or folder here nor a model in the local hub cache, "
        f"and {reason}",
        "give the path of a .safetensors/.ckpt file or a diffusers folder, or download the "
        "model once while online")


def file_folder(repo_id: str, subfolder: str | None, names: list[str]) -> Path | None:
    """The local folder with `names` of `repo_id` (cache first, download when online)."""
    patterns = [f"{subfolder}/{name}" if subfolder else name for name in names]
    for local_only in ([True] if offline() else [True, False]):
        try:
            folder = _snapshot(repo_id, patterns, local_only)
        except Exception:
            continue
        folder = folder / subfolder if subfolder else folder
        if folder.is_dir() and any((folder / name).is_file() for name in names):
            return folder
    return None


def from_hub(load, repo_id: str, subfolder: str | None = None):
    """Call `load(repo_id, subfolder=..., local_files_only=...)`: cache first, then online."""
    attempts = [True] if offline() else [True, False]
    error = None
    for local_only in attempts:
        try:
            kwargs = {"subfolder": subfolder} if subfolder else {}
            return load(repo_id, local_files_only=local_only, **kwargs)
        except Exception as err:
            error = err
    raise LookupError(f"{repo_id} ({type(error).__name__})")
