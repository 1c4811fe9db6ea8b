"""Memory savers of big fine-tunes (SDXL's issue 16), tried on the tiny SD 1.x model:
full_bf16, fused_backward_pass and the float32 VAE that force_upcast asks for under fp16."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import run_cli
from test_train_db import assert_same, base_args, changed, dataset, events, state_dicts  # noqa: F401

pytestmark = pytest.mark.slow  # trains and loads models


# ---------------------------------------------------------------- full_bf16
def test_full_bf16_trains_bf16_weights_and_saves_a_model_that_loads(tiny_model, dataset, tmp_path):
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=2",
                                      "--cache_latents", "--mixed_precision=bf16", "--full_bf16",
                                      "--save_state"))
    assert result.returncode == 0, result.stderr
    from safetensors.torch import load_file

    # the state holds the weights as they were trained: U-Net and text encoder in bf16
    for name in ("model.safetensors", "model_1.safetensors"):
        weights = load_file(str(out / "last-state" / name))
        assert {t.dtype for t in weights.values()} == {torch.bfloat16}, name
    base, last = state_dicts(tiny_model("tiny-v1")), state_dicts(out / "last")
    assert changed(base, last, "unet") and not changed(base, last, "vae")
    assert all(torch.isfinite(t.float()).all() for t in last["unet"].values())


# ---------------------------------------------------------------- fused_backward_pass
FUSED = ["--fused_backward_pass", "--max_grad_norm=0"]


def per_parameter_states(state_folder: Path) -> int:
    saved = torch.load(state_folder / "optimizer.bin", weights_only=True)
    return len(saved.get("per_parameter", []))


def test_fused_backward_pass_gives_the_weights_of_a_normal_step(tiny_model, dataset, tmp_path):
    common = ["--max_train_steps=3", "--cache_latents", "--max_grad_norm=0", "--save_state",
              "--lr_scheduler=linear"]
    plain, fused = tmp_path / "plain", tmp_path / "fused"
    assert run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, plain, *common)).returncode == 0
    result = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, fused, *common,
                                      "--fused_backward_pass"))
    assert result.returncode == 0, result.stderr
    # the fused run really stepped each weight on its own: one optimizer state per weight
    from trainer.models import load_model

    bundle = load_model(str(tiny_model("tiny-v1")))
    trained = [*bundle.unet.parameters(), *bundle.text_encoder.parameters()]
    assert per_parameter_states(fused / "last-state") == len(trained)
    weights = state_dicts(tiny_model("tiny-v1"))
    a, b = state_dicts(plain / "last"), state_dicts(fused / "last")
    for part in ("unet", "text_encoder"):
        for key in a[part]:
            assert torch.allclose(a[part][key], b[part][key], atol=1e-6), f"{part}.{key}"
    assert changed(weights, b, "unet")
    lrs = [[e["lr"] for e in events(out) if e["kind"] == "step"] for out in (plain, fused)]
    assert lrs[0] == lrs[1]  # the schedule drives the fused run's rate as well


def _grad_bytes_probe(params: list[torch.Tensor]):
    """The most bytes of .grad tensors alive at any moment a weight's gradient is complete."""
    peak = {"bytes": 0}

    def look(_param):
        alive = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
        peak["bytes"] = max(peak["bytes"], alive)

    for param in params:  # registered before the optimizer's hooks: sees each gradient whole
        param.register_post_accumulate_grad_hook(look)
    return peak


@pytest.mark.parametrize("fused", [False, True])
def test_fused_backward_pass_never_holds_all_gradients(tiny_model, fused):
    from diffusers import UNet2DConditionModel

    from trainer.train.optim import build_optimizer

    unet = UNet2DConditionModel.from_pretrained(tiny_model("tiny-v1") / "unet").train()
    params = list(unet.parameters())
    peak = _grad_bytes_probe(params)
    optimizer = build_optimizer("AdamW", [{"params": params}], 1e-4, [], fused_backward=fused)
    torch.manual_seed(0)
    latents = torch.randn(2, unet.config.in_channels, 8, 8)
    hidden = torch.randn(2, 77, unet.config.cross_attention_dim)
    before = [p.detach().clone() for p in params]
    unet(latents, torch.tensor([10, 500]), hidden).sample.pow(2).mean().backward()
    optimizer.step()
    all_bytes = sum(p.numel() * p.element_size() for p in params)
    largest = max(p.numel() * p.element_size() for p in params)
    if fused:
        assert peak["bytes"] <= largest < all_bytes / 10
        assert all(p.grad is None for p in params)  # freed at once
    else:
        assert peak["bytes"] == all_bytes
    assert all(not torch.equal(a, p) for a, p in zip(before, params) if p.requires_grad)


def test_fused_backward_pass_run_resumes_bit_identical(tiny_model, dataset, tmp_path):
    common = ["--max_train_steps=5", "--lr_scheduler=cosine", "--lr_warmup_steps=2",
              "--noise_offset=0.05", *FUSED]
    whole = tmp_path / "whole"
    assert run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, whole, *common)).returncode == 0
    parts = tmp_path / "parts"
    first = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, parts, *common,
                                     "--save_every_n_steps=3", "--save_state"))
    assert first.returncode == 0, first.stderr
    assert per_parameter_states(parts / "at-step00000003-state") > 0
    resumed = tmp_path / "resumed"
    second = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, resumed, *common,
                                      "--resume", str(parts / "at-step00000003-state")))
    assert second.returncode == 0, second.stderr
    assert [e["step"] for e in events(resumed) if e["kind"] == "step"] == [4, 5]
    assert_same(state_dicts(whole / "last"), state_dicts(resumed / "last"))


@pytest.mark.parametrize("extra, words", [
    (["--gradient_accumulation_steps=2", "--max_grad_norm=0"], "set gradient_accumulation_steps=1"),
    ([], "set max_grad_norm=0"),
    (["--max_grad_norm=0", "--mixed_precision=fp16"], "use mixed_precision=bf16"),
    (["--max_grad_norm=0", "--num_processes=2"], "set num_processes=1"),
])
def test_fused_backward_pass_refuses_what_it_cannot_do(tiny_model, dataset, tmp_path, extra, words):
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, out,
                                      "--max_train_steps=1", "--fused_backward_pass", *extra))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "fused_backward_pass" in line]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()


# ---------------------------------------------------------------- VAE upcast
def _model_with_force_upcast(source: Path, folder: Path, value: bool) -> Path:
    shutil.copytree(source, folder)
    config_file = folder / "vae" / "config.json"
    config = json.loads(config_file.read_text())
    config["force_upcast"] = value
    config_file.write_text(json.dumps(config))
    return folder


def _losses(out: Path) -> list[float]:
    return [e["loss"] for e in events(out) if e["kind"] == "step"]


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    from trainer.models.xl_factory import build_xl_diffusers

    return build_xl_diffusers("tiny-xl", tmp_path_factory.mktemp("xl") / "tiny-xl")


@pytest.mark.parametrize("family, force_upcast, upcast", [
    ("sdxl", True, True), ("sdxl", False, False),
    ("sd1", True, False),  # SD 1.x VAEs are fine in fp16, whatever diffusers' default config says
])
def test_fp16_keeps_a_force_upcast_sdxl_vae_in_float32(tiny_model, tiny_xl, dataset, tmp_path,
                                                        family, force_upcast, upcast):
    source = tiny_xl if family == "sdxl" else tiny_model("tiny-v1")
    model = _model_with_force_upcast(source, tmp_path / "model", force_upcast)
    runs = {}
    for name, extra in (("fp16", []), ("no_half_vae", ["--no_half_vae"])):
        out = runs[name] = tmp_path / name
        result = run_cli("db", *base_args(model, dataset, out, "--max_train_steps=2",
                                          "--mixed_precision=fp16", "--cache_latents", *extra))
        assert result.returncode == 0, result.stderr
    notes = [e["message"] for e in events(runs["fp16"])
             if e["kind"] == "warning" and "force_upcast" in e["message"]]
    if upcast:  # told once, and trained exactly as with no_half_vae
        assert len(notes) == 1 and "float32" in notes[0]
        assert _losses(runs["fp16"]) == _losses(runs["no_half_vae"])
    else:  # the VAE runs in fp16, as asked
        assert notes == [] and _losses(runs["fp16"]) != _losses(runs["no_half_vae"])
