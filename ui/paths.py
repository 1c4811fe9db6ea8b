"""The one check every handler runs on a path it reads, lists, previews or writes.

A handler is a public API endpoint: whatever the page's widgets would allow, a caller can send
any string. So paths are resolved on the server (symlinks included) and must lie inside the
workspace's roots, below no dot-folder; uploads are accepted from gradio's upload folder only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from trainer.config import OPTIONS, Config, Problem
from trainer.errors import UserError

from .workspace import Workspace, allowed_in

PATH_OPTIONS = [o.name for o in OPTIONS if o.path]
MODEL_OPTIONS = ("pretrained_model_name_or_path", "vae", "tokenizer")
# A Hugging Face repo id ("org/name"), which names no local file.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What the caption editor never writes, whatever caption_extension says.
FORBIDDEN_CAPTION_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".svg",  # images
    ".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle", ".npz", ".npy",  # models
    ".sh", ".bash", ".zsh", ".bat", ".cmd", ".ps1", ".py", ".pyc", ".pyw", ".exe", ".dll",
    ".so", ".js", ".html", ".htm", ".toml", ".json", ".yaml", ".yml", ".cfg", ".ini",
}


def _roots_text(workspace: Workspace) -> str:
    return ", ".join(str(r) for r in workspace.roots)


def inside(workspace: Workspace, value: str | os.PathLike, what: str) -> Path:
    """The resolved path, or UserError when it is outside the allowed folders."""
    text = str(value).strip()
    if not text or "\x00" in text:
        raise UserError(f"{what}: no usable path given", "type or browse to a path")
    path = workspace.resolve(text)
    if not workspace.allowed(path):
        raise UserError(f"{what}: {text} is outside the folders this GUI may use "
                        f"({_roots_text(workspace)}), or is a hidden file",
                        "move it into one of them, or start the GUI with --root <its folder>")
    return path


def upload_dirs() -> list[Path]:
    """Where gradio keeps uploaded files (and files it made for the page)."""
    from gradio.utils import get_cache_folder, get_upload_folder

    return [Path(get_upload_folder()).resolve(), Path(get_cache_folder()).resolve()]


def uploaded(workspace: Workspace, value: str, what: str) -> Path:
    """A file the page uploaded (gradio's upload folder), or one inside the allowed folders."""
    if allowed_in(value, upload_dirs()):
        return Path(value).resolve()
    return inside(workspace, value, what)


def is_local_path(name: str, value: str, workspace: Workspace) -> bool:
    """False for a model given as a hub id that names no local file or folder."""
    if name in MODEL_OPTIONS and HUB_ID.match(value) and not workspace.resolve(value).exists():
        return False
    return True


def config_problems(workspace: Workspace, cfg: Config) -> list[Problem]:
    """One error per path option of a training config that points outside the allowed folders."""
    problems = []
    for name in PATH_OPTIONS:
        value = cfg.get(name)
        if not value or not is_local_path(name, str(value), workspace):
            continue
        try:
            inside(workspace, value, name)
        except UserError as err:
            problems.append(Problem(name, f"{value} is outside the folders this GUI may use "
                                          f"({_roots_text(workspace)}) or hidden; {err.hint}"))
    if cfg.dataset_config and not problems:
        problems += _dataset_config_problems(workspace, cfg.dataset_config, cfg)
    return problems


def _dataset_config_problems(workspace: Workspace, toml: str, cfg: Config) -> list[Problem]:
    """The image folders a dataset_config names are read too: the same rule applies."""
    from trainer.data.dataset_toml import load_dataset_toml

    try:
        _, subsets = load_dataset_toml(str(workspace.resolve(toml)), cfg,
                                       lambda _text: None)
    except Exception:  # unreadable: the config check reports it, and nothing is read
        return []
    return [Problem("dataset_config", f"its image_dir {s.folder} is outside the folders this GUI "
                                      f"may use ({_roots_text(workspace)}) or hidden")
            for s in subsets if not workspace.allowed(s.folder)][:1]


def check_config(workspace: Workspace, cfg: Config) -> None:
    """UserError for the first path of `cfg` outside the allowed folders."""
    problems = config_problems(workspace, cfg)
    if problems:
        raise UserError(str(problems[0]))


def caption_target(workspace: Workspace, image_path: str, extension: str | None) -> Path:
    """Where the caption of a training image goes: a text file beside it, nothing else."""
    image = inside(workspace, image_path, "image")
    suffix = (extension or ".caption").strip().lower()
    if not re.fullmatch(r"\.[a-z0-9_-]{1,16}", suffix) or suffix in FORBIDDEN_CAPTION_SUFFIXES:
        raise UserError(f"caption_extension {extension!r} is not a caption file type",
                        "use .caption or .txt")
    from .dataset_builder import IMAGE_EXTENSIONS

    if image.suffix.lower() not in IMAGE_EXTENSIONS or not image.is_file():
        raise UserError(f"{image_path} is not a training image", "select an image first")
    return inside(workspace, image.with_suffix(suffix), "caption file")
