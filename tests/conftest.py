"""Shared fixtures: tiny Stable Diffusion models (built once per test session) and datasets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """tiny_model("tiny-v1" | "tiny-v2" | "tiny-v2-v") -> path of a diffusers folder."""
    built: dict[str, Path] = {}

    def get(name: str = "tiny-v1") -> Path:
        if name not in built:
            from trainer.models import factory

            built[name] = factory.build_diffusers(name, tmp_path_factory.mktemp(name) / "model")
        return built[name]

    return get


@pytest.fixture(scope="session")
def tiny_single(tiny_model, tmp_path_factory):
    """tiny_single("tiny-v1" | "tiny-v2" | "tiny-v2-v", "safetensors" | "ckpt") -> path of a
    single-file checkpoint (original SD layout, with its .yaml beside it: tiny sizes need one).
    Single files hold no tokenizer: pass tokenizer=str(tiny_model(name)) when loading."""
    built: dict[tuple[str, str], Path] = {}

    def get(name: str = "tiny-v1", fmt: str = "safetensors") -> Path:
        if (name, fmt) not in built:
            from trainer.models import load_model, save_model

            bundle = load_model(str(tiny_model(name)))
            folder = tmp_path_factory.mktemp(f"{name}-{fmt}")
            built[name, fmt] = save_model(bundle, folder / f"{name}.{fmt}")
        return built[name, fmt]

    return get
