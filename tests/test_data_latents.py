"""Latent cache with a real (tiny) VAE: memory, disk reuse, invalidation, several processes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from helpers import make_concept, make_image
from trainer.config import Config
from trainer.data import build_dataset
from trainer.data.latents import CACHE_FOLDER, SHARING_FOLDER, cache_latents, vae_identity
from trainer.train.latents import encode_images


@pytest.fixture(scope="module")
def vae(tiny_model):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(tiny_model("tiny-v1") / "vae").eval()


@pytest.fixture(scope="module")
def other_vae():
    from diffusers import AutoencoderKL

    from trainer.models import factory

    torch.manual_seed(123)
    return AutoencoderKL(**factory.vae_config(factory.spec("tiny-v1"))).eval()


class CountingEncoder:
    def __init__(self, vae):
        self.vae, self.images = vae, 0

    def __call__(self, images):
        self.images += len(images)
        return encode_images(self.vae, images, self.vae.dtype)


def make_data(root: Path):
    make_concept(root / "img" / "2_sks dog", 3, size=(96, 64))
    make_concept(root / "reg" / "1_dog", 8, color_index=2, seed=4)
    return root


def dataset(root: Path, **values):
    cfg = Config("db", {"train_data_dir": str(root / "img"), "reg_data_dir": str(root / "reg"),
                        "resolution": "64", "seed": 2, "cache_latents": True, **values})
    return build_dataset(cfg, warn=lambda m: None)


def cache(ds, vae, to_disk=True, **kw):
    encoder = CountingEncoder(vae)
    stats = cache_latents(ds, encoder, vae_identity(vae), batch_size=4, to_disk=to_disk, **kw)
    return stats, encoder.images


def test_memory_cache_holds_each_used_image_and_its_mirror(tmp_path, vae):
    ds = dataset(make_data(tmp_path), flip_aug=True)
    progress = []
    stats, encoded = cache(ds, vae, to_disk=False, progress=lambda d, t: progress.append((d, t)))
    assert stats["images"] == 3 + 6  # 6 samples of training -> 6 of the 8 reg images are used
    assert encoded == 2 * stats["images"]  # every image and its mirror
    assert progress[0] == (0, 9) and progress[-1] == (9, 9)
    assert not list(tmp_path.rglob(CACHE_FOLDER))
    seen_flip = set()
    for epoch in range(3):
        for refs in ds.epoch_batches(epoch, 3):
            batch = ds.load_batch(refs, epoch)
            assert "images" not in batch and batch["latents"].dtype == torch.float32
            assert tuple(batch["latents"].shape) == (len(refs), 4, 8, 8)
            _, picks = ds.sample_choices(refs, epoch)
            for ref, pick, latent in zip(refs, picks, batch["latents"]):
                seen_flip.add(pick.flip)
                if ref.item == 0:
                    pixels = ds_pixels(ds, ref)
                    if pick.flip:
                        pixels = torch.flip(pixels, dims=[-1])
                    expected = encode_images(vae, pixels[None], torch.float32)[0]
                    torch.testing.assert_close(latent, expected, atol=1e-4, rtol=1e-4)
    assert seen_flip == {True, False}


def ds_pixels(ds, ref):
    """The unflipped, center-cropped image of a sample."""
    from trainer.data.samples import Choices, render, to_tensor

    item = ds.items[ref.item]
    return to_tensor([render(item, Choices(False, item.placement.crop, 0.0))])[0]


def test_disk_cache_is_reused_on_the_next_run(tmp_path, vae):
    root = make_data(tmp_path)
    first = dataset(root, cache_latents_to_disk=True)
    stats, encoded = cache(first, vae)
    assert (stats["reused"], stats["encoded"], encoded) == (0, 9, 9)
    files = sorted((root / "img" / "2_sks dog" / CACHE_FOLDER).glob("*.safetensors"))
    assert len(files) == 3 and files[0].name.startswith("img000.png.64x64.")
    second = dataset(root, cache_latents_to_disk=True)
    stats, encoded = cache(second, vae)
    assert (stats["reused"], stats["encoded"], encoded) == (9, 0, 0)
    refs = second.epoch_batches(0, 4)[0]
    torch.testing.assert_close(second.load_batch(refs, 0)["latents"],
                               first.load_batch(refs, 0)["latents"])


def test_disk_cache_is_invalidated_by_resolution_vae_and_image_changes(tmp_path, vae, other_vae):
    root = make_data(tmp_path)
    cache(dataset(root, cache_latents_to_disk=True), vae)
    # another training size: other files, so going back later still reuses the first ones
    stats, encoded = cache(dataset(root, cache_latents_to_disk=True, resolution="128"), vae)
    assert (stats["reused"], stats["encoded"]) == (0, 9)
    assert cache(dataset(root, cache_latents_to_disk=True), vae)[0]["reused"] == 9
    # another VAE: same files, stale key, encoded again with the new VAE
    ds = dataset(root, cache_latents_to_disk=True)
    stats, encoded = cache(ds, other_vae)
    assert (stats["stale"], stats["encoded"], encoded) == (9, 9, 9)
    refs = ds.epoch_batches(0, 1)[0]
    expected = encode_images(other_vae, ds_pixels(ds, refs[0])[None], torch.float32)
    torch.testing.assert_close(ds.load_batch(refs, 0)["latents"], expected, atol=1e-4, rtol=1e-4)
    # an edited image (new content and time) is encoded again, the others are reused
    make_image(root / "img" / "2_sks dog" / "img001.png", size=(96, 64), color=(0, 0, 0), seed=99)
    stats, _ = cache(dataset(root, cache_latents_to_disk=True), other_vae)
    assert (stats["reused"], stats["encoded"]) == (8, 1)


def test_damaged_cache_files_are_encoded_again_with_a_warning(tmp_path, vae):
    root = make_data(tmp_path)
    cache(dataset(root, cache_latents_to_disk=True), vae)
    files = sorted((root / "reg" / "1_dog" / CACHE_FOLDER).glob("*.safetensors"))
    files[0].write_bytes(files[0].read_bytes()[:40])
    files[1].write_bytes(b"garbage")
    warnings: list[str] = []
    cfg = Config("db", {**dataset(root).cfg.to_dict(), "cache_latents_to_disk": True})
    ds = build_dataset(cfg, warn=warnings.append)
    stats, encoded = cache(ds, vae)
    assert (stats["corrupt"], stats["reused"], encoded) == (2, 7, 2)
    assert any("2 latent cache files were damaged" in w for w in warnings)
    assert cache(dataset(root, cache_latents_to_disk=True), vae)[0]["reused"] == 9


def test_flip_aug_cache_upgrades_files_written_without_the_mirror(tmp_path, vae):
    root = make_data(tmp_path)
    cache(dataset(root, cache_latents_to_disk=True), vae)
    stats, encoded = cache(dataset(root, cache_latents_to_disk=True, flip_aug=True), vae)
    assert (stats["stale"], encoded) == (9, 18)
    stats, _ = cache(dataset(root, cache_latents_to_disk=True), vae)
    assert stats["reused"] == 9  # a file with the mirror serves a run without flip_aug too


def run_ranks(make_ds, vae, world_size, to_disk):
    barrier = threading.Barrier(world_size)
    results, datasets = [None] * world_size, [make_ds() for _ in range(world_size)]

    def rank_main(rank):
        results[rank] = cache(datasets[rank], vae, to_disk=to_disk, rank=rank,
                              world_size=world_size, barrier=barrier.wait)

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return datasets, results


@pytest.mark.parametrize("to_disk", [True, False])
def test_several_processes_share_the_encoding(tmp_path, vae, to_disk):
    root = make_data(tmp_path)
    datasets, results = run_ranks(lambda: dataset(root, cache_latents_to_disk=to_disk,
                                                  output_dir=str(tmp_path / "out")), vae, 2,
                                  to_disk)
    encoded = [images for _, images in results]
    assert sum(encoded) == 9 and min(encoded) >= 4  # disjoint shares, nothing encoded twice
    refs = [ref for batch in datasets[0].epoch_batches(0, 4) for ref in batch]
    torch.testing.assert_close(datasets[0].load_batch(refs, 0)["latents"],
                               datasets[1].load_batch(refs, 0)["latents"])
    assert not (tmp_path / "out" / SHARING_FOLDER).exists()
    assert bool(list(root.rglob(CACHE_FOLDER))) == to_disk
