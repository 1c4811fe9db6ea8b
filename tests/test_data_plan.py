"""Epochs: regularization balance, one bucket per batch, order reproducible from the seed."""

from __future__ import annotations

from collections import Counter

import pytest

from helpers import make_concept
from trainer.config import Config
from trainer.data import build_dataset, rank_slice


def build(tmp_path, train: dict, reg: dict | None = None, **values):
    """train/reg: {folder name: (count, size)}."""
    for root, folders in (("img", train), ("reg", reg or {})):
        for k, (name, (count, size)) in enumerate(folders.items()):
            make_concept(tmp_path / root / name, count, size=size, color_index=k, seed=k + 1)
    cfg = Config("db", {"train_data_dir": str(tmp_path / "img"),
                        "reg_data_dir": str(tmp_path / "reg") if reg else None,
                        "resolution": "128", "seed": 5, **values})
    return build_dataset(cfg, warn=lambda m: None)


def uses(batches):
    return Counter(ref.item for batch in batches for ref in batch)


def test_regularization_fills_as_many_samples_as_training_and_extra_images_stay_unused(tmp_path):
    ds = build(tmp_path, {"3_sks dog": (4, (64, 64))}, {"1_dog": (20, (64, 64))},
               prior_loss_weight=0.7)
    summary = ds.summary()
    assert (summary["train_samples"], summary["reg_samples"]) == (12, 12)
    assert (summary["reg_images_used"], summary["reg_images_unused"]) == (12, 8)
    batches = ds.epoch_batches(0, 4)
    counted = uses(batches)
    reg_used = [i for i in counted if ds.is_reg[i]]
    assert len(reg_used) == 12 and all(counted[i] == 1 for i in reg_used)
    assert all(counted[i] == 3 for i in counted if not ds.is_reg[i])
    batch = ds.load_batch([ref for b in batches for ref in b], 0)
    weights = {reg: {round(float(w), 3) for w, r in zip(batch["loss_weights"], batch["is_reg"])
                     if r == reg} for reg in (True, False)}
    assert weights == {True: {0.7}, False: {1.0}}


def test_few_regularization_images_are_repeated_beyond_their_folder_repeats(tmp_path):
    ds = build(tmp_path, {"10_sks dog": (3, (64, 64))}, {"2_dog": (4, (64, 64))})
    counted = uses(ds.epoch_batches(0, 5))
    reg = sorted(counted[i] for i in counted if ds.is_reg[i])
    assert sum(reg) == 30 and len(reg) == 4
    assert max(reg) - min(reg) <= 1  # spread evenly: every image shown 7 or 8 times


def test_regularization_repeats_are_respected(tmp_path):
    ds = build(tmp_path, {"2_sks dog": (5, (64, 64))}, {"3_dog": (6, (64, 64))})
    counted = uses(ds.epoch_batches(0, 2))
    reg = sorted((counted[i] for i in counted if ds.is_reg[i]), reverse=True)
    assert reg == [3, 3, 3, 1]  # 10 samples: three images with their 3 repeats, then one


def test_batches_hold_one_bucket_and_cover_the_epoch(tmp_path):
    ds = build(tmp_path, {"2_sks dog": (5, (128, 64)), "3_sks cat": (4, (64, 128))},
               {"1_animal": (10, (96, 96))}, enable_bucket=True, min_bucket_reso=64,
               max_bucket_reso=256)
    assert len(ds.bucket_counts()) == 3
    for gbs in (1, 3, 4):
        for epoch in range(3):
            batches = ds.epoch_batches(epoch, gbs)
            assert len(batches) == ds.steps_per_epoch(gbs)
            assert sum(len(b) for b in batches) == len(ds) == 44
            assert all(len({ref.bucket for ref in b}) == 1 and len(b) <= gbs for b in batches)
            positions = sorted(ref.pos for b in batches for ref in b)
            assert positions == list(range(len(ds)))
            images = ds.load_batch(batches[0], epoch)["images"]
            assert tuple(images.shape[2:]) == batches[0][0].bucket[::-1]


def test_order_is_reproducible_from_seed_and_changes_per_epoch(tmp_path):
    ds = build(tmp_path, {"4_sks dog": (6, (64, 64))})
    def order(d, epoch):
        return [ref.item for b in d.epoch_batches(epoch, 2) for ref in b]
    assert order(ds, 1) == order(ds, 1)
    assert order(ds, 0) != order(ds, 1)
    other_seed = build_dataset(Config("db", {**ds.cfg.to_dict(), "seed": 6}), warn=lambda m: None)
    assert order(other_seed, 1) != order(ds, 1)
    rebuilt = build_dataset(ds.cfg.copy(), warn=lambda m: None)
    assert order(rebuilt, 1) == order(ds, 1)


def test_multi_gpu_slices_are_equal_and_keep_the_single_gpu_samples(tmp_path):
    ds = build(tmp_path, {"3_sks dog": (3, (128, 64)), "2_sks cat": (2, (64, 128))},
               enable_bucket=True, min_bucket_reso=64, max_bucket_reso=256)
    single = ds.epoch_batches(2, 4)
    multi = ds.epoch_batches(2, 4, world_size=2)
    assert len(multi) == len(single) == ds.steps_per_epoch(4)
    for one, many in zip(single, multi):
        assert many[:len(one)] == one  # real samples keep their position (and randomness)
        shares = [rank_slice(many, rank, 2) for rank in range(2)]
        assert len(shares[0]) == len(shares[1]) >= 1
        assert set(shares[0] + shares[1]) == set(many)
    [odd] = [b for b in single if len(b) % 2]  # 9 samples in one bucket: 4 + 4 + 1
    assert [len(b) for b in multi if odd[0] in b] == [2]  # topped up to one sample per GPU
    with pytest.raises(ValueError, match="world_size"):
        rank_slice(odd, 0, 2)


def test_summary_and_lora_metadata_are_json_ready(tmp_path):
    import dataclasses
    import json

    ds = build(tmp_path, {"3_sks dog": (2, (128, 64))}, {"1_dog": (9, (64, 64))},
               enable_bucket=True, min_bucket_reso=64, max_bucket_reso=256)
    summary = json.loads(json.dumps(ds.summary()))
    assert summary["buckets"] == {f"{w}x{h}": n for (w, h), n in ds.bucket_counts().items()}
    assert sum(summary["buckets"].values()) == summary["samples_per_epoch"] == 12
    facts = json.loads(json.dumps(dataclasses.asdict(ds.lora_facts(global_batch_size=4))))
    assert facts["dataset_dirs"] == {"3_sks dog": {"n_repeats": 3, "img_count": 2}}
    assert facts["reg_dataset_dirs"] == {"1_dog": {"n_repeats": 1, "img_count": 9}}
    assert facts["num_train_images"] == 6 and facts["num_reg_images"] == 6
    assert facts["num_batches_per_epoch"] == ds.steps_per_epoch(4)
    assert facts["tag_frequency"] == {"3_sks dog": {"sks dog": 2}, "1_dog": {"dog": 9}}
    buckets = facts["bucket_info"]["buckets"]
    assert sorted(tuple(b["resolution"]) for b in buckets.values()) == sorted(ds.bucket_counts())


def _peak_bytes(work) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_plans_and_previews_does_not_grow_with_repeats(tmp_path):
    """10,000 repeats (the limit) of 20 images: 200,000 samples per epoch."""
    from trainer.data import bucket_preview, dataset_report

    peaks = {}
    for repeats in (1, 10_000):
        root = tmp_path / str(repeats)
        make_concept(root / "img" / f"{repeats}_sks dog", 20, size=(64, 64))
        cfg = Config("db", {"train_data_dir": str(root / "img"), "resolution": "64",
                            "seed": 1, "train_batch_size": 4})
        seen = {}

        def plan_and_preview():
            ds = build_dataset(cfg, warn=lambda m: None)
            plan = ds.epoch_batches(3, 4)
            seen["batches"], seen["last"] = len(plan), plan[-1]
            seen["samples"] = len(ds)
            bucket_preview(cfg)
            seen["report"] = dataset_report(cfg)

        peaks[repeats] = _peak_bytes(plan_and_preview)
        assert seen["samples"] == 20 * repeats and seen["batches"] == 5 * repeats
        assert len(seen["last"]) == 4 and seen["report"]["batches_per_epoch"] == 5 * repeats
    # a list of the epoch's samples alone would take over 10 MB
    assert peaks[10_000] < peaks[1] + 1_000_000, peaks


def test_lazy_plan_covers_every_sample_once_in_a_shuffled_order(tmp_path):
    ds = build(tmp_path, {"7_sks dog": (3, (64, 64)), "5_sks cat": (2, (128, 64))},
               {"2_animal": (4, (64, 64))}, enable_bucket=True, min_bucket_reso=64,
               max_bucket_reso=256)
    plan = ds.epoch_batches(0, 4)
    batches = list(plan)
    assert plan[-1] == batches[-1] and plan[1:3] == batches[1:3]
    counted = uses(batches)
    repeats = {i: ds.subsets[item.subset].repeats for i, item in enumerate(ds.items)}
    assert all(counted[i] == repeats[i] for i in counted if not ds.is_reg[i])
    assert sum(counted[i] for i in counted if ds.is_reg[i]) == 31
    order = [ref.item for batch in batches for ref in batch]
    assert order != sorted(order)
