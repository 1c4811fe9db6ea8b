"""Where models come from: the hub cache (offline), older diffusers folders, --vae, --tokenizer,
and how the SD version and prediction type are worked out."""

import shutil

import pytest
from helpers import run_cli

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _cache_repo(cache, repo_id: str, folder) -> None:
    """Lay `folder` out as the hub cache does for a downloaded `repo_id`."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)


def _same_weights(a, b) -> bool:
    import torch

    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())) \
        and a.state_dict().keys() == b.state_dict().keys()


def test_hub_id_loads_from_the_local_cache_offline(tiny_model, tmp_path):
    cache = tmp_path / "hub"
    _cache_repo(cache, "someone/tiny-sd2", tiny_model("tiny-v2-v"))
    result = run_cli("convert", "someone/tiny-sd2", tmp_path / "out.safetensors",
                     env={**OFFLINE, "HF_HUB_CACHE": str(cache)}, check=True)
    assert "2.x v-prediction" in result.stdout
    assert (tmp_path / "out.safetensors").is_file() and (tmp_path / "out.yaml").is_file()


@pytest.mark.parametrize("name, repo, subfolder", [
    ("tiny-v1", "openai/clip-vit-large-patch14", None),
    ("tiny-v2", "stabilityai/stable-diffusion-2", "tokenizer"),
])
def test_single_file_takes_the_sd_tokenizer_from_the_hub_cache(tiny_model, tiny_single, tmp_path,
                                                               monkeypatch, name, repo, subfolder):
    from trainer.models import load_model

    cache = tmp_path / "hub"
    tokenizer_files = tiny_model(name) / "tokenizer"
    if subfolder:
        staging = tmp_path / "repo"
        shutil.copytree(tokenizer_files, staging / subfolder)
        tokenizer_files = staging
    _cache_repo(cache, repo, tokenizer_files)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    bundle = load_model(str(tiny_single(name)))
    assert len(bundle.tokenizer) == bundle.text_encoder.config.vocab_size
    assert bundle.tokenizer.pad_token == ("!" if bundle.v2 else "<|endoftext|>")


def test_diffusers_folder_written_by_transformers_4_loads(tiny_model, tmp_path):
    """Older text encoders keep their weights under `text_model.`; both spellings load."""
    from safetensors.torch import load_file, save_file

    from trainer.models import load_model

    folder = tmp_path / "old"
    shutil.copytree(tiny_model("tiny-v1"), folder)
    weights = folder / "text_encoder" / "model.safetensors"
    state = load_file(weights)
    assert not any(k.startswith("text_model.") for k in state)
    save_file({"text_model." + k: v for k, v in state.items()}, weights, metadata={"format": "pt"})
    old = load_model(str(folder))
    new = load_model(str(tiny_model("tiny-v1")))
    assert _same_weights(old.text_encoder, new.text_encoder)


def test_tokenizer_flag_accepts_a_tokenizer_folder(tiny_model, tiny_single):
    from trainer.models import load_model

    bundle = load_model(str(tiny_single("tiny-v2")), tokenizer=str(tiny_model("tiny-v2") / "tokenizer"))
    assert bundle.tokenizer.tokenize("sks") == ["sks</w>"]


# ---------------------------------------------------------------- --vae


def _other_vae(tiny_model, tmp_path):
    """A VAE with different weights (another seed) in a diffusers model folder."""
    from trainer.models import factory

    return factory.build_diffusers("tiny-v1", tmp_path / "other", seed=5)


def _vae_forms(tmp_path, other_folder):
    """The same VAE as diffusers folder, diffusers file, LDM VAE-only file, whole checkpoint."""
    from safetensors.torch import load_file, save_file

    from trainer.models import load_model, save_model
    from trainer.models.ldm_export import vae_to_ldm

    diffusers_file = other_folder / "vae" / "diffusion_pytorch_model.safetensors"
    ldm_only = tmp_path / "vae-ft.safetensors"
    save_file({k.removeprefix("first_stage_model."): v
               for k, v in vae_to_ldm(load_file(diffusers_file)).items()}, ldm_only)
    whole = save_model(load_model(str(other_folder)), tmp_path / "whole.ckpt")
    return {"diffusers folder": other_folder, "vae folder": other_folder / "vae",
            "diffusers file": diffusers_file, "vae-only file": ldm_only, "whole checkpoint": whole}


def test_vae_flag_replaces_the_vae_from_every_kind_of_source(tiny_model, tiny_single, tmp_path):
    from trainer.models import load_model, save_model

    other = load_model(str(_other_vae(tiny_model, tmp_path)))
    forms = _vae_forms(tmp_path, tmp_path / "other")
    base = str(tiny_single("tiny-v1"))
    for what, spec in forms.items():
        bundle = load_model(base, tokenizer=str(tiny_model("tiny-v1")), vae=str(spec))
        assert _same_weights(bundle.vae, other.vae), what
        assert any("VAE replaced" in note for note in bundle.notes)
    # baked into the saved model
    saved = save_model(bundle, tmp_path / "baked.safetensors")
    again = load_model(str(saved), tokenizer=str(tiny_model("tiny-v1")))
    assert _same_weights(again.vae, other.vae)
    assert not _same_weights(again.vae, load_model(base, tokenizer=str(tiny_model("tiny-v1"))).vae)


def test_vae_flag_through_the_cli(tiny_model, tmp_path):
    other = _other_vae(tiny_model, tmp_path)
    result = run_cli("convert", tiny_model("tiny-v1"), tmp_path / "out.safetensors",
                     "--vae", other / "vae" / "diffusion_pytorch_model.safetensors", env=OFFLINE,
                     check=True)
    assert "VAE replaced" in result.stderr


def test_missing_vae_is_a_clear_error(tiny_model, tmp_path):
    result = run_cli("convert", tiny_model("tiny-v1"), tmp_path / "out.ckpt",
                     "--vae", tmp_path / "nope.safetensors", env=OFFLINE)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "nope.safetensors does not exist" in result.stderr


# ---------------------------------------------------------------- version and prediction type


def test_prediction_type_comes_from_yaml_then_metadata_then_flag(tiny_model, tiny_single, tmp_path):
    from trainer.models import load_model

    tokenizer = str(tiny_model("tiny-v2-v"))
    model = tmp_path / "m.safetensors"
    shutil.copy(tiny_single("tiny-v2-v"), model)
    shutil.copy(tiny_single("tiny-v2-v").with_suffix(".yaml"), model.with_suffix(".yaml"))
    assert load_model(str(model), tokenizer=tokenizer).v_parameterization  # the .yaml says "v"
    model.with_suffix(".yaml").unlink()
    bundle = load_model(str(model), tokenizer=tokenizer)  # so does the copy in the metadata
    assert bundle.v_parameterization and bundle.noise_scheduler_config["prediction_type"] == "v_prediction"
    # an SD 2 epsilon file: nothing says v, the flag does
    plain = tiny_single("tiny-v2")
    assert not load_model(str(plain), tokenizer=tokenizer).v_parameterization
    assert load_model(str(plain), tokenizer=tokenizer, v_parameterization=True).v_parameterization


def test_tiny_ckpt_without_its_yaml_is_a_clear_error(tiny_model, tiny_single, tmp_path):
    """Head counts are not in the weights: a model smaller than SD needs its .yaml."""
    model = tmp_path / "lonely.ckpt"
    shutil.copy(tiny_single("tiny-v1", "ckpt"), model)
    result = run_cli("convert", model, tmp_path / "out", "--tokenizer", tiny_model("tiny-v1"),
                     env=OFFLINE)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "head count" in result.stderr and ".yaml" in result.stderr


def test_version_is_detected_and_false_flags_mean_detect(tiny_model, tiny_single):
    from trainer.models import load_model

    for name, v2 in (("tiny-v1", False), ("tiny-v2", True)):
        single = load_model(str(tiny_single(name, "ckpt")), tokenizer=str(tiny_model(name)), v2=False)
        folder = load_model(str(tiny_model(name)), v2=False, v_parameterization=False)
        assert single.v2 is v2 and folder.v2 is v2
        assert (single.source_kind, folder.source_kind) == ("single", "diffusers")
        assert single.resolution == 64  # tiny models: 8x8 latents
