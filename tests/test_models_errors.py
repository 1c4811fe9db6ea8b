"""Bad inputs to `python -m trainer convert`: one clear line naming the problem, exit 2, no
traceback, and nothing on disk damaged."""

import os
import shutil

import pytest
from helpers import run_cli

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _fails_with(result, *fragments):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_missing_file(tmp_path):
    result = run_cli("convert", tmp_path / "nope.safetensors", tmp_path / "out.ckpt", env=OFFLINE)
    _fails_with(result, "nope.safetensors", "does not exist")
    assert not (tmp_path / "out.ckpt").exists()


def test_folder_without_model_index(tmp_path):
    (tmp_path / "photos").mkdir()
    result = run_cli("convert", tmp_path / "photos", tmp_path / "out.ckpt", env=OFFLINE)
    _fails_with(result, "photos", "model_index.json")


def test_truncated_safetensors(tiny_single, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(tiny_single("tiny-v1").read_bytes()[:100_000])
    result = run_cli("convert", broken, tmp_path / "out.ckpt", env=OFFLINE)
    _fails_with(result, "broken.safetensors", "truncated or corrupt")


def test_truncated_ckpt(tiny_single, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(tiny_single("tiny-v1", "ckpt").read_bytes()[:100_000])
    result = run_cli("convert", broken, tmp_path / "out.safetensors", env=OFFLINE)
    _fails_with(result, "broken.ckpt", "truncated or corrupt")


def test_vae_file_given_as_the_model(tiny_model, tmp_path):
    vae_file = tiny_model("tiny-v1") / "vae" / "diffusion_pytorch_model.safetensors"
    result = run_cli("convert", vae_file, tmp_path / "out.ckpt", env=OFFLINE)
    _fails_with(result, "is a VAE", "--vae")


def test_v1_file_with_v2_flag(tiny_single, tiny_model, tmp_path):
    result = run_cli("convert", tiny_single("tiny-v1"), tmp_path / "out.ckpt", "--v2",
                     "--tokenizer", tiny_model("tiny-v1"), env=OFFLINE)
    _fails_with(result, "1.x", "--v2")
    assert not (tmp_path / "out.ckpt").exists()


def test_v1_diffusers_folder_with_v2_flag(tiny_model, tmp_path):
    result = run_cli("convert", tiny_model("tiny-v1"), tmp_path / "out.ckpt", "--v2", env=OFFLINE)
    _fails_with(result, "1.x", "--v2")


class _RunsCode:
    """Unpickling this runs a shell command: what a malicious .ckpt does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tiny_single, tmp_path):
    import torch

    marker = tmp_path / "code-was-run"
    state = torch.load(tiny_single("tiny-v1", "ckpt"), weights_only=True)
    state["callback"] = _RunsCode(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(state, evil)
    result = run_cli("convert", evil, tmp_path / "out.safetensors", env=OFFLINE)
    _fails_with(result, "evil.ckpt", "refusing")
    assert not marker.exists()


def test_sd1_ckpt_with_training_records_loads(tiny_single, tiny_model, tmp_path):
    """Real SD 1.x .ckpt files also pickle a Lightning callback record and numpy scalars."""
    import numpy as np
    import torch

    from trainer.models.checkpoint_io import read_state_dict

    record = type("ModelCheckpoint", (), {})
    record.__module__ = "pytorch_lightning.callbacks.model_checkpoint"
    import sys
    import types

    for name in ("pytorch_lightning", "pytorch_lightning.callbacks",
                 "pytorch_lightning.callbacks.model_checkpoint"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["pytorch_lightning.callbacks.model_checkpoint"].ModelCheckpoint = record
    try:
        state = torch.load(tiny_single("tiny-v1", "ckpt"), weights_only=True)
        callback = record()
        callback.best_model_score = np.float64(0.5)
        state.update(global_step=np.int64(470000), callbacks={record: callback})
        path = tmp_path / "sd-v1-style.ckpt"
        torch.save(state, path)
    finally:
        for name in ("pytorch_lightning.callbacks.model_checkpoint",
                     "pytorch_lightning.callbacks", "pytorch_lightning"):
            sys.modules.pop(name, None)
    assert len(read_state_dict(path)) == len(state["state_dict"])


def test_hub_id_offline_without_cache(tmp_path):
    env = {**OFFLINE, "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    result = run_cli("convert", "stabilityai/stable-diffusion-2", tmp_path / "out.ckpt", env=env)
    _fails_with(result, "stabilityai/stable-diffusion-2", "local hub cache", "offline")


def test_single_file_offline_without_tokenizer(tiny_single, tmp_path):
    env = {**OFFLINE, "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    result = run_cli("convert", tiny_single("tiny-v2"), tmp_path / "out", env=env)
    _fails_with(result, "stabilityai/stable-diffusion-2", "--tokenizer")


def test_tokenizer_that_does_not_fit(tiny_single, tmp_path):
    from transformers import CLIPTokenizer

    from trainer.models import factory

    other = tmp_path / "other-tokenizer"  # more tokens than the model's embedding has rows
    words = factory.TINY_WORDS + tuple(f"word{n}" for n in range(100))
    factory.write_tokenizer(other, words, v2=False)
    assert len(CLIPTokenizer.from_pretrained(str(other))) > 700
    result = run_cli("convert", tiny_single("tiny-v1"), tmp_path / "out", "--tokenizer", other,
                     env=OFFLINE)
    _fails_with(result, "tokenizer", "do not belong together")


def test_yaml_that_contradicts_the_weights(tiny_single, tiny_model, tmp_path):
    model = tmp_path / "model.safetensors"
    shutil.copy(tiny_single("tiny-v2"), model)
    shutil.copy(tiny_single("tiny-v1").with_suffix(".yaml"), model.with_suffix(".yaml"))
    result = run_cli("convert", model, tmp_path / "out", "--tokenizer", tiny_model("tiny-v2"),
                     env=OFFLINE)
    _fails_with(result, "model.yaml", "1.x", "2.x")


def test_existing_output_is_not_overwritten(tiny_single, tiny_model, tmp_path):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"precious")
    result = run_cli("convert", tiny_single("tiny-v1"), out, "--tokenizer", tiny_model("tiny-v1"),
                     env=OFFLINE)
    _fails_with(result, "already exists", "--overwrite")
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("dst, flag", [("out.ckpt", "safetensors"), ("out.safetensors", "ckpt")])
def test_name_and_format_disagree(tiny_single, tmp_path, dst, flag):
    result = run_cli("convert", tiny_single("tiny-v1"), tmp_path / dst, "--save_model_as", flag,
                     env=OFFLINE)
    _fails_with(result, "--save_model_as")


def test_models_package_and_convert_help_import_nothing_heavy(tmp_path):
    import subprocess
    import sys

    from helpers import REPO

    code = ("import sys; import trainer.models, trainer.models.loading, trainer.models.saving, "
            "trainer.models.convert; print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout.split())
    assert not loaded & {"torch", "diffusers", "transformers", "numpy"}
    result = run_cli("convert", "--help")
    assert result.returncode == 0 and "--save_model_as" in result.stdout
    assert "convert" in run_cli("--help").stdout


def test_checkpoint_with_missing_parts(tiny_single, tiny_model, tmp_path):
    """A damaged single file (a U-Net level missing) is named, not a KeyError traceback."""
    from safetensors.torch import load_file, save_file

    state = load_file(tiny_single("tiny-v1"))
    broken = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in state.items() if ".input_blocks.4." not in k}, broken)
    result = run_cli("convert", broken, tmp_path / "out", "--tokenizer", tiny_model("tiny-v1"),
                     env=OFFLINE)
    _fails_with(result, "partial.safetensors")
