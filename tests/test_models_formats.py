"""Every save format x precision x SD version loads back, with the weights at that precision."""

import pytest

from trainer.config import BY_NAME

VERSIONS = ["tiny-v1", "tiny-v2", "tiny-v2-v"]
# Every choice the option table offers: a new format or precision is tested as soon as it exists.
FORMATS = list(BY_NAME["save_model_as"].choices)
TORCH_DTYPES = {"float": "float32", "fp16": "float16", "bf16": "bfloat16"}
PRECISIONS = {name: TORCH_DTYPES[name] for name in BY_NAME["save_precision"].choices}


@pytest.fixture(scope="module")
def loaded(tiny_model):
    from trainer.models import load_model

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_model(str(tiny_model(name)))
        return cache[name]

    return get


def _stored_dtypes(path, fmt) -> set:
    """The dtypes of the floating-point tensors as stored on disk."""
    import torch
    from safetensors.torch import load_file

    if fmt == "safetensors":
        tensors = load_file(path).values()
    elif fmt == "ckpt":
        tensors = torch.load(path, weights_only=True)["state_dict"].values()
    elif fmt == "diffusers":
        tensors = torch.load(path / "unet" / "diffusion_pytorch_model.bin", weights_only=True).values()
    else:
        tensors = load_file(path / "unet" / "diffusion_pytorch_model.safetensors").values()
    return {str(t.dtype).removeprefix("torch.") for t in tensors if t.is_floating_point()}


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", VERSIONS)
def test_format_and_precision_load_back(loaded, tiny_model, tmp_path, name, fmt, precision):
    import torch

    from trainer.models import load_model, save_model

    bundle = loaded(name)
    target = tmp_path / (f"model.{fmt}" if fmt in ("safetensors", "ckpt") else "model")
    written = save_model(bundle, target, save_model_as=fmt, save_precision=precision)
    assert written == target and written.exists()
    assert _stored_dtypes(written, fmt) == {PRECISIONS[precision]}

    back = load_model(str(written), tokenizer=str(tiny_model(name)))
    assert (back.v2, back.v_parameterization) == (bundle.v2, bundle.v_parameterization)
    assert back.default_save_format == fmt
    dtype = getattr(torch, PRECISIONS[precision])
    for part in ("unet", "vae", "text_encoder"):
        want = getattr(bundle, part).state_dict()
        got = getattr(back, part).state_dict()
        assert got.keys() == want.keys()
        assert {v.dtype for v in got.values() if v.is_floating_point()} == {torch.float32}
        changed = [k for k in want if not torch.equal(got[k], want[k].to(dtype).float())]
        assert changed == [], f"{part}: {changed[:3]}"


def test_default_format_is_the_inputs_kind(loaded, tiny_single, tiny_model, tmp_path):
    from trainer.models import load_model, save_model

    folder = save_model(loaded("tiny-v1"), tmp_path / "from-diffusers")
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    single = load_model(str(tiny_single("tiny-v1", "ckpt")), tokenizer=str(tiny_model("tiny-v1")))
    assert save_model(single, tmp_path / "last") == tmp_path / "last.ckpt"
    assert (tmp_path / "last.ckpt").is_file()


def test_standard_sd1_file_gets_no_yaml_but_sd2_does(loaded, tmp_path):
    """Image generators need the .yaml for SD 2 (v2-inference[-v] style) only."""
    import yaml

    from trainer.models.yaml_export import ldm_config_for, needs_yaml

    v2v = loaded("tiny-v2-v")
    config = ldm_config_for(v2v)
    params = config["model"]["params"]
    assert params["parameterization"] == "v"
    assert params["cond_stage_config"]["params"]["layer"] == "penultimate"
    assert params["unet_config"]["params"]["use_linear_in_transformer"] is True
    assert needs_yaml(v2v)
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    assert "parameterization" not in ldm_config_for(loaded("tiny-v2"))["model"]["params"]


def test_save_accepts_wrapped_modules_and_state_dicts(loaded, tiny_model, tmp_path):
    """The training loop may hand over compiled / distributed wrappers or plain state dicts."""
    import torch

    from trainer.models import load_model, save_model

    bundle = loaded("tiny-v2")

    class Distributed(torch.nn.Module):  # keeps the model in .module, like DDP
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

    trained_unet = Distributed(bundle.unet)
    text_state = {"text_model." + k: v + 1.0 for k, v in bundle.text_encoder.state_dict().items()}
    path = save_model(bundle, tmp_path / "out.safetensors", unet=trained_unet,
                      text_encoder=text_state)
    back = load_model(str(path), tokenizer=str(tiny_model("tiny-v2")))
    assert all(torch.equal(a, b) for a, b in zip(back.unet.state_dict().values(),
                                                 bundle.unet.state_dict().values()))
    want = bundle.text_encoder.state_dict()
    assert all(torch.equal(v, want[k] + 1.0) for k, v in back.text_encoder.state_dict().items())
