"""The hand-written diffusers -> single-file export, checked at the real SD 1.5 / 2.1 sizes.

The reference layouts in tests/data were taken from the original Stable Diffusion code. Weights
here are random; conversions only move tensors, so every value must come back bit-identical.
"""

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
CASES = [("sd15", "sd15"), ("sd21", "sd21")]


def _reference(name: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in (DATA / f"{name}_ldm_keys.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, shape = line.partition(" ")
            out[key] = tuple(int(n) for n in shape.split(",") if n)
    return out


def _meta_models(spec_name: str):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from trainer.models import factory

    spec = factory.spec(spec_name)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**factory.unet_config(spec))
        vae = AutoencoderKL(**factory.vae_config(spec))
        text = CLIPTextModel(CLIPTextConfig(**factory.text_config(spec, 49408, 49406, 49407, 49407)))
    return spec, unet, vae, text


def _random_tensors(shapes: dict, seed: int) -> dict:
    """Random fp16 tensors, each a view at its own offset into one shared random pool: a
    billion distinct-looking weights without a billion random numbers (or 4 GB of memory)."""
    import math

    import torch

    generator = torch.Generator().manual_seed(seed)
    pool = torch.rand(64_000_000, generator=generator, dtype=torch.float16)
    out = {}
    for index, (key, shape) in enumerate(shapes.items()):
        size = math.prod(shape)
        offset = (index * 104_729 + 7) % (pool.numel() - size + 1)
        out[key] = pool[offset:offset + size].view(shape)
    return out


def _random_like(state: dict, seed: int) -> dict:
    return _random_tensors({k: tuple(v.shape) for k, v in state.items()}, seed)


def _shapes(state: dict) -> dict:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("spec_name, reference", CASES)
def test_export_has_exactly_the_original_key_set_and_shapes(spec_name, reference):
    from trainer.models.ldm_export import to_ldm

    spec, unet, vae, text = _meta_models(spec_name)
    exported, _ = to_ldm(unet.state_dict(), vae.state_dict(), text.state_dict(), v2=spec.v2)
    expected = _reference(reference)
    assert sorted(set(expected) - set(exported)) == []  # nothing missing
    assert sorted(set(exported) - set(expected)) == []  # nothing invented
    assert {k: v for k, v in _shapes(exported).items() if expected[k] != v} == {}


def _library_to_diffusers(ldm: dict, spec, text_hidden: int) -> dict:
    """diffusers' own single-file converters (what from_single_file uses)."""
    from diffusers.loaders import single_file_utils as sfu

    from trainer.models import factory
    from trainer.models.ldm_export import strip_text_model

    unet = sfu.convert_ldm_unet_checkpoint(ldm, factory.unet_config(spec))
    vae = sfu.convert_ldm_vae_checkpoint(ldm, factory.vae_config(spec))
    if spec.v2:
        holder = type("M", (), {"config": type("C", (), {"hidden_size": text_hidden})()})()
        text = sfu.convert_open_clip_checkpoint(holder, ldm)
    else:
        text = {k: v for k, v in sfu.convert_ldm_clip_checkpoint(ldm).items()
                if not k.endswith("position_ids")}
    return {"unet": unet, "vae": vae, "text": strip_text_model(text)}


def _assert_identical(got: dict, want: dict, what: str):
    import torch

    assert set(got) == set(want), f"{what}: {sorted(set(got) ^ set(want))[:5]}"
    differing = [k for k in want if not torch.equal(got[k], want[k].reshape(got[k].shape))
                 or got[k].shape != want[k].shape]
    assert differing == [], f"{what}: {len(differing)} tensors differ, e.g. {differing[:3]}"


@pytest.mark.parametrize("spec_name, reference", CASES)
def test_diffusers_converters_read_our_export_back_identically(spec_name, reference):
    """diffusers weights -> our single-file layout -> diffusers' converters -> same weights."""
    from trainer.models.ldm_export import to_ldm

    spec, unet, vae, text = _meta_models(spec_name)
    original = {"unet": _random_like(unet.state_dict(), 1), "vae": _random_like(vae.state_dict(), 2),
                "text": _random_like(text.state_dict(), 3)}
    exported, _ = to_ldm(original["unet"], original["vae"], original["text"], v2=spec.v2)
    back = _library_to_diffusers(exported, spec, spec.text_hidden)
    for part in ("unet", "vae", "text"):
        _assert_identical(back[part], original[part], part)


@pytest.mark.parametrize("spec_name, reference", CASES)
def test_original_layout_survives_diffusers_converters_and_our_export(spec_name, reference):
    """An original-layout checkpoint -> diffusers' converters -> our export -> the same file."""
    from trainer.models.ldm_export import to_ldm

    spec, unet, vae, text = _meta_models(spec_name)
    shapes = _reference(reference)
    original = _random_tensors(shapes, 4)
    converted = _library_to_diffusers(original, spec, spec.text_hidden)
    # the converted weights fit the diffusers models exactly
    assert _shapes(converted["unet"]) == _shapes(unet.state_dict())
    assert _shapes(converted["vae"]) == _shapes(vae.state_dict())
    assert _shapes(converted["text"]) == _shapes(text.state_dict())
    exported, placeholders = to_ldm(converted["unet"], converted["vae"], converted["text"],
                                    v2=spec.v2)
    assert set(exported) == set(original)
    weights = {k: v for k, v in original.items() if k not in placeholders}
    _assert_identical({k: exported[k] for k in weights}, weights, "single file")
    # what diffusers drops (unused last OpenCLIP block, projection, DDPM buffers) is recreated
    # with the right shapes; a single-file input's own values replace them on save
    assert {k: tuple(exported[k].shape) for k in placeholders} == \
        {k: shapes[k] for k in placeholders}
