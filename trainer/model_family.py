"""Which Stable Diffusion family a base model is, read without torch (for the GUI and the dataset
tools): a .safetensors file's JSON header (tensor names and metadata only, never the weights), or
a diffusers folder's model_index.json and config files.

The loader (trainer.models) decides the same from the weights when it loads them; this is the
quick look that lets the page say "Stable Diffusion XL" as soon as a model is picked.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models.family import Family as FamilyData

# Prefixes of the original (LDM/SGM) single-file layout.
XL_TEXT2 = "conditioner.embedders.1.model."  # SDXL's OpenCLIP bigG encoder
XL_ANY = "conditioner.embedders."
SD2_TEXT = "cond_stage_model.model."  # SD 2.x's OpenCLIP encoder
SD1_TEXT = "cond_stage_model.transformer."  # SD 1.x's OpenAI CLIP encoder
# A header is a few hundred KB even for SDXL; anything far larger is not a safetensors header.
MAX_HEADER = 64 * 1024 * 1024


@dataclass(frozen=True)
class Family:
    xl: bool
    v2: bool
    v_parameterization: bool

    @property
    def family(self) -> "FamilyData":
        """The family's entry in the table of what differs between families."""
        from .models.family import SD1, SD2, SD2_V, SDXL

        if self.xl:
            return SDXL
        if self.v2:
            return SD2_V if self.v_parameterization else SD2
        return SD1

    @property
    def default_resolution(self) -> int:
        return self.family.default_resolution

    @property
    def title(self) -> str:  # the same words as ModelBundle.family_title
        if self.xl:
            return "Stable Diffusion XL"
        return "Stable Diffusion " + ("2.x" if self.v2 else "1.x") + (
            " v-prediction" if self.v_parameterization else "")


class NotDetected(Exception):
    """The family cannot be told without loading the model; the message says why."""


def safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file: tensor name -> info, plus "__metadata__"."""
    try:
        with open(path, "rb") as handle:
            size_bytes = handle.read(8)
            if len(size_bytes) != 8:
                raise NotDetected(f"{path.name} is not a safetensors file (too short)")
            (size,) = struct.unpack("<Q", size_bytes)
            if size > MAX_HEADER:
                raise NotDetected(f"{path.name} is not a safetensors file (no valid header)")
            header = json.loads(handle.read(size))
    except OSError as err:
        raise NotDetected(f"{path.name} cannot be read ({type(err).__name__})") from None
    except (ValueError, UnicodeDecodeError):
        raise NotDetected(f"{path.name} is not a safetensors file (no valid header)") from None
    if not isinstance(header, dict):
        raise NotDetected(f"{path.name} is not a safetensors file (no valid header)")
    return header


def _yaml_says_v(path: Path) -> bool | None:
    """A `<name>.yaml` beside a single file (the image generators' convention) overrides."""
    yaml_file = path.with_suffix(".yaml")
    try:
        text = yaml_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return bool(re.search(r"^\s*parameterization:\s*[\"']?v[\"']?\s*$", text, re.M))


def _metadata_says_v(metadata: dict) -> bool:
    if metadata.get("modelspec.prediction_type") in ("v", "v_prediction"):
        return True
    embedded = metadata.get("ldm_config")  # our own files carry their LDM config
    try:
        return json.loads(str(embedded))["model"]["params"].get("parameterization") == "v"
    except (TypeError, ValueError, KeyError, AttributeError):
        return False


def from_single_file(path: Path) -> Family:
    if path.suffix.lower() != ".safetensors":
        raise NotDetected(f"{path.name} is a pickle (.ckpt): its family is read when it loads")
    header = safetensors_header(path)
    keys = [k for k in header if k != "__metadata__"]
    metadata = header.get("__metadata__") or {}
    if any(k.startswith(XL_TEXT2) for k in keys):
        return Family(xl=True, v2=False, v_parameterization=False)
    if any(k.startswith(XL_ANY) for k in keys):
        raise NotDetected(f"{path.name} is an SDXL model of a kind not supported here "
                          "(such as the refiner)")
    if any(k.startswith(SD2_TEXT) for k in keys):
        v2 = True
    elif any(k.startswith(SD1_TEXT) for k in keys):
        v2 = False
    else:
        raise NotDetected(f"{path.name} is not a whole Stable Diffusion model "
                          "(no text encoder in it)")
    declared = _yaml_says_v(path)
    v_param = declared if declared is not None else _metadata_says_v(metadata)
    return Family(xl=False, v2=v2, v_parameterization=v_param)


def _json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def from_diffusers_folder(folder: Path) -> Family:
    index = _json(folder / "model_index.json")
    if not index:
        raise NotDetected(f"folder {folder.name} is not a diffusers model (no model_index.json)")
    if "text_encoder_2" in index:
        return Family(xl=True, v2=False, v_parameterization=False)
    text = _json(folder / "text_encoder" / "config.json")
    unet = _json(folder / "unet" / "config.json")
    v2 = text.get("hidden_act") == "gelu" or unet.get("cross_attention_dim") == 1024
    scheduler = _json(folder / "scheduler" / "scheduler_config.json")
    return Family(xl=False, v2=v2,
                  v_parameterization=scheduler.get("prediction_type") == "v_prediction")


def detect(path: Path) -> Family:
    """The family of a local base model (a file or a diffusers folder); NotDetected says why
    not."""
    if path.is_dir():
        return from_diffusers_folder(path)
    if path.is_file():
        return from_single_file(path)
    raise NotDetected(f"{path} does not exist")
