"""LoRA training end to end through the real CLI, on tiny models and images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import make_db_dataset, run_cli
from trainer.runs import read_events

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-data")
    return make_db_dataset(root, repeats=1, images=3, reg_images=3)


def lora_args(model: Path, dataset, out: Path, *extra) -> list[str]:
    train, reg = dataset
    return ["--pretrained_model_name_or_path", str(model), "--train_data_dir", str(train),
            "--reg_data_dir", str(reg), "--output_dir", str(out), "--resolution=64",
            "--train_batch_size=2", "--learning_rate=1e-3", "--network_dim=4",
            "--network_alpha=4", "--seed=3", "--cache_latents", *extra]


def tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_lora_training_changes_samples_and_writes_a_kohya_file(tiny_model, dataset, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of sks dog --s 4 --d 11\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("lora", *lora_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=4",
                                        "--sample_prompts", str(prompts), "--sample_at_first",
                                        "--sample_every_n_steps=4", "--mixed_precision=bf16",
                                        "--training_comment=tiny test"))
    assert result.returncode == 0, result.stderr
    weights = tensors(out / "last.safetensors")
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for k in weights)
    assert any(k.startswith("lora_unet_down_blocks_0_attentions_0") for k in weights)
    up_keys = [k for k in weights if k.endswith("lora_up.weight")]
    assert any(weights[k].abs().sum() > 0 for k in up_keys), "the LoRA did not learn"
    from safetensors import safe_open

    with safe_open(str(out / "last.safetensors"), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_network_dim"] == "4" and meta["ss_base_model_version"] == "sd_v1"
    assert meta["ss_training_comment"] == "tiny test" and meta["ss_steps"] == "4"
    assert meta["ss_num_train_images"] == "3"
    assert json.loads(meta["ss_tag_frequency"])
    import numpy as np
    from PIL import Image

    samples = [e for e in read_events(out / "events.jsonl")[0] if e["kind"] == "sample"]
    assert [s["step"] for s in samples] == [0, 4]
    before, after = (np.asarray(Image.open(out / s["path"]), dtype=np.float32) for s in samples)
    assert np.abs(before - after).mean() > 0.5, "the sample did not change"


def test_unet_only_lora_has_no_text_encoder_keys(tiny_model, dataset, tmp_path):
    out = tmp_path / "out"
    result = run_cli("lora", *lora_args(tiny_model("tiny-v2"), dataset, out, "--max_train_steps=2",
                                        "--network_train_unet_only", "--v2",
                                        "--save_precision=fp16"))
    assert result.returncode == 0, result.stderr
    weights = tensors(out / "last.safetensors")
    assert weights and not any(k.startswith("lora_te") for k in weights)
    assert {str(t.dtype) for t in weights.values()} == {"torch.float16"}


def test_network_weights_continue_from_a_file(tiny_model, dataset, tmp_path):
    first = tmp_path / "first"
    assert run_cli("lora", *lora_args(tiny_model("tiny-v1"), dataset, first,
                                      "--max_train_steps=2")).returncode == 0
    second = tmp_path / "second"
    result = run_cli("lora", *lora_args(tiny_model("tiny-v1"), dataset, second,
                                        "--max_train_steps=1", "--learning_rate=1e-30",
                                        "--network_weights", str(first / "last.safetensors")))
    assert result.returncode == 0, result.stderr
    import torch

    a, b = tensors(first / "last.safetensors"), tensors(second / "last.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_network_weights_with_another_rank_is_a_clear_error(tiny_model, dataset, tmp_path):
    first = tmp_path / "first"
    assert run_cli("lora", *lora_args(tiny_model("tiny-v1"), dataset, first,
                                      "--max_train_steps=1")).returncode == 0
    result = run_cli("lora", *lora_args(tiny_model("tiny-v1"), dataset, tmp_path / "again",
                                        "--max_train_steps=1", "--network_dim=8",
                                        "--network_weights", str(first / "last.safetensors")))
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error and "rank" in error[0] and "Traceback" not in result.stderr


def test_lora_resume_is_exact(tiny_model, dataset, tmp_path):
    common = ["--max_train_steps=5", "--lr_scheduler=linear", "--network_dropout=0.1"]
    whole = tmp_path / "whole"
    assert run_cli("lora", *lora_args(tiny_model("tiny-v1"), dataset, whole, *common)).returncode == 0
    parts = tmp_path / "parts"
    assert run_cli("lora", *lora_args(tiny_model("tiny-v1"), dataset, parts, *common,
                                      "--save_every_n_steps=3", "--save_state")).returncode == 0
    resumed = tmp_path / "resumed"
    result = run_cli("lora", *lora_args(tiny_model("tiny-v1"), dataset, resumed, *common,
                                        "--resume", str(parts / "at-step00000003-state")))
    assert result.returncode == 0, result.stderr
    import torch

    a, b = tensors(whole / "last.safetensors"), tensors(resumed / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Planted:
    """Unpickling this creates `marker`: what a doctored state folder could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("victim", ["custom_checkpoint_0.pkl", "random_states_0.pkl"])
def test_resume_refuses_a_state_folder_with_a_planted_pickle(tiny_model, dataset, tmp_path,
                                                             victim):
    import torch

    run = tmp_path / "run"
    assert run_cli("lora", *lora_args(tiny_model("tiny-v1"), dataset, run, "--max_train_steps=1",
                                      "--save_state_on_train_end")).returncode == 0
    state = run / "last-state"
    marker = tmp_path / "planted-code-ran"
    data = torch.load(state / victim, weights_only=False)  # our own file, just written
    data["extra"] = _Planted(marker)
    torch.save(data, state / victim)
    out = tmp_path / "resumed"
    result = run_cli("lora", *lora_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=2",
                                        "--resume", str(state)))
    assert result.returncode != 0 and not marker.exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and victim in errors[0] and "Traceback" not in result.stderr
    assert not (out / "last.safetensors").exists()
