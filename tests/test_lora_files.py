"""LoRA files: a real client loads them, they round-trip exactly, carry metadata, fail clearly."""

import json

import pytest

from lora_helpers import (load_lora_weights_without_complaints, load_parts, randomize, text_out,
                          token_ids, unet_inputs, unet_out)
from trainer.config import BY_NAME


@pytest.fixture
def v1_parts(tiny_model):
    return load_parts(tiny_model("tiny-v1"))


@pytest.mark.parametrize("spec, conv_dim", [("tiny-v1", 2), ("tiny-v2", None)])
def test_diffusers_loads_every_layer_and_reproduces_our_network(tiny_model, tmp_path, spec,
                                                                conv_dim):
    import torch
    from diffusers import StableDiffusionPipeline

    from trainer.networks import create_network

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model(spec)))
    net = randomize(create_network(pipe.unet, pipe.text_encoder, dim=4, alpha=2,
                                   conv_dim=conv_dim, conv_alpha=1))
    path = net.save(tmp_path / "lora.safetensors")
    inputs, ids = unet_inputs(), token_ids()
    base, base_text = unet_out(pipe.unet, inputs), text_out(pipe.text_encoder, ids)
    net.apply()
    ours, ours_text = unet_out(pipe.unet, inputs), text_out(pipe.text_encoder, ids)
    net.remove()

    load_lora_weights_without_complaints(pipe, path)

    def wrapped(model):
        return sum(1 for m in model.modules() if getattr(m, "lora_A", None))

    assert wrapped(pipe.unet) == len(net.unet_loras)  # every layer of the file was consumed
    assert wrapped(pipe.text_encoder) == len(net.text_encoder_loras)
    theirs, theirs_text = unet_out(pipe.unet, inputs), text_out(pipe.text_encoder, ids)
    # the same change, to within 0.1% of its size (float rounding of a different op order)
    for mine, client, plain in ((ours, theirs, base), (ours_text, theirs_text, base_text)):
        change = (mine - plain).abs().max()
        assert change > 1e-2
        assert (client - mine).abs().max() < 1e-3 * change


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_save_and_load_round_trip_bit_identically(v1_parts, tmp_path, suffix):
    import torch

    from trainer.networks import create_network, read_network_file

    unet, text = v1_parts
    net = randomize(create_network(unet, text, dim=4, alpha=3, conv_dim=2), seed=1)
    first = net.save(tmp_path / f"a{suffix}")
    loaded, _ = read_network_file(first)
    original = net.state_dict_kohya()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)
    assert loaded["lora_unet_mid_block_attentions_0_proj_in.alpha"].shape == ()

    other = randomize(create_network(unet, text, dim=4, alpha=1, conv_dim=2), seed=2)
    report = other.load_weights(first)
    assert not report.missing and not report.unexpected and report.alpha_changed
    again, _ = read_network_file(other.save(tmp_path / f"b{suffix}"))
    assert all(torch.equal(again[k], original[k]) for k in original)
    inputs = unet_inputs()
    net.apply()
    expected = unet_out(unet, inputs)
    net.remove()
    other.apply()
    torch.testing.assert_close(unet_out(unet, inputs), expected, rtol=0, atol=0)


@pytest.mark.parametrize("precision", BY_NAME["save_precision"].choices)
def test_save_precision_applies_to_every_tensor(v1_parts, tmp_path, precision):
    import torch

    dtype = {"float": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision]

    from trainer.networks import create_network, read_network_file

    net = randomize(create_network(*v1_parts, dim=4, alpha=1))
    loaded, _ = read_network_file(net.save(tmp_path / "l.safetensors", dtype=precision))
    assert {str(v.dtype) for v in loaded.values()} == {f"torch.{dtype}"}
    original = net.state_dict_kohya()
    assert all(torch.equal(loaded[k], original[k].to(getattr(torch, dtype))) for k in loaded)


def _lora_cfg(tmp_path, **values):
    from trainer.config import Config

    base = tmp_path / "base.safetensors"
    base.write_bytes(b"\0" * (2 << 20))  # stands in for a single-file checkpoint
    return Config("lora", {"pretrained_model_name_or_path": str(base), "output_name": "frog",
                           "resolution": "768,512", "seed": 42, "training_comment": "frog test",
                           "network_dim": 4, "network_alpha": 2, **values})


def test_metadata_has_what_generators_read_and_hashes_they_check(v1_parts, tmp_path):
    import hashlib

    from trainer.data.summary import DatasetFacts
    from trainer.networks import build_metadata, create_network, for_save, read_network_file

    cfg = _lora_cfg(tmp_path, conv_dim=2)
    net = randomize(create_network(*v1_parts, dim=4, alpha=2, conv_dim=2))
    facts = DatasetFacts(resolution=(768, 512), num_train_images=15, num_batches_per_epoch=10,
                         dataset_dirs={"5_sls frog": {"n_repeats": 5, "img_count": 3}},
                         tag_frequency={"5_sls frog": {"sls frog": 3, "green": 1}})
    meta = build_metadata(cfg, net, v2=False, v_parameterization=False, num_epochs=3,
                          max_train_steps=30, dataset=facts)
    path = net.save(tmp_path / "frog.safetensors", metadata=for_save(meta, steps=30, epoch=3))
    _, stored = read_network_file(path)
    expected = {"ss_network_module": "networks.lora", "ss_network_dim": "4",
                "ss_network_alpha": "2.0", "ss_v2": "False", "ss_base_model_version": "sd_v1",
                "ss_resolution": "(768, 512)", "ss_seed": "42", "ss_output_name": "frog",
                "ss_training_comment": "frog test", "ss_num_epochs": "3",
                "ss_max_train_steps": "30", "ss_steps": "30", "ss_epoch": "3",
                "ss_learning_rate": "0.0001", "ss_unet_lr": "0.0001",
                "ss_sd_model_name": "base.safetensors",
                "modelspec.architecture": "stable-diffusion-v1/lora",
                "modelspec.resolution": "768x512", "modelspec.title": "frog"}
    assert {k: stored.get(k) for k in expected} == expected
    assert json.loads(stored["ss_network_args"]) == {"conv_dim": "2", "conv_alpha": "1.0"}
    assert json.loads(stored["ss_tag_frequency"]) == {"5_sls frog": {"sls frog": 3, "green": 1}}
    assert json.loads(stored["ss_dataset_dirs"])["5_sls frog"]["n_repeats"] == 5
    base_bytes = (tmp_path / "base.safetensors").read_bytes()
    assert stored["ss_new_sd_model_hash"] == hashlib.sha256(base_bytes).hexdigest()
    assert stored["ss_sd_model_hash"] == hashlib.sha256(base_bytes[0x100000:0x110000]).hexdigest()[:8]
    # AUTOMATIC1111 shows sshs_model_hash: sha256 of everything after the header
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    assert stored["sshs_model_hash"] == hashlib.sha256(data[8 + header:]).hexdigest()
    assert len(stored["sshs_legacy_hash"]) == 8


def test_no_metadata_keeps_only_the_minimum(v1_parts, tmp_path):
    from trainer.data.summary import DatasetFacts
    from trainer.networks import build_metadata, create_network, for_save, read_network_file

    cfg = _lora_cfg(tmp_path, no_metadata=True)
    net = create_network(*v1_parts, dim=4, alpha=2)
    facts = DatasetFacts(resolution=(512, 512), tag_frequency={"1_secret": {"private": 1}})
    meta = build_metadata(cfg, net, v2=True, v_parameterization=True, num_epochs=1,
                          max_train_steps=5, dataset=facts)
    _, stored = read_network_file(net.save(tmp_path / "m.safetensors",
                                           metadata=for_save(meta, steps=5, epoch=1)))
    ss = {k for k in stored if k.startswith("ss_")}
    assert ss == {"ss_v2", "ss_base_model_version", "ss_network_module", "ss_network_dim",
                  "ss_network_alpha"}
    assert stored["ss_base_model_version"] == "sd_v2_v"
    assert not any("secret" in v or "base.safetensors" in v for v in stored.values())
    assert {"sshs_model_hash", "modelspec.architecture"} <= set(stored)


@pytest.mark.slow
def test_saved_file_states_the_dataset_tomls_sizes_once(tiny_model, tmp_path):
    """The dataset's facts (here a dataset TOML's own resolution and buckets, repeats) and the
    options' (flip_aug, steps) each reach the file from one source, and agree everywhere."""
    from safetensors import safe_open

    from helpers import make_concept, run_cli

    make_concept(tmp_path / "frog", 2, captions={0: "sls frog", 1: "sls frog, green"})
    toml = tmp_path / "dataset.toml"
    toml.write_text(f"""[general]
caption_extension = '.caption'
[[datasets]]
resolution = 64
enable_bucket = true
min_bucket_reso = 64
max_bucket_reso = 128
  [[datasets.subsets]]
  image_dir = '{(tmp_path / "frog").as_posix()}'
  num_repeats = 2
""", encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("lora", "--pretrained_model_name_or_path", str(tiny_model("tiny-v1")),
                     "--dataset_config", str(toml), "--output_dir", str(out), "--network_dim=4",
                     "--max_train_steps=1", "--flip_aug", "--train_batch_size=2")
    assert result.returncode == 0, result.stderr
    with safe_open(str(out / "last.safetensors"), "pt") as handle:
        meta = handle.metadata()
    expected = {"ss_resolution": "(64, 64)", "modelspec.resolution": "64x64",
                "ss_enable_bucket": "True", "ss_min_bucket_reso": "64",
                "ss_max_bucket_reso": "128", "ss_bucket_no_upscale": "False",
                "ss_num_train_images": "4", "ss_num_reg_images": "0",
                "ss_num_batches_per_epoch": "2", "ss_max_train_steps": "1",
                "ss_flip_aug": "True", "ss_color_aug": "False", "ss_keep_tokens": "0"}
    assert {k: meta.get(k) for k in expected} == expected
    assert json.loads(meta["ss_dataset_dirs"]) == {"frog": {"n_repeats": 2, "img_count": 2}}
    assert json.loads(meta["ss_tag_frequency"])["frog"]["green"] == 1


def test_network_weights_resume_and_dim_from_weights(v1_parts, tmp_path):
    import torch

    from trainer.networks import create_network, create_network_for_config

    unet, text = v1_parts
    trained = randomize(create_network(unet, text, dim=8, alpha=4, conv_dim=2, conv_alpha=2))
    path = trained.save(tmp_path / "trained.safetensors")
    expected = trained.state_dict_kohya()

    resumed = create_network_for_config(
        _lora_cfg(tmp_path, network_dim=8, network_alpha=4, conv_dim=2, conv_alpha=2,
                  network_weights=str(path)), unet, text)
    assert resumed.notes == []
    got = resumed.network.state_dict_kohya()
    assert all(torch.equal(got[k], v) for k, v in expected.items())

    shaped = create_network_for_config(
        _lora_cfg(tmp_path, network_dim=4, dim_from_weights=True, network_train_unet_only=True,
                  network_weights=str(path)), unet, text)
    net = shaped.network
    assert (net.settings.dim, net.settings.alpha, net.settings.conv_dim) == (8, 4.0, 2)
    assert not net.text_encoder_loras and any("not trained now" in n for n in shaped.notes)
    got = net.state_dict_kohya()
    assert all(torch.equal(got[k], expected[k]) for k in got)


def test_loading_errors_name_the_problem(tiny_model, v1_parts, tmp_path):
    from safetensors.torch import save_file

    from trainer.errors import UserError
    from trainer.networks import create_network

    unet, text = v1_parts
    file8 = create_network(unet, text, dim=8, alpha=1, conv_dim=2).save(tmp_path / "r8.safetensors")
    with pytest.raises(UserError, match=r"r8.safetensors has rank 8 .*network_dim is 4.*"
                                        r"network_dim=8 or use dim_from_weights"):
        create_network(unet, text, dim=4, alpha=1, conv_dim=2).load_weights(file8)
    with pytest.raises(UserError, match=r"rank 2 .*conv_dim is 3"):
        create_network(unet, text, dim=8, alpha=1, conv_dim=3).load_weights(file8)
    with pytest.raises(UserError, match="do(es)? not match the network"):
        create_network(unet, text, dim=8, alpha=1, conv_dim=2,
                       train_text_encoder=False).load_weights(file8, strict=True)

    unet2, text2 = load_parts(tiny_model("tiny-v2"))
    with pytest.raises(UserError, match=r"r8.safetensors is a LoRA for Stable Diffusion 1.x, "
                                        r"but the base model is Stable Diffusion 2.x"):
        create_network(unet2, text2, dim=8, alpha=1).load_weights(file8, strict=False)

    model_file = tiny_model("tiny-v1") / "unet" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(UserError, match="is a Stable Diffusion model, not a LoRA"):
        create_network(unet, text, dim=4, alpha=1).load_weights(model_file)
    garbage = tmp_path / "notes.safetensors"
    garbage.write_text("just some text, not tensors")
    with pytest.raises(UserError, match="notes.safetensors is not a readable .safetensors file"):
        create_network(unet, text, dim=4, alpha=1).load_weights(garbage)
    import torch

    sdxl = tmp_path / "xl.safetensors"
    save_file({"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight":
               torch.zeros(4, 768)}, str(sdxl))
    with pytest.raises(UserError, match="is a LoRA for SDXL"):
        create_network(unet, text, dim=4, alpha=1).load_weights(sdxl)
