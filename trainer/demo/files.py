"""Where the demo's committed files live (paths inside the repository)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
ASSETS = Path(__file__).resolve().parent / "assets"
BASE_MODEL = ASSETS / "demo-base.safetensors"  # + demo-base.yaml beside it
TOKENIZER = ASSETS / "tokenizer"
DATASET = ASSETS / "dataset"
TRAIN_DIR = DATASET / "img"
REG_DIR = DATASET / "reg"
SAMPLE_PROMPTS = ASSETS / "sample_prompts.txt"
PRESETS = {"db": REPO / "presets" / "demo-dreambooth.json",
           "lora": REPO / "presets" / "demo-lora.json"}

def relative(path: Path) -> str:
    """A path inside the repository as written in presets: relative, with forward slashes."""
    return Path(path).resolve().relative_to(REPO).as_posix()
