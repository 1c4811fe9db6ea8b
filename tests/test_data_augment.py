"""Batches as the loop receives them, and per-sample augmentation that survives a resume."""

from __future__ import annotations

import torch

from helpers import make_concept, make_db_dataset, run_cli
from trainer.config import Config
from trainer.data import build_dataset
from trainer.train.feed import BatchFeed


def dataset(tmp_path, size=(64, 64), count=4, **values):
    make_concept(tmp_path / "img" / "3_sks dog", count, size=size)
    cfg = Config("db", {"train_data_dir": str(tmp_path / "img"), "resolution": "64", "seed": 9,
                        **values})
    return build_dataset(cfg, warn=lambda m: None)


def all_refs(ds, epoch, gbs=4):
    return [ref for batch in ds.epoch_batches(epoch, gbs) for ref in batch]


def test_batch_contents_shapes_and_ranges(tmp_path):
    train, reg = make_db_dataset(tmp_path, repeats=2, images=2, reg_images=4)
    ds = build_dataset(Config("db", {"train_data_dir": str(train), "reg_data_dir": str(reg),
                                     "resolution": "64", "prior_loss_weight": 0.5}))
    refs = ds.epoch_batches(0, 3)[0]
    batch = ds.load_batch(refs, 0)
    assert batch["images"].dtype == torch.float32
    assert tuple(batch["images"].shape) == (len(refs), 3, 64, 64)
    assert batch["images"].min() >= -1 and batch["images"].max() <= 1
    assert batch["images"].min() < -0.5 and batch["images"].max() > 0.8  # full range used
    assert "latents" not in batch
    assert len(batch["captions"]) == len(batch["paths"]) == len(batch["is_reg"]) == len(refs)
    for caption, is_reg, weight in zip(batch["captions"], batch["is_reg"], batch["loss_weights"]):
        assert (caption, float(weight)) == (("dog", 0.5) if is_reg else ("sks dog", 1.0))


def test_flip_aug_mirrors_about_half_the_samples(tmp_path):
    plain = dataset(tmp_path / "a")
    flipping = dataset(tmp_path / "b", flip_aug=True)
    flips = 0
    for epoch in range(4):
        refs = all_refs(flipping, epoch)
        got = flipping.load_batch(refs, epoch)["images"]
        expected = plain.load_batch(refs, epoch)["images"]
        for image, original in zip(got, expected):
            if torch.equal(image, original):
                continue
            assert torch.equal(image, torch.flip(original, dims=[-1]))
            flips += 1
    assert 0.25 < flips / (4 * len(refs)) < 0.75


def test_random_crop_moves_the_window_and_center_crop_does_not(tmp_path):
    center = dataset(tmp_path / "a", size=(128, 64))
    moving = dataset(tmp_path / "b", size=(128, 64), random_crop=True)
    ref = all_refs(center, 0)[0]
    centered = {center.load_batch([r], e)["images"].sum().item()
                for e in range(4) for r in all_refs(center, e) if r.item == ref.item}
    assert len(centered) == 1
    offsets = {moving.sample_choices([r], e)[1][0].crop
               for e in range(6) for r in all_refs(moving, e)}
    assert len(offsets) > 3 and all(0 <= x <= 64 and y == 0 for x, y in offsets)


def test_color_aug_shifts_hue_but_keeps_brightness(tmp_path):
    plain = dataset(tmp_path / "a")
    colored = dataset(tmp_path / "b", color_aug=True)
    refs = all_refs(plain, 0)
    a = plain.load_batch(refs, 0)["images"]
    b = colored.load_batch(refs, 0)["images"]
    assert not torch.equal(a, b)
    assert (a.mean(dim=1) - b.mean(dim=1)).abs().mean() < 0.05  # lightness nearly unchanged
    assert (a - b).abs().amax() > 0.05  # but the colors moved


def test_sample_randomness_depends_only_on_seed_epoch_and_position(tmp_path):
    ds = dataset(tmp_path, size=(96, 64), flip_aug=True, color_aug=True, random_crop=True,
                 shuffle_caption=True)
    refs = all_refs(ds, 3)
    whole = ds.load_batch(refs, 3)
    # as two GPUs would load them (halves), and after a restart (a new dataset object)
    rebuilt = build_dataset(ds.cfg.copy(), warn=lambda m: None)
    halves = [rebuilt.load_batch(refs[:5], 3), rebuilt.load_batch(refs[5:], 3)]
    assert torch.equal(whole["images"], torch.cat([h["images"] for h in halves]))
    assert whole["captions"] == halves[0]["captions"] + halves[1]["captions"]
    assert not torch.equal(whole["images"], ds.load_batch(refs, 4)["images"])


def test_threaded_loading_gives_the_same_batches(tmp_path):
    ds = dataset(tmp_path, flip_aug=True)
    plan = ds.epoch_batches(1, 3)

    def images(workers: int) -> list:
        feed = BatchFeed(ds, rank=0, batch_size=3, accumulation=2, workers=workers)
        return [local.data["images"] for group in feed.groups(plan, 1, 0)
                for local in group.batches]

    direct, threaded = images(0), images(2)
    assert len(threaded) == len(direct) == len(plan)
    assert all(torch.equal(x, y) for x, y in zip(direct, threaded))


def test_color_aug_or_random_crop_with_cache_latents_is_refused(tmp_path):
    train, _ = make_db_dataset(tmp_path, reg_images=0)
    for flag in ("--color_aug", "--random_crop"):
        result = run_cli("db", "--train_data_dir", train, "--resolution", "64",
                         "--output_dir", tmp_path / "out", "--cache_latents", flag,
                         "--pretrained_model_name_or_path", tmp_path)
        assert result.returncode == 2
        assert f"error: {flag}: cannot be used with cache_latents" in result.stderr


def test_large_jpeg_shrinks_to_the_same_picture_as_a_full_decode(tmp_path):
    from PIL import Image

    from helpers import make_image

    path = make_image(tmp_path / "img" / "1_sks dog" / "big.jpg", size=(1024, 512), fmt="JPEG")
    ds = build_dataset(Config("db", {"train_data_dir": str(tmp_path / "img"), "resolution": "64"}))
    got = ds.load_batch(ds.epoch_batches(0, 1)[0], 0)["images"][0]
    with Image.open(path) as image:  # reference: decode everything, then resize and crop
        reference = image.convert("RGB").resize((128, 64), Image.Resampling.LANCZOS)
    reference = reference.crop((32, 0, 96, 64))
    from trainer.data.samples import to_tensor

    assert (got - to_tensor([reference])[0]).abs().mean() < 0.03
