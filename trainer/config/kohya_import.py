"""Read a config saved by the kohya_ss GUI (its JSON field names) into this trainer's options.

kohya_ss stores most options under the sd-scripts flag names we use too; the rest are renamed,
given in percent of the steps, or use 0 / "" for "unset". Anything without an equivalent here is
listed in the notes instead of being dropped silently. Pure standard library.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from .options import BY_NAME
from ..errors import UserError
from .values import coerce

# kohya_ss field name -> our option name.
RENAMES = {
    "max_resolution": "resolution",
    "optimizer": "optimizer_type",
    "lora_network_weights": "network_weights",
    "learning_rate_te": "text_encoder_lr",
}

# Options where kohya_ss writes 0 to mean "not set".
ZERO_IS_UNSET = {
    "seed", "min_snr_gamma", "text_encoder_lr", "unet_lr", "max_train_steps", "max_train_epochs",
    "save_every_n_epochs", "save_every_n_steps", "save_last_n_epochs", "save_last_n_steps",
    "save_last_n_epochs_state", "save_last_n_steps_state", "sample_every_n_steps",
    "sample_every_n_epochs", "network_dropout", "vae_batch_size", "clip_skip",
    "num_cpu_threads_per_process", "conv_dim", "conv_alpha",
}

# GUI-only fields that carry no training setting.
GUI_ONLY = {
    "LoRA_type", "LyCORIS_preset", "model_list", "save_as_bool", "sdxl", "sd3_checkbox",
    "flux1_checkbox", "multi_gpu", "num_machines", "main_process_port", "use_wandb",
    "wandb_api_key", "wandb_run_name", "log_tracker_name", "log_tracker_config", "log_with",
    "huggingface_token", "huggingface_repo_id", "huggingface_repo_type",
    "huggingface_repo_visibility", "huggingface_path_in_repo", "async_upload", "dynamo_backend",
    "dynamo_mode", "dynamo_use_dynamic", "dynamo_use_fullgraph", "extra_accelerate_launch_args",
    "persistent_data_loader_workers", "epoch", "lr_warmup", "additional_parameters", "xformers",
    "train_dir", "image_folder",
}

LOCON_TYPES = {"LoCon", "Kohya LoCon"}
KOHYA_MARKERS = {"LoRA_type", "max_resolution", "lr_warmup", "model_list", "optimizer",
                 "additional_parameters", "epoch", "save_as_bool", "sdxl"}


@dataclass
class KohyaImport:
    mode: str
    values: dict[str, Any] = field(default_factory=dict)  # typed option values
    notes: list[str] = field(default_factory=list)  # what was converted or could not be


def looks_like_kohya(data: Mapping[str, Any]) -> bool:
    """A kohya_ss GUI file has several of its own field names and no config_version of ours."""
    return "config_version" not in data and len(KOHYA_MARKERS & set(data)) >= 2


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _meaningful(value: Any) -> bool:
    return not (_blank(value) or value in (0, False, "0", "none", "None", "Original") or value == [])


def _number(value: Any) -> float | None:
    try:
        return None if _blank(value) else float(value)
    except (TypeError, ValueError):
        return None


class _Importer:
    def __init__(self, data: Mapping[str, Any], mode: str):
        self.data = data
        self.result = KohyaImport(mode)
        self.handled: set[str] = set()

    def set(self, name: str, raw: Any, source: str) -> None:
        option = BY_NAME[name]
        if not option.used_in(self.result.mode):
            if _meaningful(raw):
                self.result.notes.append(f"{source}: not used by {self.result.mode} training; skipped")
            return
        if _blank(raw):
            value = None if option.nullable else option.default_for(self.result.mode)
        elif name in ZERO_IS_UNSET and _number(raw) == 0:
            value = None if option.nullable else option.default_for(self.result.mode)
        elif name == "clip_skip" and _number(raw) == 1:
            value = None  # the last layer: the default
        else:
            try:
                value = coerce(option, raw)
            except UserError as err:
                self.result.notes.append(f"{source}: {err.message}; skipped")
                return
        self.result.values[name] = value

    def run(self) -> KohyaImport:
        for special in (self._model_family, self._lora_type, self._attention, self._steps,
                        self._percent_options, self._sample_prompts, self._additional):
            special()
        ignored = []
        for key, raw in self.data.items():
            if key in self.handled:
                continue
            name = RENAMES.get(key, key)
            if name in BY_NAME:
                self.set(name, raw, key)
            elif key not in GUI_ONLY and _meaningful(raw):
                ignored.append(key)
        if ignored:
            self.result.notes.append("no equivalent here, ignored: " + ", ".join(sorted(ignored)))
        return self.result

    # -- fields that need more than a rename
    def _model_family(self) -> None:
        # SDXL is told from the base model's weights here, so kohya's "sdxl" checkbox needs no
        # equivalent; the families this trainer does not train are worth a note.
        for key, family in (("sd3_checkbox", "SD3"), ("flux1_checkbox", "Flux")):
            if self.data.get(key) is True:
                self.result.notes.append(f"this is an {family} config; this trainer trains Stable "
                                         "Diffusion 1.x/2.x/XL, so check the base model and "
                                         "resolution")

    def _lora_type(self) -> None:
        lora_type = self.data.get("LoRA_type")
        if self.result.mode != "lora" or lora_type is None:
            return
        if lora_type not in LOCON_TYPES:
            self.handled |= {"conv_dim", "conv_alpha"}
            if lora_type != "Standard":
                self.result.notes.append(f"LoRA_type {lora_type!r} is not supported; imported as "
                                         "a standard LoRA")

    def _attention(self) -> None:
        value = self.data.get("xformers")
        self.handled.add("xformers")
        if value is True or value == "xformers":
            self.result.values["xformers"] = True
        elif value == "sdpa":
            self.result.values["sdpa"] = True

    def _steps(self) -> None:
        """kohya_ss derives steps from "epoch" when max_train_steps is 0 or empty."""
        epochs = _number(self.data.get("epoch"))
        steps = _number(self.data.get("max_train_steps"))
        given_epochs = _number(self.data.get("max_train_epochs"))
        if epochs and not steps and not given_epochs:
            self.set("max_train_epochs", int(epochs), "epoch")
            self.handled.add("max_train_epochs")

    def _percent_options(self) -> None:
        steps = _number(self.data.get("max_train_steps"))
        pairs = (("lr_warmup", "lr_warmup_steps", round),
                 ("stop_text_encoder_training", "stop_text_encoder_training", math.ceil))
        for key, name, rounding in pairs:
            percent = _number(self.data.get(key))
            self.handled.add(key)
            if key == "lr_warmup" and (_number(self.data.get("lr_warmup_steps")) or 0) > 0:
                continue  # newer kohya_ss files give the steps directly
            if not percent:
                continue
            if not BY_NAME[name].used_in(self.result.mode):
                continue
            if steps:
                self.set(name, int(rounding(steps * percent / 100)), key)
                self.result.notes.append(f"{key}: {percent:g}% of {int(steps)} steps -> "
                                         f"{name}={self.result.values.get(name)}")
            else:
                self.result.notes.append(f"{key} is {percent:g}% of the steps, but the file sets no "
                                         f"max_train_steps; set {name} yourself")

    def _sample_prompts(self) -> None:
        text = self.data.get("sample_prompts")
        self.handled.add("sample_prompts")
        if _blank(text):
            return
        text = str(text)
        if "\n" not in text and text.strip().lower().endswith(".txt"):
            self.set("sample_prompts", text.strip(), "sample_prompts")
        else:
            self.result.notes.append("sample_prompts holds prompt text in kohya_ss; save it in a "
                                     ".txt file (one prompt per line) and set sample_prompts to it")

    def _additional(self) -> None:
        """"--flag=value" / "--flag value" / "--flag" words that name our options are applied."""
        text = self.data.get("additional_parameters")
        if _blank(text):
            return
        try:
            words = shlex.split(text)
        except ValueError:
            self.result.notes.append(f"additional_parameters: cannot read {text!r}; ignored")
            return
        unknown = []
        index = 0
        while index < len(words):
            word = words[index]
            index += 1
            name, _, value = word.lstrip("-").partition("=")
            option = BY_NAME.get(name) if word.startswith("--") else None
            if option is None:
                unknown.append(word)
                continue
            if not value and option.type is not bool and index < len(words) \
                    and not words[index].startswith("--"):
                value, index = words[index], index + 1
            self.set(name, value or ("true" if option.type is bool else ""), f"additional_parameters {word}")
        if unknown:
            self.result.notes.append("additional_parameters not understood, ignored: " + " ".join(unknown))


def detect_mode(data: Mapping[str, Any]) -> str:
    return "lora" if "LoRA_type" in data or "network_dim" in data else "db"


def import_kohya(data: Mapping[str, Any], mode: str | None = None) -> KohyaImport:
    """Option values (typed) and notes for a kohya_ss GUI config dict."""
    return _Importer(data, mode or detect_mode(data)).run()

