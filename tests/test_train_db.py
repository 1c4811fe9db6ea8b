"""DreamBooth training end to end through the real CLI, on tiny models and images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, make_db_dataset, run_cli, wait_for
from trainer.runs import RunState, read_events

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("db-data")
    train, reg = make_db_dataset(root, repeats=1, images=3, reg_images=3)
    return train, reg


def base_args(model: Path, dataset, out: Path, *extra) -> list[str]:
    train, reg = dataset
    return ["--pretrained_model_name_or_path", str(model), "--train_data_dir", str(train),
            "--reg_data_dir", str(reg), "--output_dir", str(out), "--resolution=64",
            "--train_batch_size=2", "--learning_rate=1e-4", "--seed=7", *extra]


def events(out: Path) -> list[dict]:
    return read_events(out / "events.jsonl")[0]


def state_dicts(folder: Path) -> dict:
    """Every weight of a saved diffusers model, by part."""
    from trainer.models import load_model

    bundle = load_model(str(folder))
    return {part: {k: v.clone() for k, v in getattr(bundle, part).state_dict().items()}
            for part in ("unet", "text_encoder", "vae")}


def assert_same(a: dict, b: dict) -> None:
    import torch

    for part in a:
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"


def changed(a: dict, b: dict, part: str) -> bool:
    import torch

    return any(not torch.equal(a[part][k], b[part][k]) for k in a[part])


def test_first_seed_command_runs_and_saves_a_model_that_loads(tiny_model, dataset, tmp_path):
    out = tmp_path / "out"
    result = run_cli("db", *base_args(
        tiny_model("tiny-v1"), dataset, out, "--prior_loss_weight=1.0", "--max_train_steps=3",
        "--use_8bit_adam", "--xformers", "--mixed_precision=bf16", "--cache_latents",
        "--gradient_checkpointing"))
    assert result.returncode == 0, result.stderr
    assert "xformers needs a CUDA GPU; using PyTorch scaled-dot-product attention" in result.stderr
    kinds = [e["kind"] for e in events(out)]
    assert kinds.index("start") < kinds.index("step") and kinds.count("step") == 3
    assert kinds[-1] == "end" and "caching latents" in {e.get("phase") for e in events(out)}
    assert events(out)[-1]["status"] == "finished"
    saved = state_dicts(out / "last")  # diffusers in -> diffusers out, as the seed guide says
    base = state_dicts(tiny_model("tiny-v1"))
    assert changed(base, saved, "unet") and changed(base, saved, "text_encoder")
    assert not changed(base, saved, "vae")
    assert (out / "config.toml").read_text().count("use_8bit_adam = true") == 1


def test_second_seed_command_with_buckets_augmentation_epochs_and_logs(tiny_model, tmp_path):
    root = tmp_path / "data"
    train, reg = make_db_dataset(root, repeats=2, images=3, reg_images=4, size=(96, 64))
    out = tmp_path / "out"
    args = ["--pretrained_model_name_or_path", str(tiny_model("tiny-v1")), "--train_data_dir",
            str(train), "--reg_data_dir", str(reg), "--output_dir", str(out),
            "--resolution=128,64", "--train_batch_size=4", "--learning_rate=5e-6",
            "--max_train_steps=6", "--use_8bit_adam", "--xformers", "--mixed_precision=bf16",
            "--save_every_n_epochs=1", "--save_state", "--save_precision=bf16",
            "--logging_dir", str(tmp_path / "logs"), "--enable_bucket", "--min_bucket_reso=64",
            "--max_bucket_reso=192", "--color_aug", "--flip_aug", "--gradient_checkpointing",
            "--seed", "42", "--save_model_as=safetensors"]
    result = run_cli("db", *args)
    assert result.returncode == 0, result.stderr
    start = next(e for e in events(out) if e["kind"] == "start")
    assert start["steps_per_epoch"] == 3 and start["total_epochs"] == 2
    assert (out / "epoch-000001.safetensors").is_file()
    assert (out / "epoch-000001-state" / "train_state.json").is_file()
    assert (out / "last.safetensors").is_file() and (out / "last-state").is_dir()
    logs = list((tmp_path / "logs").glob("*/events.out.tfevents.*"))
    assert logs, "no TensorBoard event file in a dated folder"
    from safetensors import safe_open

    with safe_open(str(out / "last.safetensors"), "pt") as handle:
        key = next(k for k in handle.keys() if k.startswith("model.diffusion_model."))
        assert str(handle.get_tensor(key).dtype) == "torch.bfloat16"


def test_text_encoder_trains_only_until_stop_text_encoder_training(tiny_model, dataset, tmp_path):
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=4",
                                      "--stop_text_encoder_training=2", "--save_every_n_steps=2",
                                      "--cache_latents"))
    assert result.returncode == 0, result.stderr
    base = state_dicts(tiny_model("tiny-v1"))
    at_two, last = state_dicts(out / "at-step00000002"), state_dicts(out / "last")
    assert changed(base, at_two, "text_encoder")
    assert_same({"text_encoder": at_two["text_encoder"]}, {"text_encoder": last["text_encoder"]})
    assert changed(at_two, last, "unet")


def test_unet_only_keeps_the_text_encoder_bit_identical(tiny_model, dataset, tmp_path):
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=2",
                                      "--stop_text_encoder_training=0", "--cache_latents"))
    assert result.returncode == 0, result.stderr
    base, last = state_dicts(tiny_model("tiny-v1")), state_dicts(out / "last")
    assert not changed(base, last, "text_encoder") and not changed(base, last, "vae")
    assert changed(base, last, "unet")


def test_interrupted_and_resumed_run_ends_bit_identical(tiny_model, dataset, tmp_path):
    # 3 images + 3 reg images, batch 2: 3 steps per epoch; 7 steps cross two epoch boundaries
    # and the state at step 4 sits in the middle of the second epoch.
    common = ["--max_train_steps=7", "--lr_scheduler=cosine", "--lr_warmup_steps=2",
              "--flip_aug", "--shuffle_caption", "--noise_offset=0.05"]
    whole = tmp_path / "whole"
    assert run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, whole, *common)).returncode == 0
    parts = tmp_path / "parts"
    first = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, parts, *common,
                                     "--save_every_n_steps=4", "--save_state"))
    assert first.returncode == 0, first.stderr
    resumed_out = tmp_path / "resumed"
    # loading ahead on worker threads must not change anything either
    second = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, resumed_out, *common,
                                      "--max_data_loader_n_workers=2",
                                      "--resume", str(parts / "at-step00000004-state")))
    assert second.returncode == 0, second.stderr
    start = next(e for e in events(resumed_out) if e["kind"] == "start")
    assert start["first_step"] == 4
    assert [e["step"] for e in events(resumed_out) if e["kind"] == "step"] == [5, 6, 7]
    assert_same(state_dicts(whole / "last"), state_dicts(resumed_out / "last"))


def test_stop_signal_saves_state_and_model_then_resume_finishes(tiny_model, dataset, tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "trainer", "db",
            *base_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=500",
                       "--cache_latents")]
    process = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any(e["kind"] == "step" and e["step"] >= 2 for e in events(out)), 180,
                 "two training steps")
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=180)[0]
    finally:
        process.kill()
    assert process.returncode == 0, output
    state = RunState(out).refresh()
    assert state.status == "stopped"
    stopped_at = state.step
    assert 2 <= stopped_at < 500
    state_dir = out / f"at-step{stopped_at:08d}-state"
    assert (state_dir / "train_state.json").is_file()
    assert (out / f"at-step{stopped_at:08d}").is_dir()  # the model too
    resumed = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, out,
                                       f"--max_train_steps={stopped_at + 2}", "--cache_latents",
                                       "--resume", str(state_dir)))
    assert resumed.returncode == 0, resumed.stderr
    assert RunState(out).refresh().status == "finished"


def test_stop_request_file_stops_the_run(tiny_model, dataset, tmp_path):
    from trainer.runs import request_stop

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "trainer", "db",
            *base_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=500",
                       "--cache_latents")]
    process = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any(e["kind"] == "step" for e in events(out)), 180, "a training step")
        request_stop(out)
        output = process.communicate(timeout=180)[0]
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert events(out)[-1] == {**events(out)[-1], "kind": "end", "status": "stopped"}


def test_a_stop_requested_while_the_run_starts_is_kept_and_an_old_one_is_not(tiny_model, dataset,
                                                                           tmp_path):
    from trainer.runs import LAUNCH_TIME_ENV, request_stop

    out = tmp_path / "out"
    out.mkdir()
    args = base_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=3")
    # Stop pressed after the launcher started the trainer, before the trainer set up its folder.
    launched = time.time()
    request_stop(out)
    stopped = run_cli("db", *args, env={LAUNCH_TIME_ENV: repr(launched)})
    assert stopped.returncode == 0, stopped.stderr
    assert events(out)[-1] == {**events(out)[-1], "kind": "end", "status": "stopped", "step": 1}

    # The request is now older than the next launch: that run trains to the end.
    finished = run_cli("db", *args)
    assert finished.returncode == 0, finished.stderr
    assert events(out)[-1] == {**events(out)[-1], "kind": "end", "status": "finished", "step": 3}


def test_nan_loss_stops_with_a_hint_and_saves_nothing(tiny_model, dataset, tmp_path):
    import torch
    from diffusers import UNet2DConditionModel

    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model("tiny-v1"), broken)
    unet = UNet2DConditionModel.from_pretrained(str(broken / "unet"))
    with torch.no_grad():
        unet.conv_out.weight[0, 0, 0, 0] = float("nan")
    unet.save_pretrained(str(broken / "unet"))
    out = tmp_path / "out"
    result = run_cli("db", *base_args(broken, dataset, out, "--max_train_steps=5",
                                      "--cache_latents"))
    assert result.returncode == 1
    assert "the loss became nan at step 1" in result.stderr
    assert "bf16" in result.stderr and "Traceback" not in result.stderr
    assert not (out / "last").exists()
    last = events(out)[-1]
    assert last["kind"] == "end" and last["status"] == "failed"


def test_v_parameterization_and_v2_train(tiny_model, dataset, tmp_path):
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_model("tiny-v2-v"), dataset, out, "--v2",
                                      "--v_parameterization", "--max_train_steps=2",
                                      "--cache_latents", "--min_snr_gamma=5",
                                      "--max_token_length=150", "--clip_skip=2"))
    assert result.returncode == 0, result.stderr
    assert (out / "last" / "model_index.json").is_file()
    cfg_text = (out / "config.toml").read_text()
    assert "v_parameterization = true" in cfg_text and "seed = 7" in cfg_text


def test_samples_are_written_with_their_prompt(tiny_model, dataset, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of sks dog --w 64 --h 64 --s 3 --d 5\n"
                       "# a comment\n"
                       "a dog --n blurry --s 2\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=2",
                                      "--cache_latents", "--sample_prompts", str(prompts),
                                      "--sample_every_n_steps=1", "--sample_at_first",
                                      "--sample_sampler=euler_a"))
    assert result.returncode == 0, result.stderr
    samples = [e for e in events(out) if e["kind"] == "sample"]
    assert [s["step"] for s in samples] == [0, 0, 1, 1, 2, 2]
    from PIL import Image

    image = Image.open(out / samples[0]["path"])
    assert image.size == (64, 64)
    assert image.text["parameters"].startswith("a photo of sks dog\nSteps: 3, Sampler: euler_a")
    assert "Seed: 5" in image.text["parameters"]


@pytest.mark.parametrize("precision", [["--mixed_precision=fp16"],
                                       ["--mixed_precision=fp16", "--full_fp16"]])
def test_fp16_with_loss_scaling_trains(tiny_model, dataset, tmp_path, precision):
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=2",
                                      "--cache_latents", "--save_state", *precision))
    assert result.returncode == 0, result.stderr
    base, last = state_dicts(tiny_model("tiny-v1")), state_dicts(out / "last")
    assert changed(base, last, "unet") and not changed(base, last, "vae")
    # the loss scaler is part of the saved state, so a resume continues with the same scale
    assert list((out / "last-state").glob("custom_checkpoint_*"))


def test_full_fp16_adamw_keeps_weights_finite(tiny_model, dataset, tmp_path):
    """torch's AdamW with float16 moments turns small gradients into inf/NaN weights (eps 1e-8
    is 0 in fp16); a full_fp16 run must train on with finite weights."""
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=6",
                                      "--learning_rate=1e-5", "--cache_latents",
                                      "--mixed_precision=fp16", "--full_fp16"))
    assert result.returncode == 0, result.stderr
    import torch

    last = state_dicts(out / "last")
    assert all(torch.isfinite(t.float()).all() for t in last["unet"].values())
