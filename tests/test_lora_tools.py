"""lora-merge, lora-info and lora-resize through the real CLI."""

import json
import re

import pytest

from helpers import run_cli
from lora_helpers import (assert_clean_failure, load_parts, randomize, text_out,
                          token_ids, unet_inputs, unet_out)

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser


@pytest.fixture(scope="module")
def lora_files(tiny_model, tmp_path_factory):
    """Two LoRA files for tiny-v1: rank 8 with LoCon layers, and rank 4."""
    from trainer.networks import create_network

    folder = tmp_path_factory.mktemp("loras")
    unet, text = load_parts(tiny_model("tiny-v1"))
    a = randomize(create_network(unet, text, dim=8, alpha=4, conv_dim=4, conv_alpha=2), seed=1)
    b = randomize(create_network(unet, text, dim=4, alpha=4), seed=2)
    return (a.save(folder / "a.safetensors", metadata={"ss_network_dim": "8"}),
            b.save(folder / "b.safetensors"))


def test_merge_at_weight_one_matches_the_dynamic_lora(tiny_model, lora_files, tmp_path):
    import torch

    from trainer.networks import create_network_from_weights

    a, b = lora_files
    out = tmp_path / "merged"
    result = run_cli("lora-merge", "--base", tiny_model("tiny-v1"), "--lora", str(a),
                     f"{b}:-0.5", "--out", out, check=True)
    assert "merged a.safetensors at 1" in result.stdout and out.is_dir()

    unet, text = load_parts(tiny_model("tiny-v1"))
    inputs, ids = unet_inputs(), token_ids()
    base = unet_out(unet, inputs)
    net_a, _ = create_network_from_weights(unet, text, a)
    net_b, _ = create_network_from_weights(unet, text, b)
    net_b.set_multiplier(-0.5)
    net_a.apply(), net_b.apply()
    dynamic, dynamic_text = unet_out(unet, inputs), text_out(text, ids)
    merged_unet, merged_text = load_parts(out)
    merged = unet_out(merged_unet, inputs)
    assert (dynamic - base).abs().max() > 1e-2
    torch.testing.assert_close(merged, dynamic, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(text_out(merged_text, ids), dynamic_text, rtol=1e-4, atol=1e-5)


def _ranks(tensors) -> dict:
    return {k: v.shape[0] for k, v in tensors.items() if k.endswith(".lora_down.weight")}


def _outputs_with(model_folder, *loras):
    """U-Net and text-encoder outputs of the tiny base with LoRA files applied at weights."""
    from trainer.networks import create_network_from_weights

    unet, text = load_parts(model_folder)
    for path, weight in loras:
        network, _ = create_network_from_weights(unet, text, path)
        network.set_multiplier(weight)
        network.apply()
    return unet_out(unet, unet_inputs()), text_out(text, token_ids())


def test_loras_merge_into_one_lora_exactly_or_by_svd(tiny_model, lora_files, tmp_path):
    import torch

    from trainer.networks.files import read_network_file

    a, b = lora_files
    model = tiny_model("tiny-v1")
    joined = tmp_path / "joined.safetensors"
    result = run_cli("lora-merge", "--lora", f"{a}:0.7", f"{b}:-0.4", "--out", joined, check=True)
    assert "ranks concatenated" in result.stdout
    tensors, meta = read_network_file(joined)
    ranks_a, ranks_b = (_ranks(read_network_file(path)[0]) for path in (a, b))
    assert set(_ranks(tensors)) == set(ranks_a) | set(ranks_b)
    for name, rank in _ranks(tensors).items():  # ranks add up where both files have the layer
        assert rank == ranks_a.get(name, 0) + ranks_b.get(name, 0)
    assert [m["file"] for m in json.loads(meta["ss_merged_from"])] == ["a.safetensors",
                                                                      "b.safetensors"]
    both = _outputs_with(model, (a, 0.7), (b, -0.4))
    merged = _outputs_with(model, (joined, 1.0))
    base = _outputs_with(model)
    assert (both[0] - base[0]).abs().max() > 1e-2
    for got, want in zip(merged, both):  # float32 rounding of another order of operations
        torch.testing.assert_close(got, want, rtol=1e-3, atol=2e-4)

    small = tmp_path / "small.safetensors"
    result = run_cli("lora-merge", "--lora", f"{a}:0.7", f"{b}:-0.4", "--out", small,
                     "--new_rank", 2, check=True)
    assert "SVD to rank 2" in result.stdout
    tensors, meta = read_network_file(small)
    assert {v.shape[0] for k, v in tensors.items() if k.endswith(".lora_down.weight")} == {2}
    assert meta["ss_network_dim"] == "2"
    approx = _outputs_with(model, (small, 1.0))[0]
    assert (approx - both[0]).norm() < 0.9 * (base[0] - both[0]).norm()

    refused = run_cli("lora-merge", "--lora", str(a), "--out", tmp_path / "x.safetensors",
                      "--vae", model / "vae")
    assert_clean_failure(refused, "--vae", "--base")


def test_merge_refuses_a_lora_of_the_other_base_family(tiny_model, lora_files, tmp_path):
    a, _ = lora_files
    out = tmp_path / "merged"
    result = run_cli("lora-merge", "--base", tiny_model("tiny-v2"), "--lora", a, "--out", out)
    assert_clean_failure(result, "a.safetensors is a LoRA for Stable Diffusion 1.x",
                         "base model is Stable Diffusion 2.x")
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("lora-merge", "--base", tiny_model("tiny-v1"), "--lora", a, "--out", out)
    assert_clean_failure(result, "already exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"


def test_info_shows_layers_ranks_and_metadata(lora_files, tmp_path):
    a, _ = lora_files
    text = run_cli("lora-info", a, check=True).stdout
    assert "Stable Diffusion 1.x" in text
    assert "U-Net 277, text encoder 24; 3x3 convolutions 50" in text
    assert "rank 8 alpha 4 (scale 0.5)" in text and "rank 4 alpha 2 (scale 0.5)" in text
    assert "ss_network_dim: 8" in text and "sshs_model_hash" in text

    data = json.loads(run_cli("lora-info", a, "--json", check=True).stdout)
    assert data["base_model"] == "sd_v1" and len(data["layers"]) == 301
    layer = next(l for l in data["layers"]
                 if l["name"] == "lora_unet_down_blocks_0_resnets_0_conv1")
    assert (layer["kind"], layer["rank"], layer["alpha"]) == ("conv3x3", 4, 2.0)

    bogus = tmp_path / "model.safetensors"
    from safetensors.torch import save_file
    import torch

    save_file({"model.diffusion_model.out.2.weight": torch.zeros(1)}, str(bogus))
    assert_clean_failure(run_cli("lora-info", bogus),
                         "model.safetensors is a Stable Diffusion model, not a LoRA")


def _deltas(path):
    from trainer.networks import read_network_file
    from trainer.networks.module import delta_from_factors
    from trainer.networks.files import layer_shapes

    sd, meta = read_network_file(path)
    return {name: delta_from_factors(sd[f"{name}.lora_up.weight"].float(),
                                     sd[f"{name}.lora_down.weight"].float(), alpha / rank)
            for name, (rank, alpha) in layer_shapes(sd).items()}, meta


def test_resize_to_full_rank_reproduces_and_lower_rank_is_the_best_fit(lora_files, tmp_path):
    import torch

    a, _ = lora_files
    original, _ = _deltas(a)
    full = tmp_path / "full.safetensors"
    run_cli("lora-resize", a, "--new_dim", "8", "--out", full, check=True)
    resized, _ = _deltas(full)
    assert resized.keys() == original.keys()
    for name, delta in original.items():
        torch.testing.assert_close(resized[name], delta, rtol=1e-4, atol=1e-6)

    small = tmp_path / "small.safetensors"
    result = run_cli("lora-resize", a, "--new_dim", "2", "--new_conv_dim", "1", "--out", small,
                     "--save_precision", "fp16", check=True)
    assert "resized 301 layers to rank 1-2" in result.stdout
    reduced, meta = _deltas(small)
    assert meta["ss_network_dim"] == "2" and "rank resized from 8 to 2" in meta["ss_training_comment"]
    for name, delta in original.items():
        flat = delta.reshape(delta.shape[0], -1)
        keep = 1 if delta.dim() == 4 and delta.shape[2:] == (3, 3) else 2
        s = torch.linalg.svdvals(flat)
        best_error = s[keep:].pow(2).sum().sqrt()  # Eckart-Young: nothing of rank k does better
        error = (reduced[name].reshape(flat.shape) - flat).norm()
        assert error <= best_error * 1.01 + 2e-3 * flat.norm()  # + fp16 rounding

    assert_clean_failure(run_cli("lora-resize", a, "--new_dim", "2", "--out", small),
                         "small.safetensors already exists")
    assert_clean_failure(run_cli("lora-resize", tmp_path / "missing.safetensors", "--new_dim", "2"),
                         "missing.safetensors does not exist")


@pytest.mark.parametrize("method, param, rank", [("sv_fro", 0.9, 2), ("sv_ratio", 3, 2),
                                                 ("sv_ratio", 5, 3), ("sv_cumulative", 0.85, 3),
                                                 (None, None, 4)])
def test_dynamic_resize_picks_the_rank_from_the_singular_values(method, param, rank):
    import torch

    from trainer.networks.resize import resize_state_dict

    # one layer whose update has singular values 4, 2, 1, 0.5 (at scale alpha/rank = 1)
    q_out, _ = torch.linalg.qr(torch.randn(16, 4, dtype=torch.float64))
    q_in, _ = torch.linalg.qr(torch.randn(12, 4, dtype=torch.float64))
    s = torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    name = "lora_unet_mid_block_attentions_0_proj_out"
    state = {f"{name}.lora_up.weight": (q_out * s).float(),
             f"{name}.lora_down.weight": q_in.T.float().contiguous(),
             f"{name}.alpha": torch.tensor(4.0)}
    resized, report = resize_state_dict(state, 8, None, method, param)
    assert report[0].new_rank == rank
    assert resized[f"{name}.lora_down.weight"].shape == (rank, 12)
    assert float(resized[f"{name}.alpha"]) == rank  # alpha / rank stays 1
    kept = (s[:rank] ** 2).sum().sqrt() / (s ** 2).sum().sqrt()
    assert report[0].fro_retained == pytest.approx(float(kept), rel=1e-5)


# ------------------------------------------------------------------ single-file models
NO_HUB = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def named_flag(error_line: str) -> str:
    """The option a hint tells the user to pass."""
    flags = re.findall(r"pass (--\w+)", error_line)
    assert flags, error_line
    return flags[0]


def test_merge_into_a_single_file_model_takes_the_tokenizer_its_hint_names(
        tiny_model, tiny_single, lora_files, tmp_path):
    from safetensors.torch import load_file

    a, _ = lora_files
    base, out = tiny_single("tiny-v1"), tmp_path / "merged.safetensors"
    env = {**NO_HUB, "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    result = run_cli("lora-merge", "--base", base, "--lora", a, "--out", out, env=env)
    assert_clean_failure(result, "single-file models contain no tokenizer")
    assert not out.exists()
    flag = named_flag(result.stderr)

    result = run_cli("lora-merge", "--base", base, "--lora", a, "--out", out, flag,
                     tiny_model("tiny-v1"), env=env)
    assert result.returncode == 0, result.stderr
    assert "merged a.safetensors at 1" in result.stdout
    merged, original = load_file(str(out)), load_file(str(base))
    assert merged.keys() == original.keys()
    assert any(not merged[k].equal(original[k]) for k in original)  # the LoRA is in the weights


@pytest.mark.parametrize("command", [["convert", "{model}", "{out}/converted"],
                                     ["bench", "--model", "{model}", "--workdir", "{out}",
                                      "--steps", "1", "--warmup", "1", "--batch", "1"]],
                         ids=lambda argv: argv[0])
def test_other_commands_that_load_a_single_file_accept_the_flag_its_hint_names(
        command, tiny_single, tmp_path):
    values = {"model": tiny_single("tiny-v1"), "out": tmp_path}
    argv = [part.format(**values) for part in command]
    result = run_cli(*argv, env={**NO_HUB, "HF_HUB_CACHE": str(tmp_path / "empty-cache")})
    assert_clean_failure(result, "contain no tokenizer")
    options = run_cli(command[0], "--help", check=True).stdout.replace("[", " ").split()
    assert named_flag(result.stderr) in options
