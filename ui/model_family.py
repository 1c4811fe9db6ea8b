"""The line under the base model that says which family it is, read without torch."""

from __future__ import annotations

from pathlib import Path

from trainer.errors import UserError
from trainer.model_family import Family, NotDetected, detect, from_diffusers_folder

from . import messages, paths
from .workspace import Workspace


def _cached_hub_folder(repo_id: str) -> Path | None:
    """The local hub cache's copy of a pipeline, when its model_index.json is there (the trainer
    reads the same cache); nothing is downloaded."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "model_index.json")
    except Exception:  # a malformed id or an unreadable cache: not detected
        return None
    return Path(found).parent if isinstance(found, str) else None


def family_of(workspace: Workspace, value: str | None) -> Family:
    """The family of the base model the form names; UserError or NotDetected say why not."""
    text = (value or "").strip()
    if not text:
        raise NotDetected("no base model chosen yet")
    if not paths.is_local_path("pretrained_model_name_or_path", text, workspace):
        folder = _cached_hub_folder(text)
        if folder is None:
            raise NotDetected(f"{text} is a hub id that is not in the local cache yet: its "
                              "family is read when it loads")
        return from_diffusers_folder(folder)
    return detect(paths.inside(workspace, text, "pretrained_model_name_or_path"))


def family_html(workspace: Workspace, value: str | None) -> str:
    try:
        family = family_of(workspace, value)
    except UserError as err:
        return messages.note(f"Model family: unknown ({err.message})", "warning")
    except NotDetected as err:
        return messages.note(f"Model family: unknown ({err})", "info")
    return (f'<div class="msg msg-info model-family" data-family="{_slug(family)}">'
            f'Model family: <b>{family.title}</b></div>')


def _slug(family: Family) -> str:
    return "sdxl" if family.xl else ("sd2" if family.v2 else "sd1") + (
        "-v" if family.v_parameterization else "")
