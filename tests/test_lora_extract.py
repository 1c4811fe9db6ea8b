"""`lora-extract`: a LoRA from a DreamBooth run and its base model, in the kohya format."""

from __future__ import annotations

import pytest
from helpers import make_db_dataset, run_cli
from lora_helpers import unet_inputs, unet_out

from trainer.networks.files import read_network_file

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def finetune(tiny_model, tmp_path_factory):
    """(base diffusers folder, a DreamBooth fine-tune of it saved as one .safetensors)."""
    tmp = tmp_path_factory.mktemp("extract")
    img, _ = make_db_dataset(tmp / "data", images=2, reg_images=0)
    base = tiny_model("tiny-v1")
    run_cli("db", "--pretrained_model_name_or_path", base, "--train_data_dir", img,
            "--output_dir", tmp / "run", "--resolution", 64, "--max_train_steps", 6,
            "--learning_rate", "1e-3", "--train_batch_size", 2, "--seed", 3,
            "--save_model_as", "safetensors", env=OFFLINE, check=True)
    return base, tmp / "run" / "last.safetensors"


def test_extract_writes_a_kohya_lora_that_lora_info_reads(finetune, tmp_path):
    base, tuned = finetune
    out = tmp_path / "extracted.safetensors"
    result = run_cli("lora-extract", "--model_org", base, "--model_tuned", tuned,
                     "--tokenizer", base / "tokenizer", "--save_to", out, "--dim", 4,
                     "--conv_dim", 2, env=OFFLINE, check=True)
    assert f"saved {out}" in result.stdout
    tensors, meta = read_network_file(out)
    downs = {k: v for k, v in tensors.items() if k.endswith(".lora_down.weight")}
    assert all(k.startswith("lora_unet_") for k in downs)  # the text encoder was not trained
    ranks = {v.shape[0] for k, v in downs.items() if v.ndim == 4 and v.shape[-1] == 3}
    assert ranks == {2}  # 3x3 convolutions at --conv_dim
    assert {v.shape[0] for v in downs.values() if v.ndim == 2} == {4}
    assert meta["ss_network_dim"] == "4" and "conv_dim" in meta["ss_network_args"]
    info = run_cli("lora-info", out, env=OFFLINE, check=True).stdout
    assert "rank 4 alpha 4" in info and "rank 2 alpha 2" in info
    again = run_cli("lora-extract", "--model_org", base, "--model_tuned", tuned,
                    "--tokenizer", base / "tokenizer", "--save_to", out, env=OFFLINE)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_base_plus_extracted_lora_approaches_the_finetune_as_rank_grows(finetune):
    import torch

    from trainer.models import load_model
    from trainer.networks.create import create_network_from_weights
    from trainer.networks.extract import extract_state_dict
    from trainer.networks.targets import unet_targets

    base_path, tuned_path = finetune
    base = load_model(str(base_path))
    tuned = load_model(str(tuned_path), tokenizer=str(base_path / "tokenizer"))
    inputs = unet_inputs(seed=5)
    target, start = unet_out(tuned.unet, inputs), unet_out(base.unet, inputs)
    assert float((target - start).abs().max()) > 1e-3  # the run did change the model

    errors = []
    for rank in (1, 4, 16, 576):  # 576: every layer at full rank (64 channels × 3×3)
        tensors, _, _ = extract_state_dict(base, tuned, dim=rank, conv_dim=rank,
                                           clamp_quantile=1.0)
        network, report = create_network_from_weights(base.unet, base.text_encoder, tensors)
        assert not report.unexpected and not report.missing
        network.apply()
        errors.append(float((unet_out(base.unet, inputs) - target).norm() / (target - start).norm()))
        network.remove()
    assert errors == sorted(errors, reverse=True) and errors[0] > 2 * errors[-1], errors

    # At full rank every LoRA layer equals the fine-tune's; what is left is what a LoRA cannot
    # hold (biases, norms, the input and time-embedding layers the run also trained).
    reachable = load_model(str(base_path))
    tuned_layers = {t.lora_name: t.module for t in unet_targets(tuned.unet, with_conv=True)}
    with torch.no_grad():
        for layer in network.loras:
            merged = layer.target.weight + layer.delta_weight()
            assert torch.allclose(merged, tuned_layers[layer.lora_name].weight, atol=1e-5)
        for t in unet_targets(reachable.unet, with_conv=True):
            t.module.weight.copy_(tuned_layers[t.lora_name].weight)
    best = float((unet_out(reachable.unet, inputs) - target).norm() / (target - start).norm())
    assert errors[-1] == pytest.approx(best, abs=1e-3)
