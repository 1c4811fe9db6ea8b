"""SDXL training parts on real files and the tiny SDXL model: the family table, each sample's
size conditioning (time_ids) in the dataset's batches, and the text conditioning of both
encoders."""

from __future__ import annotations

import pytest
import torch

from helpers import make_image
from trainer.config import Config
from trainer.data import build_dataset
from trainer.data.size_facts import size_facts


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    from trainer.models.xl_factory import build_xl_diffusers

    return build_xl_diffusers("tiny-xl", tmp_path_factory.mktemp("xl") / "tiny-xl")


@pytest.fixture(scope="module")
def xl_bundle(tiny_xl):
    from trainer.models import load_model

    return load_model(str(tiny_xl), xl=True)


def test_family_table_names_each_family(tiny_model, xl_bundle):
    from trainer.models import load_model
    from trainer.models.family import family_of

    xl = family_of(xl_bundle)
    assert (xl.name, xl.text_encoders, xl.pooled_text, xl.size_conditioning) == \
        ("sdxl", 2, True, True)
    assert (xl.default_resolution, xl.base_model_version, xl.hidden_layer) == \
        (1024, "sdxl_base_v1-0", -2)
    sd1 = family_of(load_model(str(tiny_model("tiny-v1"))))
    assert (sd1.name, sd1.text_encoders, sd1.size_conditioning, sd1.base_model_version) == \
        ("sd1", 1, False, "sd_v1")
    assert sd1.clip_skip_applies and not xl.clip_skip_applies


def one_image_dataset(root, size, *, resolution="128", **values):
    make_image(root / "img" / "1_sks dog" / "a.png", size)
    cfg = Config("db", {"train_data_dir": str(root / "img"), "resolution": resolution,
                        "seed": 1, **values})
    return build_dataset(cfg, warn=lambda m: None)


def batch_of(ds):
    plan = ds.epoch_batches(0, 1)
    return ds.load_batch(plan[0], 0)


def test_a_tall_image_in_a_square_bucket_gives_sd_scripts_time_ids(tmp_path):
    # 100x300 fitted inside 128x128 is 42.67 px wide: left margin floor(42.67) = 42 (and the
    # right edge at 84.67, so a flip puts the left margin at 128 - 84.67 -> 43).
    ds = one_image_dataset(tmp_path, (100, 300))
    batch = batch_of(ds)
    assert batch["images"].shape[-2:] == (128, 128)
    assert batch["time_ids"].tolist() == [[300, 100, 0, 42, 128, 128]]
    assert size_facts((100, 300), (128, 128), flip=True).time_ids() == [300, 100, 0, 43, 128, 128]


def test_a_wide_image_in_its_bucket_gives_original_size_offset_and_bucket(tmp_path):
    # Buckets of area 128x128 in steps of 64: a 2:1 image goes to 192x64 (ratio 3, the
    # closest). Fitted inside 192x64 it is 128 wide, so the left margin is 32.
    ds = one_image_dataset(tmp_path, (300, 150), enable_bucket=True, min_bucket_reso=64,
                           max_bucket_reso=256)
    assert ds.items[0].placement.bucket == (192, 64)
    assert batch_of(ds)["time_ids"].tolist() == [[150, 300, 0, 32, 64, 192]]


def test_cached_latents_carry_the_same_time_ids(tmp_path, xl_bundle):
    from trainer.data.latents import cache_latents, vae_identity
    from trainer.train.latents import encode_images

    ds = one_image_dataset(tmp_path, (100, 300), cache_latents=True)
    vae = xl_bundle.vae
    cache_latents(ds, lambda images: encode_images(vae, images, torch.float32),
                  vae_identity(vae), batch_size=1, to_disk=False)
    batch = batch_of(ds)
    assert "latents" in batch and "images" not in batch
    assert batch["time_ids"].tolist() == [[300, 100, 0, 42, 128, 128]]


class _Always:
    """A target whose text encoders learn (so nothing is cached)."""

    def __init__(self, encoders):
        self.encoders = encoders

    def trains_text_encoder(self, step):  # noqa: ARG002
        return True

    def forward_text_encoders(self):
        return self.encoders


def _conditioning(bundle, **settings):
    from trainer.models.family import family_of
    from trainer.train.conditioning import Conditioning
    from trainer.train.precision import Precision
    from trainer.train.text import TextSettings

    precision = Precision(torch.device("cpu"), torch.float32, torch.float32, torch.float32, None)
    target = _Always((bundle.text_encoder, bundle.text_encoder_2))
    return Conditioning([bundle.tokenizer, bundle.tokenizer_2], TextSettings(**settings), target,
                        precision, family_of(bundle), cacheable=False)


def test_sdxl_conditioning_joins_penultimate_states_and_pools_the_second_encoder(xl_bundle):
    bundle = xl_bundle
    text = _conditioning(bundle)(["a photo of sks dog"], 0)
    ids1 = bundle.tokenizer(["a photo of sks dog"], padding="max_length", max_length=77,
                            truncation=True, return_tensors="pt").input_ids
    ids2 = bundle.tokenizer_2(["a photo of sks dog"], padding="max_length", max_length=77,
                              truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        out1 = bundle.text_encoder(ids1, output_hidden_states=True)
        out2 = bundle.text_encoder_2(ids2, output_hidden_states=True)
    width1, width2 = bundle.text_encoder.config.hidden_size, bundle.text_encoder_2.config.hidden_size
    assert text.hidden.shape == (1, 77, width1 + width2)
    assert torch.equal(text.hidden, torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], 2))
    assert torch.equal(text.pooled, out2.text_embeds)
    # clip_skip does not change SDXL's conditioning (it always takes the penultimate layer)
    skipped = _conditioning(bundle, clip_skip=3)(["a photo of sks dog"], 0)
    assert torch.equal(skipped.hidden, text.hidden)


def test_long_sdxl_captions_use_both_encoders_and_the_first_windows_pooled_output(xl_bundle):
    words = " ".join(["sks dog on grass"] * 30)  # far more than 75 tokens
    short = _conditioning(xl_bundle)([words], 0)
    long = _conditioning(xl_bundle, max_token_length=150)([words], 0)
    assert long.hidden.shape[:2] == (1, 152) and short.hidden.shape[:2] == (1, 77)
    assert long.hidden.shape[2] == short.hidden.shape[2]
    # the first window of a long caption ends with EOS after 75 tokens, like the short one
    assert torch.allclose(long.pooled, short.pooled, atol=1e-5)
    assert torch.allclose(long.hidden[:, :76], short.hidden[:, :76], atol=1e-5)


def test_text_encoder_weights_past_the_layer_taken_are_left_out_of_training():
    """DDP refuses trained weights that get no gradient: the layers after the hidden layer a
    family takes (and the final norm it skips) must not be trained."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from trainer.train.text import TextSettings, encode_with_pooled, unused_parameters

    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=50, hidden_size=16, intermediate_size=32,
                                           num_hidden_layers=3, num_attention_heads=2,
                                           max_position_embeddings=77))
    ids = torch.randint(0, 50, (1, 77))
    for settings, fixed, pooled in [(TextSettings(clip_skip=1), None, False),
                                    (TextSettings(clip_skip=2), None, False),
                                    (TextSettings(), -2, False)]:
        encoder.zero_grad(set_to_none=True)
        hidden, _ = encode_with_pooled(encoder, ids, settings, fixed_layer=fixed, pooled=pooled)
        hidden.sum().backward()
        no_gradient = {id(p) for p in encoder.parameters() if p.grad is None}
        unused = {id(p) for p in unused_parameters(encoder, settings, fixed_layer=fixed,
                                                   pooled=pooled)}
        assert unused == no_gradient, (settings, fixed)
    assert len(unused) == 16 + 2  # SDXL's first encoder: its last layer and the final norm
